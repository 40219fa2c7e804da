"""Ledger and gate codes (L1xx)."""

from __future__ import annotations

CODES: dict[str, tuple[str, str]] = {
    "L101": ("ledger directory missing", "create the directory, or pass another --db path"),
    "L102": ("cannot open the ledger", "is it an SQLite file written by policy_engine?"),
    "L103": ("unknown reservation", "pass the reservation id the gate returned"),
    "L104": ("unreadable provider usage", "pass the provider's usage object unchanged (OpenAI or Anthropic shape)"),
    "L105": ("unpriced model under USD limits", "add a price for the model to the rules"),
    "L106": ("no ledger at that path", "run the gate or `policy demo-run` first, or pass the right --db"),
    "L107": ("not a ledger", "pass the SQLite file the budget gate writes (--db)"),
    "L108": ("no such run in the ledger", "pick a run id the runs page or GET /api/runs lists"),
}
