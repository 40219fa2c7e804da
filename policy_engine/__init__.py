"""policy_engine: declarative token and cost budgets for an LLM agent's prompts."""

from __future__ import annotations

__version__ = "0.1.0"

#: True in the `policy` command's own process (its entry point sets it). Only there may the
#: engine change how a third-party library loads (dsl/lark_import.py); a program that imports
#: the engine as a library keeps its libraries configured as it set them up.
OWN_PROCESS = False
