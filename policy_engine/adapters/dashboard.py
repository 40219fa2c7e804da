"""Dashboard payloads in the agent's contract (budget console and KPI view of a run), built
from the ledger's events and usage. Null-safe: a missing metric is null, never an error,
and a flag whose inputs are missing is null rather than a guess."""

from __future__ import annotations

from typing import Any

from policy_engine.adapters.ledger import Ledger
from policy_engine.policy import Policy

CHECK_EVENTS = ("budget.check_passed", "budget.check_failed")
LOW_NOVELTY = 0.15


def _over(value: Any, limit: Any) -> bool | None:
    if value is None or limit is None:
        return None
    return bool(value > limit)


def _last(series: list[dict[str, Any]]) -> Any:
    return series[-1]["value"] if series else None


def budget_payload(ledger: Ledger, run_id: str, policy: Policy) -> dict[str, Any]:
    events = ledger.events(run_id)
    checks = [(p, ts) for t, p, ts in events if t in CHECK_EVENTS]
    limits = policy.settings

    def limit(metric: str) -> int | None:
        item = limits.limit(metric)
        return None if item is None else item.value

    prompt = [{"ts": ts, "value": p.get("prompt_tokens"), "limit": (p.get("limits") or {}).get("max_prompt_tokens")} for p, ts in checks]
    completion = [{"ts": ts, "value": p.get("completion_tokens"), "limit": (p.get("limits") or {}).get("max_completion_tokens")} for p, ts in checks]
    timeline = [{"ts": ts, "phase": p.get("fallback_phase"), "factor": p.get("fallback_factor"), "fallback_count": p.get("fallback_count"), "selected_topk": p.get("selected_topk")}
                for t, p, ts in events if t == "budget.fallback_applied"]
    run_tokens, _, usage_points = ledger.settled_totals(run_id=run_id)
    day = events[-1][2][:10] if events else None  # the UTC day of the run's last event
    gauges = {
        "prompt_tokens": {"value": _last(prompt), "limit": limit("request_prompt")},
        "completion_tokens": {"value": _last(completion), "limit": limit("request_completion")},
        "batch_tokens": {"value": run_tokens if (usage_points or checks) else None, "limit": limit("batch_total")},
        "day_tokens": {"value": ledger.settled_totals(day=day)[0] if day else None, "limit": limit("day_total")},
    }
    floors = [p.get("explore_floor_preserved") for p, _ in checks]
    flags = {
        "budget_blocked": any(t == "budget.blocked" for t, _, _ in events),
        "over_prompt_budget": _over(gauges["prompt_tokens"]["value"], gauges["prompt_tokens"]["limit"]),
        "over_completion_budget": _over(gauges["completion_tokens"]["value"], gauges["completion_tokens"]["limit"]),
        "over_batch_budget": _over(gauges["batch_tokens"]["value"], gauges["batch_tokens"]["limit"]),
        "over_day_budget": _over(gauges["day_tokens"]["value"], gauges["day_tokens"]["limit"]),
        "explore_floor_breached": (False in floors) if floors else None,
    }
    overspends = [p for t, p, _ in events if t == "budget.overspend"]  # settlements the reservations did not cover
    overspend = {"events": len(overspends), "tokens": sum(p.get("tokens") or 0 for p in overspends), "micro_usd": sum(p.get("micro_usd") or 0 for p in overspends)}
    return {"run_id": run_id, "series": {"prompt_tokens": prompt, "completion_tokens": completion, "fallback_timeline": timeline}, "gauges": gauges, "flags": flags,
            "overspend": overspend}


def kpi_payload(ledger: Ledger, run_id: str, policy: Policy) -> dict[str, Any]:
    checks = [(p, ts) for t, p, ts in ledger.events(run_id) if t == "budget.check_passed"]
    configured = float(policy.settings.lanes.explore_ratio)

    def ratio(p: dict[str, Any]) -> float | None:
        lanes = p.get("lane_ratio") or {}
        exploit, explore = lanes.get("exploit_count"), lanes.get("explore_count")
        if exploit is None or explore is None or exploit + explore == 0:
            return None
        return round(float(explore / (exploit + explore)), 6)

    coverage = [{"ts": ts, "value": p.get("coverage_kpi")} for p, ts in checks]
    novelty = [{"ts": ts, "value": p.get("novelty_kpi")} for p, ts in checks]
    explore = [{"ts": ts, "value": ratio(p)} for p, ts in checks]
    cov, nov, exp = _last(coverage), _last(novelty), _last(explore)
    return {
        "run_id": run_id,
        "series": {"coverage": coverage, "novelty": novelty, "explore_ratio": explore},
        "gauges": {"coverage": {"value": cov, "limit": None}, "novelty": {"value": nov, "limit": 1.0}, "explore_ratio": {"value": exp, "limit": configured}},
        "flags": {
            "low_novelty": None if nov is None else nov < LOW_NOVELTY,
            "low_coverage": None if cov is None else cov < 1,
            "explore_floor_breached": None if exp is None else exp < configured - 0.15,
        },
    }
