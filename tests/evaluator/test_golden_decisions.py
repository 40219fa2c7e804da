"""Golden decision JSON for the shared sample packs under the shipped default and tight
policies (exact tokenizer, with the knowledge pack and idea spec), compared byte for byte.
Regenerate on purpose only: POLICY_ENGINE_REGEN_GOLDEN=1, then review the diff."""

from __future__ import annotations

import json

import jsonschema
import pytest

from policy_engine.dsl import load_policy_text
from policy_engine.evaluator import evaluate
from policy_engine.packs import load_pack_file
from policy_engine.render import load_idea, load_knowledge
from tests.conftest import REGEN, ROOT, SHARED

GOLDEN = ROOT / "tests" / "golden" / "decisions"
SCHEMA = json.loads((ROOT / "schemas" / "decision.schema.json").read_text())
KNOWLEDGE = load_knowledge(SHARED / "knowledge")
IDEA = load_idea(SHARED / "ideaspec.example.json")
CASES = [
    (pack, rules)
    for pack in ("small_2x4x10x8", "seed_5x15x72x60", "large_8x30x400x120")
    for rules in ("default", "tight")
]


def decide(pack: str, rules: str, explain: str = "rules"):
    policy = load_policy_text((ROOT / "rules" / f"{rules}.policy").read_text(), f"rules/{rules}.policy")
    pools = load_pack_file(SHARED / "packs" / f"{pack}.json", idea=IDEA)
    return evaluate(policy, pools, idea=IDEA, knowledge=KNOWLEDGE, explain=explain)


@pytest.mark.parametrize("pack, rules", CASES)
def test_golden_decision(pack: str, rules: str) -> None:
    text = decide(pack, rules).to_json()
    jsonschema.validate(json.loads(text), SCHEMA)
    golden = GOLDEN / f"{pack}.{rules}.json"
    if REGEN or not golden.exists():
        golden.write_text(text, encoding="utf-8")
        if not REGEN:
            pytest.fail(f"wrote missing golden {golden.name}: review and commit it")
    assert text == golden.read_text(encoding="utf-8")


def test_acceptance_default_trims_the_seed_pack_then_allows_it() -> None:
    d = decide("seed_5x15x72x60", "default")
    assert d.outcome == "trimmed" and d.allowed
    assert [s.pool for s in d.rungs] == ["fields"] * len(d.rungs) and len(d.rungs) >= 2
    assert d.metrics["prompt_tokens"] <= 12000 < d.trace[0].prompt_tokens_after


def test_acceptance_tight_blocks_the_seed_pack_naming_the_limit() -> None:
    d = decide("seed_5x15x72x60", "tight")
    assert (d.allowed, d.reason) == (False, "request_prompt")
    assert d.trace[-1].kind == "stop" and d.trace[-1].failing == ("request_prompt",)


@pytest.mark.parametrize("explain", ["off", "rules", "full"])
def test_every_explain_level_validates(explain: str) -> None:
    jsonschema.validate(json.loads(decide("large_8x30x400x120", "default", explain).to_json()), SCHEMA)
