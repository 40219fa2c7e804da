"""A reference orchestrator run: a mock LLM provider and a loop that walks a batch of packs
through the gate, records usage, and stops being allowed once the day's budget is spent."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from policy_engine.adapters.gate import BudgetBlocked, BudgetGate


@dataclass
class MockLLM:
    """Deterministic stand-in for a provider: answers with a small JSON alpha and an
    OpenAI-shaped usage whose completion size is derived from the prompt (no randomness, so
    a demo run is reproducible)."""

    name: str = "mock"
    model: str = "mock-1"
    calls: int = field(default=0)

    def complete(self, prompt_tokens: int, max_completion_tokens: int, idea_id: str) -> dict[str, Any]:
        self.calls += 1
        digest = int(hashlib.sha256(f"{idea_id}:{self.calls}".encode()).hexdigest(), 16)
        completion = min(max_completion_tokens, 200 + digest % 400)
        text = json.dumps(
            {"idea_id": idea_id, "simulation_settings": {"type": "REGULAR", "regular": "rank(ts_mean(close, 20))"}}
        )
        return {
            "id": f"mock-{self.calls}",
            "content": text,
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion,
                "total_tokens": prompt_tokens + completion,
            },
        }


def demo_run(gate: BudgetGate, run_id: str, packs: list[Path], calls: int, llm: MockLLM) -> dict[str, Any]:
    """Gate ``calls`` LLM calls, cycling through ``packs``. Returns a summary."""
    allowed = blocked = 0
    reasons: dict[str, int] = {}
    for i in range(calls):
        path = packs[i % len(packs)]
        pack = json.loads(path.read_text(encoding="utf-8"))
        try:
            result = gate.check(pack, run_id)
        except BudgetBlocked as exc:
            blocked += 1
            reasons[exc.reason] = reasons.get(exc.reason, 0) + 1
            continue
        allowed += 1
        m = result.decision.metrics
        answer = llm.complete(m["prompt_tokens"], m["completion_tokens"], pack.get("idea_id", ""))
        gate.record_usage(
            run_id,
            answer["usage"],
            model=None,
            reservation_id=result.reservation_id,
            provider=llm.name,
            response_id=answer["id"],
            prompt_chars=m["prompt_chars"],
            completion_chars=len(answer["content"]),
            idea_id=pack.get("idea_id"),
        )
    tokens, _micro_usd, points = gate.ledger.settled_totals(run_id=run_id)
    return {
        "run_id": run_id,
        "calls": calls,
        "allowed": allowed,
        "blocked": blocked,
        "block_reasons": reasons,
        "settled_tokens": tokens,
        "usage_points": points,
    }
