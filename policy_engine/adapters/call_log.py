"""The call log: one row per gated call (allowed, trimmed or blocked) with what a person
asks of a dashboard: the decision's outcome and reasons, the rules digest and the limits
in force, the prompt tokens against the limit, the ladder's rungs, the KPIs and how long
the decision took.

The events (``event_log``) keep the agent's contract; they were not made to answer "why
was call 7 blocked, under which limits": a blocked call's reason sat only in the
``budget.blocked`` event, the limits only in the rules the server happened to load. This
table is additive (created with ``IF NOT EXISTS``; older ledgers simply have no call log)
and is written in the gate's transaction, so a call and its reservation land together.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from policy_engine.adapters.ledger_json import sorted_json
from policy_engine.decision import Decision
from policy_engine.policy import Settings

CALLS_SCHEMA = """
CREATE TABLE IF NOT EXISTS gated_calls (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    call_id TEXT NOT NULL UNIQUE,
    run_id TEXT NOT NULL,
    created_at REAL NOT NULL,
    outcome TEXT NOT NULL CHECK (outcome IN ('allowed', 'trimmed', 'blocked')),
    reason TEXT,
    reasons_json TEXT NOT NULL,
    rules_digest TEXT NOT NULL,
    limits_json TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    request_micro_usd INTEGER,
    rungs_json TEXT NOT NULL,
    kpis_json TEXT NOT NULL,
    decision_ms REAL,
    reservation_id TEXT
);
CREATE INDEX IF NOT EXISTS gated_calls_run ON gated_calls (run_id, id);
"""


@dataclass(frozen=True)
class GatedCall:
    call_id: str
    run_id: str
    created_at: float
    outcome: str
    reason: str | None
    reasons: tuple[str, ...]
    rules_digest: str
    limits: dict[str, Any]
    prompt_tokens: int
    completion_tokens: int
    request_micro_usd: int | None
    rungs: list[dict[str, Any]]
    kpis: dict[str, Any]
    decision_ms: float | None
    reservation_id: str | None


def limits_in_force(decision: Decision, settings: Settings) -> dict[str, Any]:
    """Each limit as the decision applied it (configured value, the effective value after
    the reserve, the unit, the measured value and the verdict), plus the lane split and
    explore floor, which the KPI view compares against."""
    limits: dict[str, Any] = {}
    for metric, info in sorted(decision.limits.items()):
        limits[metric] = {
            k: info.get(k) for k in ("rule", "value", "effective", "unit", "actual", "verdict", "severity")
        }
    limits["lanes"] = {
        "exploit_ratio": str(settings.lanes.exploit_ratio),
        "explore_ratio": str(settings.lanes.explore_ratio),
        "explore_floor": settings.lanes.explore_floor,
    }
    return limits


def rungs_of(decision: Decision) -> list[dict[str, Any]]:
    """The ladder's rungs that were tried, each with the prompt tokens before and after."""
    out = []
    for step in decision.rungs:
        out.append(
            {
                "rung": step.rung,
                "stage": step.rule,
                "pool": step.pool,
                "step_kind": step.step_kind,
                "step_value": step.step_value,
                "verdict": step.verdict,
                "prompt_tokens_before": step.prompt_tokens_before,
                "prompt_tokens_after": step.prompt_tokens_after,
                "failing": list(step.failing),
            }
        )
    return out


def gated_call(
    decision: Decision,
    settings: Settings,
    *,
    run_id: str,
    created_at: float,
    decision_ms: float | None,
    reservation_id: str | None,
) -> GatedCall:
    exploit = explore = 0
    for lanes in decision.selection.values():
        exploit += len(lanes.get("exploit", ()))
        explore += len(lanes.get("explore", ()))
    kpis = {
        "coverage": decision.kpis.get("coverage"),
        "novelty": decision.kpis.get("novelty"),
        "exploit_count": exploit,
        "explore_count": explore,
        "explore_floor_preserved": all(f.preserved for f in decision.explore_floor),
    }
    m = decision.metrics
    return GatedCall(
        call_id=uuid.uuid4().hex,
        run_id=run_id,
        created_at=created_at,
        outcome=decision.outcome,
        reason=decision.reason,
        reasons=tuple(decision.reasons),
        rules_digest=str(decision.manifest.get("rules_digest", "")),
        limits=limits_in_force(decision, settings),
        prompt_tokens=int(m["prompt_tokens"]),
        completion_tokens=int(m["completion_tokens"]),
        request_micro_usd=m.get("request_micro_usd"),
        rungs=rungs_of(decision),
        kpis=kpis,
        decision_ms=decision_ms,
        reservation_id=reservation_id,
    )


def call_row(call: GatedCall) -> tuple[Any, ...]:
    """The 15 column values of `gated_calls` (CALL_COLUMNS order), JSON columns dumped."""

    dump = sorted_json
    return (
        call.call_id,
        call.run_id,
        call.created_at,
        call.outcome,
        call.reason,
        dump(list(call.reasons)),
        call.rules_digest,
        dump(call.limits),
        call.prompt_tokens,
        call.completion_tokens,
        call.request_micro_usd,
        dump(call.rungs),
        dump(call.kpis),
        call.decision_ms,
        call.reservation_id,
    )


CALL_COLUMNS = (
    "call_id, run_id, created_at, outcome, reason, reasons_json, rules_digest, limits_json, prompt_tokens,"
    " completion_tokens, request_micro_usd, rungs_json, kpis_json, decision_ms, reservation_id"
)


def insert_call(db: Any, call: GatedCall, placeholder: str = "?") -> None:
    """Insert one call through a DB-API connection; ``placeholder`` is the driver's
    parameter marker (``?`` for sqlite3, ``%s`` for psycopg)."""
    db.execute(
        f"INSERT INTO gated_calls ({CALL_COLUMNS}) VALUES (" + ", ".join([placeholder] * 15) + ")", call_row(call)
    )
