"""One ledger interface, two backends, chosen by URL:

* a path, or ``sqlite:///relative/path.db`` / ``sqlite:////absolute/path.db`` (SQLAlchemy's
  convention): the embedded SQLite ledger, one machine (the default, unchanged);
* ``postgresql://user@host:port/db`` (or ``postgres://``): the shared PostgreSQL ledger,
  many machines; query options ``pool_size`` (default 4) and ``timeout_s`` (default 10).

Both backends offer the same methods (`UsageLedger`), so the gate, `demo-run`, `serve` and
`report` take either."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from policy_engine.adapters.call_log import GatedCall
from policy_engine.adapters.ledger import Ledger, Reservation, Settlement
from policy_engine.errors import Diagnostic, LedgerError
from policy_engine.usage import UsageSnapshot

if TYPE_CHECKING:
    from policy_engine.adapters.admission import Admission


class UsageLedger(Protocol):
    url: str
    path: str
    clock: Callable[[], float]

    def transaction(self) -> Any: ...
    def snapshot(self, run_id: str, *, now: float | None = None, db: Any = None) -> UsageSnapshot: ...
    def settled_totals(self, *, run_id: str | None = None, day: str | None = None) -> tuple[int, int, int]: ...
    def held(self, *, now: float | None = None) -> int: ...
    def run_exists(self, run_id: str) -> bool: ...
    def events(self, run_id: str) -> list[tuple[str, dict[str, Any], str]]: ...
    def seen_combos(self, run_id: str, db: Any = None) -> frozenset[str]: ...
    def read_usage(
        self, run_id: str, *, now: float | None = None, db: Any = None
    ) -> tuple[UsageSnapshot, frozenset[str]]: ...
    def admission_lock(self, run_id: str, now: float) -> Any: ...
    def admit(self, admission: Admission, db: Any = None) -> UsageSnapshot | None: ...
    def reserve(
        self, db: Any, run_id: str, tokens: int, micro_usd: int, *, now: float, ttl_s: float
    ) -> Reservation: ...
    def add_seen(self, run_id: str, combos: list[str], db: Any = None) -> None: ...
    def add_event(
        self, run_id: str | None, event_type: str, payload_json: str, created_at: str, db: Any = None
    ) -> None: ...
    def record_call(self, call: GatedCall, db: Any = None) -> None: ...
    def renew(self, run_id: str, reservation_id: str, *, ttl_s: float) -> float: ...
    def settle(
        self, run_id: str, prompt_tokens: int, completion_tokens: int, micro_usd: int, **kwargs: Any
    ) -> Settlement: ...
    def schema_version(self) -> int: ...
    def close(self) -> None: ...


def is_postgres(url: str | os.PathLike[str]) -> bool:
    return isinstance(url, str) and url.split("://", 1)[0].lower() in ("postgresql", "postgres")


def sqlite_path(url: str | os.PathLike[str]) -> str | None:
    """The file of an SQLite ledger URL or path; None for a server URL."""
    text = os.fspath(url)
    if is_postgres(text):
        return None
    if text.startswith("sqlite:///"):
        return text[len("sqlite:///") :]
    if "://" in text:
        scheme = text.split("://", 1)[0]
        raise LedgerError(
            [
                Diagnostic(
                    "L113",
                    f"unsupported ledger URL scheme {scheme!r}",
                    hint="use a path, sqlite:///path or postgresql://user@host:port/db",
                    file=text,
                )
            ]
        )
    return text


def open_ledger(url: str | os.PathLike[str], *, clock: Callable[[], float] = time.time, **options: Any) -> Any:
    """Open (creating or migrating on first use) the ledger a URL names."""
    path = sqlite_path(url)
    if path is not None:  # pool options mean nothing to one SQLite connection
        return Ledger(path, clock=clock, **{k: v for k, v in options.items() if k not in ("pool_size", "timeout_s")})
    try:
        from policy_engine.adapters.ledger_pg import PgLedger
    except ImportError:
        raise LedgerError(
            [
                Diagnostic(
                    "L113",
                    "the PostgreSQL ledger needs psycopg 3 and psycopg_pool",
                    hint="pip install 'policy-engine[postgres]'",
                    file=str(url),
                )
            ]
        ) from None
    return PgLedger(str(url), clock=clock, **options)
