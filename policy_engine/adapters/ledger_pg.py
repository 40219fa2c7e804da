"""The usage ledger on PostgreSQL (psycopg 3 + psycopg_pool): one daily cap shared by
agents on many machines.

Same concepts and methods as the SQLite `Ledger` (reservations, usage points, event log,
seen combos), so the gate runs unchanged on either. Isolation (docs/postgresql-ledger.md):
READ COMMITTED plus a row lock on the day's counter row and then the run's
(``SELECT ... FOR UPDATE``), taken by every admission (``ledger_reserve``, after it has
written the call's event and call-log rows) before it re-reads the usage and re-checks the
caps, and by every settlement (``ledger_settle`` updates both counters). The gate
evaluates outside these locks, against a usage read without them; the admission writes
the reservation only if the decision's caps still hold under them (else it raises and
everything it wrote rolls back), so no two callers are admitted against the same room.
Settled totals live in the counter rows (O(1) to read), live reservations are summed from
a partial index. Lock order is day, then run (a settlement locks its reservation first; an
admission never waits for a reservation): no deadlock cycle. Each step is one function
call committed asynchronously, so its locks are released before the WAL flush, and is
sent in one message with a flush wait that runs outside the locks (`_step`): durable
before the caller is answered, one round trip. A settlement's flush wait also reads the
usage after it (``ledger_flush_usage``), which the gate keeps for the run's next check.

Every failure to reach the server (refused, reset, restarted, pool timeout) becomes the
retryable `LedgerUnavailable` (L111); a settlement retried after it is safe, because
settlement is idempotent per reservation.
"""

from __future__ import annotations

import json
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from policy_engine.adapters.call_log import GatedCall, call_row, insert_call
from policy_engine.adapters.ledger import (
    MAX_MICRO_USD,
    KnownUsage,
    LedgerUnavailable,
    Reservation,
    SettleEvents,
    Settlement,
    _check_renewable,
    _overspend,
    _repeat,
    check_quantity,
    new_reservation,
    schema_too_new,
    utc_day,
)
from policy_engine.adapters.pg_message import FLUSH_WAIT, execute, step_message
from policy_engine.errors import Diagnostic, LedgerError
from policy_engine.usage import UsageSnapshot

if TYPE_CHECKING:
    from policy_engine.adapters.admission import Admission

#: the SQLSTATE ledger_reserve raises when the caps no longer hold under its locks (its
#: detail: the usage it saw); the error rolls back the rows it wrote before the locks
_REFUSED = "PE409"

#: the steps, prepared once per pooled connection (``PREPARE name (types) AS body``): the
#: one-message form (`pg_message`) then sends ``EXECUTE name(literals)``, which the server
#: neither resolves nor plans again (parsing and planning the plain call was about 15% of
#: a backend's CPU); inside a transaction (the locked fallback) the body runs with bound
#: parameters, arrays in binary (%b: psycopg's text form escapes every quote of the JSON
#: payloads with a regular expression, milliseconds per call)
_STEPS = {
    "policy_engine_reserve": (
        "text, text, float8, text, text, int8, int8, float8, int8, int8, int8, int8, text[], text[],"
        " text, float8, text, text, text, text, text, int8, int8, int8, text, text, float8, text[]",
        "SELECT ledger_reserve({})",
    ),
    "policy_engine_settle": (
        "text, text, text, float8, int8, int8, int8, text, text, text[], text[], text[]",
        "SELECT * FROM ledger_settle({})",
    ),
    "policy_engine_flush_usage": ("text, text, float8", "SELECT * FROM ledger_flush_usage({})"),
}


def _prepare_sql(name: str) -> str:
    types, body = _STEPS[name]
    count = len(types.split(","))
    return f"PREPARE {name} ({types}) AS " + body.format(", ".join(f"${i}" for i in range(1, count + 1)))


