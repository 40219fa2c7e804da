"""The public, typed API: load a policy, evaluate a pack, get the trimmed pack.

Evaluation is pure: the same inputs give the same decision (byte-identical JSON) and the
input pack is never mutated. Errors are typed: `RuleSyntaxError`, `RuleCheckError`,
`PackError`, `UsageInputError`, `TokenizerError` (all `PolicyError`).
"""

from __future__ import annotations

import copy
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
    return evaluate(policy, pools, usage=usage, request=request, seen_combos=seen_combos, idea=idea, knowledge=knowledge, explain=explain)


def trimmed_pack(pack: Mapping[str, Any], decision: Decision) -> dict[str, Any]:
    """The pack restricted to the decision's selection, in the pack's own format (lanes
    lists and `context_guard.max_items` kept consistent), as the orchestrator sends it on.
    The input is not modified."""
    out = copy.deepcopy(dict(pack))
    kept = {pool: {i for lane in lanes.values() for i in lane} for pool, lanes in decision.selection.items()}
    out["selected_subcategories"] = [s for s in out["selected_subcategories"] if s in kept["subcategories"]]
    out["candidate_datasets"] = [d for d in out["candidate_datasets"] if d["id"] in kept["datasets"]]
    out["candidate_fields"] = [f for f in out["candidate_fields"] if f["id"] in kept["fields"]]
    out["candidate_operators"] = [o for o in out["candidate_operators"] if o["name"] in kept["operators"]]
    for lane in ("exploit", "explore"):
        lists = out["lanes"][lane]
        lists["field_ids"] = [x for x in lists["field_ids"] if x in kept["fields"]]
        lists["operator_names"] = [x for x in lists["operator_names"] if x in kept["operators"]]
    guard = out.get("context_guard")
    if isinstance(guard, dict) and isinstance(guard.get("max_items"), dict):
        for pool in guard["max_items"]:
            if pool in kept:
                guard["max_items"][pool] = len(kept[pool])
    return out

