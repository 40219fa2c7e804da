"""The agent's step-20 gate, replaced by one import.

``enforce_alpha_prompt_budget`` takes the keyword arguments and returns the result of the
agent's own gate (reference doc, section 10), so its orchestrator, events, dashboard and
blocked-error handling stay as they are. The engine decides; then the prompt the agent
will really send (its own ``prompt_builder`` on the trimmed pack) is counted exactly. When
that text is not the engine's rendering (template drift), the real text's count decides:
the ladder goes on from the engine's choice, re-checking the real prompt at every further
rung, or the call is blocked. Nothing the builder returns is admitted over a limit.

The agent's objects are duck-typed: pydantic models through ``model_dump`` and
``type(x).model_validate``, the usage dataclass through its attributes. Nothing of the
agent is imported.
"""

from __future__ import annotations

import json
import math
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from policy_engine.api import trimmed_pack
from policy_engine.decision import Decision
from policy_engine.dsl import load_policy, load_policy_text
from policy_engine.dsl.importer import import_config
from policy_engine.errors import Diagnostic, PackError, UsageInputError
from policy_engine.evaluator import evaluate
from policy_engine.packs import load_pack
from policy_engine.packs.idea_input import idea_from_document
from policy_engine.policy import Policy, Settings, Tokenizer
from policy_engine.render import limits_view, policy_prompt_model
from policy_engine.render.bundle import knowledge_from_documents
from policy_engine.render.prompt import decision_selection, first_difference
from policy_engine.tokens import get_counter
from policy_engine.usage import Request, UsageSnapshot, check_quantity

__all__ = [
    "BudgetEvaluation",
    "BudgetGateResult",
    "TemplateDrift",
    "configure",
    "enforce_alpha_prompt_budget",
    "last_template_drift",
    "reset_template_drift",
    "template_drift_count",
]

#: the exact encoding a budget object is converted with (the agent's chars/4 undercounted
#: by ~14%, reference section 8.6); `configure(tokenizer=...)` changes it
DEFAULT_TOKENIZER = "o200k_base"
REASONS = ("request_prompt", "request_completion", "batch_total", "day_total")
_POLICY_CACHE_MAX = 64

_lock = threading.Lock()
_configured: dict[str, Any] = {"rules": None, "tokenizer": DEFAULT_TOKENIZER}
_policies: dict[Any, Policy] = {}
_drift: dict[str, Any] = {"count": 0, "last": None}


# ---- configuration and the drift counter -------------------------------------------------


def configure(*, rules: str | os.PathLike[str] | Policy | None = None, tokenizer: str = DEFAULT_TOKENIZER) -> None:
    """Process-wide settings: ``rules`` (a rule file, a policy directory or a loaded
    `Policy`) used for every call that passes no ``rules=``; ``tokenizer``, the exact
    encoding a `budget` object is converted with when no rules are given. Call with no
    arguments to go back to the defaults ($POLICY_RULES, else the budget object)."""
    if isinstance(rules, Policy):
        loaded: Any = rules
    else:
        loaded = None if rules is None else _load_rules(rules)
    get_counter(Tokenizer("tiktoken", tokenizer))  # an unknown encoding fails here, not at the first call
    with _lock:
        _configured["rules"] = loaded
        _configured["tokenizer"] = tokenizer
        _policies.clear()


def template_drift_count() -> int:
    """Calls (since start or `reset_template_drift`) whose real prompt was not the engine's
    rendering. Export it as a metric: non-zero means the agent's prompt builder and the
    policy's template have parted ways, and every such call paid extra prompt renders."""
    with _lock:
        return int(_drift["count"])


def last_template_drift() -> TemplateDrift | None:
    with _lock:
        last: TemplateDrift | None = _drift["last"]
    return last


def reset_template_drift() -> None:
    with _lock:
        _drift["count"], _drift["last"] = 0, None


# ---- result types -------------------------------------------------------------------------


@dataclass(frozen=True)
class TemplateDrift:
    """The agent's prompt for the engine's choice is not the engine's rendering of it:
    both counts and the first differing line (1-based) with its JSON Pointer when known."""

    engine_prompt_tokens: int
    real_prompt_tokens: int
    line: int
    pointer: str | None
    engine_line: str
    real_line: str

    @property
    def message(self) -> str:
        where = f"line {self.line}" + (f" ({self.pointer})" if self.pointer else "")
        return (
            f"template drift: the agent's prompt_builder renders {self.real_prompt_tokens} tokens where the policy's template renders "
            f"{self.engine_prompt_tokens}; first difference at {where}; the real prompt's count decided"
        )


