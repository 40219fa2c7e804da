"""The evaluator: limits, the fallback ladder, lanes and floors, KPIs."""

from __future__ import annotations

from policy_engine.evaluator.core import EXPLAIN_LEVELS, evaluate

__all__ = ["EXPLAIN_LEVELS", "evaluate"]
