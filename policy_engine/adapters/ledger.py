"""The usage ledger: tokens and USD per run and per UTC day, in SQLite (WAL), safe for
several worker processes sharing one daily budget.

Reserve-then-settle. The gate evaluates against the usage read without the write lock,
then `admit` reserves the request's worst case (exact prompt + completion budget) inside
one write transaction (``BEGIN IMMEDIATE``) that re-reads the usage and writes only if the
decision's caps still hold on it (else the gate re-evaluates), so two workers can never be
admitted against the same headroom (the agent's read-then-check overspent, defect 3). Settlement replaces the reservation with the
provider's actual usage. A crashed worker's reservation expires after its TTL and stops
counting. Usage is summed in SQL over the whole run or day (the agent summed only the
latest 5,000 events and undercounted, defect 2). A reservation counts against the UTC
day on which it was made, and so does its settlement.

Leases (docs/reservations.md): a reservation is a lease the caller renews (`renew`) while
its LLM call runs, so the TTL can stay short (a crashed worker's hold is released soon)
without a slow call losing its hold. A settlement is keyed by its reservation: repeated
with the same numbers it is a no-op, with other numbers a coded error (L106). Usage is
never dropped; a settlement that arrives after its reservation expired (its room may have
been given to another caller) or that exceeds what was reserved is recorded as a
`budget.overspend` event carrying the amount, in the settlement's transaction.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from policy_engine.adapters.call_log import CALLS_SCHEMA, GatedCall, insert_call
from policy_engine.errors import Diagnostic, LedgerError
from policy_engine.usage import UsageSnapshot

if TYPE_CHECKING:
    from policy_engine.adapters.admission import Admission

#: the overspend callback of `settle`: called with the `budget.overspend` payload (None when
#: the reservation covered the settlement), returns the event rows (type, payload JSON,
#: created_at) to write in the settlement's transaction
SettleEvents = Callable[[dict[str, Any] | None], list[tuple[str, str, str]]]

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


# The largest token quantity the ledger accepts in one reservation or usage point. No LLM
# call comes near it (the largest context windows are ~10**7 tokens), and sums of 10**3
# such points still fit SQLite's and PostgreSQL's signed 64-bit integers (2**63 ~ 9.2e18).
MAX_TOKENS = 10**15
# Micro-USD bound: $10**12 for one call; below 2**63 with the same headroom.
MAX_MICRO_USD = 10**18
MAX_RUN_ID = 200  # the HTTP route's run id limit


# Migration n brings the schema from version n-1 to n: 1 the ledger, 2 the dashboard's
# call log (call_log.py). Each script is idempotent (IF NOT EXISTS), so a ledger written
# before versioning (tables, no schema_version rows) is adopted, not recreated.
SQLITE_MIGRATIONS: tuple[str, ...] = (SCHEMA, CALLS_SCHEMA)
SQLITE_SCHEMA_VERSION = len(SQLITE_MIGRATIONS)  # add a migration when a table changes shape


class LedgerUnavailable(LedgerError):
    """The ledger cannot be reached right now (server restarting, connection lost, lock
    wait over). Nothing half-done was kept: retry the call."""

    retryable = True


def schema_too_new(found: int, supported: int, where: str) -> LedgerError:
    return LedgerError(
        [
            Diagnostic(
                "L112",
                f"the ledger's schema is version {found}; this engine understands up to {supported}",
                hint="upgrade policy_engine on this machine (a newer engine migrated the ledger); it will not write to a schema it does not know",
                file=where,
            )
        ]
    )


def utc_day(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d")


def utc_iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Reservation:
    id: str
    run_id: str
    day: str
    tokens: int
    micro_usd: int
    expires_at: float


@dataclass(frozen=True)
class KnownUsage:
    """A run's and its day's usage as the ledger saw it at ``at`` (ledger clock) on ``day``:
    what a settlement hands back, so the gate's next check for the run need not read it."""

    usage: UsageSnapshot
    day: str
    at: float


