"""Coverage and novelty, as the agent computes them (so its dashboards keep meaning the
same): coverage is the number of unique subcategories selected; novelty is the share of
field×operator combos (first 20 fields × first 20 operators) not seen earlier."""

from __future__ import annotations

from typing import Any

from policy_engine.evaluator.state import State

COMBO_FIELDS = 20
COMBO_OPERATORS = 20
COMBO_SAMPLE = 64


def compute_kpis(state: State, seen: frozenset[str]) -> dict[str, Any]:
    fields = state["fields"].ids[:COMBO_FIELDS]  # a state holds every pool
    operators = state["operators"].ids[:COMBO_OPERATORS]
    count = len(fields) * len(operators)
    novelty = None
    if count:
        # with nothing seen every combo is fresh: no need to spell them all out
        fresh = count if not seen else sum(1 for f in fields for o in operators if f"{f}::{o}" not in seen)
        novelty = round(fresh / count, 6)
    sample = [f"{f}::{o}" for f in fields[: -(-COMBO_SAMPLE // max(1, len(operators)))] for o in operators]
    return {
        "coverage": len(set(state["subcategories"].ids)),
        "novelty": novelty,
        "combo_count": count,
        "combo_sample": sample[:COMBO_SAMPLE],
    }
