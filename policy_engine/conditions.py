"""``when`` blocks: their guards and the conditionals they select, how a guard matches a
pack's attributes and how a matching conditional replaces the base settings.

Held apart from the policy model (policy.py) because only rules with a ``when`` block need
it: a policy without one never loads these classes (a frozen dataclass costs about a
millisecond to create, and a cold `policy eval` pays for every one it imports).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

from policy_engine.errors import Span
from policy_engine.policy import METRICS, NO_SPAN, Limit, Settings, Stage, TopK


@dataclass(frozen=True, slots=True)
class Compare:
    """``attribute op value``. Attributes are pack attributes (``region``, ``universe``,
    ``delay``, ``instrument_type``, ``query``, ``idea_id``, ``tags``) or pool sizes
    (``fields.count``, ``fields.explore.count``...). ``op`` is one of
    ``== != < <= > >= in contains``; ``value`` is str, int, Decimal or a tuple of those."""

    attribute: str
    op: str
    value: Any
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class AllOf:
    items: tuple[Guard, ...]
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class AnyOf:
    items: tuple[Guard, ...]
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Not:
    item: Guard
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


Guard = Compare | AllOf | AnyOf | Not


@dataclass(frozen=True, slots=True)
class Conditional:
    """``when <guard> { ... }``: for matching packs, these items replace the base ones
    (limits by metric, stages by pool, top-k by pool and lane, scalars when set).
    Conditionals apply in file order; a later match wins over an earlier one."""

    rule: str
    guard: Guard
    limits: tuple[Limit, ...] = ()
    stages: tuple[Stage, ...] = ()
    topk: tuple[TopK, ...] = ()
    explore_floor: int | None = None
    expansion_reserve: int | None = None
    completion_budget: int | None = None
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


def apply_conditional(settings: Settings, cond: Conditional) -> Settings:
    limits = {item.metric: item for item in settings.limits}
    for item in cond.limits:
        limits[item.metric] = item
    stages = list(settings.ladder.stages)
    for new in cond.stages:
        for i, old in enumerate(stages):
            if old.pool == new.pool:
                stages[i] = new
                break
        else:
            stages.append(new)
    topk = {(t.pool, t.lane): t for t in settings.topk}
    for t in cond.topk:
        topk[(t.pool, t.lane)] = t
    lanes = settings.lanes
    if cond.explore_floor is not None:
        lanes = replace(lanes, explore_floor=cond.explore_floor)
    return replace(
        settings,
        limits=tuple(sorted(limits.values(), key=lambda lim: list(METRICS).index(lim.metric))),
        ladder=replace(settings.ladder, stages=tuple(stages)),
        topk=tuple(topk.values()),
        lanes=lanes,
        expansion_reserve=settings.expansion_reserve if cond.expansion_reserve is None else cond.expansion_reserve,
        completion_budget=settings.completion_budget if cond.completion_budget is None else cond.completion_budget,
    )


def _attribute(attributes: Mapping[str, Any], name: str) -> Any:
    return attributes.get(name)


def guard_matches(guard: Guard, attributes: Mapping[str, Any]) -> bool:
    """Missing attributes never match (except under ``not``), so a guard on a field the
    pack lacks is simply false rather than an error at evaluation time."""
    if isinstance(guard, AllOf):
        return all(guard_matches(g, attributes) for g in guard.items)
    if isinstance(guard, AnyOf):
        return any(guard_matches(g, attributes) for g in guard.items)
    if isinstance(guard, Not):
        return not guard_matches(guard.item, attributes)
    actual = _attribute(attributes, guard.attribute)
    if actual is None:
        return False
    want = guard.value
    op = guard.op
    try:
        if op == "==":
            return _norm(actual) == _norm(want)
        if op == "!=":
            return _norm(actual) != _norm(want)
        if op == "in":
            return _norm(actual) in {_norm(v) for v in want}
        if op == "contains":
            return isinstance(actual, (list, tuple, set, frozenset)) and _norm(want) in {_norm(v) for v in actual}
        a, w = Decimal(str(actual)), Decimal(str(want))
    except (TypeError, ArithmeticError, ValueError):
        return False
    return {"<": a < w, "<=": a <= w, ">": a > w, ">=": a >= w}.get(op, False)


def _norm(value: object) -> object:
    """Compare numbers as numbers and strings case-sensitively."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, Decimal, float)):
        return Decimal(str(value))
    return value
