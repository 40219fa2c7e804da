"""Dashboard payloads: the runs list, a run's budget view and its KPI view, built from the
ledger's call log and usage (read-only). The pages, the static reports and the JSON API all
render these dicts; nothing is computed twice.

Each payload answers a question without the rules at hand: every gated call carries its
outcome, reasons, rules digest and the limits in force when it was gated (not those of
whatever rules the server loaded), and every flag and threshold says what it means. The
agent's keys (``series``, ``gauges``, ``flags``, reference section 7) stay, extended, so
its dashboards keep working. Null-safe: a missing metric is null, never an error.
"""

from __future__ import annotations

from typing import Any

from policy_engine.adapters.ledger import utc_iso
from policy_engine.adapters.ledger_reader import CallRow, LedgerReader
from policy_engine.decision import usd_text

SCHEMA_VERSION = "2.0"
LOW_NOVELTY = 0.15
EXPLORE_TOLERANCE = 0.15
TOKEN_LIMITS = ("request_prompt", "request_completion", "batch_total", "day_total")

FLAG_MEANINGS = {
    "budget_blocked": "at least one call of the run was blocked (see blocked_by for the reasons)",
    "over_prompt_budget": "the last call's prompt tokens exceed the request_prompt limit in force",
    "over_completion_budget": "the last call's completion budget exceeds the request_completion limit in force",
    "over_batch_budget": "the run's settled tokens exceed the batch_total limit in force",
    "over_day_budget": "the day's settled tokens (all runs) exceed the day_total limit in force; a call is also blocked when its projected total would",
    "explore_floor_breached": "a call kept fewer explore candidates than the explore floor",
}


def _iso(ts: float | None) -> str | None:
    return None if ts is None else utc_iso(ts)


def _limit_value(limits: dict[str, Any], metric: str) -> int | None:
    info = limits.get(metric)
    return None if not isinstance(info, dict) else info.get("value")


def _over(value: Any, limit: Any) -> bool | None:
    if value is None or limit is None:
        return None
    return bool(value > limit)


def _usd(micro: int | None) -> str | None:
    return usd_text(micro)


def runs_payload(reader: LedgerReader) -> dict[str, Any]:
    runs = []
    for r in reader.runs():
        runs.append(
            {
                "run_id": r["run_id"],
                "first_call": _iso(r["first_call"]),
                "last_call": _iso(r["last_call"]),
                "calls": r["calls"],
                "allowed": r["allowed"],
                "trimmed": r["trimmed"],
                "blocked": r["blocked"],
                "usage_points": r["usage_points"],
                "tokens": r["tokens"],
                "micro_usd": r["micro_usd"],
                "usd": _usd(r["micro_usd"]),
            }
        )
    return {"schema_version": SCHEMA_VERSION, "runs": runs, "call_log": reader.has_call_log}


def _call_json(c: CallRow) -> dict[str, Any]:
    prompt_limit = c.limits.get("request_prompt") or {}
    day = c.limits.get("day_total") or {}
    return {
        "seq": c.seq,
        "call_id": c.call_id,
        "ts": utc_iso(c.created_at),
        "outcome": c.outcome,
        "allowed": c.outcome != "blocked",
        "reason": c.reason,
        "reasons": c.reasons,
        "rules_digest": c.rules_digest,
        "prompt_tokens": c.prompt_tokens,
        "prompt_limit": prompt_limit.get("value"),
        "prompt_limit_effective": prompt_limit.get("effective"),
        "completion_tokens": c.completion_tokens,
        "projected_day_tokens": day.get("actual"),
        "day_limit": day.get("value"),
        "request_micro_usd": c.request_micro_usd,
        "request_usd": _usd(c.request_micro_usd),
        "fallback_count": len(c.rungs),
        "rungs": c.rungs,
        "decision_ms": None if c.decision_ms is None else round(c.decision_ms, 3),
        "settled": None
        if c.settled is None
        else {
            "prompt_tokens": c.settled[0],
            "completion_tokens": c.settled[1],
            "total_tokens": c.settled[0] + c.settled[1],
            "micro_usd": c.settled[2],
            "usd": _usd(c.settled[2]),
        },
        "limits": c.limits,
    }