@dataclass(frozen=True)
class BudgetEvaluation:
    """The fields the orchestrator reads (section 10), with the engine's exact counts.

    ``prompt_tokens_rough`` keeps its name but holds the exact count (the policy's
    tokenizer) of the prompt that is sent, as does ``prompt_tokens``. ``exceeded`` is
    true for the limits that block the call; ``explore_floor`` is true only when the
    cascade left fewer explore candidates than the floor (it never blocks). ``reasons``
    lists the blocking reasons in the policy's order."""

    passed: bool
    prompt_tokens_rough: int
    completion_tokens_budget: int
    projected_batch_tokens: int
    projected_day_tokens: int
    selected_topk: dict[str, int]
    lane_ratio: dict[str, Any]
    coverage_kpi: float
    novelty_kpi: float
    combo_sample: list[str]
    explore_floor_preserved: bool
    exceeded: dict[str, bool]
    fallback_count: int
    estimated_request_cost_usd: float
    prompt_tokens: int = 0
    reasons: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    template_drift: TemplateDrift | None = None
    tokenizer: str = ""
    decision: Decision | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class BudgetGateResult:
    allowed: bool
    pack: Any  # a pack model of the input's type, restricted to the selection
    prompt: str  # exactly what prompt_builder returned for `pack`
    evaluation: BudgetEvaluation
    usage: Any  # the input, unchanged
    fallback_steps: list[dict[str, Any]]


# ---- the gate -----------------------------------------------------------------------------


def enforce_alpha_prompt_budget(
    *,
    idea: Any,
    retrieval_pack: Any,
    knowledge_bundle: Mapping[str, Any],
    budget: Any,
    usage: Any,
    seen_combo_keys: Any,
    prompt_builder: Callable[[Any, Any, Any], str],
    max_output_tokens: int,
    rules: str | os.PathLike[str] | Policy | None = None,
) -> BudgetGateResult:
    """The agent's gate. Policy: ``rules=``, else `configure(rules=...)`, else the rule
    file named by $POLICY_RULES, else ``budget`` converted as `policy import-config
    --tokenizer o200k_base` does. ``max_output_tokens`` is the completion budget, checked
    against the policy's completion limit (never clamped to it)."""
    policy = _policy(rules, budget)
    pack_doc = _dump(retrieval_pack, "retrieval_pack", "P112", "pass the agent's RetrievalPack model")
    idea_doc = idea_from_document(_dump(idea, "idea", "R104", "pass the agent's IdeaSpec model"), "idea")
    knowledge = knowledge_from_documents(knowledge_bundle)
    pools = load_pack(pack_doc, idea=idea_doc)
    snapshot = _snapshot(usage, policy)
    request = Request(completion_tokens=max_output_tokens)
    seen = _seen(seen_combo_keys)
    engine, counter, settings = policy_prompt_model(policy, pools, idea=idea_doc, knowledge=knowledge)
    sender = _Sender(
        pack_doc, type(retrieval_pack), idea, knowledge_bundle, prompt_builder, counter, _echo(policy, settings)
    )

    decision = evaluate(
        policy, pools, usage=snapshot, request=request, seen_combos=seen, prompt_model=engine, counter=counter
    )
    chosen = decision_selection(decision)
    sent = sender.build(chosen)
    engine_text = engine.render(chosen)
    drift: TemplateDrift | None = None
    drift_at, drift_topk = len(decision.rungs), decision.selected_topk
    if sent.text != engine_text:
        diff = first_difference(engine_text, sent.text)
        assert diff is not None
        engine_line = dict(diff.expected).get(diff.line, "")
        real_line = dict(diff.actual).get(diff.line, "")
        drift = TemplateDrift(
            decision.metrics["prompt_tokens"], sent.tokens, diff.line, diff.pointer, engine_line, real_line
        )
        with _lock:
            _drift["count"] += 1
            _drift["last"] = drift
        # Walk again: selections above the engine's choice keep the engine's counts (they
        # failed with them), the engine's choice and everything below it are counted from
        # the real prompt; so the ladder goes on from there, or blocks.
        checked = _RealFromChoice(engine, {pool: frozenset(ids) for pool, ids in chosen.items()}, sender)
        decision = evaluate(
            policy, pools, usage=snapshot, request=request, seen_combos=seen, prompt_model=checked, counter=counter
        )
        chosen = decision_selection(decision)
        sent = sender.build(chosen)
        assert sent.tokens == decision.metrics["prompt_tokens"]
    return _result(decision, settings, sent, usage, drift, drift_at, drift_topk, counter.name)


# ---- the real prompt ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Sent:
    text: str
    tokens: int
    pack: Any