@dataclass(frozen=True)
class Settlement:
    """What one `settle` did. ``repeated``: the reservation was already settled with these
    numbers, nothing was written. ``overspend``: the payload of the `budget.overspend`
    event written with it (None when the settlement stayed inside a live reservation)."""

    usage_id: int
    run_id: str
    day: str
    prompt_tokens: int
    completion_tokens: int
    micro_usd: int
    reservation_id: str | None
    repeated: bool = False
    overspend: dict[str, Any] | None = field(default=None)
    #: the run's and the day's usage right after this settlement, when the backend reads it
    #: with the settlement (PostgreSQL: in the same round trip); None otherwise
    usage: KnownUsage | None = None


def new_reservation(run_id: str, tokens: int, micro_usd: int, *, now: float, ttl_s: float) -> Reservation:
    """A reservation to write: checked quantities, a fresh id, counted on ``now``'s UTC day."""
    check_quantity("reserved tokens", tokens)
    check_quantity("reserved micro-USD", micro_usd, MAX_MICRO_USD)
    return Reservation(uuid.uuid4().hex, run_id, utc_day(now), tokens, micro_usd, now + ttl_s)


def check_run_id(run_id: Any) -> str:
    if not isinstance(run_id, str) or not 0 < len(run_id) <= MAX_RUN_ID:
        raise LedgerError(
            [
                Diagnostic(
                    "L109",
                    f"run id must be a non-empty string of at most {MAX_RUN_ID} characters, got {_short(run_id)}",
                    hint="pass the orchestrator's run (batch) id, e.g. 'run-2026-09-21-a'",
                )
            ]
        )
    return run_id


