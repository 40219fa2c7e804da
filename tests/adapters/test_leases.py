"""Reservations as leases, idempotent settlement, overspend events and typed ledger errors
(issue 17 items 6, 7, 8). Each test fails on the ledger before leases: there was no
renewal, a late settlement was silent, a repeated settlement counted twice, and sqlite's
OverflowError / IntegrityError escaped untyped."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from policy_engine.adapters.dashboard import budget_payload
from policy_engine.adapters.events import JsonlSink
from policy_engine.adapters.gate import BudgetBlocked, BudgetGate
from policy_engine.adapters.ledger import MAX_TOKENS, Ledger
from policy_engine.adapters.ledger_reader import LedgerReader
from policy_engine.dsl import load_policy_text
from policy_engine.errors import LedgerError, PolicyError, UsageInputError
from policy_engine.usage import Request
from tests.adapters.gate_setup import DAY, SMALL, TTL, Clock, rules


@pytest.fixture
def env(tmp_path: Path):
    clock = Clock(DAY)
    ledger = Ledger(tmp_path / "ledger.db", clock=clock)
    sink = tmp_path / "events.jsonl"
    gate = BudgetGate(
        load_policy_text(rules(5_000), "lease.policy"), ledger, sinks=[JsonlSink(sink)], reservation_ttl_s=TTL
    )
    yield gate, ledger, clock, sink
    ledger.close()


def code_of(info: pytest.ExceptionInfo[PolicyError]) -> str:
    return info.value.diagnostics[0].code


def sink_types(sink: Path) -> list[str]:
    return [json.loads(line)["event_type"] for line in sink.read_text().splitlines()] if sink.exists() else []


# ---- leases ------------------------------------------------------------------------------


def test_a_renewed_reservation_outlives_its_ttl_and_keeps_its_room(env) -> None:
    gate, ledger, clock, _ = env
    res = gate.check(SMALL, "run-l")
    held = ledger.snapshot("run-l").day_tokens
    assert held > 0 and res.expires_at == DAY + TTL
    for _ in range(5):  # 5 x 40 s = 200 s, more than three TTLs
        clock.t += 40
        assert gate.renew("run-l", res.reservation_id) == clock.t + TTL
    assert ledger.snapshot("run-l").day_tokens == held, "the renewed reservation still counts"
    clock.t += TTL + 1
    assert ledger.snapshot("run-l").day_tokens == 0, "without renewal it expires"


def test_an_expired_or_settled_or_unknown_reservation_cannot_be_renewed(env) -> None:
    gate, _, clock, _ = env
    res = gate.check(SMALL, "run-r")
    clock.t += TTL + 0.5
    with pytest.raises(LedgerError) as info:
        gate.renew("run-r", res.reservation_id)
    assert code_of(info) == "L107" and "expired" in str(info.value)
    fresh = gate.check(SMALL, "run-r")
    gate.record_usage("run-r", prompt_tokens=10, completion_tokens=10, reservation_id=fresh.reservation_id)
    with pytest.raises(LedgerError) as info:
        gate.renew("run-r", fresh.reservation_id)
    assert code_of(info) == "L107" and "settled" in str(info.value)
    with pytest.raises(LedgerError) as info:
        gate.renew("run-r", "no-such-reservation")
    assert code_of(info) == "L103"


def test_the_lease_context_renews_from_a_background_thread(env) -> None:
    gate, ledger, clock, _ = env
    res = gate.check(SMALL, "run-bg")

    def expiry() -> float:
        return ledger._db.execute("SELECT expires_at FROM reservations WHERE id = ?", (res.reservation_id,)).fetchone()[
            0
        ]

    with gate.lease("run-bg", res.reservation_id, every_s=0.01):
        clock.t += 30  # half the TTL: the next beat moves the expiry to 30 + TTL
        deadline = time.monotonic() + 10
        while expiry() != clock.t + TTL and time.monotonic() < deadline:
            time.sleep(0.01)
        assert expiry() == clock.t + TTL
    gate.record_usage("run-bg", prompt_tokens=5, completion_tokens=5, reservation_id=res.reservation_id)


def test_a_lease_that_is_lost_is_reported_when_the_block_ends(env) -> None:
    gate, _, clock, _ = env
    res = gate.check(SMALL, "run-lost")
    clock.t += TTL + 1  # the worker stalled past its TTL before the first beat
    with pytest.raises(LedgerError) as info, gate.lease("run-lost", res.reservation_id, every_s=0.005):
        time.sleep(0.2)
    assert code_of(info) == "L107"


# ---- overspend is never silent -----------------------------------------------------------


def test_late_settlement_is_an_overspend_event_with_its_amount_and_on_the_dashboard(env) -> None:
    gate, ledger, clock, sink = env
    a = gate.check(SMALL, "run-o")  # worker A's call outlives its TTL without renewing
    clock.t += TTL + 5
    b = gate.check(SMALL, "run-o")  # worker B is admitted against the freed room
    gate.record_usage("run-o", prompt_tokens=400, completion_tokens=300, reservation_id=b.reservation_id)
    gate.record_usage("run-o", prompt_tokens=500, completion_tokens=200, reservation_id=a.reservation_id)
    overspends = [p for t, p, _ in ledger.events("run-o") if t == "budget.overspend"]
    assert len(overspends) == 1
    assert overspends[0]["reason"] == "settled_after_expiry" and overspends[0]["tokens"] == 700
    assert overspends[0]["reservation_id"] == a.reservation_id and overspends[0]["late_by_s"] == 5.0
    assert sink_types(sink).count("budget.overspend") == 1
    assert ledger.settled_totals(run_id="run-o")[0] == 1400, "the late usage is recorded, not dropped"
    with LedgerReader(ledger.path) as reader:  # the dashboards read the ledger read-only
        assert budget_payload(reader, "run-o")["overspend"] == {"events": 1, "tokens": 700, "micro_usd": 0}


def test_settling_more_than_was_reserved_reports_the_excess(env) -> None:
    gate, ledger, _, _ = env
    res = gate.check(SMALL, "run-x")
    reserved = res.decision.metrics["request_tokens"]
    gate.record_usage("run-x", prompt_tokens=reserved, completion_tokens=123, reservation_id=res.reservation_id)
    [(_kind, payload, _)] = [e for e in ledger.events("run-x") if e[0] == "budget.overspend"]
    assert (
        payload["reason"] == "settled_over_reservation"
        and payload["tokens"] == 123
        and payload["reserved_tokens"] == reserved
    )


def test_a_settlement_inside_a_live_reservation_reports_no_overspend(env) -> None:
    gate, ledger, clock, sink = env
    res = gate.check(SMALL, "run-ok")
    clock.t += TTL - 1
    gate.record_usage("run-ok", prompt_tokens=1, completion_tokens=1, reservation_id=res.reservation_id)
    assert "budget.overspend" not in [t for t, _, _ in ledger.events("run-ok")]
    assert "budget.overspend" not in sink_types(sink)


# ---- settlement is idempotent per reservation ----------------------------------------------


def test_repeating_a_settlement_with_the_same_numbers_is_a_no_op(env) -> None:
    gate, ledger, _, sink = env
    res = gate.check(SMALL, "run-i")
    for _ in range(3):
        gate.record_usage(
            "run-i", {"prompt_tokens": 100, "completion_tokens": 50}, reservation_id=res.reservation_id, model=None
        )
    assert ledger.settled_totals(run_id="run-i") == (150, 0, 1)
    assert [t for t, _, _ in ledger.events("run-i")].count("llm.usage_point") == 1
    assert sink_types(sink).count("llm.usage_point") == 1


def test_repeating_a_settlement_with_other_numbers_is_a_coded_error(env) -> None:
    gate, ledger, _, _ = env
    res = gate.check(SMALL, "run-c")
    gate.record_usage("run-c", prompt_tokens=100, completion_tokens=50, reservation_id=res.reservation_id)
    with pytest.raises(LedgerError) as info:
        gate.record_usage("run-c", prompt_tokens=100, completion_tokens=51, reservation_id=res.reservation_id)
    assert code_of(info) == "L106"
    assert ledger.settled_totals(run_id="run-c") == (150, 0, 1)


# ---- bounds and typed errors ---------------------------------------------------------------


@pytest.mark.parametrize(
    "tokens,code",
    [(2**63, "L108"), (2**64 + 7, "L108"), (MAX_TOKENS + 1, "L108"), (-1, "L104"), (True, "L104"), (1.0, "L104")],
)
def test_record_usage_quantities_are_bounded_integers(env, tokens, code) -> None:
    gate, ledger, _, _ = env
    with pytest.raises(LedgerError) as info:
        gate.record_usage("run-q", prompt_tokens=tokens, completion_tokens=0)
    assert code_of(info) == code
    assert ledger.settled_totals(run_id="run-q")[2] == 0


def test_the_bound_itself_is_accepted(env) -> None:
    gate, ledger, _, _ = env
    gate.record_usage("run-big", prompt_tokens=MAX_TOKENS, completion_tokens=MAX_TOKENS)
    assert ledger.settled_totals(run_id="run-big")[0] == 2 * MAX_TOKENS


@pytest.mark.parametrize("run_id", [None, "", 7, "r" * 201])
def test_a_missing_or_bad_run_id_is_a_coded_error(env, run_id) -> None:
    gate, _, _, _ = env
    with pytest.raises(LedgerError) as info:
        gate.check(SMALL, run_id)
    assert code_of(info) == "L109"
    with pytest.raises(LedgerError) as info:
        gate.record_usage(run_id, prompt_tokens=1, completion_tokens=1)
    assert code_of(info) == "L109"


@pytest.mark.parametrize("completion", [2**63, 10**16, -1_000_000])
def test_a_huge_or_negative_completion_budget_never_reaches_sqlite(env, completion) -> None:
    gate, ledger, _, _ = env
    with pytest.raises((PolicyError, BudgetBlocked)) as info:
        gate.check(SMALL, "run-h", request=Request(completion_tokens=completion))
    if isinstance(info.value, PolicyError):
        assert info.value.diagnostics[0].code
    assert ledger.snapshot("run-h").day_tokens == 0, "nothing (and nothing negative) was reserved"


def test_sqlite_refusals_inside_a_transaction_become_l110(env) -> None:
    _, ledger, _, _ = env
    with pytest.raises(LedgerError) as info, ledger.transaction() as db:
        db.execute(
            "INSERT INTO usage_points (run_id, day, prompt_tokens, completion_tokens, total_tokens, micro_usd, created_at) VALUES ('r', 'd', ?, 0, 0, 0, 0)",
            (2**63,),
        )
    assert code_of(info) == "L110"
    with pytest.raises(LedgerError) as info, ledger.transaction() as db:
        db.execute(
            "INSERT INTO usage_points (run_id, day, prompt_tokens, completion_tokens, total_tokens, micro_usd, created_at) VALUES (NULL, 'd', 0, 0, 0, 0, 0)"
        )
    assert code_of(info) == "L110"
    assert ledger.settled_totals(day="d")[2] == 0


def test_a_huge_completion_budget_under_a_policy_without_caps_is_l108(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.db")
    gate = BudgetGate(
        load_policy_text("tokenizer rough 4 chars per token\ncompletion budget 600 tokens\n", "nocap.policy"), ledger
    )
    with pytest.raises(UsageInputError):  # the request itself refuses it now (P120)
        Request(completion_tokens=2**63)
    with pytest.raises(LedgerError) as info:  # was OverflowError from sqlite
        gate.check(SMALL, "run-n", request=Request(completion_tokens=10**15))  # + the prompt: over the ledger's bound
    assert code_of(info) == "L108"
    assert ledger.held() == 0
