"""The usage ledger: tokens and USD per run and per UTC day, in SQLite (WAL), safe for
several worker processes sharing one daily budget.

Reserve-then-settle. The gate reserves a request's worst case (exact prompt + completion
budget) inside one write transaction (``BEGIN IMMEDIATE``) in which it also reads the
usage and evaluates the policy, so two workers can never both see the same headroom (the
agent's read-then-check overspent, defect 3). Settlement replaces the reservation with the
provider's actual usage. A crashed worker's reservation expires after its TTL and stops
counting. Usage is summed in SQL over the whole run or day (the agent summed only the
latest 5,000 events and undercounted, defect 2). A reservation counts against the UTC
day on which it was made, and so does its settlement.
"""

from __future__ import annotations

import os
import sqlite3
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

from policy_engine.adapters.call_log import CALLS_SCHEMA, GatedCall, insert_call
from policy_engine.errors import Diagnostic, LedgerError
from policy_engine.usage import UsageSnapshot

SCHEMA = """
CREATE TABLE IF NOT EXISTS reservations (
    id TEXT PRIMARY KEY,
    run_id TEXT NOT NULL,
    day TEXT NOT NULL,
    tokens INTEGER NOT NULL,
    micro_usd INTEGER NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('held', 'settled'))
);
CREATE INDEX IF NOT EXISTS reservations_run ON reservations (run_id, state);
CREATE INDEX IF NOT EXISTS reservations_day ON reservations (day, state);
CREATE TABLE IF NOT EXISTS usage_points (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL,
    day TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    total_tokens INTEGER NOT NULL,
    micro_usd INTEGER NOT NULL,
    model TEXT,
    reservation_id TEXT,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS usage_run ON usage_points (run_id);
CREATE INDEX IF NOT EXISTS usage_day ON usage_points (day);
CREATE TABLE IF NOT EXISTS event_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT,
    event_type TEXT NOT NULL,
    payload_json TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS event_log_run ON event_log (run_id, id);
CREATE TABLE IF NOT EXISTS seen_combos (
    run_id TEXT NOT NULL,
    combo TEXT NOT NULL,
    PRIMARY KEY (run_id, combo)
) WITHOUT ROWID;
"""


