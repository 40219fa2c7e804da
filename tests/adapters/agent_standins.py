"""Stand-ins for the agent's objects, written from the reference doc (sections 1, 2, 3,
3.1, 4 and 10), not from the agent's code: pydantic models of the idea spec, the retrieval
pack and the budget config, the usage dataclass, and a prompt builder that compacts the
knowledge bundle and prints the envelope as section 3/3.1 say. The builder is checked
byte for byte against every prompt the agent really sent (tests/fixtures/shared/agent_prompts),
so the tests' "honest" builder is the agent's, not the engine's template in disguise."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

# ---- section 2: the idea spec ---------------------------------------------------------------


class Target(BaseModel):
    instrumentType: str
    region: str
    universe: str
    delay: int


class IdeaSpec(BaseModel):
    idea_id: str
    hypothesis: str
    theme_tags: list[str] = []
    target: Target
    candidate_datasets: list[str] = []
    keywords_for_retrieval: list[str] = []
    # the agent's model carries these three with defaults (they are in every captured prompt)
    candidate_subcategories: list[str] = []
    retrieval_context_id: str | None = None
    exploration_intent: str | None = None


# ---- section 1: the retrieval pack ----------------------------------------------------------

Lane = Literal["exploit", "explore"]


class CandidateDataset(BaseModel):
    id: str
    name: str
    subcategory_id: str
    lane: Lane
    score: float


class CandidateField(BaseModel):
    id: str
    dataset_id: str
    type: str
    lane: Lane
    score: float


class CandidateOperator(BaseModel):
    name: str
    definition: str
    scope: list[str]
    category: str
    lane: Lane
    score: float


class LaneLists(BaseModel):
    field_ids: list[str] = []
    operator_names: list[str] = []


class Lanes(BaseModel):
    exploit: LaneLists
    explore: LaneLists


class VisualGraph(BaseModel):
    version: str = "v1"
    nodes: list[dict[str, Any]] = []
    edges: list[dict[str, Any]] = []


class RetrievalPack(BaseModel):
    model_config = ConfigDict(extra="forbid")

    idea_id: str
    query: str
    target: Target
    selected_subcategories: list[str]
    candidate_datasets: list[CandidateDataset]
    candidate_fields: list[CandidateField]
    candidate_operators: list[CandidateOperator]
    lanes: Lanes
    visual_graph: VisualGraph
    token_estimate: dict[str, int]
    budget_policy: dict[str, Any]
    expansion_policy: dict[str, Any]
    context_guard: dict[str, Any]
    telemetry: dict[str, Any]


# ---- section 4: the budget config -----------------------------------------------------------


class LlmBudget(BaseModel):
    max_prompt_tokens: int = 12000
    max_completion_tokens: int = 1600
    max_tokens_per_batch: int = 52000
    max_tokens_per_day: int = 1500000
    fallback_topk_steps: list[float] = [0.85, 0.7, 0.55, 0.4]
    exploit_ratio: float = 0.7
    explore_ratio: float = 0.3
    min_explore_candidates_per_batch: int = 1
    expansion_reserve_tokens: int = 2500
    estimated_cost_per_1k_prompt_tokens: float = 0.0
    estimated_cost_per_1k_completion_tokens: float = 0.0


# ---- section 10: usage ------------------------------------------------------------------------


@dataclass
class BudgetUsage:
    run_prompt_tokens: int = 0
    run_completion_tokens: int = 0
    day_prompt_tokens: int = 0
    day_completion_tokens: int = 0
    run_calls: int = 0
    day_calls: int = 0

    @property
    def total_run_tokens(self) -> int:
        return self.run_prompt_tokens + self.run_completion_tokens

    @property
    def total_day_tokens(self) -> int:
        return self.day_prompt_tokens + self.day_completion_tokens


# ---- sections 3 and 3.1: the agent's prompt builder ----------------------------------------

MAX_EXAMPLES = 8
RULES = [
    "Return JSON only.",
    "Follow CandidateAlpha schema exactly.",
    "simulation_settings.type must be REGULAR.",
    "simulation_settings.settings.language must be FASTEXPR.",
    "Use only retrieval_pack candidate fields/operators.",
]
OUTPUT_SCHEMA = {
    "idea_id": "str",
    "alpha_id": None,
    "simulation_settings": {
        "type": "REGULAR",
        "settings": "SimulationSettings object (language=FASTEXPR)",
        "regular": "FastExpr string",
    },
    "generation_notes": {
        "used_fields": ["field id"],
        "used_operators": ["operator name"],
        "candidate_lane": "optional exploit|explore",
    },
}


def _names_in(row: dict[str, Any], key: str) -> set[str]:
    value = row.get(key)
    return set(value) if isinstance(value, list) else set()


def compact_knowledge(bundle: dict[str, Any], ops: set[str], fields: set[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}

    def by_name(rows: Any) -> list[Any]:
        return [r for r in (rows or []) if isinstance(r, dict) and r.get("name") and (not ops or r["name"] in ops)]

    sig = bundle.get("operator_signature_pack")
    if isinstance(sig, dict):
        kept = by_name(sig.get("operators"))
        out["operator_signature_pack"] = {
            "version": sig.get("version"),
            "generated_at": sig.get("generated_at"),
            "operator_count": len(kept),
            "operators": kept,
        }
    ex = bundle.get("fastexpr_examples_pack")
    if isinstance(ex, dict):
        examples = []
        for row in ex.get("examples") or []:
            if not isinstance(row, dict):
                continue
            used_ops, used_fields = _names_in(row, "used_operators"), _names_in(row, "used_fields")
            if ops and used_ops and not (used_ops & ops) and not (used_fields & fields):
                continue
            examples.append(row)
            if len(examples) >= MAX_EXAMPLES:
                break
        out["fastexpr_examples_pack"] = {
            "version": ex.get("version"),
            "generated_at": ex.get("generated_at"),
            "fallback_used": bool(ex.get("fallback_used")),
            "examples": examples,
        }
    vis = bundle.get("fastexpr_visual_pack")
    if isinstance(vis, dict):
        cards = []
        for card in vis.get("example_cards") or []:
            if not isinstance(card, dict):
                continue
            used_ops = _names_in(card, "used_operators")
            if ops and used_ops and not (used_ops & ops):
                continue
            cards.append(card)
            if len(cards) >= MAX_EXAMPLES:
                break
        taxonomy = vis.get("error_taxonomy")
        out["fastexpr_visual_pack"] = {
            "version": vis.get("version"),
            "generated_at": vis.get("generated_at"),
            "operators": by_name(vis.get("operators")),
            "error_taxonomy": taxonomy if isinstance(taxonomy, list) else [],
            "example_cards": cards,
        }
    sim = bundle.get("simulation_settings_allowed_pack")
    if isinstance(sim, dict):
        out["simulation_settings_allowed_pack"] = sim
    out["compact_policy"] = {
        "operator_candidates": len(ops),
        "field_candidates": len(fields),
        "max_examples": MAX_EXAMPLES,
    }
    return out


def agent_prompt(idea: IdeaSpec, pack: RetrievalPack, bundle: dict[str, Any]) -> str:
    """The agent's prompt: the envelope, pretty-printed with indent 2."""
    doc = pack.model_dump(mode="python")
    for key in ("visual_graph", "token_estimate", "telemetry"):
        doc.pop(key, None)
    ops = {o["name"] for o in doc["candidate_operators"]}
    fields = {f["id"] for f in doc["candidate_fields"]}
    envelope = {
        "agent": "Alpha Maker",
        "idea": idea.model_dump(mode="python"),
        "retrieval_pack": doc,
        "knowledge_pack": compact_knowledge(bundle, ops, fields),
        "rules": RULES,
        "output_schema": OUTPUT_SCHEMA,
    }
    return json.dumps(envelope, indent=2, ensure_ascii=False)


# ---- loading the shared samples as the agent holds them --------------------------------------


def read_bundle(directory: Path) -> dict[str, Any]:
    """file stem -> parsed JSON, as the agent's knowledge loader hands it over."""
    return {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in sorted(directory.glob("*.json"))}


def read_pack(path: Path) -> RetrievalPack:
    return RetrievalPack.model_validate(json.loads(path.read_text(encoding="utf-8")))


def read_idea(path: Path) -> IdeaSpec:
    return IdeaSpec.model_validate(json.loads(path.read_text(encoding="utf-8")))


def idea_from_pack(pack: RetrievalPack) -> IdeaSpec:
    """The idea the agent's captures without an idea spec carry: built from the pack."""
    return IdeaSpec(idea_id=pack.idea_id, hypothesis=pack.query, target=pack.target)


def read_budget(path: Path) -> LlmBudget:
    return LlmBudget.model_validate(json.loads(path.read_text(encoding="utf-8")))
