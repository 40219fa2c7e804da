"""The usage ledger on PostgreSQL (psycopg 3 + psycopg_pool): one daily cap shared by
agents on many machines.

Same concepts and methods as the SQLite `Ledger` (reservations, usage points, event log,
seen combos), so the gate runs unchanged on either. Isolation (docs/postgresql-ledger.md):
READ COMMITTED plus a row lock on the day's counter row and then the run's
(``SELECT ... FOR UPDATE``), taken first in every transaction that reads headroom or
changes usage. All checks and settlements of one UTC day are serialised on that row,
exactly like SQLite's single writer, so no two callers see the same headroom; settled
totals live in the counter rows (O(1) to read), live reservations are summed from a
partial index. Lock order is always day, then run: no deadlock cycle is possible.

Every failure to reach the server (refused, reset, restarted, pool timeout) becomes the
retryable `LedgerUnavailable` (L111); a settlement retried after it is safe, because
settlement is idempotent per reservation.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from policy_engine.adapters.call_log import GatedCall, insert_call
from policy_engine.adapters.ledger import (
    MAX_MICRO_USD,
    LedgerUnavailable,
    Reservation,
    Settlement,
    _check_renewable,
    _overspend,
    _repeat,
    check_quantity,
    schema_too_new,
    utc_day,
)
from policy_engine.errors import Diagnostic, LedgerError
from policy_engine.usage import UsageSnapshot


def _aggregate(row: tuple[Any, ...] | None) -> tuple[Any, ...]:
    """An aggregate query (COUNT, SUM, MAX) always returns one row; psycopg types `fetchone` as optional."""
    if row is None:
        raise RuntimeError("an aggregate query returned no row")
    return row


# Migration n brings the schema from version n-1 to n. Applied once, in order, under an
# advisory lock, each in its own transaction with its schema_version row.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE day_totals (
        day TEXT PRIMARY KEY,
        tokens BIGINT NOT NULL DEFAULT 0, micro_usd BIGINT NOT NULL DEFAULT 0, points BIGINT NOT NULL DEFAULT 0
    );
    CREATE TABLE run_totals (
        run_id TEXT PRIMARY KEY,
        tokens BIGINT NOT NULL DEFAULT 0, micro_usd BIGINT NOT NULL DEFAULT 0, points BIGINT NOT NULL DEFAULT 0
    );
    CREATE TABLE reservations (
        id TEXT PRIMARY KEY,
        run_id TEXT NOT NULL,
        day TEXT NOT NULL,
        tokens BIGINT NOT NULL CHECK (tokens >= 0),
        micro_usd BIGINT NOT NULL CHECK (micro_usd >= 0),
        created_at DOUBLE PRECISION NOT NULL,
        expires_at DOUBLE PRECISION NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('held', 'settled'))
    );
    CREATE INDEX reservations_day_held ON reservations (day, expires_at) INCLUDE (tokens, micro_usd) WHERE state = 'held';
    CREATE INDEX reservations_run_held ON reservations (run_id, expires_at) INCLUDE (tokens, micro_usd) WHERE state = 'held';
    CREATE TABLE usage_points (
        id BIGSERIAL PRIMARY KEY,
        run_id TEXT NOT NULL,
        day TEXT NOT NULL,
        prompt_tokens BIGINT NOT NULL CHECK (prompt_tokens >= 0),
        completion_tokens BIGINT NOT NULL CHECK (completion_tokens >= 0),
        total_tokens BIGINT NOT NULL,
        micro_usd BIGINT NOT NULL,
        model TEXT,
        reservation_id TEXT UNIQUE,
        created_at DOUBLE PRECISION NOT NULL
    );
    CREATE INDEX usage_run ON usage_points (run_id);
    CREATE INDEX usage_day ON usage_points (day);
    CREATE TABLE event_log (
        id BIGSERIAL PRIMARY KEY,
        run_id TEXT,
        event_type TEXT NOT NULL,
        payload_json TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE INDEX event_log_run ON event_log (run_id, id);
    CREATE TABLE seen_combos (
        run_id TEXT NOT NULL,
        combo TEXT NOT NULL,
        PRIMARY KEY (run_id, combo)
    );
    """,
    # 2: the dashboard's call log (call_log.py), one row per gated call, written in the
    # gate's transaction; JSON columns stay TEXT so both backends read them alike.
    """
    CREATE TABLE gated_calls (
        id BIGSERIAL PRIMARY KEY,
        call_id TEXT NOT NULL UNIQUE,
        run_id TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        outcome TEXT NOT NULL CHECK (outcome IN ('allowed', 'trimmed', 'blocked')),
        reason TEXT,
        reasons_json TEXT NOT NULL,
        rules_digest TEXT NOT NULL,
        limits_json TEXT NOT NULL,
        prompt_tokens BIGINT NOT NULL,
        completion_tokens BIGINT NOT NULL,
        request_micro_usd BIGINT,
        rungs_json TEXT NOT NULL,
        kpis_json TEXT NOT NULL,
        decision_ms DOUBLE PRECISION,
        reservation_id TEXT
    );
    CREATE INDEX gated_calls_run ON gated_calls (run_id, id);
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)
MIGRATION_LOCK = 0x706F6C6963790001  # pg_advisory_xact_lock key: "policy" + 1


def redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(":" + parts.password + "@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


def conninfo_of(url: str, pool_size: int = 4, timeout_s: float = 10.0) -> tuple[str, int, float]:
    """The libpq URL of a ledger URL, with our own query options (``pool_size``,
    ``timeout_s``) taken out and ``connect_timeout`` set from ``timeout_s``."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    pool_size = int(query.pop("pool_size", pool_size))
    timeout_s = float(query.pop("timeout_s", timeout_s))
    query.setdefault("connect_timeout", str(max(1, int(timeout_s))))
    return urlunsplit(parts._replace(scheme="postgresql", query=urlencode(query))), pool_size, timeout_s


