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

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Callable, Mapping

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
    return {"subcategories": state["subcategories"], "datasets": datasets, "fields": fields, "operators": state["operators"]}


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


def _lane_sizes(total: int, exploit_available: int, explore_available: int, explore_ratio: Fraction, floor: int) -> tuple[int, int]:
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
        selection = {pool: {lane: tuple(c.id for c in state[pool] if c.lane == lane) for lane in ("exploit", "explore")} for pool in ALL_POOLS}
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
        if metric == "request_completion" or (empty_value is not None and empty_value > limit_value(metric, limit.value)):
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
    from policy_engine.render import build_prompt_model, limits_view
    from policy_engine.tokens import get_counter

    settings, _ = policy.resolve(pools.attributes)
    counter = get_counter(policy.tokenizer)
    model = build_prompt_model(policy.template, pools, idea=idea, knowledge=knowledge, counter=counter, limits=limits_view(settings))
    return model, counter


def reference_for(policy: Policy, pools: Pools, *, idea: Any = None, knowledge: Any = None) -> tuple[Callable[..., str], Callable[[str], int]]:
    """The render and count functions the reference uses: the policy's own template and
    tokenizer, with no incremental arithmetic."""
    model, counter = prompt_model_for(policy, pools, idea=idea, knowledge=knowledge)
    return model.render, counter.count
