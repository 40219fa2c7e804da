"""The decision trace: small immutable records, one per rule applied or rung tried, that
say what happened and why (not log lines). The CLI renders them; JSON dumps them as is."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from policy_engine.errors import Span


def span_json(span: Span | None) -> dict[str, Any] | None:
    if span is None or span.line == 0:
        return None
    return {"file": span.file, "line": span.line, "column": span.column}


#: what sets a frozen dataclass's ``__dict__`` in one go (see `TraceStep`)
_PUT = object.__setattr__


@dataclass(frozen=True, init=False)
class TraceStep:
    """``kind``: ``condition`` (a `when` block matched), ``start`` (the initial selection),
    ``rung`` (a ladder step tried), ``check`` (a limit evaluated at the final state),
    ``stop`` (why evaluation ended). ``verdict``: ``pass``, ``fail``, ``applied``,
    ``skipped`` or ``info``."""

    kind: str
    rule: str
    verdict: str
    span: Span | None = None
    stage: str | None = None
    pool: str | None = None
    step_kind: str | None = None
    step_value: str | None = None
    rung: int | None = None  # 1-based position in the whole ladder
    counts_before: Mapping[str, Mapping[str, int]] | None = None
    counts_after: Mapping[str, Mapping[str, int]] | None = None
    prompt_tokens_before: int | None = None
    prompt_tokens_after: int | None = None
    removed: Mapping[str, tuple[str, ...]] | None = None
    failing: tuple[str, ...] = ()
    message: str = ""
    item_tokens: Mapping[str, Mapping[str, int]] | None = field(default=None)

    def __init__(
        self,
        kind: str,
        rule: str,
        verdict: str,
        span: Span | None = None,
        stage: str | None = None,
        pool: str | None = None,
        step_kind: str | None = None,
        step_value: str | None = None,
        rung: int | None = None,
        counts_before: Mapping[str, Mapping[str, int]] | None = None,
        counts_after: Mapping[str, Mapping[str, int]] | None = None,
        prompt_tokens_before: int | None = None,
        prompt_tokens_after: int | None = None,
        removed: Mapping[str, tuple[str, ...]] | None = None,
        failing: tuple[str, ...] = (),
        message: str = "",
        item_tokens: Mapping[str, Mapping[str, int]] | None = None,
    ) -> None:
        # The generated frozen __init__ sets its 17 fields one ``object.__setattr__`` call
        # at a time; a decision builds a dozen steps, and those calls were a tenth of a rough
        # decision's time. The instance's ``__dict__`` is set whole instead (the class has
        # no slots for that reason): half the time. Same fields, order and defaults
        # (tests/test_trace.py).
        _PUT(
            self,
            "__dict__",
            {
                "kind": kind,
                "rule": rule,
                "verdict": verdict,
                "span": span,
                "stage": stage,
                "pool": pool,
                "step_kind": step_kind,
                "step_value": step_value,
                "rung": rung,
                "counts_before": counts_before,
                "counts_after": counts_after,
                "prompt_tokens_before": prompt_tokens_before,
                "prompt_tokens_after": prompt_tokens_after,
                "removed": removed,
                "failing": failing,
                "message": message,
                "item_tokens": item_tokens,
            },
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": self.kind,
            "rule": self.rule,
            "verdict": self.verdict,
            "span": span_json(self.span),
            "message": self.message,
        }
        optional = {
            "stage": self.stage,
            "pool": self.pool,
            "step_kind": self.step_kind,
            "step_value": self.step_value,
            "rung": self.rung,
            "counts_before": _plain(self.counts_before),
            "counts_after": _plain(self.counts_after),
            "prompt_tokens_before": self.prompt_tokens_before,
            "prompt_tokens_after": self.prompt_tokens_after,
            "removed": {k: list(v) for k, v in self.removed.items()} if self.removed is not None else None,
            "item_tokens": _plain(self.item_tokens),
        }
        out.update({k: v for k, v in optional.items() if v is not None})
        if self.failing:
            out["failing"] = list(self.failing)
        return out


def _plain(value: Any) -> Any:
    if value is None:
        return None
    return {k: dict(v) for k, v in value.items()}
