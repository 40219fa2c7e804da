"""The public, typed API: load a policy, evaluate a pack, get the trimmed pack.

Evaluation is pure: the same inputs give the same decision (byte-identical JSON) and the
input pack is never mutated. Errors are typed: `RuleSyntaxError`, `RuleCheckError`,
`PackError`, `UsageInputError`, `TokenizerError` (all `PolicyError`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from policy_engine.decision import Decision
from policy_engine.dsl import default_rules_path, load_policy, load_policy_text
from policy_engine.errors import (
    Diagnostic,
    PackError,
    PolicyError,
    RuleCheckError,
    RuleSyntaxError,
    Span,
    TokenizerError,
    UsageInputError,
)
from policy_engine.evaluator import evaluate
from policy_engine.packs import load_pack, read_pack_document
from policy_engine.packs.idea_input import idea_from_document
from policy_engine.packs.registry import find_format
from policy_engine.policy import Policy
from policy_engine.render import load_idea, load_knowledge
from policy_engine.usage import Request, UsageSnapshot

__all__ = [
    "Decision",
    "Diagnostic",
    "PackError",
    "PolicyError",
    "Request",
    "RuleCheckError",
    "RuleSyntaxError",
    "Span",
    "TokenizerError",
    "UsageInputError",
    "UsageSnapshot",
    "default_rules_path",
    "evaluate",
    "evaluate_pack",
    "load_idea",
    "load_policy",
    "load_policy_text",
    "read_pack_document",
    "trimmed_pack",
]


def evaluate_pack(
    policy: Policy,
    pack: Mapping[str, Any],
    *,
    usage: UsageSnapshot = UsageSnapshot(),
    request: Request = Request(),
    seen_combos: frozenset[str] = frozenset(),
    knowledge_dir: str | os.PathLike[str] | None = None,
    idea: Mapping[str, Any] | None = None,
    explain: str = "rules",
) -> Decision:
    """Validate the pack document (and load the optional knowledge pack), then evaluate.

    ``pack`` and ``idea`` are documents (dicts), never paths: a string is refused with
    P112, so a pack's content can never make the engine read a file. Read files explicitly
    with `read_pack_document(path)` and `load_idea(path)`."""
    if idea is not None:
        idea = idea_from_document(idea)
    pools = load_pack(pack, idea=idea)
    knowledge = load_knowledge(knowledge_dir) if knowledge_dir is not None else None
    return evaluate(
        policy,
        pools,
        usage=usage,
        request=request,
        seen_combos=seen_combos,
        idea=idea,
        knowledge=knowledge,
        explain=explain,
    )


def trimmed_pack(pack: Mapping[str, Any], decision: Decision) -> dict[str, Any]:
    """The pack restricted to the decision's selection, in the pack's own format, as the
    orchestrator sends it on. The pack's format (found as `load_pack` finds it) writes it,
    so the core API knows no format's keys. The input is not modified."""
    return find_format(pack, "<pack>", None).trim(pack, decision.selection)
