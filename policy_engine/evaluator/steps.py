"""How one ladder step resizes a pool (the lane split of the new size is `lanes.py`)."""

from __future__ import annotations

from decimal import ROUND_FLOOR, Decimal

from policy_engine.evaluator.lanes import split_lanes
from policy_engine.policy import Step, StepKind

__all__ = ["resize", "split_lanes"]


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
