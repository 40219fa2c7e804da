"""The call log: every gate check leaves one row with its decision's outcome, reasons,
rules digest and limits in force, in the gate's transaction; a ledger from before the call
log is still read (and never altered) by the read-only reader."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from policy_engine.adapters.dashboard import budget_payload, kpi_payload, runs_payload
from policy_engine.adapters.gate import BudgetBlocked, BudgetGate
from policy_engine.adapters.ledger import Ledger
from policy_engine.adapters.ledger_reader import LedgerReader
from policy_engine.dsl import load_policy
from tests.conftest import ROOT

DEMO = ROOT / "examples" / "policies" / "demo.policy"
SMALL = json.loads((ROOT / "examples" / "packs" / "small_2x4x10x8.json").read_text())
BIG = json.loads((ROOT / "examples" / "packs" / "blocked_oversized_guard.json").read_text())


def test_each_check_is_logged_with_outcome_reason_digest_and_limits(tmp_path: Path) -> None:
    policy = load_policy(DEMO)
    ledger = Ledger(tmp_path / "l.db")
    gate = BudgetGate(policy, ledger)
    ok = gate.check(SMALL, "R")
    with pytest.raises(BudgetBlocked) as blocked:
        gate.check(BIG, "R")
    ledger.close()
    with LedgerReader(tmp_path / "l.db") as reader:
        first, second = reader.calls("R")
    assert (first.outcome, first.reason, first.reservation_id) == (ok.decision.outcome, None, ok.reservation_id)
    assert (second.outcome, second.reason, second.reasons) == (
        "blocked",
        blocked.value.reason,
        list(blocked.value.decision.reasons),
    )
    assert first.rules_digest == second.rules_digest == policy.digest
    assert (second.limits["request_prompt"]["value"], second.limits["request_prompt"]["verdict"]) == (12_000, "fail")
    assert second.limits["day_total"]["value"] == 40_000 and second.limits["lanes"]["explore_floor"] == 1
    assert second.prompt_tokens == blocked.value.decision.metrics["prompt_tokens"]
    assert [r["rung"] for r in second.rungs] == [s.rung for s in blocked.value.decision.rungs]
    assert second.decision_ms is not None and second.decision_ms > 0
    assert (first.seq, second.seq) == (1, 2)


def test_a_failed_transaction_logs_no_call(tmp_path: Path) -> None:
    policy = load_policy(DEMO)
    ledger = Ledger(tmp_path / "l.db")
    gate = BudgetGate(policy, ledger)

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk full")

    ledger.add_seen = broken  # type: ignore[method-assign]  # fails after the call row was written
    with pytest.raises(RuntimeError):
        gate.check(SMALL, "R")
    ledger.close()
    with LedgerReader(tmp_path / "l.db") as reader:
        assert reader.calls("R") == [] and not reader.run_exists("R")


def test_a_ledger_from_before_the_call_log_is_served_without_calls(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    Ledger(db).close()
    con = sqlite3.connect(db)
    con.execute("DROP TABLE gated_calls")
    con.execute(
        "INSERT INTO usage_points (run_id, day, prompt_tokens, completion_tokens, total_tokens, micro_usd, created_at) VALUES ('OLD', '2026-01-01', 10, 5, 15, 3, 1767225600)"
    )
    con.commit()
    con.close()
    before = db.read_bytes()
    with LedgerReader(db) as reader:
        assert reader.has_call_log is False
        runs = runs_payload(reader)
        budget = budget_payload(reader, "OLD")
        kpi = kpi_payload(reader, "OLD")
    assert runs["call_log"] is False and runs["runs"][0]["tokens"] == 15 and runs["runs"][0]["calls"] == 0
    assert (
        budget["calls"] == [] and budget["totals"]["settled_tokens"] == 15 and budget["flags"]["budget_blocked"] is None
    )
    assert kpi["gauges"]["novelty"]["value"] is None
    assert db.read_bytes() == before
