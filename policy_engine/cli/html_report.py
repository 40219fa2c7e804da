"""`policy eval PACKS... --format html`: the corpus report, one row per pack (outcome,
prompt tokens against the limit, rungs, and the pack's ladder chart on demand), as one
self-contained HTML file a CI job uploads. The rows are the corpus payload
(schemas/corpus_report.schema.json), embedded in the page beside the tables drawn from it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from policy_engine.cli.formats import PackResult

SCHEMA_VERSION = "2.0"


def corpus_payload(results: Sequence[PackResult]) -> dict[str, Any]:
    from policy_engine.adapters.call_log import rungs_of

    packs: list[dict[str, Any]] = []
    for r in results:
        d = r.decision
        if d is None:
            packs.append(
                {
                    "file": r.file,
                    "outcome": "invalid",
                    "reason": None,
                    "reasons": [],
                    "prompt_tokens": None,
                    "prompt_limit": None,
                    "request_tokens": None,
                    "fallback_count": None,
                    "rungs": [],
                    "problems": [
                        {"code": p.code, "message": p.message, "location": p.location, "hint": p.hint}
                        for p in r.problems
                    ],
                }
            )
            continue
        prompt_limit = (d.limits.get("request_prompt") or {}).get("value")
        packs.append(
            {
                "file": r.file,
                "outcome": d.outcome,
                "reason": d.reason,
                "reasons": list(d.reasons),
                "prompt_tokens": d.metrics["prompt_tokens"],
                "prompt_limit": prompt_limit,
                "request_tokens": d.metrics["request_tokens"],
                "fallback_count": d.fallback_count,
                "rungs": rungs_of(d),
                "problems": [],
            }
        )
    digests = {r.decision.manifest.get("rules_digest") for r in results if r.decision is not None}
    totals = {"packs": len(packs)} | {
        k: sum(p["outcome"] == k for p in packs) for k in ("allowed", "trimmed", "blocked", "invalid")
    }
    return {
        "schema_version": SCHEMA_VERSION,
        "rules_digest": digests.pop() if len(digests) == 1 else None,
        "totals": totals,
        "packs": packs,
    }


def decision_html(results: Sequence[PackResult], sources: Any = None) -> str:
    from policy_engine.cli.dashboard_commands import require_dashboard_extra

    require_dashboard_extra()
    from policy_engine.adapters.pages import corpus_page

    return corpus_page(corpus_payload(results))
