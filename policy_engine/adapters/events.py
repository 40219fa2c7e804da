"""Telemetry events with the agent's names and payload keys, so its dashboards keep
working: `budget.fallback_applied` (one per rung), `budget.check_passed`,
`budget.check_failed`, `budget.explore_floor_preserved`, `budget.blocked`, and
`llm.usage_point`; plus `budget.overspend` (ours: a settlement the reservation did not
cover, with its amount). Sinks: the ledger's `event_log` table (always, in the gate's
transaction), JSON lines, or anything with an `emit(event)` method."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from policy_engine.decision import Decision
from policy_engine.policy import Settings

SEVERITY = {
    "budget.fallback_applied": "warn",
    "budget.check_passed": "info",
    "budget.explore_floor_preserved": "info",
    "budget.check_failed": "warn",
    "budget.blocked": "error",
    "llm.usage_point": "info",
    "budget.overspend": "error",
}


@dataclass(frozen=True)
class Event:
    """The agent's published envelope."""

    event_type: str
    run_id: str
    idea_id: str | None
    message: str
    payload: Mapping[str, Any]
    created_at: str
    stage: str = "budget"

    @property
    def severity(self) -> str:
        return SEVERITY.get(self.event_type, "info")

    def to_json(self) -> dict[str, Any]:
        return {
            "event_type": self.event_type,
            "run_id": self.run_id,
            "idea_id": self.idea_id,
            "stage": self.stage,
            "message": self.message,
            "severity": self.severity,
            "payload": dict(self.payload),
            "created_at": self.created_at,
        }


class EventSink(Protocol):
    def emit(self, event: Event) -> None: ...