def _gated_with(calls: list[CallRow]) -> list[dict[str, Any]]:
    """Consecutive calls under the same rules and limits, as one entry each: a run gated
    under one policy has one entry; a mid-run rules change shows as a second."""
    out: list[dict[str, Any]] = []
    for c in calls:
        if out and out[-1]["rules_digest"] == c.rules_digest and out[-1]["limits"] == c.limits_without_actuals:
            out[-1]["last_seq"] = c.seq
            out[-1]["calls"] += 1
            continue
        out.append(
            {
                "rules_digest": c.rules_digest,
                "first_seq": c.seq,
                "last_seq": c.seq,
                "calls": 1,
                "limits": c.limits_without_actuals,
            }
        )
    return out


def budget_payload(reader: LedgerReader, run_id: str) -> dict[str, Any]:
    calls = reader.calls(run_id)
    call_json = [_call_json(c) for c in calls]
    last = calls[-1] if calls else None
    limits = last.limits_without_actuals if last else {}
    run_tokens, run_micro, usage_points = reader.run_usage(run_id)
    days = []
    for day in reader.run_days(run_id):
        tokens, micro = reader.day_usage(day)
        in_force = [c for c in calls if utc_iso(c.created_at)[:10] == day]
        day_limit = _limit_value(in_force[-1].limits, "day_total") if in_force else _limit_value(limits, "day_total")
        days.append(
            {
                "day": day,
                "tokens": tokens,
                "limit": day_limit,
                "micro_usd": micro,
                "usd": _usd(micro),
                "over": _over(tokens, day_limit),
            }
        )
    blocked_by: dict[str, int] = {}
    for c in calls:
        if c.outcome == "blocked":
            blocked_by[c.reason or "unknown"] = blocked_by.get(c.reason or "unknown", 0) + 1
    totals = {
        "calls": len(calls),
        "allowed": sum(c.outcome == "allowed" for c in calls),
        "trimmed": sum(c.outcome == "trimmed" for c in calls),
        "blocked": sum(c.outcome == "blocked" for c in calls),
        "blocked_by": dict(sorted(blocked_by.items())),
        "usage_points": usage_points,
        "settled_tokens": run_tokens,
        "settled_micro_usd": run_micro,
        "settled_usd": _usd(run_micro),
    }
    prompt = [
        {
            "seq": c["seq"],
            "call_id": c["call_id"],
            "ts": c["ts"],
            "outcome": c["outcome"],
            "reason": c["reason"],
            "value": c["prompt_tokens"],
            "limit": c["prompt_limit"],
        }
        for c in call_json
    ]
    completion = [
        {
            "seq": c["seq"],
            "call_id": c["call_id"],
            "ts": c["ts"],
            "outcome": c["outcome"],
            "value": c["completion_tokens"],
            "limit": _limit_value(c["limits"], "request_completion"),
        }
        for c in call_json
    ]
    timeline = [
        {
            "seq": c["seq"],
            "call_id": c["call_id"],
            "ts": c["ts"],
            "outcome": c["outcome"],
            "rung": r["rung"],
            "phase": r["pool"],
            "stage": r["stage"],
            "factor": r["step_value"],
            "verdict": r["verdict"],
            "prompt_tokens_before": r["prompt_tokens_before"],
            "prompt_tokens_after": r["prompt_tokens_after"],
        }
        for c in call_json
        for r in c["rungs"]
    ]
    day_spend: list[dict[str, Any]] = []
    running = 0
    for cj in call_json:
        running += cj["settled"]["total_tokens"] if cj["settled"] else 0
        day_spend.append(
            {
                "seq": cj["seq"],
                "call_id": cj["call_id"],
                "ts": cj["ts"],
                "outcome": cj["outcome"],
                "run_settled_tokens": running,
                "projected_day_tokens": cj["projected_day_tokens"],
                "day_limit": cj["day_limit"],
            }
        )
    latest_day = days[-1] if days else None
    gauges: dict[str, dict[str, Any]] = {
        "prompt_tokens": {
            "value": last.prompt_tokens if last else None,
            "limit": _limit_value(limits, "request_prompt"),
            "of": "the last gated call",
        },
        "completion_tokens": {
            "value": last.completion_tokens if last else None,
            "limit": _limit_value(limits, "request_completion"),
            "of": "the last gated call",
        },
        "batch_tokens": {
            "value": run_tokens if (usage_points or calls) else None,
            "limit": _limit_value(limits, "batch_total"),
            "of": "settled tokens of this run",
        },
        "day_tokens": {
            "value": latest_day["tokens"] if latest_day else None,
            "limit": latest_day["limit"] if latest_day else _limit_value(limits, "day_total"),
            "of": f"settled tokens of UTC day {latest_day['day']}, all runs" if latest_day else "no settled usage yet",
        },
    }
    flags = {
        "budget_blocked": bool(blocked_by) if calls else None,
        "blocked_by": sorted(blocked_by),
        "over_prompt_budget": _over(gauges["prompt_tokens"]["value"], gauges["prompt_tokens"]["limit"]),
        "over_completion_budget": _over(gauges["completion_tokens"]["value"], gauges["completion_tokens"]["limit"]),
        "over_batch_budget": _over(gauges["batch_tokens"]["value"], gauges["batch_tokens"]["limit"]),
        "over_day_budget": _over(gauges["day_tokens"]["value"], gauges["day_tokens"]["limit"]),
        "explore_floor_breached": (not all(c.kpis.get("explore_floor_preserved", True) for c in calls))
        if calls
        else None,
    }
    return {
        "schema_version": SCHEMA_VERSION,
        "run_id": run_id,
        "call_log": reader.has_call_log,
        "limits": limits,
        "gated_with": _gated_with(calls),
        "totals": totals,
        "days": days,
        "calls": call_json,
        "series": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "fallback_timeline": timeline,
            "day_spend": day_spend,
        },
        "gauges": gauges,
        "flags": flags,
        "flag_meanings": FLAG_MEANINGS,
        # settlements the reservations did not cover (`budget.overspend` events): never silent
        "overspend": reader.overspend(run_id),
    }


