"""The dashboards' read-only reader of a PostgreSQL ledger.

Same queries as the SQLite `LedgerReader` (they are written once, in SQL both run); what
differs is how read-only is enforced. The session starts with
``default_transaction_read_only=on`` and every transaction is also begun READ ONLY, so the
server itself refuses any write, whatever the code does; REPEATABLE READ gives one request
one snapshot, so a page's tables and charts never mix two moments. The reader never
creates or migrates the schema (that is the gate's job, `PgLedger`): a database without
the ledger's tables is refused (L116), one migrated by a newer engine too (L112), and an
unreachable server is the retryable L111 (the server answers 503).
"""

from __future__ import annotations

from typing import Any

import psycopg

from policy_engine.adapters.ledger import LedgerUnavailable
from policy_engine.adapters.ledger_pg import SCHEMA_VERSION, conninfo_of, redact
from policy_engine.adapters.ledger_reader import LedgerReader
from policy_engine.errors import Diagnostic


class PgLedgerReader(LedgerReader):
    schema_supported = SCHEMA_VERSION

    def __init__(self, url: str, *, timeout_s: float = 10.0) -> None:
        self.path = redact(url)
        parts = self.path.split("?", 1)[0]
        self.label = parts.split("@", 1)[-1] if "@" in parts else parts.split("://", 1)[-1]
        conninfo, _, timeout_s = conninfo_of(url, timeout_s=timeout_s)
        try:
            self._conn = psycopg.connect(conninfo, options="-c default_transaction_read_only=on")
        except psycopg.Error as exc:
            raise self._unavailable(exc) from None
        self._conn.read_only = True
        self._conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        tables = {
            r[0]
            for r in self._all("SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()")
        }
        self._adopt(tables)

    def _unavailable(self, exc: BaseException) -> LedgerUnavailable:
        return LedgerUnavailable(
            [
                Diagnostic(
                    "L111",
                    f"the PostgreSQL ledger is unavailable: {str(exc).strip() or type(exc).__name__}",
                    hint="is the server up and the URL right? retry when it is",
                    file=self.path,
                )
            ]
        )

    def _all(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        try:
            return self._conn.execute(sql.replace("?", "%s"), args).fetchall()
        except (
            psycopg.OperationalError,
            psycopg.InterfaceError,
        ) as exc:  # lost server; anything else is a bug and surfaces
            raise self._unavailable(exc) from None

    def close(self) -> None:
        self._conn.close()  # ends the read-only transaction (rolled back: nothing to keep)
