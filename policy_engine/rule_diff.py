"""What a rule change does to a corpus of packs: per pack, whether the outcome, reason,
rungs, final sizes or prompt tokens change; for the corpus, outcome counts, token and USD
totals and the distribution of prompt tokens, before and after.

Totals and the distribution count the calls that would be sent (allowed, possibly
trimmed): a blocked call spends nothing. Percentiles are nearest-rank (the p-th percentile
is the ceil(p/100 * n)-th smallest value), so every figure is a prompt that exists.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from policy_engine.decision import Decision, usd_text

CHANGE_KINDS = ("outcome", "reason", "rungs", "sizes", "prompt_tokens")


@dataclass(frozen=True, slots=True)
class Side:
    """One pack's decision under one rule set, reduced to what a reviewer compares."""

    outcome: str
    reason: str | None
    rungs: tuple[str, ...]
    sizes: tuple[tuple[str, int], ...]
    prompt_tokens: int
    request_micro_usd: int | None

    @classmethod
    def of(cls, decision: Decision) -> Side:
        rungs = tuple(f"{s.rule} {s.step_kind} {s.step_value}" for s in decision.rungs)
        return cls(
            decision.outcome,
            decision.reason,
            rungs,
            tuple(decision.selected_topk.items()),
            decision.metrics["prompt_tokens"],
            decision.metrics["request_micro_usd"],
        )

    @property
    def sent(self) -> bool:
        return self.outcome != "blocked"

    def to_json(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "reason": self.reason,
            "rungs": list(self.rungs),
            "sizes": dict(self.sizes),
            "prompt_tokens": self.prompt_tokens,
            "request_micro_usd": self.request_micro_usd,
        }


@dataclass(frozen=True, slots=True)
class PackDiff:
    file: str
    before: Side
    after: Side

    @property
    def changes(self) -> tuple[str, ...]:
        return tuple(kind for kind in CHANGE_KINDS if getattr(self.before, kind) != getattr(self.after, kind))

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "changes": list(self.changes),
            "before": self.before.to_json(),
            "after": self.after.to_json(),
        }


def nearest_rank(sorted_values: Sequence[int], percent: int) -> int:
    rank = max(1, math.ceil(percent * len(sorted_values) / 100))
    return sorted_values[rank - 1]


def distribution(values: Sequence[int]) -> dict[str, int] | None:
    if not values:
        return None
    ordered = sorted(values)
    return {
        "min": ordered[0],
        "median": nearest_rank(ordered, 50),
        "p95": nearest_rank(ordered, 95),
        "max": ordered[-1],
    }


def corpus_stats(sides: Sequence[Side]) -> dict[str, Any]:
    sent = [s for s in sides if s.sent]
    costs = [s.request_micro_usd for s in sent]
    usd = None if any(c is None for c in costs) else sum(c for c in costs if c is not None)
    return {
        "outcomes": {k: sum(1 for s in sides if s.outcome == k) for k in ("allowed", "trimmed", "blocked")},
        "sent_calls": len(sent),
        "prompt_tokens": sum(s.prompt_tokens for s in sent),
        "request_micro_usd": usd,
        "request_usd": usd_text(usd),
        "prompt_tokens_distribution": distribution([s.prompt_tokens for s in sent]),
    }


@dataclass(frozen=True, slots=True)
class CorpusDiff:
    old_rules: str
    new_rules: str
    packs: tuple[PackDiff, ...]

    @property
    def changed(self) -> tuple[PackDiff, ...]:
        return tuple(p for p in self.packs if p.changes)

    def to_json(self) -> dict[str, Any]:
        return {
            "old_rules": self.old_rules,
            "new_rules": self.new_rules,
            "packs": len(self.packs),
            "changed": len(self.changed),
            "before": corpus_stats([p.before for p in self.packs]),
            "after": corpus_stats([p.after for p in self.packs]),
            "pack_diffs": [p.to_json() for p in self.packs],
        }
