"""Read-only access to a ledger for the dashboards, the metrics and the static reports.

SQLite (`LedgerReader`) is opened through the URI ``mode=ro``: the reader can never create
a ledger, create its tables, switch it to WAL or write a byte, whatever file it is pointed
at (the old server opened a full `Ledger`, which created tables in any SQLite file and
recreated a ledger deleted while serving). PostgreSQL (`PgLedgerReader`,
ledger_pg_reader.py) reads in a read-only transaction and never migrates. A file or
database that is not a ledger is refused with a code, not served empty. One reader per
request: a reader never outlives the ledger it reads.

The queries are written once, in SQL both backends run (``?`` markers, which the
PostgreSQL reader turns into psycopg's); `open_reader` picks the backend from the URL.
"""

from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from policy_engine.adapters.ledger import SQLITE_SCHEMA_VERSION, schema_too_new
from policy_engine.adapters.ledger_url import sqlite_path
from policy_engine.errors import Diagnostic, LedgerError

LEDGER_TABLES = frozenset({"reservations", "usage_points", "event_log"})


def not_a_ledger(why: str, where: str) -> LedgerError:
    return LedgerError(
        [
            Diagnostic(
                "L116",
                f"not a ledger: {why}",
                hint="pass the ledger the budget gate writes (--ledger: a SQLite path or a postgresql:// URL)",
                file=where,
            )
        ]
    )


def open_reader(url: str | os.PathLike[str]) -> LedgerReader:
    """A read-only reader of the ledger a path or URL names (it must exist: L115 for a
    missing SQLite file, L111 for an unreachable server, L116 for something else)."""
    path = sqlite_path(url)  # L113 for a scheme we do not know
    if path is not None:
        return LedgerReader(path)
    try:
        from policy_engine.adapters.ledger_pg_reader import PgLedgerReader
    except ImportError:
        raise LedgerError(
            [
                Diagnostic(
                    "L113",
                    "the PostgreSQL ledger needs psycopg 3",
                    hint="pip install 'policy-engine[postgres]'",
                    file=str(url),
                )
            ]
        ) from None
    return PgLedgerReader(str(url))


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
        return {
            k: (
                {f: v for f, v in info.items() if f not in ("actual", "verdict")}
                if isinstance(info, dict) and "verdict" in info
                else info
            )
            for k, info in self.limits.items()
        }


