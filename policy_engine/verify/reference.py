"""A small, deliberately naive reference semantics of the fallback ladder.

The engine is optimised: it counts each candidate once and walks the ladder by
arithmetic, with Decimal step maths shared across modules. This module is the opposite:
plain Python read top to bottom, rational arithmetic (`Fraction`), no imports from the
evaluator, and the whole prompt rendered and counted again at every rung. The
differential property (tests/verify) says the two agree on every generated case.

Only the prompt rendering (the template) and the token counter are shared: they define
*what* is counted, not how the ladder walks.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from policy_engine.policy import Policy
from policy_engine.pools import Candidate, Pools
from policy_engine.usage import Request, UsageSnapshot

ALL_POOLS = ("subcategories", "datasets", "fields", "operators")


@dataclass(frozen=True)
class ReferenceResult:
    allowed: bool
    reason: str | None
    reasons: tuple[str, ...]
    selection: dict[str, dict[str, tuple[str, ...]]]
    prompt_tokens: int
    rungs_applied: int


def _owners_kept(state: dict[str, list[Candidate]]) -> dict[str, list[Candidate]]:
    """Dropping a subcategory drops its datasets; dropping a dataset drops its fields."""
    subcategory_ids = [c.id for c in state["subcategories"]]
    datasets = [d for d in state["datasets"] if d.parent in subcategory_ids]
    dataset_ids = [d.id for d in datasets]
    fields = [f for f in state["fields"] if f.parent in dataset_ids]
    return {
        "subcategories": state["subcategories"],
        "datasets": datasets,
        "fields": fields,
        "operators": state["operators"],
    }


def _new_size(kind: str, value: Fraction, current: int, original: int, minimum: int) -> int:
    if current == 0:
        return 0
    if kind == "factor":
        size = math.floor(current * value)
        size = min(size, current - 1)  # a factor always removes at least one
        size = max(size, 1)
    elif kind == "share":
        size = max(math.floor(original * value), 1)
    else:  # count
        size = int(value)
    size = max(size, minimum)
    return min(size, current)  # never grows


def _lane_sizes(
    total: int, exploit_available: int, explore_available: int, explore_ratio: Fraction, floor: int
) -> tuple[int, int]:
    want_explore = round(total * explore_ratio)  # round() on a Fraction rounds half to even
    want_explore = max(want_explore, min(floor, explore_available))
    explore = min(want_explore, explore_available, total)
    exploit = min(total - explore, exploit_available)
    spare = total - explore - exploit  # exploit ran short: give the slots back to explore
    explore += min(spare, explore_available - explore)
    return exploit, explore


def reference_evaluate(
    policy: Policy,
    pools: Pools,
    usage: UsageSnapshot,
    request: Request,
    render: Callable[[Mapping[str, tuple[str, ...]]], str],
    count: Callable[[str], int],
) -> ReferenceResult:
    settings, _matched = policy.resolve(pools.attributes)
    completion = request.completion_tokens if request.completion_tokens is not None else settings.completion_budget
    price = policy.price

    def limit_value(metric: str, value: int) -> int:
        if metric == "batch_total" and not request.expansion:
            return value - settings.expansion_reserve
        if metric == "request_prompt" and request.expansion:
            return value + settings.expansion_reserve
        return value

    def cost(prompt: int) -> int | None:
        if price is None:
            return None
        usd = Fraction(price.prompt_per_million) * prompt + Fraction(price.completion_per_million) * completion
        return math.ceil(usd)  # micro-USD, rounded up

    def metrics(prompt: int) -> dict[str, int | None]:
        c = cost(prompt)
        return {
            "request_prompt": prompt,
            "request_completion": completion,
            "batch_total": usage.batch_tokens + prompt + completion,
            "day_total": usage.day_tokens + prompt + completion,
            "request_usd": c,
            "batch_usd": None if c is None else usage.batch_micro_usd + c,
            "day_usd": None if c is None else usage.day_micro_usd + c,
        }

    def failing(prompt: int) -> tuple[str, ...]:
        values = metrics(prompt)
        out = []
        for limit in settings.limits:
            if limit.severity.value != "block":
                continue
            actual = values[limit.metric]
            if actual is not None and actual > limit_value(limit.metric, limit.value):
                out.append(limit.metric)
        return tuple(out)

    def prompt_tokens(state: dict[str, list[Candidate]]) -> int:
        return count(render({pool: tuple(c.id for c in state[pool]) for pool in ALL_POOLS}))

    def result(state: dict[str, list[Candidate]], prompt: int, fails: tuple[str, ...], rungs: int) -> ReferenceResult:
        selection = {
            pool: {lane: tuple(c.id for c in state[pool] if c.lane == lane) for lane in ("exploit", "explore")}
            for pool in ALL_POOLS
        }
        reason = (settings.ladder.exhausted_reason or fails[0]) if fails else None
        return ReferenceResult(not fails, reason, fails, selection, prompt, rungs)

    # 1. The starting selection: each pool's candidates in pack order, each lane capped by top-k.
    caps = {(t.pool, t.lane): t.value for t in settings.topk}
    state: dict[str, list[Candidate]] = {}
    for pool in ALL_POOLS:
        kept: list[Candidate] = []
        for cand in pools.pool(pool):
            cap = caps.get((pool, cand.lane))
            already = len([c for c in kept if c.lane == cand.lane])
            if cap is None or already < cap:
                kept.append(cand)
        state[pool] = kept
    state = _owners_kept(state)

    prompt = prompt_tokens(state)
    fails = failing(prompt)
    if not fails:
        return result(state, prompt, fails, 0)
    # 2. A limit that fails even with an empty prompt cannot be fixed by trimming.
    for metric in fails:
        empty_value = metrics(0)[metric]
        limit = settings.limit(metric)
        assert limit is not None
        if metric == "request_completion" or (
            empty_value is not None and empty_value > limit_value(metric, limit.value)
        ):
            return result(state, prompt, fails, 0)

    # 3. The ladder: stage by stage, step by step, stop at the first state that fits.
    original = {pool: len(state[pool]) for pool in ALL_POOLS}
    floor = settings.lanes.explore_floor
    ratio = Fraction(settings.lanes.explore_ratio)
    rungs = 0
    for stage in settings.ladder.stages:
        for step in stage.steps:
            current = state[stage.pool]
            exploit = [c for c in current if c.lane == "exploit"]
            explore = [c for c in current if c.lane == "explore"]
            size = _new_size(step.kind.value, Fraction(step.value), len(current), original[stage.pool], stage.minimum)
            size = max(size, min(floor, len(explore)))  # room for the explore floor
            if size >= len(current):
                continue  # nothing to remove: a skipped rung
            n_exploit, n_explore = _lane_sizes(size, len(exploit), len(explore), ratio, floor)
            keep = exploit[:n_exploit] + explore[:n_explore]
            state = _owners_kept({**state, stage.pool: [c for c in current if c in keep]})
            rungs += 1
            prompt = prompt_tokens(state)
            fails = failing(prompt)
            if not fails:
                return result(state, prompt, fails, rungs)
    return result(state, prompt, fails, rungs)


def prompt_model_for(policy: Policy, pools: Pools, *, idea: Any = None, knowledge: Any = None) -> tuple[Any, Any]:
    """(prompt model, counter) as the evaluator builds them for this policy and pack."""
    from policy_engine.render import policy_prompt_model

    model, counter, _ = policy_prompt_model(policy, pools, idea=idea, knowledge=knowledge)
    return model, counter


def reference_for(
    policy: Policy, pools: Pools, *, idea: Any = None, knowledge: Any = None
) -> tuple[Callable[..., str], Callable[[str], int]]:
    """The render and count functions the reference uses: the policy's own template and
    tokenizer, with no incremental arithmetic."""
    model, counter = prompt_model_for(policy, pools, idea=idea, knowledge=knowledge)
    return model.render, counter.count


# ---- the agent's prompt, written out plainly (section 3 and 3.1 of the reference doc) ----
#
# An independent second implementation of the prompt the agent sends: no code shared with
# policy_engine.render's template engine (neither its template file nor its helpers). It
# builds the whole envelope as a dict for one selection and prints it; nothing is cached or
# measured piecewise. The property in tests/verify/test_reference_prompt.py compares it
# with the template engine on generated packs and knowledge packs.

AGENT_NAME = "Alpha Maker"
AGENT_RULES = [
    "Return JSON only.",
    "Follow CandidateAlpha schema exactly.",
    "simulation_settings.type must be REGULAR.",
    "simulation_settings.settings.language must be FASTEXPR.",
    "Use only retrieval_pack candidate fields/operators.",
]
AGENT_OUTPUT_SCHEMA = {
    "idea_id": "str",
    "alpha_id": None,
    "simulation_settings": {
        "type": "REGULAR",
        "settings": "SimulationSettings object (language=FASTEXPR)",
        "regular": "FastExpr string",
    },
    "generation_notes": {
        "used_fields": ["field id"],
        "used_operators": ["operator name"],
        "candidate_lane": "optional exploit|explore",
    },
}
AGENT_MAX_EXAMPLES = 8


def _agent_idea(idea: Mapping[str, Any] | None, pack: Mapping[str, Any]) -> dict[str, Any]:
    if idea is None:
        out: dict[str, Any] = {
            "idea_id": pack.get("idea_id"),
            "hypothesis": pack.get("query"),
            "theme_tags": [],
            "target": pack.get("target"),
            "candidate_datasets": [],
            "keywords_for_retrieval": [],
        }
    else:
        out = dict(idea)
    for key, default in (("candidate_subcategories", []), ("retrieval_context_id", None), ("exploration_intent", None)):
        if key not in out:
            out[key] = default
    return out


def _agent_retrieval_pack(
    pack: Mapping[str, Any], chosen: Mapping[str, set[str]], limits: Mapping[str, int | None]
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pack.items():
        if key in ("visual_graph", "token_estimate", "telemetry"):
            continue
        out[key] = value
    out["selected_subcategories"] = [s for s in pack["selected_subcategories"] if s in chosen["subcategories"]]
    out["candidate_datasets"] = [d for d in pack["candidate_datasets"] if d["id"] in chosen["datasets"]]
    out["candidate_fields"] = [f for f in pack["candidate_fields"] if f["id"] in chosen["fields"]]
    out["candidate_operators"] = [o for o in pack["candidate_operators"] if o["name"] in chosen["operators"]]
    lanes = {}
    for lane, lists in pack["lanes"].items():
        lists = dict(lists)
        if lane in ("exploit", "explore"):
            lists["field_ids"] = [x for x in lists["field_ids"] if x in chosen["fields"]]
            lists["operator_names"] = [x for x in lists["operator_names"] if x in chosen["operators"]]
        lanes[lane] = lists
    out["lanes"] = lanes
    if isinstance(out.get("budget_policy"), dict):
        budget = dict(out["budget_policy"])
        llm_budget = {}
        for key, metric in (
            ("max_prompt_tokens", "request_prompt"),
            ("max_completion_tokens", "request_completion"),
            ("max_tokens_per_batch", "batch_total"),
            ("max_tokens_per_day", "day_total"),
        ):
            if limits.get(metric) is not None:
                llm_budget[key] = limits[metric]
        budget["llm_budget"] = llm_budget
        out["budget_policy"] = budget
    guard = out.get("context_guard")
    if isinstance(guard, dict) and isinstance(guard.get("max_items"), dict):
        guard = dict(guard)
        guard["max_items"] = {k: (len(chosen[k]) if k in chosen else v) for k, v in guard["max_items"].items()}
        out["context_guard"] = guard
    return out


def _names_a_kept_operator(row: Any, ops: set[str]) -> bool:
    """Signature rows and visual cards: an object with a non-empty name, in OPS unless
    OPS is empty."""
    if not isinstance(row, dict):
        return False
    name = row.get("name")
    if not isinstance(name, str) or name == "":
        return False
    return not ops or name in ops


def _strings(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else []


def _agent_knowledge(docs: Mapping[str, Any], ops: set[str], fields: set[str]) -> dict[str, Any]:
    most = max(1, AGENT_MAX_EXAMPLES)
    out: dict[str, Any] = {}
    sig = docs.get("operator_signature_pack")
    if isinstance(sig, dict):
        rows = [r for r in _strings(sig.get("operators")) if _names_a_kept_operator(r, ops)]
        out["operator_signature_pack"] = {
            "version": sig.get("version"),
            "generated_at": sig.get("generated_at"),
            "operator_count": len(rows),
            "operators": rows,
        }
    ex = docs.get("fastexpr_examples_pack")
    if isinstance(ex, dict):
        kept: list[dict[str, Any]] = []
        for example in _strings(ex.get("examples")):
            if len(kept) >= most:
                break
            if not isinstance(example, dict):
                continue
            used_ops = _strings(example.get("used_operators"))
            used_fields = _strings(example.get("used_fields"))
            uses_kept_op = any(u in ops for u in used_ops)
            uses_kept_field = any(f in fields for f in used_fields)
            if ops and used_ops and not uses_kept_op and not uses_kept_field:
                continue
            kept.append(example)
        out["fastexpr_examples_pack"] = {
            "version": ex.get("version"),
            "generated_at": ex.get("generated_at"),
            "fallback_used": bool(ex.get("fallback_used")),
            "examples": kept,
        }
    vis = docs.get("fastexpr_visual_pack")
    if isinstance(vis, dict):
        cards = [c for c in _strings(vis.get("operators")) if _names_a_kept_operator(c, ops)]
        taxonomy = vis.get("error_taxonomy")
        example_cards: list[dict[str, Any]] = []
        for card in _strings(vis.get("example_cards")):
            if len(example_cards) >= most:
                break
            if not isinstance(card, dict):
                continue
            used_ops = _strings(card.get("used_operators"))
            if ops and used_ops and not any(u in ops for u in used_ops):
                continue
            example_cards.append(card)
        out["fastexpr_visual_pack"] = {
            "version": vis.get("version"),
            "generated_at": vis.get("generated_at"),
            "operators": cards,
            "error_taxonomy": taxonomy if isinstance(taxonomy, list) else [],
            "example_cards": example_cards,
        }
    sim = docs.get("simulation_settings_allowed_pack")
    if isinstance(sim, dict):
        out["simulation_settings_allowed_pack"] = sim
    out["compact_policy"] = {"operator_candidates": len(ops), "field_candidates": len(fields), "max_examples": most}
    return out


def reference_prompt(
    pack: Mapping[str, Any],
    selection: Mapping[str, tuple[str, ...]],
    *,
    idea: Mapping[str, Any] | None = None,
    knowledge: Mapping[str, Any] | None = None,
    limits: Mapping[str, int | None] | None = None,
) -> str:
    """The agent's prompt for a selection of the agent-format pack, as the agent prints it:
    ``json.dumps(envelope, indent=2, ensure_ascii=False)``. ``knowledge``: file stem -> parsed document."""
    chosen = {pool: set(selection.get(pool, ())) for pool in ALL_POOLS}
    envelope = {
        "agent": AGENT_NAME,
        "idea": _agent_idea(idea, pack),
        "retrieval_pack": _agent_retrieval_pack(pack, chosen, limits or {}),
        "knowledge_pack": _agent_knowledge(knowledge or {}, chosen["operators"], chosen["fields"]),
        "rules": AGENT_RULES,
        "output_schema": AGENT_OUTPUT_SCHEMA,
    }
    return json.dumps(envelope, indent=2, ensure_ascii=False)
