"""The ladder walk: from the pack's top-k, try each rung of each stage in order until every
blocking limit passes or the ladder runs out, recording one trace step per rung.

The walk is given a token function of a selection (the prompt model's arithmetic, or an
exact re-count when the final proof disagreed) and never renders or counts anything
itself. A rung rebuilds only the pool it cuts and the pools that pool owns (`state.py`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from policy_engine.evaluator.floors import rung_floor
from policy_engine.evaluator.lanes import keep_lane_prefixes, split_lanes
from policy_engine.evaluator.limits import LimitTable, Measured, measure_state, unfixable
from policy_engine.evaluator.state import (
    PoolState,
    State,
    lane_counts,
    removed_between,
    selection_of,
    with_pool,
)
from policy_engine.evaluator.steps import resize
from policy_engine.policy import Price, Settings, Stage, Step
from policy_engine.trace import TraceStep
from policy_engine.usage import Request, UsageSnapshot

if TYPE_CHECKING:
    from policy_engine.render import PromptModel

TokenFn = Callable[[Mapping[str, tuple[str, ...]]], int]


@dataclass(frozen=True, slots=True)
class LadderInputs:
    """What a walk reads: the resolved settings, the request's usage and completion budget,
    the price, and the explain level (``full`` adds per-candidate token costs)."""

    settings: Settings
    usage: UsageSnapshot
    request: Request
    completion: int
    price: Price | None
    explain: str
    #: the settings' limits prepared for this request (`limits.limit_table`)
    table: LimitTable
    #: memo of cuts (an Engine's `cuts`): (id(state), pool, n_exploit, n_explore) -> (state, next state)
    cuts: dict[tuple[Any, ...], Any] | None = None


@dataclass(slots=True)
class LadderWalk:
    """The outcome of one walk: the final state and its measures, the failing blocking
    limits there, why the walk stopped, and its trace."""

    start: State
    state: State
    now: Measured
    fails: tuple[str, ...]
    why: str = ""
    start_tokens: int = 0
    fallback_count: int = 0
    trace: list[TraceStep] = field(default_factory=list)


def walk_ladder(inputs: LadderInputs, tokens: TokenFn, model: PromptModel, start: State) -> LadderWalk:
    """Walk the ladder of ``inputs.settings`` from ``start`` (the pack's top-k state,
    `state.initial_state`) with ``tokens`` pricing each state."""
    settings = inputs.settings
    state = start
    now = _measure(inputs, tokens, state)
    fails = inputs.table.failing(now, block=True)
    walk = LadderWalk(start=state, state=state, now=now, fails=fails, start_tokens=now.prompt_tokens)
    walk.trace.append(_start_step(inputs, model, state, now, fails))
    if not fails:
        walk.why = "fits without trimming"
        return walk
    hopeless = unfixable(settings, inputs.request, inputs.usage, inputs.completion, inputs.price, fails)
    if hopeless:
        walk.why = "trimming cannot fix " + ", ".join(hopeless) + " (it fails even with an empty prompt)"
        return walk
    original = {pool: len(ps.items) for pool, ps in state.items()}
    rung = 0
    for stage in settings.ladder.stages:
        for step in stage.steps:
            rung += 1
            if _try_rung(inputs, tokens, model, walk, stage, step, rung, original[stage.pool]):
                walk.why = f"fits after rung {rung} ({stage.rule})"
                return walk
    walk.why = "ladder exhausted" if settings.ladder.stages else "no fallback ladder"
    return walk


def _measure(inputs: LadderInputs, tokens: TokenFn, state: State) -> Measured:
    return measure_state(tokens(selection_of(state)), inputs.completion, inputs.usage, inputs.price)


def _start_step(
    inputs: LadderInputs, model: PromptModel, state: State, now: Measured, fails: tuple[str, ...]
) -> TraceStep:
    start_items = None
    if inputs.explain == "full":
        start_items = {pool: {i: model.item_tokens(pool, i) for i in ps.ids} for pool, ps in state.items()}
    return TraceStep(
        "start",
        "start",
        "fail" if fails else "pass",
        counts_after=lane_counts(state),
        prompt_tokens_after=now.prompt_tokens,
        failing=fails,
        message="initial selection: the pack's top-k"
        + (" exceeds " + ", ".join(fails) if fails else " fits every blocking limit"),
        item_tokens=start_items,
    )


def _try_rung(
    inputs: LadderInputs,
    tokens: TokenFn,
    model: PromptModel,
    walk: LadderWalk,
    stage: Stage,
    step: Step,
    rung: int,
    original: int,
) -> bool:
    """Apply one rung to ``walk`` (state, measures, trace); True when everything fits."""
    state = walk.state
    current = state[stage.pool]
    size = len(current.items)
    n_exploit, n_explore, target = _rung_size(inputs, step, stage.minimum, current, original)
    before_counts = lane_counts(state)
    common: dict[str, Any] = dict(
        rule=stage.rule,
        span=step.span,
        stage=stage.rule,
        pool=stage.pool,
        step_kind=step.kind.value,
        step_value=str(step.value),
        rung=rung,
        counts_before=before_counts,
        prompt_tokens_before=walk.now.prompt_tokens,
    )
    if target >= size:
        why = "pool is empty" if not size else f"{stage.pool} already at {size} (minimum {stage.minimum})"
        walk.trace.append(
            TraceStep(
                "rung",
                verdict="skipped",
                counts_after=before_counts,
                prompt_tokens_after=walk.now.prompt_tokens,
                failing=walk.fails,
                message="no change: " + why,
                **common,
            )
        )
        return False
    new_state, removed = _cut(inputs.cuts, state, stage.pool, n_exploit, n_explore)
    walk.now = _measure(inputs, tokens, new_state)
    walk.fails = inputs.table.failing(walk.now, block=True)
    walk.fallback_count += 1
    walk.state = new_state
    item_tokens = None
    if inputs.explain == "full":
        item_tokens = {pool: {i: model.item_tokens(pool, i) for i in ids} for pool, ids in removed.items()}
    walk.trace.append(
        TraceStep(
            "rung",
            verdict="fail" if walk.fails else "pass",
            counts_after=lane_counts(new_state),
            prompt_tokens_after=walk.now.prompt_tokens,
            removed=removed,
            failing=walk.fails,
            item_tokens=item_tokens,
            message=(
                f"{stage.pool} {size} -> {target} ({n_exploit} exploit + {n_explore} explore); "
                + ("still exceeds " + ", ".join(walk.fails) if walk.fails else "everything fits")
            ),
            **common,
        )
    )
    return not walk.fails


def _rung_size(
    inputs: LadderInputs, step: Step, minimum: int, current: PoolState, original: int
) -> tuple[int, int, int]:
    """(exploit kept, explore kept, new size) of a rung: the step's size, never below the
    floor's worth of explore candidates, split between the lanes."""
    lanes = inputs.settings.lanes
    target = max(
        resize(step, len(current.items), original, minimum), rung_floor(lanes.explore_floor, len(current.explore))
    )
    n_exploit, n_explore = split_lanes(
        target, len(current.exploit), len(current.explore), lanes.explore_ratio, lanes.explore_floor
    )
    return n_exploit, n_explore, target


def _cut(
    cuts: dict[tuple[Any, ...], Any] | None, state: State, pool: str, exploit: int, explore: int
) -> tuple[State, dict[str, tuple[str, ...]]]:
    """The state after keeping ``exploit`` + ``explore`` of ``pool``, and the ids it removed
    per pool; memoised in ``cuts`` (the input state is kept alive with its entry, so its id
    is never reused meanwhile)."""
    key = (id(state), pool, exploit, explore)
    hit = cuts.get(key) if cuts is not None else None
    if hit is not None:
        return hit[1]  # type: ignore[no-any-return]
    new_state = with_pool(state, pool, keep_lane_prefixes(state[pool], exploit, explore))
    out = (new_state, removed_between(state, new_state))
    if cuts is not None:
        if len(cuts) >= 4096:
            cuts.clear()
        cuts[key] = (state, out)
    return out