def utc_day(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%d")


def utc_iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Reservation:
    id: str
    run_id: str
    day: str
    tokens: int
    micro_usd: int
    expires_at: float


class Ledger:
    """One SQLite file. Each process opens its own `Ledger` (connections are not shared
    across processes or threads)."""

    def __init__(self, path: str | os.PathLike[str], *, clock: Callable[[], float] = time.time, busy_timeout_s: float = 30.0) -> None:
        self.path = str(path)
        self.clock = clock
        parent = Path(self.path).parent
        if not parent.is_dir():
            raise LedgerError([Diagnostic("L101", f"the ledger's directory {str(parent)!r} does not exist", hint="create it, or pass another --db path", file=self.path)])
        try:
            self._db = sqlite3.connect(self.path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(SCHEMA)
            self._db.executescript(CALLS_SCHEMA)  # the dashboard's call log (call_log.py)
        except sqlite3.DatabaseError as exc:
            raise LedgerError([Diagnostic("L102", f"cannot open the ledger: {exc}", hint="is it an SQLite file written by policy_engine?", file=self.path)]) from None

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction taken up front (BEGIN IMMEDIATE): readers never block, and
        only one writer at a time reads-and-reserves."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        else:
            self._db.execute("COMMIT")

    # ---- reading ----------------------------------------------------------------------

    def snapshot(self, run_id: str, *, now: float | None = None, db: sqlite3.Connection | None = None) -> UsageSnapshot:
        """Settled usage plus live (unexpired) reservations, for the run and for today."""
        db = db or self._db
        now = self.clock() if now is None else now
        day = utc_day(now)
        run_tokens, run_usd = db.execute("SELECT COALESCE(SUM(total_tokens), 0), COALESCE(SUM(micro_usd), 0) FROM usage_points WHERE run_id = ?", (run_id,)).fetchone()
        day_tokens, day_usd = db.execute("SELECT COALESCE(SUM(total_tokens), 0), COALESCE(SUM(micro_usd), 0) FROM usage_points WHERE day = ?", (day,)).fetchone()
        held_run = db.execute("SELECT COALESCE(SUM(tokens), 0), COALESCE(SUM(micro_usd), 0) FROM reservations WHERE run_id = ? AND state = 'held' AND expires_at > ?", (run_id, now)).fetchone()
        held_day = db.execute("SELECT COALESCE(SUM(tokens), 0), COALESCE(SUM(micro_usd), 0) FROM reservations WHERE day = ? AND state = 'held' AND expires_at > ?", (day, now)).fetchone()
        return UsageSnapshot(
            batch_tokens=run_tokens + held_run[0], day_tokens=day_tokens + held_day[0],
            batch_micro_usd=run_usd + held_run[1], day_micro_usd=day_usd + held_day[1],
        )

    def settled_totals(self, *, run_id: str | None = None, day: str | None = None) -> tuple[int, int, int]:
        """(total tokens, micro-USD, usage points) settled for a run or a day."""
        where, args = ("run_id = ?", (run_id,)) if run_id is not None else ("day = ?", (day,))
        row = self._db.execute(f"SELECT COALESCE(SUM(total_tokens), 0), COALESCE(SUM(micro_usd), 0), COUNT(*) FROM usage_points WHERE {where}", args).fetchone()
        return int(row[0]), int(row[1]), int(row[2])

    def held(self, *, now: float | None = None) -> int:
        now = self.clock() if now is None else now
        return int(self._db.execute("SELECT COUNT(*) FROM reservations WHERE state = 'held' AND expires_at > ?", (now,)).fetchone()[0])

    def run_exists(self, run_id: str) -> bool:
        for table in ("usage_points", "event_log", "reservations"):
            if self._db.execute(f"SELECT 1 FROM {table} WHERE run_id = ? LIMIT 1", (run_id,)).fetchone():
                return True
        return False

    # ---- writing ----------------------------------------------------------------------

    def reserve(self, db: sqlite3.Connection, run_id: str, tokens: int, micro_usd: int, *, now: float, ttl_s: float) -> Reservation:
        """Insert a reservation; call inside `transaction()` after checking the snapshot."""
        res = Reservation(uuid.uuid4().hex, run_id, utc_day(now), tokens, micro_usd, now + ttl_s)
        db.execute("INSERT INTO reservations VALUES (?, ?, ?, ?, ?, ?, ?, 'held')", (res.id, run_id, res.day, tokens, micro_usd, now, res.expires_at))
        return res

    def settle(self, run_id: str, prompt_tokens: int, completion_tokens: int, micro_usd: int, *, model: str | None = None, reservation_id: str | None = None,
               event: tuple[str, str, str] | None = None) -> int:
        """Record actual usage (replacing the reservation, if any) and its ``event``
        (type, payload JSON, created_at) in one transaction. Usage is never dropped: a late
        settlement of an expired reservation still counts, on the day the reservation was
        made. Returns the usage point's id."""
        now = self.clock()
        with self.transaction() as db:
            day = utc_day(now)
            if reservation_id is not None:
                row = db.execute("SELECT day FROM reservations WHERE id = ? AND run_id = ?", (reservation_id, run_id)).fetchone()
                if row is None:
                    raise LedgerError([Diagnostic("L103", f"no reservation {reservation_id!r} for run {run_id!r}", hint="pass the reservation id the gate returned", file=self.path)])
                day = row[0]
                db.execute("UPDATE reservations SET state = 'settled' WHERE id = ?", (reservation_id,))
            cur = db.execute(
                "INSERT INTO usage_points (run_id, day, prompt_tokens, completion_tokens, total_tokens, micro_usd, model, reservation_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (run_id, day, prompt_tokens, completion_tokens, prompt_tokens + completion_tokens, micro_usd, model, reservation_id, now),
            )
            if event is not None:
                self.add_event(run_id, *event, db=db)
            return int(cur.lastrowid or 0)

    def seen_combos(self, run_id: str, db: sqlite3.Connection | None = None) -> frozenset[str]:
        """The novelty KPI's seen set: the combo samples of the run's earlier passed checks
        (the agent re-parsed every earlier event's payload for this, on every call)."""
        rows = (db or self._db).execute("SELECT combo FROM seen_combos WHERE run_id = ?", (run_id,)).fetchall()
        return frozenset(r[0] for r in rows)

    def add_seen(self, run_id: str, combos: list[str], db: sqlite3.Connection | None = None) -> None:
        (db or self._db).executemany("INSERT OR IGNORE INTO seen_combos VALUES (?, ?)", [(run_id, c) for c in combos])

    def add_event(self, run_id: str | None, event_type: str, payload_json: str, created_at: str, db: sqlite3.Connection | None = None) -> None:
        (db or self._db).execute("INSERT INTO event_log (run_id, event_type, payload_json, created_at) VALUES (?, ?, ?, ?)", (run_id, event_type, payload_json, created_at))

    def events(self, run_id: str) -> list[tuple[str, dict[str, Any], str]]:
        import json

        rows = self._db.execute("SELECT event_type, payload_json, created_at FROM event_log WHERE run_id = ? ORDER BY id", (run_id,)).fetchall()
        return [(t, json.loads(p), c) for t, p, c in rows]

    # ---- the call log (dashboards) ------------------------------------------------------

    def record_call(self, call: GatedCall, db: sqlite3.Connection | None = None) -> None:
        """One row per gated call; pass the gate's transaction so the call lands with its
        reservation and events."""
        insert_call(db or self._db, call)
