"""Coverage and novelty, as the agent computes them (so its dashboards keep meaning the
same): coverage is the number of unique subcategories selected; novelty is the share of
field×operator combos (first 20 fields × first 20 operators) not seen earlier."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

from policy_engine.evaluator.state import State

COMBO_FIELDS = 20
COMBO_OPERATORS = 20
COMBO_SAMPLE = 64


def compute_kpis(state: State, seen: frozenset[str]) -> dict[str, Any]:
    coverage, count, sample = state.derived("kpis", lambda: _state_kpis(state))
    novelty = None
    if count:
        # with nothing seen every combo is fresh: no need to spell them all out
        fresh = count if not seen else sum(1 for combo in _combos(state) if combo not in seen)
        novelty = round(fresh / count, 6)
    return {"coverage": coverage, "novelty": novelty, "combo_count": count, "combo_sample": list(sample)}


def _combos(state: State) -> Iterator[str]:
    fields = state["fields"].ids[:COMBO_FIELDS]  # a state holds every pool
    operators = state["operators"].ids[:COMBO_OPERATORS]
    return (f"{f}::{o}" for f in fields for o in operators)


def _state_kpis(state: State) -> tuple[int, int, tuple[str, ...]]:
    """(coverage, combo count, combo sample): what depends on the state alone."""
    count = min(len(state["fields"].ids), COMBO_FIELDS) * min(len(state["operators"].ids), COMBO_OPERATORS)
    sample = tuple(itertools.islice(_combos(state), COMBO_SAMPLE))
    return len(set(state["subcategories"].ids)), count, sample