@dataclass(frozen=True)
class _Chosen:
    """What `trimmed_pack` reads of a decision: its selection (pool -> lane -> ids)."""

    selection: Mapping[str, Mapping[str, tuple[str, ...]]]


class _Sender:
    """The agent's prompt for a selection: the trimmed pack (limits echoed as the template
    echoes them) validated back into the agent's pack model, then its own prompt_builder.
    Memoised per selection: the walk and the final answer ask for the same ones."""

    def __init__(
        self,
        pack_doc: dict[str, Any],
        pack_type: Any,
        idea: Any,
        bundle: Any,
        builder: Callable[[Any, Any, Any], str],
        counter: Any,
        echo: Callable[[dict[str, Any]], None],
    ) -> None:
        validate = getattr(pack_type, "model_validate", None)
        if not callable(validate):
            raise PackError(
                [
                    Diagnostic(
                        "P112",
                        f"retrieval_pack: {pack_type.__name__} has no model_validate",
                        hint="pass the agent's RetrievalPack (a pydantic v2 model)",
                        file="retrieval_pack",
                        pointer="",
                    )
                ]
            )
        if not callable(builder):
            raise PackError(
                [
                    Diagnostic(
                        "P112",
                        "prompt_builder is not callable",
                        hint="pass the agent's prompt builder: (idea, pack_model, knowledge_bundle) -> str",
                        file="prompt_builder",
                        pointer="",
                    )
                ]
            )
        self.pack_doc, self.validate, self.idea, self.bundle, self.builder, self.counter, self.echo = (
            pack_doc,
            validate,
            idea,
            bundle,
            builder,
            counter,
            echo,
        )
        self.memo: dict[Any, _Sent] = {}

    def build(self, selection: Mapping[str, tuple[str, ...]]) -> _Sent:
        key = tuple(sorted((pool, frozenset(ids)) for pool, ids in selection.items()))
        hit = self.memo.get(key)
        if hit is None:
            doc = trimmed_pack(self.pack_doc, _Chosen({pool: {"all": tuple(ids)} for pool, ids in selection.items()}))  # type: ignore[arg-type]
            self.echo(doc)
            model = self.validate(doc)
            text = self.builder(self.idea, model, self.bundle)
            if not isinstance(text, str):
                raise PackError(
                    [
                        Diagnostic(
                            "P112",
                            f"prompt_builder returned a {type(text).__name__}, not the prompt text",
                            hint="the builder returns the exact string sent to the LLM",
                            file="prompt_builder",
                            pointer="",
                        )
                    ]
                )
            hit = self.memo[key] = _Sent(text, self.counter.count(text), model)
        return hit


class _RealFromChoice:
    """A prompt model for the second walk: for a selection inside the engine's choice,
    the real prompt and its count; for a larger one (a rung the engine already failed),
    the engine's template. Rendering and counting agree on both sides, so the evaluator's
    proof holds and its final count is the real prompt's."""

    def __init__(self, engine: Any, choice: Mapping[str, frozenset[str]], sender: _Sender) -> None:
        self.engine, self.choice, self.sender = engine, choice, sender

    def _inside(self, selection: Mapping[str, tuple[str, ...]]) -> bool:
        return all(set(ids) <= self.choice.get(pool, frozenset()) for pool, ids in selection.items())

    def tokens(self, selection: Mapping[str, tuple[str, ...]]) -> int:
        return self.sender.build(selection).tokens if self._inside(selection) else int(self.engine.tokens(selection))

    def measure(self, selection: Mapping[str, tuple[str, ...]]) -> int:
        return self.tokens(selection)

    def render(self, selection: Mapping[str, tuple[str, ...]]) -> str:
        return self.sender.build(selection).text if self._inside(selection) else str(self.engine.render(selection))

    def item_tokens(self, pool: str, ident: str) -> int:
        return int(self.engine.item_tokens(pool, ident))


def _echo(policy: Policy, settings: Settings) -> Callable[[dict[str, Any]], None]:
    """What the agent's gate writes into the pack it returns: the limits under
    ``budget_policy.llm_budget`` (where the policy's template says, with its keys)."""
    spec = policy.template_spec
    echo = spec.doc.get("retrieval_pack", {}).get("echo_limits") if spec is not None else None
    view = limits_view(settings)

    def apply(doc: dict[str, Any]) -> None:
        if echo is None:
            return
        outer, inner = echo["into"]
        if isinstance(doc.get(outer), dict):
            doc[outer] = {
                **doc[outer],
                inner: {key: view.get(metric) for key, metric in echo["keys"].items() if view.get(metric) is not None},
            }

    return apply


