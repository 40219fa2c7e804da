"""Ledger and gate codes (L1xx)."""

from __future__ import annotations

CODES: dict[str, tuple[str, str]] = {
    "L101": ("ledger directory missing", "create the directory, or pass another --db path"),
    "L102": ("cannot open the ledger", "is it an SQLite file written by policy_engine?"),
    "L103": ("unknown reservation", "pass the reservation id the gate returned"),
    "L104": ("unreadable provider usage", "pass the provider's usage object unchanged (OpenAI or Anthropic shape)"),
    "L105": ("unpriced model under USD limits", "add a price for the model to the rules"),
    "L106": (
        "reservation already settled with other numbers",
        "settle each reservation once; a retry must repeat the same numbers",
    ),
    "L107": (
        "reservation cannot be renewed",
        "renew well inside the TTL (gate.lease renews every TTL/3) and stop after record_usage",
    ),
    "L108": (
        "quantity over the ledger's bound",
        "no call uses more than 10**15 tokens or 10**18 micro-USD; check the caller's arithmetic",
    ),
    "L109": ("invalid run id", "pass a non-empty run id of at most 200 characters"),
    "L110": ("the ledger refused a write", "a quantity or id is out of range; see docs/reservations.md"),
    "L111": (
        "the ledger is unavailable (retryable)",
        "retry the call; check the PostgreSQL server or the SQLite write lock",
    ),
    "L112": ("the ledger's schema is newer than this engine", "upgrade policy_engine on this machine"),
    "L113": ("unsupported ledger URL", "use a path, sqlite:///path or postgresql://user@host:port/db"),
    "L114": ("unknown run", "check --run-id and --ledger"),
    "L115": ("no ledger at that path", "run the gate or `policy demo-run` first, or pass the right --ledger"),
    "L116": ("not a ledger", "pass the ledger the budget gate writes (--ledger: a SQLite path or a postgresql:// URL)"),
}
