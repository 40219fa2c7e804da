"""The gate's optimistic admission and the one-step settlement, on both backends (SQLite
file, real PostgreSQL): the evaluation runs outside every lock, the ledger re-checks the
decision's caps under its admission locks, a conflict re-evaluates with the fresh usage,
repeated conflicts fall back to evaluating under the locks; settlement (including the
overspend and repeat paths) goes through PostgreSQL's ledger_settle; a ledger written at
schema version 2 is migrated and keeps counting."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from policy_engine.adapters.admission import Caps, caps_of
from policy_engine.adapters.gate import BudgetBlocked, BudgetGate, GateResult
from policy_engine.adapters.ledger import utc_day
from policy_engine.adapters.ledger_url import open_ledger, sqlite_path
from policy_engine.dsl import load_policy_text
from policy_engine.errors import LedgerError
from policy_engine.evaluator import evaluate
from policy_engine.packs import load_pack
from policy_engine.usage import Request, UsageSnapshot
from tests.adapters.gate_setup import DAY, SMALL, TTL, Clock, rules


class SlipIn:
    """The gate's ledger with another caller's check slipped in between this caller's read
    and its admission, the interleaving two machines produce by chance; ``slips`` runs
    before each of the next optimistic admissions (not inside the locked fallback)."""

    def __init__(self, ledger: Any, slips: list[Callable[[], None]]) -> None:
        self._ledger, self._slips = ledger, slips

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ledger, name)

    def admit(self, admission: Any, db: Any = None) -> Any:
        if self._slips and db is None:
            self._slips.pop(0)()
        return self._ledger.admit(admission, db)


def full_request_tokens() -> int:
    """About what the small pack reserves untrimmed under these rules (the cap's digits are
    part of the rendered prompt, so a rule file with another cap may differ by a token)."""
    decision = evaluate(load_policy_text(rules(10**9), "probe.policy"), load_pack(SMALL))
    return int(decision.metrics["request_tokens"])


def day_usage(ledger: Any, now: float) -> int:
    return int(ledger.snapshot("any-run", now=now).day_tokens)


@pytest.fixture
def clocked(ledger_url: str):
    clock = Clock(DAY)
    ledger = open_ledger(ledger_url, clock=clock)
    yield ledger, clock
    ledger.close()


def test_a_conflict_re_evaluates_with_the_fresh_usage_and_never_overspends(
    clocked, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    caplog.set_level(logging.WARNING, logger="psycopg")
    ledger, clock = clocked
    full = full_request_tokens()
    cap = full + full // 2  # one untrimmed call fits, a second does not
    other = BudgetGate(load_policy_text(rules(cap), "other.policy"), ledger)
    taken: list[GateResult] = []
    gate = BudgetGate(
        load_policy_text(rules(cap), "w.policy"), SlipIn(ledger, [lambda: taken.append(other.check(SMALL, "run-b"))])
    )
    try:
        result = gate.check(SMALL, "run-a")
        decision = result.decision
    except BudgetBlocked as blocked:
        decision = blocked.decision
    assert gate.conflicts == 1 and gate.locked_checks == 0
    assert taken[0].decision.allowed and not taken[0].decision.rungs, "the other caller took the room first, untrimmed"
    full = taken[0].decision.metrics["request_tokens"]  # the rules' text (the cap) is part of the prompt
    # the decision that stands was evaluated with the usage that includes the other's hold
    assert decision.metrics["day_tokens_used_before"] == full
    fresh = evaluate(
        load_policy_text(rules(cap), "w.policy"), load_pack(SMALL), usage=UsageSnapshot(batch_tokens=0, day_tokens=full)
    )
    assert decision.outcome == fresh.outcome and decision.metrics["request_tokens"] == fresh.metrics["request_tokens"]
    assert day_usage(ledger, clock.t) <= cap, "no overspend"
    assert ledger.held() == (2 if decision.allowed else 1)
    # PostgreSQL refuses by raising: the transaction is ended before the pool gets the connection back
    assert not [r.getMessage() for r in caplog.records if r.name.startswith("psycopg")]


def test_repeated_conflicts_fall_back_to_evaluating_under_the_locks(clocked) -> None:
    ledger, clock = clocked
    full = full_request_tokens()
    cap = 2 * full + full // 2  # two untrimmed holds fit, a third does not
    first = BudgetGate(load_policy_text(rules(cap), "w.policy"), ledger)
    first.optimistic_attempts = 0  # straight to the locked path
    held = [first.check(SMALL, "run-a")]
    assert first.locked_checks == 1 and first.conflicts == 0 and held[0].decision.allowed
    # one optimistic attempt, lost to a slipped-in caller, then the locked path
    other = BudgetGate(load_policy_text(rules(cap), "other.policy"), ledger)
    gate = BudgetGate(
        load_policy_text(rules(cap), "w.policy"), SlipIn(ledger, [lambda: held.append(other.check(SMALL, "run-b"))])
    )
    gate.optimistic_attempts = 1
    try:
        decision = gate.check(SMALL, "run-a").decision
    except BudgetBlocked as blocked:
        decision = blocked.decision
    assert gate.conflicts == 1 and gate.locked_checks == 1
    before = sum(h.decision.metrics["request_tokens"] for h in held)
    assert decision.metrics["day_tokens_used_before"] == before, "evaluated under the locks with both holds"
    assert day_usage(ledger, clock.t) <= cap


def test_a_blocked_call_is_written_without_a_reservation_and_never_conflicts(clocked) -> None:
    ledger, _ = clocked
    gate = BudgetGate(load_policy_text(rules(100), "tiny.policy"), ledger)
    with pytest.raises(BudgetBlocked) as info:
        gate.check(SMALL, "run-z")
    assert gate.conflicts == 0 and ledger.held() == 0
    kinds = [t for t, _, _ in ledger.events("run-z")]
    assert "budget.blocked" in kinds and info.value.call_id


def test_the_caps_are_the_blocking_limits_at_their_effective_values() -> None:
    policy = load_policy_text(
        "tokenizer rough 4 chars per token\n"
        "limit batch_total: batch_total <= 5000 tokens\n"
        "limit day_total: day_total <= 9000 tokens\n"
        "limit request_prompt: request_prompt <= 4000 tokens\n"
        "expansion reserve 1000 tokens\n"
        "completion budget 600 tokens\n",
        "caps.policy",
    )
    settings = policy.resolve({})[0]
    assert caps_of(settings, Request(), priced=False) == Caps(run_tokens=4000, day_tokens=9000)
    assert caps_of(settings, Request(expansion=True), priced=False) == Caps(run_tokens=5000, day_tokens=9000)
    usage = UsageSnapshot(batch_tokens=3000, day_tokens=8000)
    assert Caps(run_tokens=4000, day_tokens=9000).admit(usage, 1000, 0)
    assert not Caps(run_tokens=4000, day_tokens=9000).admit(usage, 1001, 0)
    assert Caps().admit(usage, 10**15, 10**18)


# ---- settlement through ledger_settle (PostgreSQL) and Ledger.settle (SQLite) ------------


def test_settlement_paths_on_both_backends(clocked) -> None:
    ledger, clock = clocked
    gate = BudgetGate(load_policy_text(rules(60_000), "s.policy"), ledger, reservation_ttl_s=TTL)
    # within the reservation: no overspend, one usage event
    ok = gate.check(SMALL, "run-s")
    gate.record_usage("run-s", prompt_tokens=10, completion_tokens=5, reservation_id=ok.reservation_id)
    # a repeat with the same numbers is a no-op, other numbers are L106
    gate.record_usage("run-s", prompt_tokens=10, completion_tokens=5, reservation_id=ok.reservation_id)
    with pytest.raises(LedgerError) as info:
        gate.record_usage("run-s", prompt_tokens=10, completion_tokens=6, reservation_id=ok.reservation_id)
    assert info.value.diagnostics[0].code == "L106"
    # over the reservation: the excess, reported in the settlement's transaction
    over = gate.check(SMALL, "run-s")
    reserved = over.decision.metrics["request_tokens"]
    gate.record_usage("run-s", prompt_tokens=reserved, completion_tokens=7, reservation_id=over.reservation_id)
    # after expiry: the whole settlement
    late = gate.check(SMALL, "run-s")
    clock.t += TTL + 2
    gate.record_usage("run-s", prompt_tokens=30, completion_tokens=20, reservation_id=late.reservation_id)
    # a repeat of an overspent settlement is a no-op too (no second overspend event)
    gate.record_usage("run-s", prompt_tokens=30, completion_tokens=20, reservation_id=late.reservation_id)
    with pytest.raises(LedgerError) as info:
        gate.record_usage("run-s", prompt_tokens=1, completion_tokens=1, reservation_id="no-such-reservation")
    assert info.value.diagnostics[0].code == "L103"
    events = ledger.events("run-s")
    overspends = [p for t, p, _ in events if t == "budget.overspend"]
    assert [(p["reason"], p["tokens"]) for p in overspends] == [
        ("settled_over_reservation", 7),
        ("settled_after_expiry", 50),
    ]
    assert overspends[1]["late_by_s"] == 2.0 and overspends[1]["reservation_id"] == late.reservation_id
    assert [t for t, _, _ in events].count("llm.usage_point") == 3
    assert ledger.settled_totals(run_id="run-s") == (15 + reserved + 7 + 50, 0, 3)
    assert ledger.held() == 0
    # settling without a reservation counts on the settlement's day
    gate.record_usage("run-s", prompt_tokens=4, completion_tokens=4)
    assert ledger.settled_totals(day=utc_day(clock.t)) == (15 + reserved + 7 + 50 + 8, 0, 4)


# ---- migrating a version-2 PostgreSQL ledger ---------------------------------------------


def test_a_version_2_postgres_ledger_is_migrated_and_keeps_counting(pg_cluster) -> None:
    import psycopg

    from policy_engine.adapters.ledger_pg import MIGRATIONS

    url = pg_cluster.create_database(f"v2_{time.monotonic_ns()}")
    now = time.time()
    day = utc_day(now)
    with psycopg.connect(url, autocommit=True) as conn, conn.transaction():  # what a version-2 engine left
        conn.execute(
            "CREATE TABLE schema_version (version INTEGER NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        for version, script in enumerate(MIGRATIONS[:2], start=1):
            conn.execute(script)
            conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (version,))
        conn.execute("INSERT INTO day_totals VALUES (%s, 100, 0, 1)", (day,))
        conn.execute("INSERT INTO run_totals VALUES ('old-run', 100, 0, 1)")
        conn.execute(
            "INSERT INTO usage_points (run_id, day, prompt_tokens, completion_tokens, total_tokens, micro_usd, created_at)"
            " VALUES ('old-run', %s, 60, 40, 100, 0, %s)",
            (day, now),
        )
        conn.execute(
            "INSERT INTO reservations VALUES ('old-hold', 'old-run', %s, 700, 0, %s, %s, 'held')", (day, now, now + 600)
        )
    ledger = open_ledger(url)
    try:
        assert ledger.schema_version() == 4
        assert ledger.snapshot("old-run").day_tokens == 800, "the settled total and the old hold still count"
        gate = BudgetGate(load_policy_text(rules(60_000), "m.policy"), ledger)
        gate.record_usage("old-run", prompt_tokens=300, completion_tokens=200, reservation_id="old-hold")
        assert ledger.settled_totals(run_id="old-run") == (600, 0, 2) and ledger.held() == 0
        res = gate.check(SMALL, "new-run")
        gate.record_usage("new-run", prompt_tokens=10, completion_tokens=10, reservation_id=res.reservation_id)
        with ledger.transaction() as db:
            assert db.execute("SELECT tokens, points FROM day_totals WHERE day = %s", (day,)).fetchone() == (620, 3)
    finally:
        ledger.close()


def test_the_sqlite_ledger_keeps_its_schema_version(tmp_path) -> None:
    ledger = open_ledger(str(tmp_path / "l.db"))
    try:
        assert sqlite_path(ledger.url) and ledger.schema_version() == 2  # the gate change needed no new table
    finally:
        ledger.close()


# ---- the usage a settlement hands back (PostgreSQL: read in the settlement's round trip) --


def reuses(ledger: Any) -> bool:
    """PostgreSQL's settlement reads the usage after it; SQLite's does not (its check reads)."""
    return not sqlite_path(ledger.url)


def test_the_check_after_a_settlement_evaluates_on_the_usage_it_handed_back(clocked) -> None:
    ledger, clock = clocked
    gate = BudgetGate(load_policy_text(rules(60_000), "r.policy"), ledger)
    first = gate.check(SMALL, "run-r")
    gate.record_usage("run-r", prompt_tokens=300, completion_tokens=200, reservation_id=first.reservation_id)
    second = gate.check(SMALL, "run-r")
    assert gate.reused_usage == (1 if reuses(ledger) else 0)
    assert second.decision.metrics["day_tokens_used_before"] == 500, "the settlement, not the first hold"
    assert gate.conflicts == 0 and ledger.held() == 1
    # too old to reuse: the check reads
    gate.record_usage("run-r", prompt_tokens=1, completion_tokens=1, reservation_id=second.reservation_id)
    clock.t += gate.usage_reuse_s + 0.5
    third = gate.check(SMALL, "run-r")
    assert gate.reused_usage == (1 if reuses(ledger) else 0)
    # reuse turned off: the check reads even at the settlement's instant
    gate.usage_reuse_s = 0
    gate.record_usage("run-r", prompt_tokens=1, completion_tokens=1, reservation_id=third.reservation_id)
    gate.check(SMALL, "run-r")
    assert gate.reused_usage == (1 if reuses(ledger) else 0)


def test_a_remembered_usage_too_high_is_read_again_before_trimming(clocked) -> None:
    ledger, _ = clocked
    full = full_request_tokens()
    cap = 3 * full  # our hold and the other's fill it: a third untrimmed call does not fit
    gate = BudgetGate(load_policy_text(rules(cap), "h.policy"), ledger)
    other = BudgetGate(load_policy_text(rules(cap), "o.policy"), ledger)
    held = other.check(SMALL, "run-o")
    mine = gate.check(SMALL, "run-h")
    gate.record_usage("run-h", prompt_tokens=full, completion_tokens=full // 2, reservation_id=mine.reservation_id)
    # the other caller settles far below its hold after our settlement read the usage
    other.record_usage("run-o", prompt_tokens=1, completion_tokens=1, reservation_id=held.reservation_id)
    result = gate.check(SMALL, "run-h")
    assert result.decision.outcome == "allowed", "evaluated again on the fresh usage, untrimmed"
    assert result.decision.metrics["day_tokens_used_before"] == full + full // 2 + 2
    assert gate.reused_usage == 0 and gate.conflicts == 0


def test_a_remembered_usage_too_low_conflicts_and_never_overspends(clocked) -> None:
    ledger, clock = clocked
    full = full_request_tokens()
    cap = 2 * full + full // 2
    other = BudgetGate(load_policy_text(rules(cap), "o.policy"), ledger)
    taken: list[GateResult] = []
    gate = BudgetGate(load_policy_text(rules(cap), "l.policy"), ledger)
    mine = gate.check(SMALL, "run-l")
    gate.record_usage("run-l", prompt_tokens=full, completion_tokens=0, reservation_id=mine.reservation_id)
    # another caller takes the room after our settlement read the usage
    gate.ledger = SlipIn(ledger, [lambda: taken.append(other.check(SMALL, "run-o"))])
    try:
        decision = gate.check(SMALL, "run-l").decision
    except BudgetBlocked as blocked:
        decision = blocked.decision
    assert taken[0].decision.allowed
    # PostgreSQL evaluated on the remembered usage, SQLite on its read: the other's hold is in
    # neither, so both are refused under the locks and evaluated again with it
    assert gate.conflicts == 1 and gate.reused_usage == 0
    assert decision.metrics["day_tokens_used_before"] == full + taken[0].decision.metrics["request_tokens"]
    assert day_usage(ledger, clock.t) <= cap


def test_a_policy_with_a_warn_only_usage_limit_always_reads(clocked) -> None:
    ledger, _ = clocked
    warn = rules(60_000).replace(
        "completion budget", "limit batch_total: batch_total <= 10 tokens warn\ncompletion budget"
    )
    gate = BudgetGate(load_policy_text(warn, "w.policy"), ledger)
    first = gate.check(SMALL, "run-w")
    gate.record_usage("run-w", prompt_tokens=3, completion_tokens=2, reservation_id=first.reservation_id)
    second = gate.check(SMALL, "run-w")
    assert second.decision.warnings, "the warn-only limit fired"
    assert gate.reused_usage == 0 and second.decision.metrics["batch_tokens_used_before"] == 5


def test_a_refused_admission_writes_nothing_and_leaves_the_connection_usable(ledger_url: str) -> None:
    """On PostgreSQL the step and its flush wait go in one message inside an explicit
    transaction: a value the server refuses (here a call id already recorded) is L110,
    nothing of it is written, and the same pooled connection admits the next call."""
    import dataclasses

    from policy_engine.adapters.ledger import new_reservation

    ledger = open_ledger(ledger_url, pool_size=1)
    try:
        captured: list[Any] = []
        real = ledger.admit
        ledger.admit = lambda a, db=None: captured.append(a) or real(a, db)
        BudgetGate(load_policy_text(rules(60_000), "d.policy"), ledger).check(SMALL, "run-d")
        ledger.admit = real
        first = captured[0]
        again = dataclasses.replace(first, reservation=new_reservation("run-d", 5, 0, now=first.now, ttl_s=TTL))
        with pytest.raises(LedgerError) as info:
            ledger.admit(again)
        assert info.value.diagnostics[0].code == "L110"
        assert ledger.held(now=first.now) == 1, "only the first call's hold"
        assert [t for t, _, _ in ledger.events("run-d")].count("budget.check_passed") == 1
        fresh = dataclasses.replace(
            again,
            call=dataclasses.replace(first.call, call_id="another-call"),
            reservation=new_reservation("run-d", 5, 0, now=first.now, ttl_s=TTL),
        )
        assert ledger.admit(fresh) is None
        assert ledger.held(now=first.now) == 2
    finally:
        ledger.close()
