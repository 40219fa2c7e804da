"""policy_engine: declarative token and cost budgets for an LLM agent's prompts."""

from __future__ import annotations

__version__ = "0.1.0"
