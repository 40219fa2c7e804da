"""Metrics of one candidate state and the limits checked against them.

Batch and day limits see the usage snapshot plus this request's projected tokens
(prompt + completion budget). The expansion reserve is held back from the batch budget
for ordinary requests; an expansion request may spend it and may exceed the request prompt
limit by up to the reserve.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from policy_engine.policy import METRICS, Enforcement, Limit, Price, Settings
from policy_engine.usage import Request, UsageSnapshot

#: metrics that trimming the prompt can lower; a failing limit on any other metric cannot be
#: fixed by the ladder.
PROMPT_DEPENDENT = frozenset({"request_prompt", "batch_total", "day_total", "request_usd", "batch_usd", "day_usd"})


#: what sets a frozen dataclass's ``__dict__`` in one go (see `Measured`)
_PUT = object.__setattr__


@dataclass(frozen=True, init=False)
class Measured:
    prompt_tokens: int
    completion_tokens: int
    projected_batch_tokens: int
    projected_day_tokens: int
    request_micro_usd: int | None
    projected_batch_micro_usd: int | None
    projected_day_micro_usd: int | None

    def __init__(
        self,
        prompt_tokens: int,
        completion_tokens: int,
        projected_batch_tokens: int,
        projected_day_tokens: int,
        request_micro_usd: int | None,
        projected_batch_micro_usd: int | None,
        projected_day_micro_usd: int | None,
    ) -> None:
        # one per ladder state measured: the generated frozen __init__'s seven
        # ``object.__setattr__`` calls were a sixteenth of a rough decision (as `TraceStep`)
        _PUT(
            self,
            "__dict__",
            {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "projected_batch_tokens": projected_batch_tokens,
                "projected_day_tokens": projected_day_tokens,
                "request_micro_usd": request_micro_usd,
                "projected_batch_micro_usd": projected_batch_micro_usd,
                "projected_day_micro_usd": projected_day_micro_usd,
            },
        )

    def value(self, metric: str) -> int | None:
        value: int | None = getattr(self, _METRIC_FIELDS[metric])
        return value


#: metric -> the `Measured` field holding it
_METRIC_FIELDS = {
    "request_prompt": "prompt_tokens",
    "request_completion": "completion_tokens",
    "batch_total": "projected_batch_tokens",
    "day_total": "projected_day_tokens",
    "request_usd": "request_micro_usd",
    "batch_usd": "projected_batch_micro_usd",
    "day_usd": "projected_day_micro_usd",
}


def measure_state(prompt_tokens: int, completion: int, usage: UsageSnapshot, price: Price | None) -> Measured:
    request = prompt_tokens + completion
    cost = price.cost_micro_usd(prompt_tokens, completion) if price is not None else None
    return Measured(
        prompt_tokens=prompt_tokens,
        completion_tokens=completion,
        projected_batch_tokens=usage.batch_tokens + request,
        projected_day_tokens=usage.day_tokens + request,
        request_micro_usd=cost,
        projected_batch_micro_usd=None if cost is None else usage.batch_micro_usd + cost,
        projected_day_micro_usd=None if cost is None else usage.day_micro_usd + cost,
    )


def effective_limit(limit: Limit, settings: Settings, request: Request) -> int:
    """The value a limit is checked against for this request."""
    reserve = settings.expansion_reserve
    if limit.metric == "batch_total" and not request.expansion:
        return limit.value - reserve
    if limit.metric == "request_prompt" and request.expansion:
        return limit.value + reserve
    return limit.value


@dataclass(frozen=True, slots=True)
class LimitCheck:
    """One limit as a request checks it: the `Measured` field it reads, the value it is
    checked against, and the parts of its report that do not depend on the prompt."""

    limit: Limit
    field: str
    effective: int
    block: bool
    #: the limit's report without ``actual`` and ``verdict`` (copied into each decision)
    report: tuple[tuple[str, Any], ...]


@dataclass(frozen=True, slots=True)
class LimitTable:
    """The limits of one resolved settings for one kind of request (ordinary or
    expansion), prepared once: a decision checks them at every rung and reports them at
    the end, and re-deriving each effective value, unit and span there was most of a
    rough decision's time."""

    checks: tuple[LimitCheck, ...]

    def failing(self, measured: Measured, *, block: bool) -> tuple[str, ...]:
        """The metrics of the limits of that severity (block or warn) that ``measured`` exceeds."""
        out = []
        for check in self.checks:
            if check.block is block:
                value = getattr(measured, check.field)
                if value is not None and value > check.effective:
                    out.append(check.limit.metric)
        return tuple(out)


def limit_table(settings: Settings, request: Request) -> LimitTable:
    checks = []
    for limit in settings.limits:
        effective = effective_limit(limit, settings, request)
        report = (
            ("rule", limit.rule),
            ("value", limit.value),
            ("effective", effective),
            ("severity", limit.severity.value),
            ("unit", "micro_usd" if METRICS[limit.metric] == "usd" else METRICS[limit.metric]),
        )
        checks.append(
            LimitCheck(limit, _METRIC_FIELDS[limit.metric], effective, limit.severity is Enforcement.BLOCK, report)
        )
    return LimitTable(tuple(checks))


def failing(settings: Settings, request: Request, measured: Measured, severity: Enforcement) -> tuple[str, ...]:
    """The metrics of the limits of ``severity`` that ``measured`` exceeds, for a caller
    without an engine's prepared table (`Engine.limit_table`)."""
    return limit_table(settings, request).failing(measured, block=severity is Enforcement.BLOCK)


def unfixable(
    settings: Settings,
    request: Request,
    usage: UsageSnapshot,
    completion: int,
    price: Price | None,
    metrics: tuple[str, ...],
) -> tuple[str, ...]:
    """Failing limits that an empty prompt would still fail: trimming cannot help."""
    floor_state = measure_state(0, completion, usage, price)
    out = []
    for metric in metrics:
        if metric not in PROMPT_DEPENDENT:
            out.append(metric)
            continue
        limit = settings.limit(metric)
        value = floor_state.value(metric)
        if limit is not None and value is not None and value > effective_limit(limit, settings, request):
            out.append(metric)
    return tuple(out)
