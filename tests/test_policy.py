"""The policy model's own behaviour: guards on pack attributes and what a matching `when`
block replaces. The evaluator's tests reach these through whole decisions; here each rule of
the model is pinned at its boundary."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from policy_engine.conditions import AllOf, AnyOf, Compare, Conditional, Guard, Not, apply_conditional, guard_matches
from policy_engine.policy import (
    Enforcement,
    Ladder,
    Lanes,
    Limit,
    Policy,
    Settings,
    Stage,
    Step,
    StepKind,
    Tokenizer,
    TopK,
)

USA = Compare("region", "==", "USA")
DELAY_1 = Compare("delay", "==", 1)


@pytest.mark.parametrize(
    ("guard", "attributes", "expected"),
    [
        (USA, {"region": "USA"}, True),
        (USA, {"region": "usa"}, False),  # strings compare case-sensitively
        (USA, {}, False),  # a missing attribute never matches
        (Compare("region", "!=", "USA"), {}, False),
        (Not(USA), {}, True),  # ... except under `not`
        (Not(USA), {"region": "USA"}, False),
        (Compare("region", "!=", "USA"), {"region": "EUR"}, True),
        (Compare("region", "!=", "USA"), {"region": "USA"}, False),
        (DELAY_1, {"delay": 1.0}, True),  # numbers compare as numbers
        (DELAY_1, {"delay": Decimal("1.00")}, True),
        (DELAY_1, {"delay": 2}, False),
        (Compare("delay", "!=", 1), {"delay": 1.0}, False),
        (Compare("region", "in", ("USA", "EUR")), {"region": "EUR"}, True),
        (Compare("region", "in", ("USA", "EUR")), {"region": "CHN"}, False),
        (Compare("delay", "in", (0, 1)), {"delay": 1.0}, True),
        (Compare("tags", "contains", "momentum"), {"tags": ["value", "momentum"]}, True),
        (Compare("tags", "contains", "momentum"), {"tags": ["value"]}, False),
        (Compare("tags", "contains", "m"), {"tags": "momentum"}, False),  # a string is not a list of tags
        (Compare("tags", "contains", 1), {"tags": (1.0, 2)}, True),
        (Compare("fields.count", "<", 10), {"fields.count": 9}, True),
        (Compare("fields.count", "<", 10), {"fields.count": 10}, False),
        (Compare("fields.count", "<=", 10), {"fields.count": 10}, True),
        (Compare("fields.count", "<=", 10), {"fields.count": 11}, False),
        (Compare("fields.count", ">", 10), {"fields.count": 10}, False),
        (Compare("fields.count", ">", 10), {"fields.count": 11}, True),
        (Compare("fields.count", ">=", 10), {"fields.count": 10}, True),
        (Compare("fields.count", ">=", 10), {"fields.count": 9}, False),
        (Compare("delay", ">", 0), {"delay": "soon"}, False),  # not a number: no match, no error
        (Compare("delay", "~", 1), {"delay": 1}, False),  # an operator outside the language never matches
        (AllOf((USA, DELAY_1)), {"region": "USA", "delay": 1}, True),
        (AllOf((USA, DELAY_1)), {"region": "USA", "delay": 0}, False),
        (AnyOf((USA, DELAY_1)), {"region": "EUR", "delay": 1}, True),
        (AnyOf((USA, DELAY_1)), {"region": "EUR", "delay": 0}, False),
        (AnyOf((Not(USA),)), {"region": "EUR"}, True),
    ],
)
def test_guard_matches(guard: Guard, attributes: dict[str, Any], expected: bool) -> None:
    assert guard_matches(guard, attributes) is expected


def _stage(pool: str, value: str) -> Stage:
    return Stage(f"s_{pool}", pool, (Step(StepKind.FACTOR, Decimal(value)),))


BASE = Settings(  # limits in METRICS order, as the checker builds them
    limits=(Limit("prompt", "request_prompt", 100), Limit("day", "day_total", 1000)),
    ladder=Ladder((_stage("fields", "0.8"), _stage("operators", "0.8")), "exhausted"),
    lanes=Lanes(Decimal("0.6"), Decimal("0.4"), 2),
    topk=(TopK("fields", "exploit", 60), TopK("fields", "explore", 12)),
    expansion_reserve=500,
    completion_budget=300,
)


def test_settings_find_a_limit_by_metric() -> None:
    assert BASE.limit("day_total") == Limit("day", "day_total", 1000)
    assert BASE.limit("request_prompt") == Limit("prompt", "request_prompt", 100)
    assert BASE.limit("batch_total") is None


def test_an_empty_conditional_changes_nothing() -> None:
    assert apply_conditional(BASE, Conditional("c", USA)) == BASE


def test_a_conditional_replaces_items_by_key_and_adds_new_ones() -> None:
    cond = Conditional(
        "c",
        USA,
        limits=(Limit("tight", "request_prompt", 50, Enforcement.WARN), Limit("batch", "batch_total", 400)),
        stages=(_stage("datasets", "0.5"), _stage("fields", "0.5")),
        topk=(TopK("fields", "explore", 3), TopK("operators", "exploit", 7)),
        explore_floor=0,
        expansion_reserve=0,
        completion_budget=99,
    )
    s = apply_conditional(BASE, cond)
    # limits keyed by metric, kept in METRICS order whatever order the two sources used
    assert s.limits == (
        Limit("tight", "request_prompt", 50, Enforcement.WARN),
        Limit("batch", "batch_total", 400),
        Limit("day", "day_total", 1000),
    )
    # a stage replaces the base stage of its pool in place; a new pool's stage goes last
    assert s.ladder.stages == (_stage("fields", "0.5"), _stage("operators", "0.8"), _stage("datasets", "0.5"))
    assert s.ladder.exhausted_reason == "exhausted"
    assert s.topk == (TopK("fields", "exploit", 60), TopK("fields", "explore", 3), TopK("operators", "exploit", 7))
    assert s.lanes == Lanes(Decimal("0.6"), Decimal("0.4"), 0)  # 0 is a value, not "unset"
    assert (s.expansion_reserve, s.completion_budget) == (0, 99)


def test_a_conditional_keeps_the_scalars_it_does_not_set() -> None:
    s = apply_conditional(BASE, Conditional("c", USA, limits=(Limit("batch", "batch_total", 400),)))
    assert (s.lanes, s.expansion_reserve, s.completion_budget) == (BASE.lanes, 500, 300)
    assert s.limits == (BASE.limits[0], Limit("batch", "batch_total", 400), BASE.limits[1])


def test_resolve_applies_matching_conditionals_in_file_order() -> None:
    first = Conditional("first", USA, completion_budget=10, expansion_reserve=1)
    second = Conditional("second", DELAY_1, completion_budget=20)
    never = Conditional("never", Compare("region", "==", "CHN"), completion_budget=30)
    policy = Policy("p", Tokenizer("rough", chars_per_token=Decimal(4)), BASE, conditionals=(first, never, second))
    settings, matched = policy.resolve({"region": "USA", "delay": 1})
    assert matched == (first, second)
    assert (settings.completion_budget, settings.expansion_reserve) == (20, 1)  # the later match wins
    assert policy.resolve({"region": "EUR"}) == (BASE, ())
