"""The agent's captured prompts (tests/fixtures/shared/agent_prompts) and what each was
rendered from: pack, knowledge directory, idea spec, the limits echoed into
``budget_policy.llm_budget`` and the selection (the whole pack, or the agent's final
selection from its decision file). See tests/fixtures/shared/README.md."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.conftest import SHARED

PROMPTS = sorted((SHARED / "agent_prompts").glob("*.prompt.txt"))
#: the first captures were rendered with the idea spec and limits raised to 10^7/10^8/10^9
FIRST_CAPTURES = ("seed_5x15x72x60.untrimmed", "small_2x4x10x8.untrimmed", "seed_5x15x72x60.after-default-ladder")
FIRST_RAISED = {"request_prompt": 10**7, "request_completion": 1600, "batch_total": 10**8, "day_total": 10**9}
#: the knowledge_real and edge-pack captures: no idea spec, limits raised to 10^9/10^10
RAISED = {"request_prompt": 10**9, "request_completion": 1600, "batch_total": 10**10, "day_total": 1_500_000}
CONFIG_KEYS = (
    ("max_prompt_tokens", "request_prompt"),
    ("max_completion_tokens", "request_completion"),
    ("max_tokens_per_batch", "batch_total"),
    ("max_tokens_per_day", "day_total"),
)


@dataclass(frozen=True)
class PromptCase:
    file: Path
    pack_name: str
    knowledge_dir: Path
    idea: Path | None
    limits: dict[str, int]
    config: str | None  # the agent's config whose ladder gave the final selection
    decision: Path | None

    @property
    def name(self) -> str:
        return self.file.name.removesuffix(".prompt.txt")

    @property
    def pack(self) -> Path:
        return SHARED / "packs" / f"{self.pack_name}.json"

    def pack_doc(self) -> dict[str, Any]:
        return json.loads(self.pack.read_text(encoding="utf-8"))

    def selection(self) -> dict[str, tuple[str, ...]]:
        doc = self.pack_doc()
        sel = {
            "subcategories": tuple(doc["selected_subcategories"]),
            "datasets": tuple(d["id"] for d in doc["candidate_datasets"]),
            "fields": tuple(f["id"] for f in doc["candidate_fields"]),
            "operators": tuple(o["name"] for o in doc["candidate_operators"]),
        }
        if self.decision is None:
            return sel
        agent = json.loads(self.decision.read_text(encoding="utf-8"))
        for pool in ("fields", "operators", "subcategories"):
            if isinstance(agent.get(pool), list):
                sel[pool] = tuple(agent[pool])
        kept = set(sel["subcategories"])
        sel["datasets"] = tuple(d["id"] for d in doc["candidate_datasets"] if d["subcategory_id"] in kept)
        return sel


def config_limits(config: str) -> dict[str, int]:
    cfg = json.loads((SHARED / "configs" / f"{config}.json").read_text(encoding="utf-8"))
    return {metric: cfg[key] for key, metric in CONFIG_KEYS}


def case_for(file: Path) -> PromptCase:
    name = file.name.removesuffix(".prompt.txt")
    pack_name = name.split(".", 1)[0]
    first = name in FIRST_CAPTURES
    knowledge = SHARED / ("knowledge_real" if ".knowledge_real." in name else "knowledge")
    idea = SHARED / "ideaspec.example.json" if first else None
    if name.endswith("untrimmed"):
        return PromptCase(file, pack_name, knowledge, idea, FIRST_RAISED if first else RAISED, None, None)
    config = "llm_budget_tight" if "llm_budget_tight" in name else "llm_budget"
    stem = name.removesuffix(".final").replace(".after-default-ladder", ".llm_budget")
    return PromptCase(
        file, pack_name, knowledge, idea, config_limits(config), config, SHARED / "agent_decisions" / f"{stem}.json"
    )


CASES = [case_for(f) for f in PROMPTS]
