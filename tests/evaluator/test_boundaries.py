"""The evaluator's boundaries, each pinned to the exact value on either side.

Hand mutation of the core left these alive (every golden file sits far from them): the
expansion reserve off by one token, a factor step allowed to keep the current size,
`unfixable` with `>=` for `>`, novelty rounded to fewer places and money rounded down.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from policy_engine.decision import usd_text
from policy_engine.evaluator.kpis import compute_kpis
from policy_engine.evaluator.limits import Measured, effective_limit, failing, limit_table, measure_state, unfixable
from policy_engine.evaluator.report import limit_reports, limit_warnings
from policy_engine.evaluator.state import LadderState, PoolState
from policy_engine.evaluator.steps import resize, split_lanes
from policy_engine.policy import Enforcement, Limit, Price, Settings, Step, StepKind
from policy_engine.pools import Candidate
from policy_engine.usage import Request, UsageSnapshot

RESERVE = 100
SETTINGS = Settings(
    limits=(
        Limit("prompt", "request_prompt", 1000),
        Limit("batch", "batch_total", 5000),
        Limit("day", "day_total", 9000),
        Limit("completion", "request_completion", 400),
    ),
    expansion_reserve=RESERVE,
)
PLAIN, EXPANSION = Request(), Request(expansion=True)


# ---- the expansion reserve ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("metric", "call", "expected"),
    [
        ("batch_total", PLAIN, 4900),  # ordinary requests may not spend the reserve
        ("batch_total", EXPANSION, 5000),  # an expansion may
        ("request_prompt", PLAIN, 1000),
        ("request_prompt", EXPANSION, 1100),  # an expansion's prompt may grow by the reserve
        ("day_total", PLAIN, 9000),
        ("day_total", EXPANSION, 9000),  # the reserve is a batch notion: the day cap is hard
    ],
)
def test_effective_limit_moves_by_exactly_the_reserve(metric: str, call: Request, expected: int) -> None:
    limit = SETTINGS.limit(metric)
    assert limit is not None
    assert effective_limit(limit, SETTINGS, call) == expected


def _batch_failing(spent_before: int, request: Request) -> bool:
    measured = measure_state(0, 0, UsageSnapshot(batch_tokens=spent_before, day_tokens=0), None)
    return "batch_total" in failing(SETTINGS, request, measured, Enforcement.BLOCK)


def test_a_limit_is_met_at_its_value_and_exceeded_one_token_above() -> None:
    assert not _batch_failing(4900, PLAIN)
    assert _batch_failing(4901, PLAIN)
    assert not _batch_failing(5000, EXPANSION)
    assert _batch_failing(5001, EXPANSION)


def test_failing_reports_only_the_asked_enforcement() -> None:
    settings = Settings(limits=(Limit("soft", "request_prompt", 10, Enforcement.WARN),))
    measured = measure_state(11, 0, UsageSnapshot(), None)
    assert failing(settings, PLAIN, measured, Enforcement.BLOCK) == ()
    assert failing(settings, PLAIN, measured, Enforcement.WARN) == ("request_prompt",)


# ---- unfixable: what an empty prompt would still fail --------------------------------------


def test_unfixable_is_strictly_above_the_limit() -> None:
    usage_at = UsageSnapshot(batch_tokens=4900 - 300, day_tokens=0)  # + 300 completion == 4900 exactly
    assert unfixable(SETTINGS, PLAIN, usage_at, 300, None, ("batch_total",)) == ()
    usage_over = UsageSnapshot(batch_tokens=4900 - 300 + 1, day_tokens=0)
    assert unfixable(SETTINGS, PLAIN, usage_over, 300, None, ("batch_total",)) == ("batch_total",)


def test_a_limit_the_prompt_does_not_drive_is_always_unfixable() -> None:
    assert unfixable(SETTINGS, PLAIN, UsageSnapshot(), 500, None, ("request_completion",)) == ("request_completion",)
    assert unfixable(SETTINGS, PLAIN, UsageSnapshot(), 500, None, ("request_prompt",)) == ()


# ---- resize ------------------------------------------------------------------------------


def _step(kind: StepKind, value: str) -> Step:
    return Step(kind, Decimal(value))


def test_a_factor_step_always_removes_at_least_one() -> None:
    assert resize(_step(StepKind.FACTOR, "1"), 10, 10, 0) == 9
    assert resize(_step(StepKind.FACTOR, "0.95"), 10, 10, 0) == 9  # floor(9.5)
    assert resize(_step(StepKind.FACTOR, "0.5"), 7, 10, 0) == 3  # floor, compounding on current
    assert resize(_step(StepKind.FACTOR, "0.01"), 10, 10, 0) == 1  # never to zero


def test_share_and_count_steps_never_grow_a_pool() -> None:
    assert resize(_step(StepKind.SHARE, "0.5"), 10, 20, 0) == 10  # half the original top-k, capped at current
    assert resize(_step(StepKind.SHARE, "0.5"), 12, 20, 0) == 10
    assert resize(_step(StepKind.SHARE, "0.05"), 12, 20, 0) == 1  # floor(1.0)
    assert resize(_step(StepKind.SHARE, "0.01"), 12, 20, 0) == 1  # at least one
    assert resize(_step(StepKind.COUNT, "8"), 10, 10, 0) == 8
    assert resize(_step(StepKind.COUNT, "12"), 10, 10, 0) == 10


def test_the_minimum_holds_but_never_grows_a_smaller_pool() -> None:
    assert resize(_step(StepKind.COUNT, "2"), 10, 10, 4) == 4
    assert resize(_step(StepKind.COUNT, "2"), 3, 10, 4) == 3
    assert resize(_step(StepKind.FACTOR, "0.5"), 0, 10, 0) == 0


def test_the_lane_split_rounds_half_to_even_keeps_the_floor_and_spills() -> None:
    assert split_lanes(5, 10, 10, Decimal("0.3"), 0) == (3, 2)  # 1.5 -> 2
    assert split_lanes(15, 20, 20, Decimal("0.3"), 0) == (11, 4)  # 4.5 -> 4
    assert split_lanes(2, 10, 5, Decimal("0.3"), 2) == (0, 2)  # the floor before the cap
    assert split_lanes(10, 2, 20, Decimal("0.3"), 0) == (2, 8)  # exploit short: explore fills


# ---- novelty -------------------------------------------------------------------------------


def _state(fields: int, operators: int) -> LadderState:
    return LadderState(
        {
            "fields": PoolState.of(tuple(Candidate(f"f{i}", "fields", "exploit") for i in range(fields))),
            "operators": PoolState.of(tuple(Candidate(f"o{i}", "operators", "exploit") for i in range(operators))),
            "subcategories": PoolState.of(
                (Candidate("s", "subcategories", "exploit"), Candidate("s", "subcategories", "explore"))
            ),
        }
    )


def test_novelty_keeps_six_decimal_places() -> None:
    kpis = compute_kpis(_state(1, 3), frozenset({"f0::o0", "f0::o1"}))
    assert kpis["novelty"] == 0.333333
    kpis = compute_kpis(_state(1, 3), frozenset({"f0::o0"}))
    assert kpis["novelty"] == 0.666667


def test_novelty_samples_the_first_twenty_by_twenty_combos() -> None:
    kpis = compute_kpis(_state(25, 22), frozenset({"f19::o19", "f20::o0"}))
    assert kpis["combo_count"] == 400
    assert kpis["novelty"] == round(399 / 400, 6)  # f20 is outside the sample
    assert kpis["combo_sample"][:2] == ["f0::o0", "f0::o1"] and len(kpis["combo_sample"]) == 64
    assert kpis["coverage"] == 1  # unique subcategories
    assert compute_kpis(_state(0, 3), frozenset())["novelty"] is None


@given(
    st.integers(0, 30),
    st.integers(0, 30),
    st.sets(st.sampled_from([f"f{i}::o{j}" for i in range(25) for j in range(25)])),
)
def test_kpis_of_one_state_kept_across_decisions_match_their_definition(
    fields: int, operators: int, seen: set[str]
) -> None:
    """The state-only part is kept on the state; novelty still follows each call's combos
    seen, and each decision gets its own sample list."""
    state = _state(fields, operators)
    f_ids, o_ids = [f"f{i}" for i in range(min(fields, 20))], [f"o{j}" for j in range(min(operators, 20))]
    combos = [f"{f}::{o}" for f in f_ids for o in o_ids]
    for seen_now in (frozenset(), frozenset(seen), frozenset()):
        kpis = compute_kpis(state, seen_now)
        assert kpis["combo_count"] == len(combos)
        assert kpis["combo_sample"] == combos[:64]
        assert kpis["coverage"] == 1
        fresh = sum(1 for c in combos if c not in seen_now)
        assert kpis["novelty"] == (round(fresh / len(combos), 6) if combos else None)
        kpis["combo_sample"].append("changed by a caller")


# ---- money ---------------------------------------------------------------------------------

PRICE = Price("m", Decimal("0.15"), Decimal("0.60"))  # USD per 1M tokens == micro-USD per token


@pytest.mark.parametrize(
    ("prompt", "completion", "micro_usd"),
    [
        (0, 0, 0),
        (1, 0, 1),  # 0.15 rounds up: a budget is never under-charged
        (20, 0, 3),  # exactly 3.00: no extra micro-dollar
        (10, 0, 2),  # 1.5 -> 2
        (0, 5, 3),  # 3.00
        (7, 3, 3),  # 1.05 + 1.80 = 2.85 -> 3: rounded once, on the sum
    ],
)
def test_cost_rounds_the_exact_sum_up_to_a_micro_dollar(prompt: int, completion: int, micro_usd: int) -> None:
    assert PRICE.cost_micro_usd(prompt, completion) == micro_usd


@pytest.mark.parametrize(
    ("micro_usd", "text"),
    [
        (None, None),
        (0, "0.000000"),
        (1, "0.000001"),
        (999_999, "0.999999"),
        (1_000_000, "1.000000"),
        (1_500_001, "1.500001"),
        (-1, "-0.000001"),
        (-2_000_000, "-2.000000"),
    ],
)
def test_usd_text_is_exact_to_the_micro_dollar(micro_usd: int | None, text: str | None) -> None:
    assert usd_text(micro_usd) == text


def test_projected_money_adds_the_request_cost_to_what_was_spent() -> None:
    measured = measure_state(20, 5, UsageSnapshot(batch_micro_usd=10, day_micro_usd=100), PRICE)
    assert (measured.request_micro_usd, measured.projected_batch_micro_usd, measured.projected_day_micro_usd) == (
        6,
        16,
        106,
    )
    assert measure_state(20, 5, UsageSnapshot(), None).request_micro_usd is None


# ---- found alive by mutmut ------------------------------------------------------------------


def test_every_metric_reads_its_own_measure() -> None:
    measured = measure_state(
        20, 5, UsageSnapshot(batch_tokens=1, day_tokens=2, batch_micro_usd=10, day_micro_usd=100), PRICE
    )
    assert {
        m: measured.value(m)
        for m in (
            "request_prompt",
            "request_completion",
            "batch_total",
            "day_total",
            "request_usd",
            "batch_usd",
            "day_usd",
        )
    } == {
        "request_prompt": 20,
        "request_completion": 5,
        "batch_total": 26,
        "day_total": 27,
        "request_usd": 6,
        "batch_usd": 16,
        "day_usd": 106,
    }


def test_a_usd_limit_the_completion_alone_exceeds_is_unfixable() -> None:
    settings = Settings(limits=(Limit("b", "batch_usd", 100),))
    completion_cost = PRICE.cost_micro_usd(0, 100)  # 60
    assert unfixable(settings, PLAIN, UsageSnapshot(batch_micro_usd=40), 100, PRICE, ("batch_usd",)) == ()
    assert completion_cost + 41 > 100
    assert unfixable(settings, PLAIN, UsageSnapshot(batch_micro_usd=41), 100, PRICE, ("batch_usd",)) == ("batch_usd",)


def test_unfixable_looks_at_every_failing_metric() -> None:
    usage = UsageSnapshot(batch_tokens=4900, day_tokens=0)
    assert unfixable(SETTINGS, PLAIN, usage, 1, None, ("request_completion", "request_prompt", "batch_total")) == (
        "request_completion",
        "batch_total",
    )


def test_a_pool_of_one_keeps_its_candidate_and_the_split_never_exceeds_the_total() -> None:
    assert resize(_step(StepKind.FACTOR, "0.5"), 1, 10, 0) == 1
    assert split_lanes(2, 10, 10, Decimal("0.3"), 5) == (0, 2)  # a floor above the total is capped by it


def test_failing_goes_past_limits_of_the_other_enforcement_and_unpriced_ones() -> None:
    settings = Settings(
        limits=(
            Limit("soft", "request_prompt", 1, Enforcement.WARN),
            Limit("usd", "request_usd", 1),
            Limit("hard", "batch_total", 10),
        )
    )
    measured = measure_state(11, 0, UsageSnapshot(), None)  # no price: request_usd has no value
    assert failing(settings, PLAIN, measured, Enforcement.BLOCK) == ("batch_total",)


# ---- the limit table (limits prepared once per settings) -------------------------------

MIXED = Settings(
    limits=(
        Limit("prompt", "request_prompt", 1000),
        Limit("batch", "batch_total", 5000, Enforcement.WARN),
        Limit("day", "day_total", 9000),
        Limit("completion", "request_completion", 400, Enforcement.WARN),
        Limit("usd", "request_usd", 3000),
        Limit("day usd", "day_usd", 90_000, Enforcement.WARN),
    ),
    expansion_reserve=RESERVE,
)
TABLE_PRICE = Price("m", Decimal("2.5"), Decimal("10"))


def _exceeded(settings: Settings, request: Request, measured: Measured, severity: Enforcement) -> tuple[str, ...]:
    """The definition: each limit of that severity whose value exceeds its effective limit."""
    return tuple(
        lim.metric
        for lim in settings.limits
        if lim.severity is severity
        and (value := measured.value(lim.metric)) is not None
        and value > effective_limit(lim, settings, request)
    )


@given(
    st.integers(0, 3000),
    st.integers(0, 900),
    st.integers(0, 10_000),
    st.integers(0, 100_000),
    st.booleans(),
    st.booleans(),
)
def test_the_limit_table_fails_exactly_the_exceeded_limits(
    prompt: int, completion: int, day: int, day_usd: int, expansion: bool, priced: bool
) -> None:
    request = Request(expansion=expansion)
    settings = MIXED if priced else Settings(limits=MIXED.limits[:4], expansion_reserve=RESERVE)
    measured = measure_state(
        prompt,
        completion,
        UsageSnapshot(batch_tokens=day // 2, day_tokens=day, day_micro_usd=day_usd),
        TABLE_PRICE if priced else None,
    )
    table = limit_table(settings, request)
    for severity in Enforcement:
        expected = _exceeded(settings, request, measured, severity)
        assert table.failing(measured, block=severity is Enforcement.BLOCK) == expected
        assert failing(settings, request, measured, severity) == expected
    reports, checks = limit_reports(table, measured)
    assert list(reports) == [lim.metric for lim in settings.limits]
    for limit, check in zip(settings.limits, checks, strict=True):
        report = reports[limit.metric]
        effective = effective_limit(limit, settings, request)
        assert (report["effective"], report["value"], report["actual"]) == (
            effective,
            limit.value,
            measured.value(limit.metric),
        )
        assert report["verdict"] == ("fail" if report["actual"] > effective else "pass")
        assert check.verdict == (
            report["verdict"] if limit.severity is Enforcement.BLOCK or report["verdict"] == "pass" else "warn"
        )
    warned = [w.code for w in limit_warnings(table, measured)]
    assert warned == list(_exceeded(settings, request, measured, Enforcement.WARN))
