"""Coverage and novelty, as the agent computes them (so its dashboards keep meaning the
same): coverage is the number of unique subcategories selected; novelty is the share of
field×operator combos (first 20 fields × first 20 operators) not seen earlier."""

from __future__ import annotations

from typing import Any

from policy_engine.evaluator.selection import State

COMBO_FIELDS = 20
COMBO_OPERATORS = 20
COMBO_SAMPLE = 64


def compute_kpis(state: State, seen: frozenset[str]) -> dict[str, Any]:
    fields = [c.id for c in state.get("fields", ())][:COMBO_FIELDS]
    operators = [c.id for c in state.get("operators", ())][:COMBO_OPERATORS]
    combos = [f"{f}::{o}" for f in fields for o in operators]
    novelty = None
    if combos:
        fresh = sum(1 for combo in combos if combo not in seen)
        novelty = round(fresh / len(combos), 6)
    return {
        "coverage": len({c.id for c in state.get("subcategories", ())}),
        "novelty": novelty,
        "combo_count": len(combos),
        "combo_sample": combos[:COMBO_SAMPLE],
    }