# ---- inputs -------------------------------------------------------------------------------


def _dump(model: Any, name: str, code: str, hint: str) -> dict[str, Any]:
    dump = getattr(model, "model_dump", None)
    if not callable(dump):
        raise PackError(
            [Diagnostic(code, f"{name}: a {type(model).__name__} has no model_dump", hint=hint, file=name, pointer="")]
        )
    doc = dump(mode="python")
    if not isinstance(doc, dict):
        raise PackError(
            [
                Diagnostic(
                    code,
                    f"{name}: model_dump gave a {type(doc).__name__}, not an object",
                    hint=hint,
                    file=name,
                    pointer="",
                )
            ]
        )
    return doc


def _snapshot(usage: Any, policy: Policy) -> UsageSnapshot:
    """Run totals are the batch, day totals the day (prompt + completion). USD spent is
    priced from the tokens with the policy's price, as the agent priced its calls."""
    values = {}
    for name in ("run_prompt_tokens", "run_completion_tokens", "day_prompt_tokens", "day_completion_tokens"):
        if not hasattr(usage, name):
            raise UsageInputError(
                [
                    Diagnostic(
                        "P120",
                        f"usage has no {name}",
                        hint="pass the agent's usage dataclass (run_/day_ prompt and completion tokens)",
                        file="usage",
                        pointer=f"/{name}",
                    )
                ]
            )
        value = getattr(usage, name)
        check_quantity("usage", name, value)
        values[name] = value
    price = policy.price
    return UsageSnapshot(
        batch_tokens=values["run_prompt_tokens"] + values["run_completion_tokens"],
        day_tokens=values["day_prompt_tokens"] + values["day_completion_tokens"],
        batch_micro_usd=0
        if price is None
        else price.cost_micro_usd(values["run_prompt_tokens"], values["run_completion_tokens"]),
        day_micro_usd=0
        if price is None
        else price.cost_micro_usd(values["day_prompt_tokens"], values["day_completion_tokens"]),
    )


def _seen(keys: Any) -> frozenset[str]:
    if keys is None:
        return frozenset()
    try:
        items = list(keys)
    except TypeError:
        raise UsageInputError(
            [
                Diagnostic(
                    "P114",
                    f"seen_combo_keys: a {type(keys).__name__} is not a collection",
                    hint='pass a set of "<field_id>::<operator_name>" strings',
                    file="seen_combo_keys",
                    pointer="",
                )
            ]
        ) from None
    bad = [item for item in items if not isinstance(item, str) or "::" not in item]
    if bad:
        raise UsageInputError(
            [
                Diagnostic(
                    "P114",
                    f'seen_combo_keys: {bad[0]!r:.60} is not "<field_id>::<operator_name>"',
                    hint="each combo is a string with ::",
                    file="seen_combo_keys",
                    pointer="",
                )
            ]
        )
    return frozenset(items)


# ---- the policy ---------------------------------------------------------------------------


def _load_rules(rules: str | os.PathLike[str]) -> Policy:
    path = Path(rules)
    try:
        stamp = path.stat().st_mtime_ns
    except OSError:
        stamp = None
    key = ("file", str(path.resolve()), stamp)
    with _lock:
        hit = _policies.get(key)
    if hit is None:
        hit = load_policy(path)
        _remember(key, hit)
    return hit


def _policy(rules: Any, budget: Any) -> Policy:
    if isinstance(rules, Policy):
        return rules
    if rules is not None:
        return _load_rules(rules)
    with _lock:
        configured, tokenizer = _configured["rules"], _configured["tokenizer"]
    if isinstance(configured, Policy):
        return configured
    env = os.environ.get("POLICY_RULES")
    if env:
        return _load_rules(env)
    doc = _dump(budget, "budget", "E402", "pass the agent's LlmBudget model, or rules=")
    key = ("budget", tokenizer, json.dumps(doc, sort_keys=True, default=repr))
    with _lock:
        hit = _policies.get(key)
    if hit is None:
        text = import_config(doc, llm_file="budget", tokenizer=tokenizer, name="agent-budget")
        hit = load_policy_text(text, "<budget>")
        _remember(key, hit)
    return hit


def _remember(key: Any, policy: Policy) -> None:
    with _lock:
        if len(_policies) >= _POLICY_CACHE_MAX:
            _policies.clear()
        _policies[key] = policy


# ---- the result ---------------------------------------------------------------------------


def _exceeded(failing: tuple[str, ...], floor_breached: bool) -> dict[str, bool]:
    out = {name: name in failing for name in REASONS}
    out.update({name: True for name in failing if name not in out})  # USD limits of a rule file
    out["explore_floor"] = floor_breached
    return out