def _explore_ratio(kpis: dict[str, Any]) -> float | None:
    exploit, explore = kpis.get("exploit_count"), kpis.get("explore_count")
    if exploit is None or explore is None or exploit + explore == 0:
        return None
    return round(float(explore) / float(exploit + explore), 6)


def kpi_payload(reader: LedgerReader, run_id: str) -> dict[str, Any]:
    """KPIs of the calls that went ahead (a blocked call's selection never reached the LLM)."""
    calls = [c for c in reader.calls(run_id) if c.outcome != "blocked"]

    def point(c: CallRow, value: Any) -> dict[str, Any]:
        return {"seq": c.seq, "call_id": c.call_id, "ts": utc_iso(c.created_at), "value": value}

    coverage = [point(c, c.kpis.get("coverage")) for c in calls]
    novelty = [point(c, c.kpis.get("novelty")) for c in calls]
    explore = [point(c, _explore_ratio(c.kpis)) for c in calls]
    cov, nov, exp = (s[-1]["value"] if s else None for s in (coverage, novelty, explore))
    lanes = (calls[-1].limits.get("lanes") or {}) if calls else {}
    configured = float(lanes["explore_ratio"]) if "explore_ratio" in lanes else None
    explore_threshold = None if configured is None else round(configured - EXPLORE_TOLERANCE, 6)
    return {
        "schema_version": SCHEMA_VERSION,
        "run_id": run_id,
        "call_log": reader.has_call_log,
        "series": {"coverage": coverage, "novelty": novelty, "explore_ratio": explore},
        "gauges": {
            "coverage": {
                "value": cov,
                "limit": None,
                "threshold": 1,
                "meaning": "unique subcategories in the last call's prompt; below 1 flags low_coverage (the prompt covers no subcategory)",
            },
            "novelty": {
                "value": nov,
                "limit": 1.0,
                "threshold": LOW_NOVELTY,
                "meaning": f"share of the last call's field x operator combos not seen earlier in the run; 1.0 is the most possible (all new); below {LOW_NOVELTY} flags low_novelty",
            },
            "explore_ratio": {
                "value": exp,
                "limit": configured,
                "threshold": explore_threshold,
                "meaning": "share of explore-lane candidates in the last call; the limit is the configured explore share, "
                f"more than {EXPLORE_TOLERANCE} under it flags explore_floor_breached",
            },
        },
        "flags": {
            "low_novelty": None if nov is None else nov < LOW_NOVELTY,
            "low_coverage": None if cov is None else cov < 1,
            "explore_floor_breached": None if exp is None or explore_threshold is None else exp < explore_threshold,
        },
    }
