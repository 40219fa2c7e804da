"""The parts of a decision that report on the walk's final state: each limit's verdict
(and its trace check), the metrics, the warnings, and the manifest that pins what the
decision was computed with (engine, rules, tokenizer, template, prices)."""

from __future__ import annotations

from typing import Any

import policy_engine
from policy_engine.decision import DecisionWarning, usd_text
from policy_engine.evaluator.limits import LimitTable, Measured
from policy_engine.policy import Policy, Settings
from policy_engine.pools import Pools
from policy_engine.tokens import TokenCounter
from policy_engine.trace import TraceStep, span_json
from policy_engine.usage import Request, UsageSnapshot


def limit_reports(table: LimitTable, now: Measured) -> tuple[dict[str, Any], list[TraceStep]]:
    """Each limit's value, effective value, actual value and verdict, and its trace check."""
    limits_json: dict[str, Any] = {}
    checks: list[TraceStep] = []
    for check in table.checks:
        limit = check.limit
        value = getattr(now, check.field)
        if value is None:  # a USD limit with no price: refused before the walk (V101)
            raise AssertionError(f"limit {limit.rule!r} has no value")
        verdict = "fail" if value > check.effective else "pass"
        report = dict(check.report)
        report["actual"] = value
        report["verdict"] = verdict
        report["span"] = span_json(limit.span)
        limits_json[limit.metric] = report
        checks.append(
            TraceStep(
                "check",
                limit.rule,
                verdict if check.block or verdict != "fail" else "warn",
                span=limit.span,
                message=f"{limit.metric}: {value} vs {check.effective} ({limit.severity.value})",
            )
        )
    return limits_json, checks


def limit_warnings(table: LimitTable, now: Measured) -> list[DecisionWarning]:
    """A warning per failing warn-severity limit (one limit per metric: the checker refuses two)."""
    fails = table.failing(now, block=False)
    return [
        DecisionWarning(
            check.limit.metric,
            f"{check.limit.metric} exceeds its warning limit: {getattr(now, check.field)} > {check.effective}",
            check.limit.rule,
        )
        for check in table.checks
        if not check.block and check.limit.metric in fails
    ]


def decision_metrics(
    exact: int, prompt_chars: int, completion: int, usage: UsageSnapshot, now: Measured, request: Request,
    settings: Settings,
) -> dict[str, Any]:  # fmt: skip
    return {
        "prompt_tokens": exact,
        "prompt_chars": prompt_chars,
        "completion_tokens": completion,
        "request_tokens": exact + completion,
        "batch_tokens_used_before": usage.batch_tokens,
        "day_tokens_used_before": usage.day_tokens,
        "projected_batch_tokens": now.projected_batch_tokens,
        "projected_day_tokens": now.projected_day_tokens,
        "request_micro_usd": now.request_micro_usd,
        "request_usd": usd_text(now.request_micro_usd),
        "projected_batch_micro_usd": now.projected_batch_micro_usd,
        "projected_day_micro_usd": now.projected_day_micro_usd,
        "expansion": request.expansion,
        "expansion_reserve": settings.expansion_reserve,
    }


def manifest(policy: Policy, counter: TokenCounter, pools: Pools) -> dict[str, Any]:
    """What produced the decision, so a replay can tell whether it would be the same."""
    price = policy.price
    return {
        "engine_version": policy_engine.__version__,
        "rules_digest": policy.digest,
        "rules_files": list(policy.source_files),
        "policy_name": policy.name,
        "tokenizer": counter.name,
        "tokenizer_exact": counter.exact,
        "vocab_hash": counter.vocab_hash,
        "template": policy.template,
        "template_digest": policy.template_spec.digest if policy.template_spec is not None else None,
        "pack_format": pools.format,
        "price": None
        if price is None
        else {
            "model": price.model,
            "prompt_usd_per_1m": str(price.prompt_per_million),
            "completion_usd_per_1m": str(price.completion_per_million),
        },
    }