def _bound_sql(name: str) -> str:
    types, body = _STEPS[name]
    return body.format(", ".join("%b" if t.strip().endswith("[]") else "%s" for t in types.split(",")))


#: a cap at or above this never binds (no ledger total comes near it) and is sent as "no cap",
#: so an effectively unlimited policy value never overflows a BIGINT parameter
_NO_CAP = 2**62


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
    # 3: one round trip per step (docs/postgresql-ledger.md). The gate evaluates outside
    # any lock, then ledger_admit re-checks its caps and writes the whole check under the
    # day's and the run's counter-row locks; ledger_settle settles in one statement. Both
    # commit asynchronously (the caller waits for the flush afterwards, outside the locks).
    """
    -- a set-returning SQL function, so the planner inlines it into the calling statement and
    -- its plan is cached with that statement's (a scalar SQL function is re-planned per call)
    CREATE FUNCTION ledger_usage(p_run TEXT, p_day TEXT, p_now DOUBLE PRECISION)
    RETURNS TABLE (run_tokens BIGINT, day_tokens BIGINT, run_micro_usd BIGINT, day_micro_usd BIGINT)
    LANGUAGE sql STABLE AS $$
        SELECT (COALESCE((SELECT tokens FROM run_totals WHERE run_id = p_run), 0) + r.t)::BIGINT,
               (COALESCE((SELECT tokens FROM day_totals WHERE day = p_day), 0) + d.t)::BIGINT,
               (COALESCE((SELECT micro_usd FROM run_totals WHERE run_id = p_run), 0) + r.u)::BIGINT,
               (COALESCE((SELECT micro_usd FROM day_totals WHERE day = p_day), 0) + d.u)::BIGINT
        FROM (SELECT COALESCE(SUM(tokens), 0) AS t, COALESCE(SUM(micro_usd), 0) AS u FROM reservations
              WHERE run_id = p_run AND state = 'held' AND expires_at > p_now) AS r,
             (SELECT COALESCE(SUM(tokens), 0) AS t, COALESCE(SUM(micro_usd), 0) AS u FROM reservations
              WHERE day = p_day AND state = 'held' AND expires_at > p_now) AS d
    $$;

    -- the day's and then the run's counter rows locked FOR UPDATE (created on first use):
    -- the locks version 2 took, so an engine still running version-2 code while a newer one
    -- migrates serialises with it
    CREATE FUNCTION ledger_lock(p_run TEXT, p_day TEXT) RETURNS VOID LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM 1 FROM day_totals WHERE day = p_day FOR UPDATE;
        IF NOT FOUND THEN
            INSERT INTO day_totals (day) VALUES (p_day) ON CONFLICT DO NOTHING;
            PERFORM 1 FROM day_totals WHERE day = p_day FOR UPDATE;
        END IF;
        PERFORM 1 FROM run_totals WHERE run_id = p_run FOR UPDATE;
        IF NOT FOUND THEN
            INSERT INTO run_totals (run_id) VALUES (p_run) ON CONFLICT DO NOTHING;
            PERFORM 1 FROM run_totals WHERE run_id = p_run FOR UPDATE;
        END IF;
    END $$;

    CREATE FUNCTION ledger_admit(
        p_run TEXT, p_day TEXT, p_now DOUBLE PRECISION, p_created TEXT,
        p_res_id TEXT, p_tokens BIGINT, p_micro_usd BIGINT, p_expires DOUBLE PRECISION,
        p_cap_run BIGINT, p_cap_day BIGINT, p_cap_run_usd BIGINT, p_cap_day_usd BIGINT,
        p_event_types TEXT[], p_event_payloads TEXT[],
        p_call_id TEXT, p_call_created DOUBLE PRECISION, p_outcome TEXT, p_reason TEXT, p_reasons_json TEXT,
        p_rules_digest TEXT, p_limits_json TEXT, p_prompt BIGINT, p_completion BIGINT, p_request_usd BIGINT,
        p_rungs_json TEXT, p_kpis_json TEXT, p_decision_ms DOUBLE PRECISION,
        p_combos TEXT[]
    ) RETURNS BIGINT[] LANGUAGE plpgsql AS $$
    DECLARE
        u RECORD;
    BEGIN
        -- committed asynchronously: the caller then waits for the flush outside the locks
        PERFORM set_config('synchronous_commit', 'off', true);
        IF p_res_id IS NOT NULL THEN
            PERFORM ledger_lock(p_run, p_day);
            -- a statement after the lock: its snapshot sees every admission committed before
            SELECT * INTO u FROM ledger_usage(p_run, p_day, p_now);
            IF u.run_tokens + p_tokens > p_cap_run OR u.day_tokens + p_tokens > p_cap_day
               OR u.run_micro_usd + p_micro_usd > p_cap_run_usd OR u.day_micro_usd + p_micro_usd > p_cap_day_usd THEN
                RETURN ARRAY[u.run_tokens, u.day_tokens, u.run_micro_usd, u.day_micro_usd];
            END IF;
            INSERT INTO reservations VALUES (p_res_id, p_run, p_day, p_tokens, p_micro_usd, p_now, p_expires, 'held');
        END IF;
        INSERT INTO event_log (run_id, event_type, payload_json, created_at)
            SELECT p_run, e.t, e.p, p_created FROM unnest(p_event_types, p_event_payloads) WITH ORDINALITY AS e(t, p, n)
            ORDER BY e.n;
        IF p_call_id IS NOT NULL THEN
            INSERT INTO gated_calls (call_id, run_id, created_at, outcome, reason, reasons_json, rules_digest, limits_json,
                                     prompt_tokens, completion_tokens, request_micro_usd, rungs_json, kpis_json,
                                     decision_ms, reservation_id)
            VALUES (p_call_id, p_run, p_call_created, p_outcome, p_reason, p_reasons_json, p_rules_digest, p_limits_json,
                    p_prompt, p_completion, p_request_usd, p_rungs_json, p_kpis_json, p_decision_ms, p_res_id);
        END IF;
        IF cardinality(p_combos) > 0 THEN
            INSERT INTO seen_combos SELECT p_run, c FROM unnest(p_combos) AS c ON CONFLICT DO NOTHING;
        END IF;
        RETURN NULL;
    END $$;

    CREATE FUNCTION ledger_settle(
        p_run TEXT, p_res_id TEXT, p_day TEXT, p_now DOUBLE PRECISION,
        p_prompt BIGINT, p_completion BIGINT, p_micro_usd BIGINT, p_model TEXT, p_overspend TEXT,
        p_event_types TEXT[], p_event_payloads TEXT[], p_event_created TEXT[],
        OUT status TEXT, OUT usage_id BIGINT, OUT day TEXT, OUT reserved BIGINT, OUT reserved_usd BIGINT,
        OUT expires_at DOUBLE PRECISION, OUT reason TEXT,
        OUT prior_prompt BIGINT, OUT prior_completion BIGINT, OUT prior_usd BIGINT, OUT prior_model TEXT
    ) LANGUAGE plpgsql AS $$
    DECLARE
        v_state TEXT;
        v_total BIGINT := p_prompt + p_completion;
    BEGIN
        PERFORM set_config('synchronous_commit', 'off', true);  -- as in ledger_admit
        day := p_day;
        IF p_res_id IS NOT NULL THEN
            SELECT r.day, r.state, r.tokens, r.micro_usd, r.expires_at
              INTO day, v_state, reserved, reserved_usd, expires_at
              FROM reservations r WHERE r.id = p_res_id AND r.run_id = p_run FOR UPDATE;
            IF NOT FOUND THEN
                status := 'unknown';
                RETURN;
            END IF;
            IF v_state = 'settled' THEN
                status := 'repeat';
                SELECT u.id, u.prompt_tokens, u.completion_tokens, u.micro_usd, u.model
                  INTO usage_id, prior_prompt, prior_completion, prior_usd, prior_model
                  FROM usage_points u WHERE u.reservation_id = p_res_id;
                RETURN;
            END IF;
            -- the same two conditions as ledger._overspend; the caller built its events for
            -- p_overspend, so a different answer writes nothing and asks again
            reason := CASE WHEN expires_at <= p_now THEN 'settled_after_expiry'
                           WHEN v_total > reserved THEN 'settled_over_reservation' END;
            IF reason IS DISTINCT FROM p_overspend THEN
                status := 'overspend';
                RETURN;
            END IF;
            UPDATE reservations SET state = 'settled' WHERE id = p_res_id;
        END IF;
        INSERT INTO usage_points (run_id, day, prompt_tokens, completion_tokens, total_tokens, micro_usd, model,
                                  reservation_id, created_at)
            VALUES (p_run, day, p_prompt, p_completion, v_total, p_micro_usd, p_model, p_res_id, p_now)
            RETURNING id INTO usage_id;
        INSERT INTO day_totals AS t (day, tokens, micro_usd, points) VALUES (day, v_total, p_micro_usd, 1)
            ON CONFLICT ON CONSTRAINT day_totals_pkey DO UPDATE
            SET tokens = t.tokens + excluded.tokens, micro_usd = t.micro_usd + excluded.micro_usd, points = t.points + 1;
        INSERT INTO run_totals AS t (run_id, tokens, micro_usd, points) VALUES (p_run, v_total, p_micro_usd, 1)
            ON CONFLICT (run_id) DO UPDATE
            SET tokens = t.tokens + excluded.tokens, micro_usd = t.micro_usd + excluded.micro_usd, points = t.points + 1;
        INSERT INTO event_log (run_id, event_type, payload_json, created_at)
            SELECT p_run, e.t, e.p, e.c FROM unnest(p_event_types, p_event_payloads, p_event_created)
                WITH ORDINALITY AS e(t, p, c, n) ORDER BY e.n;
        status := 'settled';
    END $$;

    -- the replay material (about 10 kB per gated call) is compressed with lz4 where the
    -- server has it: pglz spent 0.4 ms of server CPU per call on it, lz4 0.03 ms
    DO $$
    BEGIN
        ALTER TABLE event_log ALTER COLUMN payload_json SET COMPRESSION lz4;
    EXCEPTION WHEN feature_not_supported OR invalid_parameter_value THEN
        NULL;
    END $$;
    """,
    # 4: the admission writes the call's rows before it takes the locks (ledger_reserve), so
    # the day's row is held for the cap check and the reservation only; the flush wait after
    # a settlement also reads the run's and day's usage after it (ledger_flush_usage), which
    # record_usage hands to the gate, whose next check need not read it
    """
    CREATE FUNCTION ledger_reserve(
        p_run TEXT, p_day TEXT, p_now DOUBLE PRECISION, p_created TEXT,
        p_res_id TEXT, p_tokens BIGINT, p_micro_usd BIGINT, p_expires DOUBLE PRECISION,
        p_cap_run BIGINT, p_cap_day BIGINT, p_cap_run_usd BIGINT, p_cap_day_usd BIGINT,
        p_event_types TEXT[], p_event_payloads TEXT[],
        p_call_id TEXT, p_call_created DOUBLE PRECISION, p_outcome TEXT, p_reason TEXT, p_reasons_json TEXT,
        p_rules_digest TEXT, p_limits_json TEXT, p_prompt BIGINT, p_completion BIGINT, p_request_usd BIGINT,
        p_rungs_json TEXT, p_kpis_json TEXT, p_decision_ms DOUBLE PRECISION,
        p_combos TEXT[]
    ) RETURNS VOID LANGUAGE plpgsql AS $$
    DECLARE
        u RECORD;
    BEGIN
        -- committed asynchronously: the caller then waits for the flush outside the locks
        PERFORM set_config('synchronous_commit', 'off', true);
        -- the events (with the replay material) and the call row first, before any lock:
        -- no other writer conflicts with them, and a refused admission rolls them back
        INSERT INTO event_log (run_id, event_type, payload_json, created_at)
            SELECT p_run, e.t, e.p, p_created FROM unnest(p_event_types, p_event_payloads) WITH ORDINALITY AS e(t, p, n)
            ORDER BY e.n;
        IF p_call_id IS NOT NULL THEN
            INSERT INTO gated_calls (call_id, run_id, created_at, outcome, reason, reasons_json, rules_digest, limits_json,
                                     prompt_tokens, completion_tokens, request_micro_usd, rungs_json, kpis_json,
                                     decision_ms, reservation_id)
            VALUES (p_call_id, p_run, p_call_created, p_outcome, p_reason, p_reasons_json, p_rules_digest, p_limits_json,
                    p_prompt, p_completion, p_request_usd, p_rungs_json, p_kpis_json, p_decision_ms, p_res_id);
        END IF;
        IF p_res_id IS NOT NULL THEN
            -- the day's and then the run's counter rows, as ledger_lock (inlined: a nested
            -- plpgsql call cost 0.1 ms)
            PERFORM 1 FROM day_totals WHERE day = p_day FOR UPDATE;
            IF NOT FOUND THEN
                INSERT INTO day_totals (day) VALUES (p_day) ON CONFLICT DO NOTHING;
                PERFORM 1 FROM day_totals WHERE day = p_day FOR UPDATE;
            END IF;
            PERFORM 1 FROM run_totals WHERE run_id = p_run FOR UPDATE;
            IF NOT FOUND THEN
                INSERT INTO run_totals (run_id) VALUES (p_run) ON CONFLICT DO NOTHING;
                PERFORM 1 FROM run_totals WHERE run_id = p_run FOR UPDATE;
            END IF;
            -- a statement after the locks: its snapshot sees every admission committed before
            SELECT * INTO u FROM ledger_usage(p_run, p_day, p_now);
            IF u.run_tokens + p_tokens > p_cap_run OR u.day_tokens + p_tokens > p_cap_day
               OR u.run_micro_usd + p_micro_usd > p_cap_run_usd OR u.day_micro_usd + p_micro_usd > p_cap_day_usd THEN
                RAISE EXCEPTION 'admission refused: the room was taken since the read'
                    USING ERRCODE = 'PE409', DETAIL = concat_ws(',', u.run_tokens, u.day_tokens, u.run_micro_usd,
                                                                 u.day_micro_usd);
            END IF;
            INSERT INTO reservations VALUES (p_res_id, p_run, p_day, p_tokens, p_micro_usd, p_now, p_expires, 'held');
        END IF;
        -- after the locks: a combo another admission of this run inserted and has not
        -- committed makes this insert wait for it, which must not happen while it waits
        -- for a lock this one holds (the locked fallback takes them first)
        IF cardinality(p_combos) > 0 THEN
            INSERT INTO seen_combos SELECT p_run, c FROM unnest(p_combos) AS c ON CONFLICT DO NOTHING;
        END IF;
    END $$;

    CREATE FUNCTION ledger_flush_usage(p_run TEXT, p_day TEXT, p_now DOUBLE PRECISION)
    RETURNS TABLE (run_tokens BIGINT, day_tokens BIGINT, run_micro_usd BIGINT, day_micro_usd BIGINT)
    LANGUAGE plpgsql AS $$
    BEGIN
        -- the flush wait (a transactional WAL message), and the usage in the same statement
        -- (plpgsql caches the plan; a simple-protocol query would be planned per call)
        PERFORM pg_logical_emit_message(true, 'policy_engine.flush', '');
        RETURN QUERY SELECT * FROM ledger_usage(p_run, p_day, p_now);
    END $$;
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
        self._prepared: weakref.WeakSet[Any] = weakref.WeakSet()  # connections with _STEPS prepared
        self.url, self.path, self.clock = url, redact(url), clock
        conninfo, pool_size, timeout_s = conninfo_of(url, pool_size, timeout_s)
        # No per-checkout health check (a round trip per call): a connection broken by a
        # server restart fails its transaction once (L111, retryable) and the pool drops it.
        self.pool = ConnectionPool(
            conninfo,
            min_size=1,
            max_size=max(1, pool_size),
            timeout=timeout_s,
            open=False,
            name="policy-ledger",
            # one statement is one transaction: a gate step is one function call, one round
            # trip (no separate BEGIN / COMMIT); transaction() still opens explicit ones
            kwargs={"autocommit": True},
            configure=_configure,
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
        with self._errors(), self.pool.connection() as db, db.transaction():
            yield db

    @contextmanager
    def _statement(self) -> Iterator[Any]:
        """A pooled connection in autocommit mode: each statement is its own transaction
        (a gate step's one function call), with the same error mapping as `transaction`."""
        with self._errors(), self.pool.connection() as db:
            yield db

    @contextmanager
    def _errors(self) -> Iterator[None]:
        errors = self._psycopg.errors
        try:
            yield
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

    def _step(
        self, db: Any, step: str, params: tuple[Any, ...], flush: tuple[str, tuple[Any, ...]] | None = None
    ) -> tuple[tuple[Any, ...], tuple[Any, ...] | None]:
        """Run one write step (``step``: a name in `_STEPS`) and return its row only once its
        commit is on disk, without holding its locks while the disk flushes.

        Outside a transaction (autocommit): one message, two transactions
        (`pg_message.step_message`). The step function commits with ``synchronous_commit =
        off`` (it sets it itself), so its admission or counter-row locks are released as
        soon as the commit record is in the WAL buffers instead of after the flush (a hot
        day's lock held across an fsync would serialise every caller at the disk's flush
        rate). The flush wait after it writes a WAL record in a transaction of its own and
        commits synchronously: the server answers only once the WAL is flushed past its
        commit record, which comes after the step's, so the step is durable before we
        return, and the flush waits of many callers share one fsync (group commit).
        Another caller may see the step before it is durable; if the server crashes in
        that window, this caller gets L111 and nothing it was told about is lost.
        Inside an explicit transaction (the gate's locked fallback), the statement runs
        in it and `transaction()` commits synchronously.

        ``flush``: a step that replaces the plain flush wait (`ledger_flush_usage`);
        returns (the step's row, the flush statement's row or None)."""
        if db.info.transaction_status != self._psycopg.pq.TransactionStatus.IDLE:
            row = _aggregate(db.execute(_bound_sql(step), params).fetchone())
            # inside an explicit transaction: commit it synchronously, as transaction() does
            db.execute("SELECT set_config('synchronous_commit', 'on', true)")
            return row, None
        if db not in self._prepared:  # once per connection (an earlier attempt may have prepared some)
            have = {r[0] for r in db.execute("SELECT name FROM pg_prepared_statements").fetchall()}
            for name in _STEPS.keys() - have:
                db.execute(_prepare_sql(name))
            self._prepared.add(db)
        escape = self._psycopg.pq.Escaping(db.pgconn)
        message = step_message(
            execute(step, params, escape), FLUSH_WAIT if flush is None else execute(flush[0], flush[1], escape)
        )
        # an error leaves the message's explicit transaction aborted: the pooled connection's
        # context ends it when the block ends (a broken connection is replaced)
        cur = db.execute(message)
        cur.nextset()  # past BEGIN's result, to the step's
        row = _aggregate(cur.fetchone())
        if flush is None:
            return row, None
        cur.nextset()  # COMMIT's
        cur.nextset()
        return row, _aggregate(cur.fetchone())

    def _lock_totals(self, db: Any, day: str, run_id: str) -> None:
        """Lock the day's and then the run's counter rows (``ledger_lock``: FOR UPDATE,
        created on first use; the locks `ledger_reserve` takes), so no other caller admits
        against this day or run until the transaction ends."""
        db.execute("SELECT ledger_lock(%s, %s)", (run_id, day))

    # ---- reading -----------------------------------------------------------------------

    def snapshot(self, run_id: str, *, now: float | None = None, db: Any = None) -> UsageSnapshot:
        """Settled usage plus live reservations for the run and today. Inside a transaction
        (``db`` given) it first takes the day's and the run's admission locks, so the
        headroom it returns stays true until the transaction ends."""
        now = self.clock() if now is None else now
        day = utc_day(now)
        if db is None:
            with self._statement() as conn:
                return self._snapshot(conn, run_id, day, now)
        self._lock_totals(db, day, run_id)
        return self._snapshot(db, run_id, day, now)

    def _snapshot(self, db: Any, run_id: str, day: str, now: float) -> UsageSnapshot:
        row = _aggregate(db.execute("SELECT * FROM ledger_usage(%s, %s, %s)", (run_id, day, now)).fetchone())
        return UsageSnapshot(batch_tokens=row[0], day_tokens=row[1], batch_micro_usd=row[2], day_micro_usd=row[3])

    def read_usage(
        self, run_id: str, *, now: float | None = None, db: Any = None
    ) -> tuple[UsageSnapshot, frozenset[str]]:
        """The usage and seen combos a gate check evaluates against, in one statement and
        without locks, so the evaluation runs outside every lock; `admit` re-checks the
        caps under them. ``db``: read in that transaction (the gate's fallback, inside
        `admission_lock`)."""
        now = self.clock() if now is None else now
        day = utc_day(now)
        if db is None:
            with self._statement() as conn:
                return self.read_usage(run_id, now=now, db=conn)
        row = _aggregate(
            db.execute(
                "SELECT u.*, ARRAY(SELECT combo FROM seen_combos WHERE run_id = %s) FROM ledger_usage(%s, %s, %s) AS u",
                (run_id, run_id, day, now),
            ).fetchone()
        )
        usage = UsageSnapshot(batch_tokens=row[0], day_tokens=row[1], batch_micro_usd=row[2], day_micro_usd=row[3])
        return usage, frozenset(row[4])

    @contextmanager
    def admission_lock(self, run_id: str, now: float) -> Iterator[Any]:
        """A transaction holding the day's and the run's admission locks: the gate's
        fallback after repeated conflicts reads, evaluates and admits under it."""
        with self.transaction() as db:
            self._lock_totals(db, utc_day(now), run_id)
            yield db

    def admit(self, admission: Admission, db: Any = None) -> UsageSnapshot | None:
        """Write one gate check in one statement (`ledger_reserve`, one round trip with its
        flush wait): it writes the events and the call row, then takes the day's and the
        run's admission locks and re-reads the usage; if the reservation no longer fits the
        caps it raises, which rolls the rows back, and the fresh usage it saw is returned;
        else the reservation and the seen combos are written and None is returned."""
        if db is None:
            # a refused admission leaves its message's transaction aborted: the pooled
            # connection's context ends it (COMMIT of an aborted transaction rolls it back)
            with self._statement() as conn:
                return self.admit(admission, conn)
        a, res = admission, admission.reservation

        def cap(value: int | None) -> int | None:
            return None if value is None or value >= _NO_CAP else value

        call = call_row(a.call) if a.call is not None else (None,) * 15
        try:
            self._step(
                db,
                "policy_engine_reserve",
                (
                    a.run_id,
                    utc_day(a.now),
                    a.now,
                    a.created_at,
                    None if res is None else res.id,
                    0 if res is None else res.tokens,
                    0 if res is None else res.micro_usd,
                    None if res is None else res.expires_at,
                    cap(a.caps.run_tokens),
                    cap(a.caps.day_tokens),
                    cap(a.caps.run_micro_usd),
                    cap(a.caps.day_micro_usd),
                    [kind for kind, _ in a.events],
                    [payload for _, payload in a.events],
                    call[0],
                    *call[2:14],
                    list(a.combos),
                ),
            )
        except self._psycopg.Error as exc:
            if exc.sqlstate != _REFUSED:
                raise
            run_t, day_t, run_u, day_u = (int(v) for v in str(exc.diag.message_detail).split(","))
            return UsageSnapshot(batch_tokens=run_t, day_tokens=day_t, batch_micro_usd=run_u, day_micro_usd=day_u)
        return None

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
        res = new_reservation(run_id, tokens, micro_usd, now=now, ttl_s=ttl_s)
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
        events: SettleEvents | None = None,
    ) -> Settlement:
        """As `Ledger.settle`, in one statement (`ledger_settle`, one round trip): the
        reservation's state, the usage point, the counters and the events commit together.
        The events are built for "no overspend" first; when the server finds the
        settlement is an overspend (or was one we expected and is not), it writes nothing,
        returns the reservation's facts, and the call is repeated with the events built
        for them (a second round trip, only then)."""
        check_quantity("prompt_tokens", prompt_tokens)
        check_quantity("completion_tokens", completion_tokens)
        check_quantity("micro_usd", micro_usd, MAX_MICRO_USD)
        now = self.clock()
        total = prompt_tokens + completion_tokens
        overspend: dict[str, Any] | None = None
        with self._statement() as db:
            for _attempt in range(4):
                rows = ([event] if event is not None else []) + (events(overspend) if events is not None else [])
                found, after = self._step(
                    db,
                    "policy_engine_settle",
                    (
                        run_id,
                        reservation_id,
                        utc_day(now),
                        now,
                        prompt_tokens,
                        completion_tokens,
                        micro_usd,
                        model,
                        None if overspend is None else overspend["reason"],
                        [r[0] for r in rows],
                        [r[1] for r in rows],
                        [r[2] for r in rows],
                    ),
                    ("policy_engine_flush_usage", (run_id, utc_day(now), now)),
                )
                status, usage_id, day, reserved, reserved_usd, expires_at = found[:6]
                if status == "unknown":
                    raise self._unknown(str(reservation_id), run_id)
                if status == "repeat":
                    prior = None if usage_id is None else (usage_id, *found[7:])
                    return _repeat(
                        prior,
                        run_id,
                        day,
                        prompt_tokens,
                        completion_tokens,
                        micro_usd,
                        model,
                        str(reservation_id),
                        self.path,
                    )
                if status == "settled":
                    return Settlement(
                        int(usage_id),
                        run_id,
                        day,
                        prompt_tokens,
                        completion_tokens,
                        micro_usd,
                        reservation_id,
                        overspend=overspend,
                        usage=None if after is None else _usage(after, utc_day(now), now),
                    )
                overspend = _overspend(
                    str(reservation_id), day, total, micro_usd, reserved, reserved_usd, expires_at, now
                )
        raise RuntimeError("ledger_settle kept disagreeing about the overspend")  # pragma: no cover

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


def _usage(row: tuple[Any, ...], day: str, now: float) -> KnownUsage:
    return KnownUsage(
        UsageSnapshot(batch_tokens=row[0], day_tokens=row[1], batch_micro_usd=row[2], day_micro_usd=row[3]), day, now
    )


def _configure(conn: Any) -> None:
    """Each new pooled connection plans our statements once: every query the ledger sends
    is an index lookup whose plan does not depend on the values, and PostgreSQL's default
    keeps re-planning a prepared statement (custom plans) when it estimates them cheaper
    (ledger_usage's plan took 0.65 ms to make and 0.25 ms to run)."""
    conn.execute("SET plan_cache_mode = force_generic_plan")


def _pool_errors() -> type[BaseException]:
    from psycopg_pool import PoolTimeout

    return PoolTimeout
