"""What a gate check asks the ledger to write, prepared before any lock is taken.

The gate evaluates the policy against a usage snapshot read without locks, then hands the
ledger one `Admission`: the reservation (None for a blocked call), the caps it must still
fit when it is written, and every row the call leaves behind (events, the call-log row,
the replay material, the seen combos), already serialised. The ledger writes it in one
short transaction (one round trip on PostgreSQL) under the day's and the run's admission
locks, re-checking the caps against the usage it sees under them; when the room is gone
it writes nothing and returns the fresh usage, and the gate re-evaluates with it.

Why the caps, and not "the snapshot did not change": under concurrency the day's usage
changes between any two reads, so a compare-and-swap on the snapshot would fail almost
every time. The caps are what the decision relied on: a blocking limit on a usage metric
passes iff usage + request <= its effective value (`evaluator.limits`), so re-checking
exactly that with the usage under the lock admits only what the evaluation would have
admitted at that moment.
"""

from __future__ import annotations

from dataclasses import dataclass

from policy_engine.adapters.call_log import GatedCall
from policy_engine.adapters.ledger import Reservation
from policy_engine.evaluator.limits import effective_limit
from policy_engine.policy import Enforcement, Settings
from policy_engine.usage import Request, UsageSnapshot

#: usage-dependent metrics and the snapshot field each one adds the request to
_USAGE_METRICS = {
    "batch_total": "run_tokens",
    "day_total": "day_tokens",
    "batch_usd": "run_micro_usd",
    "day_usd": "day_micro_usd",
}


@dataclass(frozen=True)
class Caps:
    """The most each total may hold after the reservation (None: no blocking limit)."""

    run_tokens: int | None = None
    day_tokens: int | None = None
    run_micro_usd: int | None = None
    day_micro_usd: int | None = None

    def admit(self, usage: UsageSnapshot, tokens: int, micro_usd: int) -> bool:
        """Whether a reservation of ``tokens`` / ``micro_usd`` still fits on ``usage``."""
        return all(
            cap is None or used + amount <= cap
            for cap, used, amount in (
                (self.run_tokens, usage.batch_tokens, tokens),
                (self.day_tokens, usage.day_tokens, tokens),
                (self.run_micro_usd, usage.batch_micro_usd, micro_usd),
                (self.day_micro_usd, usage.day_micro_usd, micro_usd),
            )
        )


def caps_of(settings: Settings, request: Request, *, priced: bool) -> Caps:
    """The caps an allowed decision relied on: each blocking limit on a batch or day
    metric at its effective value for this request. Warn-only limits never block, so they
    are not re-checked (the decision's warnings describe the snapshot it was evaluated
    with). USD limits apply only when the request had a price (``priced``), as in the
    evaluator, which skips a metric it cannot measure."""
    caps: dict[str, int] = {}
    for limit in settings.limits:
        field = _USAGE_METRICS.get(limit.metric)
        if field is None or limit.severity is not Enforcement.BLOCK:
            continue
        if limit.metric.endswith("_usd") and not priced:
            continue
        value = effective_limit(limit, settings, request)
        caps[field] = min(value, caps.get(field, value))
    return Caps(**caps)


def blocks_only(settings: Settings) -> bool:
    """Whether every limit on a usage metric blocks: then an allowed, untrimmed decision
    depends on the usage only through the caps the admission re-checks, so a check may
    evaluate on a usage that is not the latest (the gate's remembered one)."""
    return all(limit.severity is Enforcement.BLOCK for limit in settings.limits if limit.metric in _USAGE_METRICS)


@dataclass(frozen=True)
class Admission:
    """One gate check's writes. ``events`` are (event type, payload JSON) in order, all
    stamped ``created_at``; ``combos`` are added to the run's seen set."""

    run_id: str
    now: float
    created_at: str
    reservation: Reservation | None
    caps: Caps
    events: tuple[tuple[str, str], ...]
    call: GatedCall | None
    combos: tuple[str, ...] = ()
