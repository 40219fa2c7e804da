"""Read-only access to a ledger for the dashboards, the metrics and the static reports.

Opened through SQLite's URI ``mode=ro``: the reader can never create a ledger, create its
tables, switch it to WAL or write a byte, whatever file it is pointed at (the old server
opened a full `Ledger`, which created tables in any SQLite file and recreated a ledger
deleted while serving). A file that is not a ledger is refused with a code, not served
empty. One reader per request: connections are cheap and a reader never outlives the file.
"""

from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from policy_engine.errors import Diagnostic, LedgerError

LEDGER_TABLES = frozenset({"reservations", "usage_points", "event_log"})


@dataclass(frozen=True)
class CallRow:
    seq: int
    call_id: str
    run_id: str
    created_at: float
    outcome: str
    reason: str | None
    reasons: list[str]
    rules_digest: str
    limits: dict[str, Any]
    prompt_tokens: int
    completion_tokens: int
    request_micro_usd: int | None
    rungs: list[dict[str, Any]]
    kpis: dict[str, Any]
    decision_ms: float | None
    reservation_id: str | None
    settled: tuple[int, int, int] | None  # (prompt, completion, micro-USD) once the call's usage was recorded

    @property
    def limits_without_actuals(self) -> dict[str, Any]:
        """The limits as configured (value, effective value, unit), without this call's
        measured values and verdicts: what stays equal from call to call under one policy."""
        return {k: ({f: v for f, v in info.items() if f not in ("actual", "verdict")} if isinstance(info, dict) and "verdict" in info else info)
                for k, info in self.limits.items()}


