"""The decision: immutable, self-explaining, and serialised canonically so identical
inputs give byte-identical JSON (sorted keys, integers for tokens and micro-dollars,
decimal strings for display amounts; no floats except the two KPI ratios, which are
rounded to 6 places before serialising)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from policy_engine.pretty_json import dumps_indented, plain_float
from policy_engine.trace import TraceStep

SCHEMA_VERSION = "1.0"


def usd_text(micro_usd: int | None) -> str | None:
    if micro_usd is None:
        return None
    sign = "-" if micro_usd < 0 else ""
    whole, frac = divmod(abs(micro_usd), 1_000_000)
    return f"{sign}{whole}.{frac:06d}"


@dataclass(frozen=True, slots=True)
class DecisionWarning:
    code: str
    message: str
    rule: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "rule": self.rule}


@dataclass(frozen=True, slots=True)
class FloorStatus:
    pool: str
    required: int  # the policy's explore floor
    available: int  # explore candidates the pack offered at the start
    kept: int
    status: str  # "preserved" | "pack_short" (the pack had fewer) | "not_preserved"

    @property
    def preserved(self) -> bool:
        return self.status != "not_preserved"

    def to_json(self) -> dict[str, Any]:
        return {
            "required": self.required,
            "available": self.available,
            "kept": self.kept,
            "status": self.status,
            "preserved": self.preserved,
        }


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    outcome: str  # "allowed" | "trimmed" | "blocked"
    reason: str | None
    reasons: tuple[str, ...]
    warnings: tuple[DecisionWarning, ...]
    selection: Mapping[str, Mapping[str, tuple[str, ...]]]  # pool -> lane -> ids in rank order
    metrics: Mapping[str, Any]
    limits: Mapping[str, Any]
    kpis: Mapping[str, Any]
    explore_floor: tuple[FloorStatus, ...]
    fallback_count: int
    trace: tuple[TraceStep, ...]
    manifest: Mapping[str, Any]
    explain: str = "rules"
    #: tokens by prompt section, final and untrimmed (`policy_engine.breakdown`); only with
    #: explain "full", so other decisions serialise exactly as before
    breakdown: Mapping[str, Any] | None = None

    @property
    def selected_topk(self) -> dict[str, int]:
        return {pool: sum(len(ids) for ids in lanes.values()) for pool, lanes in self.selection.items()}

    @property
    def rungs(self) -> tuple[TraceStep, ...]:
        return tuple(step for step in self.trace if step.kind == "rung" and step.verdict != "skipped")

    def to_dict(self) -> dict[str, Any]:
        metrics = dict(self.metrics)
        out: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "allowed": self.allowed,
            "outcome": self.outcome,
            "reason": self.reason,
            "reasons": list(self.reasons),
            "warnings": [w.to_json() for w in self.warnings],
            "selection": {
                pool: {lane: list(ids) for lane, ids in lanes.items()} for pool, lanes in self.selection.items()
            },
            "selected_topk": self.selected_topk,
            "metrics": metrics,
            "limits": dict(self.limits),
            "kpis": dict(self.kpis),
            "explore_floor": {f.pool: f.to_json() for f in self.explore_floor},
            "fallback_count": self.fallback_count,
            "manifest": dict(self.manifest),
            "explain": self.explain,
        }
        if self.explain != "off":
            out["trace"] = [step.to_json() for step in self.trace]
        if self.breakdown is not None:
            out["breakdown"] = dict(self.breakdown)
        return out

    def to_json(self) -> str:
        # the only float is the novelty (tests/test_decision_json.py)
        plain = plain_float(self.kpis.get("novelty"))
        return dumps_indented(self.to_dict(), sort_keys=True, indent=2, ensure_ascii=False, plain_floats=plain) + "\n"