class JsonlSink:
    """One JSON object per line, appended with a single write (O_APPEND), so lines from
    several processes never interleave."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)

    def emit(self, event: Event) -> None:
        line = (json.dumps(event.to_json(), sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)


def _usd(micro: int | None) -> float | None:
    return None if micro is None else micro / 1_000_000


def _limits(settings: Settings) -> dict[str, Any]:
    def value(metric: str) -> int | None:
        limit = settings.limit(metric)
        return None if limit is None else limit.value

    return {
        "max_prompt_tokens": value("request_prompt"),
        "max_completion_tokens": value("request_completion"),
        "max_tokens_per_batch": value("batch_total"),
        "max_tokens_per_day": value("day_total"),
        "min_explore_candidates_per_batch": settings.lanes.explore_floor,
    }


def _state_payload(
    decision: Decision,
    settings: Settings,
    counts: Mapping[str, Mapping[str, int]],
    prompt_tokens: int,
    failing: tuple[str, ...],
) -> dict[str, Any]:
    exploit = sum(lanes["exploit"] for lanes in counts.values())
    explore = sum(lanes["explore"] for lanes in counts.values())
    m = decision.metrics
    floor_ok = all(f.preserved for f in decision.explore_floor)
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": m["completion_tokens"],
        "selected_topk": {pool: sum(lanes.values()) for pool, lanes in counts.items()},
        "lane_ratio": {
            "exploit_ratio": float(settings.lanes.exploit_ratio),
            "explore_ratio": float(settings.lanes.explore_ratio),
            "exploit_count": exploit,
            "explore_count": explore,
            "fields": dict(counts.get("fields", {})),
            "operators": dict(counts.get("operators", {})),
        },
        "budget_exceeded": {
            name: name in failing for name in ("request_prompt", "request_completion", "batch_total", "day_total")
        }
        | {"explore_floor": not floor_ok},
        "fallback_count": decision.fallback_count,
        "coverage_kpi": decision.kpis.get("coverage"),
        "novelty_kpi": decision.kpis.get("novelty"),
        "combo_sample": list(decision.kpis.get("combo_sample") or []),
        "projected_batch_tokens": m["batch_tokens_used_before"] + prompt_tokens + m["completion_tokens"],
        "projected_day_tokens": m["day_tokens_used_before"] + prompt_tokens + m["completion_tokens"],
        "batch_tokens_used_before": m["batch_tokens_used_before"],
        "day_tokens_used_before": m["day_tokens_used_before"],
        "estimated_request_cost_usd": _usd(m.get("request_micro_usd")),
        "explore_floor_preserved": floor_ok,
        "limits": _limits(settings),
    }


def budget_events(
    decision: Decision, settings: Settings, *, run_id: str, idea_id: str | None, created_at: str
) -> list[Event]:
    """The agent's event sequence for one gate check: a fallback event per applied rung,
    then passed (+ floor preserved) or failed + blocked."""
    out: list[Event] = []
    for step in decision.rungs:
        assert step.counts_after is not None and step.prompt_tokens_after is not None
        payload = _state_payload(decision, settings, step.counts_after, step.prompt_tokens_after, step.failing)
        payload |= {"step_name": step.rule, "fallback_phase": step.pool, "fallback_factor": _factor(step.step_value)}
        out.append(
            Event(
                "budget.fallback_applied",
                run_id,
                idea_id,
                f"fallback {step.rule} rung {step.rung}: {step.message}",
                payload,
                created_at,
            )
        )
    final_counts = {pool: {lane: len(ids) for lane, ids in lanes.items()} for pool, lanes in decision.selection.items()}
    final = _state_payload(decision, settings, final_counts, decision.metrics["prompt_tokens"], tuple(decision.reasons))
    final["fallback_applied"] = decision.fallback_count > 0
    if decision.allowed:
        out.append(
            Event(
                "budget.check_passed",
                run_id,
                idea_id,
                "budget check passed",
                final | {"step_name": "check_passed"},
                created_at,
            )
        )
        if final["explore_floor_preserved"]:
            out.append(
                Event(
                    "budget.explore_floor_preserved",
                    run_id,
                    idea_id,
                    "explore floor preserved",
                    final | {"step_name": "explore_floor"},
                    created_at,
                )
            )
    else:
        out.append(
            Event(
                "budget.check_failed",
                run_id,
                idea_id,
                "budget check failed: " + ", ".join(decision.reasons),
                final | {"step_name": "check_failed"},
                created_at,
            )
        )
        out.append(
            Event(
                "budget.blocked",
                run_id,
                idea_id,
                f"alpha generation blocked by budget policy: {decision.reason}",
                final | {"step_name": "blocked", "reason": decision.reason},
                created_at,
            )
        )
    return out


def _factor(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        f = float(value)
    except ValueError:
        return None
    return f if math.isfinite(f) else None


def usage_event(
    run_id: str,
    idea_id: str | None,
    created_at: str,
    *,
    prompt_tokens: int,
    completion_tokens: int,
    micro_usd: int | None,
    prompt_chars: int | None,
    completion_chars: int | None,
    provider: str | None,
    model: str | None,
    response_id: str | None,
    raw_usage: Mapping[str, Any] | None,
) -> Event:
    payload: dict[str, Any] = {
        "prompt_chars": prompt_chars,
        "completion_chars": completion_chars,
        "prompt_tokens_rough": None if prompt_chars is None else math.ceil(prompt_chars / 4),
        "completion_tokens_rough": None if completion_chars is None else math.ceil(completion_chars / 4),
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "estimated_cost_usd": _usd(micro_usd),
    }
    if provider is not None or raw_usage is not None:
        payload |= {"provider": provider, "model": model, "response_id": response_id, "usage": dict(raw_usage or {})}
    return Event(
        "llm.usage_point",
        run_id,
        idea_id,
        f"usage {prompt_tokens}+{completion_tokens} tokens",
        payload,
        created_at,
        stage="llm",
    )


def overspend_event(run_id: str, idea_id: str | None, created_at: str, payload: Mapping[str, Any]) -> Event:
    """A settlement the policy's accounting did not cover (payload from the ledger's
    `overspend_payload`): never silent, always in the event log with its amount."""
    what = "after its reservation expired" if payload["reason"] == "settled_after_expiry" else "over its reservation"
    return Event(
        "budget.overspend",
        run_id,
        idea_id,
        f"overspend: {payload['tokens']} tokens settled {what}",
        dict(payload),
        created_at,
    )
