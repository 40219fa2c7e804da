"""How one ladder step resizes a pool, and how a new size is split between lanes.

The lane split reproduces the agent's (explore = n × explore_ratio rounded half to even,
as Python's round() does, computed exactly; the
rest exploit, spilling to the other lane when one runs short) with one deliberate
difference: the explore floor is applied *before* the split is capped, so when one slot
is left it goes to an explore candidate (upstream kept an exploit one and then blocked
for `explore_floor`, defect 7).
"""

from __future__ import annotations

from decimal import ROUND_FLOOR, ROUND_HALF_EVEN, Decimal

from policy_engine.policy import Step, StepKind


def _floor(value: Decimal) -> int:
    return int(value.to_integral_value(rounding=ROUND_FLOOR))


def resize(step: Step, current: int, original: int, minimum: int) -> int:
    """The pool's new total. Never grows; never below ``minimum`` (unless the pool was
    already smaller); factor steps always remove at least one candidate."""
    if current == 0:
        return 0
    if step.kind is StepKind.FACTOR:
        target = max(1, min(current - 1, _floor(Decimal(current) * step.value)))
    elif step.kind is StepKind.SHARE:
        target = max(1, _floor(Decimal(original) * step.value))
    else:
        target = int(step.value)
    target = max(target, minimum)
    return min(target, current)


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