def _lane_ratio(settings: Settings, counts: Mapping[str, Mapping[str, int]]) -> dict[str, Any]:
    return {
        "exploit_ratio": float(settings.lanes.exploit_ratio),
        "explore_ratio": float(settings.lanes.explore_ratio),
        "exploit_count": sum(lanes.get("exploit", 0) for lanes in counts.values()),
        "explore_count": sum(lanes.get("explore", 0) for lanes in counts.values()),
        "fields": dict(counts.get("fields", {})),
        "operators": dict(counts.get("operators", {})),
    }


def _factor(value: str | None) -> float | None:
    try:
        f = float(value) if value is not None else None
    except ValueError:
        return None
    return f if f is not None and math.isfinite(f) else None


def _floor_breached(
    settings: Settings, start: Mapping[str, Mapping[str, int]], counts: Mapping[str, Mapping[str, int]]
) -> bool:
    floor = settings.lanes.explore_floor
    return any(
        counts.get(pool, {}).get("explore", 0) < min(floor, lanes.get("explore", 0)) for pool, lanes in start.items()
    )


def _result(
    decision: Decision,
    settings: Settings,
    sent: _Sent,
    usage: Any,
    drift: TemplateDrift | None,
    drift_at: int,
    drift_topk: dict[str, int],
    tokenizer: str,
) -> BudgetGateResult:
    m = decision.metrics
    completion = m["completion_tokens"]
    start_counts = next((s.counts_after for s in decision.trace if s.kind == "start"), None) or {}
    steps: list[dict[str, Any]] = []
    for i, step in enumerate(decision.rungs, start=1):
        counts = step.counts_after or {}
        steps.append(
            {
                "phase": step.pool,
                "factor": _factor(step.step_value),
                "prompt_tokens": step.prompt_tokens_after,
                "completion_tokens": completion,
                "selected_topk": {pool: sum(lanes.values()) for pool, lanes in counts.items()},
                "budget_exceeded": _exceeded(tuple(step.failing), _floor_breached(settings, start_counts, counts)),
                "fallback_count": i,
                "step_name": step.rule,
                "lane_ratio": _lane_ratio(settings, counts),
            }
        )
    warnings = [f"{w.code}: {w.message}" for w in decision.warnings]
    final_counts = {pool: {lane: len(ids) for lane, ids in lanes.items()} for pool, lanes in decision.selection.items()}
    floor_ok = all(f.preserved for f in decision.explore_floor)
    if drift is not None:
        warnings.insert(0, drift.message)
        # the state the engine chose, as the real prompt measured it (a rung, or the start)
        at_choice = (
            decision.rungs[drift_at - 1]
            if 0 < drift_at <= len(decision.rungs)
            else next((s for s in decision.trace if s.kind == "start"), None)
        )
        steps.insert(
            min(drift_at, len(steps)),
            {
                "phase": "template_drift",
                "factor": None,
                "prompt_tokens": drift.real_prompt_tokens,
                "completion_tokens": completion,
                "selected_topk": drift_topk,
                "budget_exceeded": _exceeded(tuple(at_choice.failing), False) if at_choice else _exceeded((), False),
                "fallback_count": drift_at,
                "step_name": "template_drift",
                "warning": drift.message,
                "engine_prompt_tokens": drift.engine_prompt_tokens,
            },
        )
    evaluation = BudgetEvaluation(
        passed=decision.allowed,
        prompt_tokens_rough=sent.tokens,
        completion_tokens_budget=completion,
        projected_batch_tokens=m["projected_batch_tokens"],
        projected_day_tokens=m["projected_day_tokens"],
        selected_topk=decision.selected_topk,
        lane_ratio=_lane_ratio(settings, final_counts),
        coverage_kpi=float(decision.kpis.get("coverage") or 0),
        novelty_kpi=float(decision.kpis.get("novelty") or 0.0),
        combo_sample=list(decision.kpis.get("combo_sample") or []),
        explore_floor_preserved=floor_ok,
        exceeded=_exceeded(tuple(decision.reasons), not floor_ok),
        fallback_count=decision.fallback_count,
        estimated_request_cost_usd=(m.get("request_micro_usd") or 0) / 1_000_000,
        prompt_tokens=sent.tokens,
        reasons=tuple(decision.reasons),
        warnings=tuple(warnings),
        template_drift=drift,
        tokenizer=tokenizer,
        decision=decision,
    )
    return BudgetGateResult(decision.allowed, sent.pack, sent.text, evaluation, usage, steps)