class PgLedger:
    """A PostgreSQL ledger behind a connection pool. Thread-safe (the pool hands each
    transaction its own connection); open one per process."""

    def __init__(
        self, url: str, *, clock: Callable[[], float] = time.time, pool_size: int = 4, timeout_s: float = 10.0
    ) -> None:
        import psycopg
        from psycopg_pool import ConnectionPool

        self._psycopg = psycopg
        self.url, self.path, self.clock = url, redact(url), clock
        conninfo, pool_size, timeout_s = conninfo_of(url, pool_size, timeout_s)
        # No per-checkout health check (a round trip per call): a connection broken by a
        # server restart fails its transaction once (L111, retryable) and the pool drops it.
        self.pool = ConnectionPool(
            conninfo, min_size=1, max_size=max(1, pool_size), timeout=timeout_s, open=False, name="policy-ledger"
        )
        try:
            self.pool.open(wait=True, timeout=timeout_s)
        except Exception as exc:
            self.pool.close()
            raise LedgerUnavailable(
                [
                    Diagnostic(
                        "L111",
                        f"cannot reach the PostgreSQL ledger: {exc}",
                        hint="is the server up and the URL right? retry when it is",
                        file=self.path,
                    )
                ]
            ) from None
        self._migrate()

    def close(self) -> None:
        self.pool.close()

    # ---- schema ------------------------------------------------------------------------

    def _migrate(self) -> None:
        """Create or upgrade the schema on first use. Concurrent first users serialise on
        an advisory lock; an engine older than the schema refuses it (L112)."""
        with self.transaction() as db:
            db.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            db.execute(
                "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
            )
            found = db.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()[0]
            if found > SCHEMA_VERSION:
                raise schema_too_new(found, SCHEMA_VERSION, self.path)
            for version in range(found + 1, SCHEMA_VERSION + 1):
                db.execute(MIGRATIONS[version - 1])
                db.execute("INSERT INTO schema_version (version) VALUES (%s)", (version,))

    def schema_version(self) -> int:
        with self.pool.connection() as db:
            return int(_aggregate(db.execute("SELECT MAX(version) FROM schema_version").fetchone())[0])

    # ---- transactions ------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        """One transaction on a pooled connection, committed when the block ends. A lost
        server is L111 (retryable); a value the server refuses is L110."""
        errors = self._psycopg.errors
        try:
            with self.pool.connection() as db, db.transaction():
                yield db
        except LedgerError:
            raise
        except (errors.IntegrityError, errors.DataError, errors.NumericValueOutOfRange) as exc:
            raise LedgerError(
                [
                    Diagnostic(
                        "L110",
                        f"the ledger refused the write: {exc}".strip(),
                        hint="a quantity or id is out of range; see docs/reservations.md",
                        file=self.path,
                    )
                ]
            ) from None
        except (self._psycopg.OperationalError, self._psycopg.InterfaceError, _pool_errors()) as exc:
            raise LedgerUnavailable(
                [
                    Diagnostic(
                        "L111",
                        f"the PostgreSQL ledger is unavailable: {str(exc).strip() or type(exc).__name__}",
                        hint="retry the call: nothing half-done was kept (a retried settlement is a no-op if the first one landed)",
                        file=self.path,
                    )
                ]
            ) from None

    def _lock_totals(self, db: Any, day: str, run_id: str) -> None:
        """Take the day's and then the run's counter-row locks, creating the rows on first
        use: an upsert whose no-op update locks the row like SELECT ... FOR UPDATE, in one
        round trip per row."""
        db.execute(
            "INSERT INTO day_totals (day) VALUES (%s) ON CONFLICT (day) DO UPDATE SET tokens = day_totals.tokens",
            (day,),
        )
        db.execute(
            "INSERT INTO run_totals (run_id) VALUES (%s) ON CONFLICT (run_id) DO UPDATE SET tokens = run_totals.tokens",
            (run_id,),
        )

    # ---- reading -----------------------------------------------------------------------

    def snapshot(self, run_id: str, *, now: float | None = None, db: Any = None) -> UsageSnapshot:
        """Settled usage plus live reservations for the run and today. Inside the gate's
        transaction (``db`` given) it first locks the day's and the run's counter rows,
        so the headroom it returns stays true until the transaction ends."""
        now = self.clock() if now is None else now
        day = utc_day(now)
        if db is None:
            with self.pool.connection() as conn:
                return self._snapshot(conn, run_id, day, now)
        self._lock_totals(db, day, run_id)
        return self._snapshot(db, run_id, day, now)

    def _snapshot(self, db: Any, run_id: str, day: str, now: float) -> UsageSnapshot:
        row = db.execute(
            """SELECT
                 (SELECT COALESCE(MAX(tokens), 0) FROM run_totals WHERE run_id = %(run)s),
                 (SELECT COALESCE(MAX(micro_usd), 0) FROM run_totals WHERE run_id = %(run)s),
                 (SELECT COALESCE(MAX(tokens), 0) FROM day_totals WHERE day = %(day)s),
                 (SELECT COALESCE(MAX(micro_usd), 0) FROM day_totals WHERE day = %(day)s),
                 (SELECT COALESCE(SUM(tokens), 0) FROM reservations WHERE run_id = %(run)s AND state = 'held' AND expires_at > %(now)s),
                 (SELECT COALESCE(SUM(micro_usd), 0) FROM reservations WHERE run_id = %(run)s AND state = 'held' AND expires_at > %(now)s),
                 (SELECT COALESCE(SUM(tokens), 0) FROM reservations WHERE day = %(day)s AND state = 'held' AND expires_at > %(now)s),
                 (SELECT COALESCE(SUM(micro_usd), 0) FROM reservations WHERE day = %(day)s AND state = 'held' AND expires_at > %(now)s)""",
            {"run": run_id, "day": day, "now": now},
        ).fetchone()
        run_t, run_u, day_t, day_u, held_rt, held_ru, held_dt, held_du = (int(v) for v in row)
        return UsageSnapshot(
            batch_tokens=run_t + held_rt,
            day_tokens=day_t + held_dt,
            batch_micro_usd=run_u + held_ru,
            day_micro_usd=day_u + held_du,
        )

    def settled_totals(self, *, run_id: str | None = None, day: str | None = None) -> tuple[int, int, int]:
        """(total tokens, micro-USD, usage points) settled for a run or a day, summed from
        the usage points themselves (the counters are checked against them in tests)."""
        where, arg = ("run_id = %s", run_id) if run_id is not None else ("day = %s", day)
        with self.pool.connection() as db:
            row = db.execute(
                f"SELECT COALESCE(SUM(total_tokens), 0), COALESCE(SUM(micro_usd), 0), COUNT(*) FROM usage_points WHERE {where}",
                (arg,),
            ).fetchone()
        row = _aggregate(row)
        return int(row[0]), int(row[1]), int(row[2])

    def held(self, *, now: float | None = None) -> int:
        now = self.clock() if now is None else now
        with self.pool.connection() as db:
            return int(
                _aggregate(
                    db.execute(
                        "SELECT COUNT(*) FROM reservations WHERE state = 'held' AND expires_at > %s", (now,)
                    ).fetchone()
                )[0]
            )

    def run_exists(self, run_id: str) -> bool:
        with self.pool.connection() as db:
            for table in ("usage_points", "event_log", "reservations"):
                if db.execute(f"SELECT 1 FROM {table} WHERE run_id = %s LIMIT 1", (run_id,)).fetchone():
                    return True
        return False

    def events(self, run_id: str) -> list[tuple[str, dict[str, Any], str]]:
        """The run's telemetry events (the agent's event names), oldest first; the replay
        material the gate also keeps in event_log (`budget.call_input`) is not telemetry."""
        with self.pool.connection() as db:
            rows = db.execute(
                "SELECT event_type, payload_json, created_at FROM event_log WHERE run_id = %s AND event_type <> 'budget.call_input' ORDER BY id",
                (run_id,),
            ).fetchall()
        return [(t, json.loads(p), c) for t, p, c in rows]

    def seen_combos(self, run_id: str, db: Any = None) -> frozenset[str]:
        if db is None:
            with self.pool.connection() as conn:
                return self.seen_combos(run_id, conn)
        return frozenset(
            r[0] for r in db.execute("SELECT combo FROM seen_combos WHERE run_id = %s", (run_id,)).fetchall()
        )

    # ---- writing -----------------------------------------------------------------------

    def reserve(self, db: Any, run_id: str, tokens: int, micro_usd: int, *, now: float, ttl_s: float) -> Reservation:
        """Insert a reservation; call inside `transaction()` after `snapshot(db=...)`."""
        check_quantity("reserved tokens", tokens)
        check_quantity("reserved micro-USD", micro_usd, MAX_MICRO_USD)
        res = Reservation(uuid.uuid4().hex, run_id, utc_day(now), tokens, micro_usd, now + ttl_s)
        db.execute(
            "INSERT INTO reservations VALUES (%s, %s, %s, %s, %s, %s, %s, 'held')",
            (res.id, run_id, res.day, tokens, micro_usd, now, res.expires_at),
        )
        return res

    def add_seen(self, run_id: str, combos: list[str], db: Any = None) -> None:
        if combos:
            with db.cursor() as cur:
                cur.executemany(
                    "INSERT INTO seen_combos VALUES (%s, %s) ON CONFLICT DO NOTHING", [(run_id, c) for c in combos]
                )

    def add_event(
        self, run_id: str | None, event_type: str, payload_json: str, created_at: str, db: Any = None
    ) -> None:
        if db is None:
            with self.transaction() as conn:
                self.add_event(run_id, event_type, payload_json, created_at, conn)
            return
        db.execute(
            "INSERT INTO event_log (run_id, event_type, payload_json, created_at) VALUES (%s, %s, %s, %s)",
            (run_id, event_type, payload_json, created_at),
        )

    def record_call(self, call: GatedCall, db: Any = None) -> None:
        """One row per gated call, in the gate's transaction (``db``) so the call lands
        with its reservation and events."""
        if db is None:
            with self.transaction() as conn:
                insert_call(conn, call, "%s")
            return
        insert_call(db, call, "%s")

    def renew(self, run_id: str, reservation_id: str, *, ttl_s: float) -> float:
        """Extend a live reservation to now + ``ttl_s``. Only its own row is locked: a
        renewal moves no room between callers (a lapsed one is refused, L107)."""
        now = self.clock()
        with self.transaction() as db:
            row = db.execute(
                "SELECT state, expires_at FROM reservations WHERE id = %s AND run_id = %s FOR UPDATE",
                (reservation_id, run_id),
            ).fetchone()
            if row is None:
                raise self._unknown(reservation_id, run_id)
            _check_renewable(reservation_id, row[0], row[1], now, self.path)
            new_expiry = float(max(row[1], now + ttl_s))
            db.execute("UPDATE reservations SET expires_at = %s WHERE id = %s", (new_expiry, reservation_id))
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
        events: Callable[[Settlement], list[tuple[str, str, str]]] | None = None,
    ) -> Settlement:
        """As `Ledger.settle`: the usage point, the counters, the reservation's state and
        the events in one transaction, under the day's and run's row locks."""
        check_quantity("prompt_tokens", prompt_tokens)
        check_quantity("completion_tokens", completion_tokens)
        check_quantity("micro_usd", micro_usd, MAX_MICRO_USD)
        now = self.clock()
        total = prompt_tokens + completion_tokens
        with self.transaction() as db:
            day, overspend = utc_day(now), None
            if reservation_id is not None:
                found = db.execute(
                    "SELECT day FROM reservations WHERE id = %s AND run_id = %s", (reservation_id, run_id)
                ).fetchone()
                if found is None:
                    raise self._unknown(reservation_id, run_id)
                day = found[0]
            self._lock_totals(db, day, run_id)
            if reservation_id is not None:
                state, reserved, reserved_usd, expires_at = db.execute(
                    "SELECT state, tokens, micro_usd, expires_at FROM reservations WHERE id = %s FOR UPDATE",
                    (reservation_id,),
                ).fetchone()
                if state == "settled":
                    prior = db.execute(
                        "SELECT id, prompt_tokens, completion_tokens, micro_usd, model FROM usage_points WHERE reservation_id = %s",
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
                overspend = _overspend(reservation_id, day, total, micro_usd, reserved, reserved_usd, expires_at, now)
                db.execute("UPDATE reservations SET state = 'settled' WHERE id = %s", (reservation_id,))
            usage_id = db.execute(
                "INSERT INTO usage_points (run_id, day, prompt_tokens, completion_tokens, total_tokens, micro_usd, model, reservation_id, created_at) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
                (run_id, day, prompt_tokens, completion_tokens, total, micro_usd, model, reservation_id, now),
            ).fetchone()[0]
            db.execute(
                "UPDATE day_totals SET tokens = tokens + %s, micro_usd = micro_usd + %s, points = points + 1 WHERE day = %s",
                (total, micro_usd, day),
            )
            db.execute(
                "UPDATE run_totals SET tokens = tokens + %s, micro_usd = micro_usd + %s, points = points + 1 WHERE run_id = %s",
                (total, micro_usd, run_id),
            )
            done = Settlement(
                int(usage_id),
                run_id,
                day,
                prompt_tokens,
                completion_tokens,
                micro_usd,
                reservation_id,
                overspend=overspend,
            )
            for row in ([event] if event is not None else []) + (events(done) if events is not None else []):
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


def _pool_errors() -> type[BaseException]:
    from psycopg_pool import PoolTimeout

    return PoolTimeout