class LedgerReader:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        if not Path(self.path).is_file():
            raise LedgerError([Diagnostic("L106", f"no ledger at {self.path!r}", hint="run the gate or `policy demo-run` first, or pass the right --db", file=self.path)])
        uri = "file:" + quote(os.path.abspath(self.path)) + "?mode=ro"
        try:
            self._db = sqlite3.connect(uri, uri=True, check_same_thread=False)
            tables = {r[0] for r in self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        except sqlite3.DatabaseError as exc:
            raise LedgerError([Diagnostic("L107", f"not a ledger: {exc}", hint="pass the SQLite file the budget gate writes (--db)", file=self.path)]) from None
        missing = LEDGER_TABLES - tables
        if missing:
            self._db.close()
            raise LedgerError([Diagnostic("L107", f"not a ledger: no {', '.join(sorted(missing))} table", hint="pass the SQLite file the budget gate writes (--db)", file=self.path)])
        self.has_call_log = "gated_calls" in tables

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "LedgerReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run_exists(self, run_id: str) -> bool:
        tables = ["usage_points", "event_log", "reservations"] + (["gated_calls"] if self.has_call_log else [])
        return any(self._db.execute(f"SELECT 1 FROM {t} WHERE run_id = ? LIMIT 1", (run_id,)).fetchone() for t in tables)

    def runs(self) -> list[dict[str, Any]]:
        """Every run with gated calls or usage, newest activity first."""
        out: dict[str, dict[str, Any]] = {}
        for run_id, first, last, points, tokens, micro in self._db.execute(
                "SELECT run_id, MIN(created_at), MAX(created_at), COUNT(*), SUM(total_tokens), SUM(micro_usd) FROM usage_points GROUP BY run_id"):
            out[run_id] = {"run_id": run_id, "first_call": first, "last_call": last, "calls": 0, "allowed": 0, "trimmed": 0, "blocked": 0,
                           "usage_points": points, "tokens": int(tokens), "micro_usd": int(micro)}
        if self.has_call_log:
            rows = self._db.execute(
                "SELECT run_id, MIN(created_at), MAX(created_at), COUNT(*), SUM(outcome = 'allowed'), SUM(outcome = 'trimmed'), SUM(outcome = 'blocked')"
                " FROM gated_calls GROUP BY run_id")
            for run_id, first, last, calls, allowed, trimmed, blocked in rows:
                run = out.setdefault(run_id, {"run_id": run_id, "first_call": first, "last_call": last, "usage_points": 0, "tokens": 0, "micro_usd": 0})
                run.update(first_call=min(first, run["first_call"]), last_call=max(last, run["last_call"]), calls=calls, allowed=allowed, trimmed=trimmed, blocked=blocked)
        return sorted(out.values(), key=lambda r: (-r["last_call"], r["run_id"]))

    def calls(self, run_id: str) -> list[CallRow]:
        if not self.has_call_log:
            return []
        rows = self._db.execute(
            "SELECT c.call_id, c.run_id, c.created_at, c.outcome, c.reason, c.reasons_json, c.rules_digest, c.limits_json, c.prompt_tokens, c.completion_tokens,"
            " c.request_micro_usd, c.rungs_json, c.kpis_json, c.decision_ms, c.reservation_id, u.prompt_tokens, u.completion_tokens, u.micro_usd"
            " FROM gated_calls c LEFT JOIN usage_points u ON u.reservation_id = c.reservation_id AND c.reservation_id IS NOT NULL"
            " WHERE c.run_id = ? ORDER BY c.id", (run_id,)).fetchall()
        out = []
        for seq, r in enumerate(rows, start=1):
            settled = None if r[15] is None else (int(r[15]), int(r[16]), int(r[17]))
            out.append(CallRow(seq, r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), r[6], json.loads(r[7]), r[8], r[9], r[10], json.loads(r[11]),
                               json.loads(r[12]), r[13], r[14], settled))
        return out

    def run_usage(self, run_id: str) -> tuple[int, int, int]:
        """(tokens, micro-USD, usage points) settled for the run."""
        row = self._db.execute("SELECT COALESCE(SUM(total_tokens), 0), COALESCE(SUM(micro_usd), 0), COUNT(*) FROM usage_points WHERE run_id = ?", (run_id,)).fetchone()
        return int(row[0]), int(row[1]), int(row[2])

    def day_usage(self, day: str) -> tuple[int, int]:
        """(tokens, micro-USD) settled on a UTC day, all runs together (the day cap is shared)."""
        row = self._db.execute("SELECT COALESCE(SUM(total_tokens), 0), COALESCE(SUM(micro_usd), 0) FROM usage_points WHERE day = ?", (day,)).fetchone()
        return int(row[0]), int(row[1])

    def run_days(self, run_id: str) -> list[str]:
        return [r[0] for r in self._db.execute("SELECT DISTINCT day FROM usage_points WHERE run_id = ? ORDER BY day", (run_id,))]

    # ---- aggregates for /metrics --------------------------------------------------------

    def outcome_counts(self) -> list[tuple[str, str, int]]:
        if not self.has_call_log:
            return []
        return [(r, o, n) for r, o, n in self._db.execute("SELECT run_id, outcome, COUNT(*) FROM gated_calls GROUP BY run_id, outcome ORDER BY run_id, outcome")]

    def block_reasons(self) -> list[tuple[str, int]]:
        if not self.has_call_log:
            return []
        return [(r or "unknown", n) for r, n in self._db.execute("SELECT reason, COUNT(*) FROM gated_calls WHERE outcome = 'blocked' GROUP BY reason ORDER BY reason")]

    def usage_by_run(self) -> list[tuple[str, int, int]]:
        return [(r, int(t), int(m)) for r, t, m in self._db.execute("SELECT run_id, SUM(total_tokens), SUM(micro_usd) FROM usage_points GROUP BY run_id ORDER BY run_id")]

    def decision_latency_ms(self, bounds_ms: list[float]) -> tuple[list[int], int, float]:
        """Cumulative counts of decisions at or under each bound, the count and the sum (ms)."""
        if not self.has_call_log:
            return [0] * len(bounds_ms), 0, 0.0
        cols = ", ".join(f"SUM(decision_ms <= {float(b)!r})" for b in bounds_ms)
        row = self._db.execute(f"SELECT {cols}, COUNT(*), COALESCE(SUM(decision_ms), 0) FROM gated_calls WHERE decision_ms IS NOT NULL").fetchone()
        return [int(x or 0) for x in row[:-2]], int(row[-2]), float(row[-1])