def check_quantity(name: str, value: Any, bound: int = MAX_TOKENS) -> int:
    """Every quantity the ledger stores: an integer (not a bool), 0 <= value <= bound."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise LedgerError(
            [
                Diagnostic(
                    "L104",
                    f"{name} must be a whole number >= 0, got {_short(value)}",
                    hint="pass the provider's usage object as returned",
                )
            ]
        )
    if value > bound:
        raise LedgerError(
            [
                Diagnostic(
                    "L108",
                    f"{name} {value} is over the ledger's bound of {bound}",
                    hint=f"no LLM call uses more than {bound} tokens; check the caller's arithmetic",
                )
            ]
        )
    return value


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def overspend_payload(
    reason: str,
    *,
    reservation_id: str | None,
    day: str,
    tokens: int,
    micro_usd: int,
    reserved_tokens: int,
    expires_at: float,
    settled_at: float,
) -> dict[str, Any]:
    """The `budget.overspend` payload: ``tokens`` / ``micro_usd`` are the amount that went
    past the policy's accounting: the whole settlement when the reservation had expired
    (its room was free for others), the excess over the reservation otherwise."""
    return {
        "reason": reason,
        "reservation_id": reservation_id,
        "day": day,
        "tokens": tokens,
        "micro_usd": micro_usd,
        "reserved_tokens": reserved_tokens,
        "expired_at": utc_iso(expires_at),
        "settled_at": utc_iso(settled_at),
        "late_by_s": round(max(0.0, settled_at - expires_at), 3),
    }


class Ledger:
    """One SQLite file. Each process opens its own `Ledger` (connections are not shared
    across processes or threads)."""

    def __init__(
        self, path: str | os.PathLike[str], *, clock: Callable[[], float] = time.time, busy_timeout_s: float = 30.0
    ) -> None:
        self.path = str(path)
        self.url = "sqlite:///" + os.path.abspath(self.path)
        self.clock = clock
        # one connection per Ledger: a lease's heartbeat thread and the caller take turns
        self._lock = threading.RLock()
        parent = Path(self.path).parent
        if not parent.is_dir():
            raise LedgerError(
                [
                    Diagnostic(
                        "L101",
                        f"the ledger's directory {str(parent)!r} does not exist",
                        hint="create it, or pass another --db path",
                        file=self.path,
                    )
                ]
            )
        try:
            self._db = sqlite3.connect(self.path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise LedgerError(
                [
                    Diagnostic(
                        "L102",
                        f"cannot open the ledger: {exc}",
                        hint="is it an SQLite file written by policy_engine?",
                        file=self.path,
                    )
                ]
            ) from None

    def close(self) -> None:
        self._db.close()

    def _migrate(self) -> None:
        """Create the schema on first use and record its version; refuse a newer one
        (L112) before touching it."""
        self._db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        found = self._db.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()[0]
        if found > SQLITE_SCHEMA_VERSION:
            self._db.close()
            raise schema_too_new(found, SQLITE_SCHEMA_VERSION, self.path)
        for version in range(1, SQLITE_SCHEMA_VERSION + 1):
            self._db.executescript(SQLITE_MIGRATIONS[version - 1])  # idempotent: re-run to adopt pre-versioning ledgers
            if version > found:
                self._db.execute("INSERT INTO schema_version VALUES (?)", (version,))

    def schema_version(self) -> int:
        return int(self._db.execute("SELECT MAX(version) FROM schema_version").fetchone()[0])

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction taken up front (BEGIN IMMEDIATE): readers never block, and
        only one writer at a time reads-and-reserves. SQLite's own refusals of a value
        (64-bit overflow, a constraint) become the engine's typed error L110."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise LedgerUnavailable(
                    [
                        Diagnostic(
                            "L111",
                            f"the ledger is unavailable: {exc}",
                            hint="another process held the write lock past the busy timeout; retry the call",
                            file=self.path,
                        )
                    ]
                ) from None
            try:
                yield self._db
            except (OverflowError, sqlite3.IntegrityError) as exc:
                self._db.execute("ROLLBACK")
                raise LedgerError(
                    [
                        Diagnostic(
                            "L110",
                            f"the ledger refused the write: {exc}",
                            hint="a quantity or id is out of range; see the ledger bounds in docs/reservations.md",
                            file=self.path,
                        )
                    ]
                ) from None
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
        run_tokens, run_usd = db.execute(
            "SELECT COALESCE(SUM(total_tokens), 0), COALESCE(SUM(micro_usd), 0) FROM usage_points WHERE run_id = ?",
            (run_id,),
        ).fetchone()
        day_tokens, day_usd = db.execute(
            "SELECT COALESCE(SUM(total_tokens), 0), COALESCE(SUM(micro_usd), 0) FROM usage_points WHERE day = ?", (day,)
        ).fetchone()
        held_run = db.execute(
            "SELECT COALESCE(SUM(tokens), 0), COALESCE(SUM(micro_usd), 0) FROM reservations WHERE run_id = ? AND state = 'held' AND expires_at > ?",
            (run_id, now),
        ).fetchone()
        held_day = db.execute(
            "SELECT COALESCE(SUM(tokens), 0), COALESCE(SUM(micro_usd), 0) FROM reservations WHERE day = ? AND state = 'held' AND expires_at > ?",
            (day, now),
        ).fetchone()
        return UsageSnapshot(
            batch_tokens=run_tokens + held_run[0],
            day_tokens=day_tokens + held_day[0],
            batch_micro_usd=run_usd + held_run[1],
            day_micro_usd=day_usd + held_day[1],
        )

    def settled_totals(self, *, run_id: str | None = None, day: str | None = None) -> tuple[int, int, int]:
        """(total tokens, micro-USD, usage points) settled for a run or a day."""
        where, args = ("run_id = ?", (run_id,)) if run_id is not None else ("day = ?", (day,))
        row = self._db.execute(
            f"SELECT COALESCE(SUM(total_tokens), 0), COALESCE(SUM(micro_usd), 0), COUNT(*) FROM usage_points WHERE {where}",
            args,
        ).fetchone()
        return int(row[0]), int(row[1]), int(row[2])

    def held(self, *, now: float | None = None) -> int:
        now = self.clock() if now is None else now
        return int(
            self._db.execute(
                "SELECT COUNT(*) FROM reservations WHERE state = 'held' AND expires_at > ?", (now,)
            ).fetchone()[0]
        )

    def run_exists(self, run_id: str) -> bool:
        for table in ("usage_points", "event_log", "reservations"):
            if self._db.execute(f"SELECT 1 FROM {table} WHERE run_id = ? LIMIT 1", (run_id,)).fetchone():
                return True
        return False

    def read_usage(
        self, run_id: str, *, now: float | None = None, db: sqlite3.Connection | None = None
    ) -> tuple[UsageSnapshot, frozenset[str]]:
        """The usage and seen combos a gate check evaluates against, read in one read
        transaction without the write lock (WAL readers never wait for the writer), so the
        evaluation runs outside it; `admit` re-checks the caps under the lock."""
        if db is not None:
            return self.snapshot(run_id, now=now, db=db), self.seen_combos(run_id, db)
        with self._lock:
            self._db.execute("BEGIN")
            try:
                return self.snapshot(run_id, now=now), self.seen_combos(run_id)
            finally:
                self._db.execute("COMMIT")

    @contextmanager
    def admission_lock(self, run_id: str, now: float) -> Iterator[sqlite3.Connection]:
        """A transaction in which no other caller can admit against this run or day (the
        gate's fallback after repeated conflicts: read, evaluate and admit under it)."""
        with self.transaction() as db:
            yield db

    def admit(self, admission: Admission, db: sqlite3.Connection | None = None) -> UsageSnapshot | None:
        """Write one gate check (see `admission.Admission`) in one write transaction: re-read
        the usage under the write lock and, if the reservation no longer fits the caps,
        write nothing and return that usage; else insert the reservation and the call's
        rows and return None."""
        if db is None:
            with self.transaction() as conn:
                return self.admit(admission, conn)
        a, res = admission, admission.reservation
        if res is not None:
            usage = self.snapshot(a.run_id, now=a.now, db=db)
            if not a.caps.admit(usage, res.tokens, res.micro_usd):
                return usage
            db.execute(
                "INSERT INTO reservations VALUES (?, ?, ?, ?, ?, ?, ?, 'held')",
                (res.id, a.run_id, res.day, res.tokens, res.micro_usd, a.now, res.expires_at),
            )
        db.executemany(
            "INSERT INTO event_log (run_id, event_type, payload_json, created_at) VALUES (?, ?, ?, ?)",
            [(a.run_id, kind, payload, a.created_at) for kind, payload in a.events],
        )
        if a.call is not None:
            self.record_call(a.call, db=db)
        if a.combos:
            self.add_seen(a.run_id, list(a.combos), db=db)
        return None

    # ---- writing ----------------------------------------------------------------------

    def reserve(
        self, db: sqlite3.Connection, run_id: str, tokens: int, micro_usd: int, *, now: float, ttl_s: float
    ) -> Reservation:
        """Insert a reservation; call inside `transaction()` after checking the snapshot."""
        res = new_reservation(run_id, tokens, micro_usd, now=now, ttl_s=ttl_s)
        db.execute(
            "INSERT INTO reservations VALUES (?, ?, ?, ?, ?, ?, ?, 'held')",
            (res.id, run_id, res.day, tokens, micro_usd, now, res.expires_at),
        )
        return res

    def renew(self, run_id: str, reservation_id: str, *, ttl_s: float) -> float:
        """Extend a live reservation to now + ``ttl_s`` (a lease heartbeat). Returns the new
        expiry. A reservation that has already expired is not revived (its room may have
        been given away: L107); one already settled needs no renewal (L107)."""
        now = self.clock()
        with self.transaction() as db:
            row = db.execute(
                "SELECT state, expires_at FROM reservations WHERE id = ? AND run_id = ?", (reservation_id, run_id)
            ).fetchone()
            if row is None:
                raise self._unknown(reservation_id, run_id)
            state, expires_at = row
            _check_renewable(reservation_id, state, expires_at, now, self.path)
            new_expiry = float(max(expires_at, now + ttl_s))
            db.execute("UPDATE reservations SET expires_at = ? WHERE id = ?", (new_expiry, reservation_id))
        return new_expiry

    def settle(
        self,
        run_id: str,
        prompt_tokens: int,
        completion_tokens: int,
        micro_usd: int,
        *,
        model: str | None = None,
        reservation_id: str | None = None,
        event: tuple[str, str, str] | None = None,
        events: SettleEvents | None = None,
    ) -> Settlement:
        """Record actual usage (replacing the reservation, if any) and its events in one
        transaction: ``event`` (type, payload JSON, created_at), or ``events``, called
        inside the transaction with the overspend payload (so a `budget.overspend` event
        lands with it). Usage is never dropped: a late settlement of an expired reservation
        still counts, on the day the reservation was made, and is reported as overspend.
        A repeat of a settled reservation with the same numbers changes nothing."""
        check_quantity("prompt_tokens", prompt_tokens)
        check_quantity("completion_tokens", completion_tokens)
        check_quantity("micro_usd", micro_usd, MAX_MICRO_USD)
        now = self.clock()
        with self.transaction() as db:
            day, overspend = utc_day(now), None
            if reservation_id is not None:
                row = db.execute(
                    "SELECT day, state, tokens, micro_usd, expires_at FROM reservations WHERE id = ? AND run_id = ?",
                    (reservation_id, run_id),
                ).fetchone()
                if row is None:
                    raise self._unknown(reservation_id, run_id)
                day, state, reserved, reserved_usd, expires_at = row
                if state == "settled":
                    prior = db.execute(
                        "SELECT id, prompt_tokens, completion_tokens, micro_usd, model FROM usage_points WHERE reservation_id = ?",
                        (reservation_id,),
                    ).fetchone()
                    return _repeat(
                        prior,
                        run_id,
                        day,
                        prompt_tokens,
                        completion_tokens,
                        micro_usd,
                        model,
                        reservation_id,
                        self.path,
                    )
                overspend = _overspend(
                    reservation_id,
                    day,
                    prompt_tokens + completion_tokens,
                    micro_usd,
                    reserved,
                    reserved_usd,
                    expires_at,
                    now,
                )
                db.execute("UPDATE reservations SET state = 'settled' WHERE id = ?", (reservation_id,))
            cur = db.execute(
                "INSERT INTO usage_points (run_id, day, prompt_tokens, completion_tokens, total_tokens, micro_usd, model, reservation_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    run_id,
                    day,
                    prompt_tokens,
                    completion_tokens,
                    prompt_tokens + completion_tokens,
                    micro_usd,
                    model,
                    reservation_id,
                    now,
                ),
            )
            done = Settlement(
                int(cur.lastrowid or 0),
                run_id,
                day,
                prompt_tokens,
                completion_tokens,
                micro_usd,
                reservation_id,
                overspend=overspend,
            )
            rows = ([event] if event is not None else []) + (events(overspend) if events is not None else [])
            for row in rows:
                self.add_event(run_id, *row, db=db)
            return done

    def _unknown(self, reservation_id: str, run_id: str) -> LedgerError:
        return LedgerError(
            [
                Diagnostic(
                    "L103",
                    f"no reservation {reservation_id!r} for run {run_id!r}",
                    hint="pass the reservation id the gate returned",
                    file=self.path,
                )
            ]
        )

    def seen_combos(self, run_id: str, db: sqlite3.Connection | None = None) -> frozenset[str]:
        """The novelty KPI's seen set: the combo samples of the run's earlier passed checks
        (the agent re-parsed every earlier event's payload for this, on every call)."""
        rows = (db or self._db).execute("SELECT combo FROM seen_combos WHERE run_id = ?", (run_id,)).fetchall()
        return frozenset(r[0] for r in rows)

    def add_seen(self, run_id: str, combos: list[str], db: sqlite3.Connection | None = None) -> None:
        (db or self._db).executemany("INSERT OR IGNORE INTO seen_combos VALUES (?, ?)", [(run_id, c) for c in combos])

    def add_event(
        self,
        run_id: str | None,
        event_type: str,
        payload_json: str,
        created_at: str,
        db: sqlite3.Connection | None = None,
    ) -> None:
        (db or self._db).execute(
            "INSERT INTO event_log (run_id, event_type, payload_json, created_at) VALUES (?, ?, ?, ?)",
            (run_id, event_type, payload_json, created_at),
        )

    def events(self, run_id: str) -> list[tuple[str, dict[str, Any], str]]:
        """The run's telemetry events (the agent's event names), oldest first; the replay
        material the gate also keeps in event_log (`budget.call_input`) is not telemetry."""
        import json

        rows = self._db.execute(
            "SELECT event_type, payload_json, created_at FROM event_log WHERE run_id = ? AND event_type <> 'budget.call_input' ORDER BY id",
            (run_id,),
        ).fetchall()
        return [(t, json.loads(p), c) for t, p, c in rows]

    # ---- the call log (dashboards) ------------------------------------------------------

    def record_call(self, call: GatedCall, db: sqlite3.Connection | None = None) -> None:
        """One row per gated call; pass the gate's transaction so the call lands with its
        reservation and events."""
        insert_call(db or self._db, call)