class LedgerReader:
    """The SQLite reader, and the queries both backends share (see `PgLedgerReader`)."""

    schema_supported = SQLITE_SCHEMA_VERSION

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self.label = os.path.basename(self.path)
        if not Path(self.path).is_file():
            raise LedgerError(
                [
                    Diagnostic(
                        "L115",
                        f"no ledger at {self.path!r}",
                        hint="run the gate or `policy demo-run` first, or pass the right --ledger",
                        file=self.path,
                    )
                ]
            )
        uri = "file:" + quote(os.path.abspath(self.path)) + "?mode=ro"
        try:
            self._db = sqlite3.connect(uri, uri=True, check_same_thread=False)
            tables = {r[0] for r in self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        except sqlite3.DatabaseError as exc:
            raise not_a_ledger(str(exc), self.path) from None
        self._adopt(tables)

    def _adopt(self, tables: set[str]) -> None:
        """Refuse what is not a ledger (L116) or is newer than this engine (L112)."""
        missing = LEDGER_TABLES - tables
        if missing:
            self.close()
            raise not_a_ledger(f"no {', '.join(sorted(missing))} table", self.path)
        version = (
            self._one("SELECT COALESCE(MAX(version), 0) FROM schema_version")[0] if "schema_version" in tables else 0
        )
        if version > self.schema_supported:
            self.close()
            raise schema_too_new(version, self.schema_supported, self.path)
        self.schema_version = int(version)
        self.has_call_log = "gated_calls" in tables

    def _all(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return self._db.execute(sql, args).fetchall()

    def _one(self, sql: str, args: tuple[Any, ...] = ()) -> tuple[Any, ...]:
        rows = self._all(sql, args)
        return rows[0] if rows else ()

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> LedgerReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call_input(self, call_id: str) -> dict[str, Any] | None:
        """The inputs the gate recorded for one call (pack, idea, seen combos, decision), or
        None when the ledger holds no such call."""
        pattern = "%" + json.dumps({"call_id": call_id})[1:-1] + "%"
        rows = self._all(
            "SELECT payload_json FROM event_log WHERE event_type = 'budget.call_input' AND payload_json LIKE ? ORDER BY id",
            (pattern,),
        )
        for (payload,) in rows:
            doc = json.loads(payload)
            if isinstance(doc, dict) and doc.get("call_id") == call_id:
                return doc
        return None

    def run_exists(self, run_id: str) -> bool:
        tables = ["usage_points", "event_log", "reservations"] + (["gated_calls"] if self.has_call_log else [])
        return any(self._all(f"SELECT 1 FROM {t} WHERE run_id = ? LIMIT 1", (run_id,)) for t in tables)

    def runs(self) -> list[dict[str, Any]]:
        """Every run with gated calls or usage, newest activity first."""
        out: dict[str, dict[str, Any]] = {}
        for run_id, first, last, points, tokens, micro in self._all(
            "SELECT run_id, MIN(created_at), MAX(created_at), COUNT(*), SUM(total_tokens), SUM(micro_usd) FROM usage_points GROUP BY run_id"
        ):
            out[run_id] = {
                "run_id": run_id,
                "first_call": first,
                "last_call": last,
                "calls": 0,
                "allowed": 0,
                "trimmed": 0,
                "blocked": 0,
                "usage_points": int(points),
                "tokens": int(tokens),
                "micro_usd": int(micro),
            }
        if self.has_call_log:
            rows = self._all(
                "SELECT run_id, MIN(created_at), MAX(created_at), COUNT(*), "
                + ", ".join(_count_if(f"outcome = '{o}'") for o in ("allowed", "trimmed", "blocked"))
                + " FROM gated_calls GROUP BY run_id"
            )
            for run_id, first, last, calls, allowed, trimmed, blocked in rows:
                run = out.setdefault(
                    run_id,
                    {
                        "run_id": run_id,
                        "first_call": first,
                        "last_call": last,
                        "usage_points": 0,
                        "tokens": 0,
                        "micro_usd": 0,
                    },
                )
                run.update(
                    first_call=min(first, run["first_call"]),
                    last_call=max(last, run["last_call"]),
                    calls=int(calls),
                    allowed=int(allowed),
                    trimmed=int(trimmed),
                    blocked=int(blocked),
                )
        return sorted(out.values(), key=lambda r: (-r["last_call"], r["run_id"]))

    def calls(self, run_id: str) -> list[CallRow]:
        if not self.has_call_log:
            return []
        rows = self._all(
            "SELECT c.call_id, c.run_id, c.created_at, c.outcome, c.reason, c.reasons_json, c.rules_digest, c.limits_json, c.prompt_tokens, c.completion_tokens,"
            " c.request_micro_usd, c.rungs_json, c.kpis_json, c.decision_ms, c.reservation_id, u.prompt_tokens, u.completion_tokens, u.micro_usd"
            " FROM gated_calls c LEFT JOIN usage_points u ON u.reservation_id = c.reservation_id AND c.reservation_id IS NOT NULL"
            " WHERE c.run_id = ? ORDER BY c.id",
            (run_id,),
        )
        out = []
        for seq, r in enumerate(rows, start=1):
            settled = None if r[15] is None else (int(r[15]), int(r[16]), int(r[17]))
            out.append(
                CallRow(
                    seq,
                    r[0],
                    r[1],
                    r[2],
                    r[3],
                    r[4],
                    json.loads(r[5]),
                    r[6],
                    json.loads(r[7]),
                    r[8],
                    r[9],
                    r[10],
                    json.loads(r[11]),
                    json.loads(r[12]),
                    r[13],
                    r[14],
                    settled,
                )
            )
        return out

    def run_usage(self, run_id: str) -> tuple[int, int, int]:
        """(tokens, micro-USD, usage points) settled for the run."""
        row = self._one(
            "SELECT COALESCE(SUM(total_tokens), 0), COALESCE(SUM(micro_usd), 0), COUNT(*) FROM usage_points WHERE run_id = ?",
            (run_id,),
        )
        return int(row[0]), int(row[1]), int(row[2])

    def day_usage(self, day: str) -> tuple[int, int]:
        """(tokens, micro-USD) settled on a UTC day, all runs together (the day cap is shared)."""
        row = self._one(
            "SELECT COALESCE(SUM(total_tokens), 0), COALESCE(SUM(micro_usd), 0) FROM usage_points WHERE day = ?", (day,)
        )
        return int(row[0]), int(row[1])

    def run_days(self, run_id: str) -> list[str]:
        return [
            r[0] for r in self._all("SELECT DISTINCT day FROM usage_points WHERE run_id = ? ORDER BY day", (run_id,))
        ]

    def overspend(self, run_id: str) -> dict[str, int]:
        """The run's `budget.overspend` events: settlements its reservations did not cover."""
        rows = self._all(
            "SELECT payload_json FROM event_log WHERE run_id = ? AND event_type = 'budget.overspend' ORDER BY id",
            (run_id,),
        )
        payloads = [json.loads(r[0]) for r in rows]
        return {
            "events": len(payloads),
            "tokens": sum(int(p.get("tokens") or 0) for p in payloads),
            "micro_usd": sum(int(p.get("micro_usd") or 0) for p in payloads),
        }

    def live_reserved(self, run_id: str, now: float) -> int:
        """Tokens held by the run's unexpired, unsettled reservations at ``now``."""
        row = self._one(
            "SELECT COALESCE(SUM(tokens), 0) FROM reservations WHERE run_id = ? AND state = 'held' AND expires_at > ?",
            (run_id, now),
        )
        return int(row[0])

    # ---- aggregates for /metrics --------------------------------------------------------

    def outcome_counts(self) -> list[tuple[str, str, int]]:
        if not self.has_call_log:
            return []
        return [
            (r, o, int(n))
            for r, o, n in self._all(
                "SELECT run_id, outcome, COUNT(*) FROM gated_calls GROUP BY run_id, outcome ORDER BY run_id, outcome"
            )
        ]

    def block_reasons(self) -> list[tuple[str, int]]:
        if not self.has_call_log:
            return []
        return [
            (r or "unknown", int(n))
            for r, n in self._all(
                "SELECT reason, COUNT(*) FROM gated_calls WHERE outcome = 'blocked' GROUP BY reason ORDER BY reason"
            )
        ]

    def usage_by_run(self) -> list[tuple[str, int, int]]:
        return [
            (r, int(t), int(m))
            for r, t, m in self._all(
                "SELECT run_id, SUM(total_tokens), SUM(micro_usd) FROM usage_points GROUP BY run_id ORDER BY run_id"
            )
        ]

    def decision_latency_ms(self, bounds_ms: list[float]) -> tuple[list[int], int, float]:
        """Cumulative counts of decisions at or under each bound, the count and the sum (ms)."""
        if not self.has_call_log:
            return [0] * len(bounds_ms), 0, 0.0
        cols = ", ".join(_count_if(f"decision_ms <= {float(b)!r}") for b in bounds_ms)
        row = self._one(
            f"SELECT {cols}, COUNT(*), COALESCE(SUM(decision_ms), 0) FROM gated_calls WHERE decision_ms IS NOT NULL"
        )
        return [int(x or 0) for x in row[:-2]], int(row[-2]), float(row[-1])


def _count_if(condition: str) -> str:
    """A count of the rows meeting ``condition`` in SQL both backends run (PostgreSQL
    cannot SUM a boolean)."""
    return f"COALESCE(SUM(CASE WHEN {condition} THEN 1 ELSE 0 END), 0)"
