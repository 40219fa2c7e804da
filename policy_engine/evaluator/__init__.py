"""The evaluator: limits, the fallback ladder, lanes and floors, KPIs."""

from __future__ import annotations

from policy_engine.evaluator.core import EXPLAIN_LEVELS, evaluate
from policy_engine.evaluator.engine import Engine

__all__ = ["EXPLAIN_LEVELS", "Engine", "evaluate"]