def _check_renewable(reservation_id: str, state: str, expires_at: float, now: float, where: str) -> None:
    if state == "settled":
        raise LedgerError(
            [
                Diagnostic(
                    "L107",
                    f"reservation {reservation_id!r} is already settled",
                    hint="renew only while the LLM call runs; stop the heartbeat after record_usage",
                    file=where,
                )
            ]
        )
    if expires_at <= now:
        raise LedgerError(
            [
                Diagnostic(
                    "L107",
                    f"reservation {reservation_id!r} expired {now - expires_at:.1f} s ago and cannot be renewed",
                    hint="renew well inside the TTL (gate.lease renews every TTL/3); settle it anyway: the usage is recorded as overspend",
                    file=where,
                )
            ]
        )


def _overspend(
    reservation_id: str,
    day: str,
    tokens: int,
    micro_usd: int,
    reserved: int,
    reserved_usd: int,
    expires_at: float,
    now: float,
) -> dict[str, Any] | None:
    if expires_at <= now:
        return overspend_payload(
            "settled_after_expiry",
            reservation_id=reservation_id,
            day=day,
            tokens=tokens,
            micro_usd=micro_usd,
            reserved_tokens=reserved,
            expires_at=expires_at,
            settled_at=now,
        )
    if tokens > reserved:
        return overspend_payload(
            "settled_over_reservation",
            reservation_id=reservation_id,
            day=day,
            tokens=tokens - reserved,
            micro_usd=max(0, micro_usd - reserved_usd),
            reserved_tokens=reserved,
            expires_at=expires_at,
            settled_at=now,
        )
    return None


def _repeat(
    prior: Any,
    run_id: str,
    day: str,
    prompt: int,
    completion: int,
    micro_usd: int,
    model: str | None,
    reservation_id: str,
    where: str,
) -> Settlement:
    """A second settlement of one reservation: the same numbers are a retry (no-op), other
    numbers a conflict the caller must resolve (L106)."""
    if prior is None or tuple(prior[1:]) != (prompt, completion, micro_usd, model):
        had = (
            "no usage point"
            if prior is None
            else f"{prior[1]}+{prior[2]} tokens, {prior[3]} micro-USD, model {prior[4]!r}"
        )
        raise LedgerError(
            [
                Diagnostic(
                    "L106",
                    f"reservation {reservation_id!r} is already settled ({had}); this settlement says {prompt}+{completion} tokens, {micro_usd} micro-USD, model {model!r}",
                    hint="settle each reservation once; a retry must repeat the same numbers",
                    file=where,
                )
            ]
        )
    return Settlement(int(prior[0]), run_id, day, prompt, completion, micro_usd, reservation_id, repeated=True)
