"""What the caller tells the evaluator besides the pack: usage already spent and what
kind of request this is.

Both are plain values passed in, never read from a clock or a database inside the core:
the adapters (ledger, gate) build them, so evaluation stays a pure function. They are also
the core's boundary for quantities: a negative completion budget would reserve negative
tokens and switch the day's cap off for every later call, so every quantity is checked
here, whoever constructs it (API, CLI, test cases, gate), not in one front end.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from policy_engine.errors import Diagnostic, UsageInputError
from policy_engine.reading.bounds import MAX_QUANTITY


def check_quantity(owner: str, name: str, value: object) -> None:
    """Refuse anything but a whole number from 0 to 10^15 (bool is not a number here)."""
    if isinstance(value, bool) or not isinstance(value, int):
        problem = f"{owner}.{name} must be a whole number, got {type(value).__name__} {value!r:.40}"
    elif value < 0:
        problem = f"{owner}.{name} must not be negative, got {value}"
    elif value > MAX_QUANTITY:
        problem = f"{owner}.{name} is above the bound of 10^15"
    else:
        return
    raise UsageInputError(
        [
            Diagnostic(
                "P120",
                problem,
                hint="token counts and micro-USD amounts are whole numbers from 0 to 10^15",
                file=owner,
                pointer=f"/{name}",
            )
        ]
    )


@dataclass(frozen=True, slots=True)
class UsageSnapshot:
    """Tokens (prompt + completion) and micro-USD already spent before this request:
    in this run/batch and on this UTC day. Reservations held by in-flight requests
    count as spent (the ledger adds them)."""

    batch_tokens: int = 0
    day_tokens: int = 0
    batch_micro_usd: int = 0
    day_micro_usd: int = 0

    def __post_init__(self) -> None:
        for f in fields(self):
            check_quantity("UsageSnapshot", f.name, getattr(self, f.name))


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

    def __post_init__(self) -> None:
        if self.completion_tokens is not None:
            check_quantity("Request", "completion_tokens", self.completion_tokens)
            if self.completion_tokens == 0:
                raise UsageInputError(
                    [
                        Diagnostic(
                            "P120",
                            "Request.completion_tokens must be positive, got 0",
                            hint="ask for at least one completion token, or None for the policy's budget",
                            file="Request",
                            pointer="/completion_tokens",
                        )
                    ]
                )
        if not isinstance(self.expansion, bool):
            raise UsageInputError(
                [
                    Diagnostic(
                        "P120",
                        f"Request.expansion must be true or false, got {self.expansion!r:.40}",
                        hint="pass a bool",
                        file="Request",
                        pointer="/expansion",
                    )
                ]
            )
