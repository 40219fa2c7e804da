"""The two lanes of a pool: how a rung's new size is split between exploit and explore,
and which candidates of each lane stay.

The split reproduces the agent's (explore = n × explore_ratio rounded half to even, as
Python's round() does, computed exactly; the rest exploit, spilling to the other lane when
one runs short) with one deliberate difference: the explore floor is applied *before* the
split is capped, so when one slot is left it goes to an explore candidate (upstream kept an
exploit one and then blocked for `explore_floor`, defect 7). Each lane keeps its top-ranked
prefix; the pool keeps the pack's rank order.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal
from itertools import compress

from policy_engine.evaluator.state import PoolState, candidate_id


def split_lanes(
    total: int, exploit_available: int, explore_available: int, explore_ratio: Decimal, floor: int
) -> tuple[int, int]:
    """(exploit, explore) counts for a pool of ``total`` kept candidates."""
    explore = int((Decimal(total) * explore_ratio).to_integral_value(rounding=ROUND_HALF_EVEN))
    explore = max(explore, min(floor, explore_available))
    explore = min(explore, explore_available, total)
    exploit = min(total - explore, exploit_available)
    explore = min(explore_available, total - exploit)
    return exploit, explore


def keep_lane_prefixes(pool: PoolState, n_exploit: int, n_explore: int) -> PoolState:
    """The pool cut to the first ``n_exploit`` exploit and ``n_explore`` explore candidates,
    in the pool's rank order. The lanes of the cut are the prefixes themselves (no pass
    over the kept candidates' lanes) unless the pool repeats an id (a pool built without
    the pack loader, which refuses that: P108), when more than the prefixes are kept."""
    exploit, explore = pool.exploit[:n_exploit], pool.explore[:n_explore]
    keep = {*map(candidate_id, exploit), *map(candidate_id, explore)}
    flags = list(map(keep.__contains__, pool.ids))
    items = tuple(compress(pool.items, flags))
    if len(items) != len(exploit) + len(explore):
        return PoolState.of(items)
    return PoolState(items, tuple(compress(pool.ids, flags)), exploit, explore)
