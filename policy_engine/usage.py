"""What the caller tells the evaluator besides the pack: usage already spent and what
kind of request this is.

Both are plain values passed in, never read from a clock or a database inside the core:
the adapters (ledger, gate) build them, so evaluation stays a pure function.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class UsageSnapshot:
    """Tokens (prompt + completion) and micro-USD already spent before this request:
    in this run/batch and on this UTC day. Reservations held by in-flight requests
    count as spent (the ledger adds them)."""

    batch_tokens: int = 0
    day_tokens: int = 0
    batch_micro_usd: int = 0
    day_micro_usd: int = 0


@dataclass(frozen=True, slots=True)
class Request:
    """Per-call options.

    ``completion_tokens``: the completion budget asked for (``max_output_tokens``); None
    means the policy's ``completion_budget``. It is checked against the
    ``request_completion`` limit (upstream clamped it, so that check could never fail).
    ``expansion``: the caller marks a repair-loop expansion, which may spend the
    expansion reserve and exceed the request prompt limit by up to the reserve.
    """

    completion_tokens: int | None = None
    expansion: bool = False
