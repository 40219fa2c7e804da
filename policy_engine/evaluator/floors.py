"""The explore floor: the fewest explore candidates a pool keeps.

Enforced in two places, both here: a rung never sizes a pool below the floor's worth of
explore candidates (`rung_floor`), and the decision reports, per pool, whether the floor
held, was short because the pack (or the policy's top-k) offered too few, or was broken
by the cascade dropping the owners of explore candidates (`floor_statuses`,
`floor_warnings`). The lane split (`lanes.py`) gives the floor's slots to explore first.
"""

from __future__ import annotations

from policy_engine.decision import DecisionWarning, FloorStatus
from policy_engine.evaluator.state import State
from policy_engine.pools import Pools


def rung_floor(floor: int, explore_available: int) -> int:
    """The smallest size a rung may give a pool: with fewer slots than the floor (capped
    by the explore candidates it has), the floor could not hold."""
    return min(floor, explore_available)


def floor_statuses(required: int, start: State, final: State) -> list[FloorStatus]:
    """Per pool: explore candidates available at the start, kept at the end, and the verdict.
    Kept on the final state, with the start it was computed from (statuses are immutable)."""
    if required <= 0:
        return []
    seen_start, statuses = final.derived(f"floors:{required}", lambda: (start, _statuses(required, start, final)))
    return list(statuses if seen_start is start else _statuses(required, start, final))


def _statuses(required: int, start: State, final: State) -> tuple[FloorStatus, ...]:
    out: list[FloorStatus] = []
    for pool, kept_state in final.items():
        available = len(start[pool].explore)
        kept = len(kept_state.explore)
        if kept >= min(required, available):
            status = "preserved" if available >= required else "pack_short"
        else:
            status = "not_preserved"
        out.append(FloorStatus(pool, required, available, kept, status))
    return tuple(out)


def floor_warnings(floors: list[FloorStatus], pools: Pools) -> list[DecisionWarning]:
    """A warning per pool whose floor did not hold, saying who is short: the pack, the
    policy's top-k and parent pools, or the cascade."""
    out: list[DecisionWarning] = []
    for f in floors:
        if f.status == "pack_short":
            offered = sum(1 for c in pools.pool(f.pool) if c.lane == "explore")
            if offered > f.available:  # the policy's top-k (or the cascade) held them back, not the pack
                message = (
                    f"{f.pool}: the pack offered {offered} explore candidate(s) but the policy's top-k and"
                    f" parent pools leave {f.available}, fewer than the floor of {f.required}"
                )
            else:
                message = (
                    f"{f.pool}: the pack offered {f.available} explore candidate(s), fewer than the floor"
                    f" of {f.required}"
                )
            out.append(DecisionWarning("explore_floor", message))
        elif f.status == "not_preserved":
            out.append(
                DecisionWarning(
                    "explore_floor",
                    f"{f.pool}: only {f.kept} explore candidate(s) kept, below the floor of {f.required}:"
                    " their owners were dropped by the cascade",
                )
            )
    return out
