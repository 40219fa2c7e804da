"""Every prompt the agent really sent (tests/fixtures/shared/agent_prompts: both knowledge
directories, the packs without operators or fields, untrimmed and after the agent's
ladder) is reproduced byte for byte by the shipped template, and the template's arithmetic
count equals a real count of that text, with every tokenizer."""

from __future__ import annotations

from decimal import Decimal

import pytest

from policy_engine.packs import load_pack_file
from policy_engine.policy import Tokenizer
from policy_engine.render import build_prompt_model, load_idea, load_knowledge
from policy_engine.tokens import get_counter
from tests.render.prompt_cases import CASES, PromptCase

COUNTERS = {
    "o200k_base": get_counter(Tokenizer("tiktoken", "o200k_base")),
    "cl100k_base": get_counter(Tokenizer("tiktoken", "cl100k_base")),
    "rough4": get_counter(Tokenizer("rough", chars_per_token=Decimal(4))),
}


def model_for(case: PromptCase, counter):
    idea = load_idea(case.idea) if case.idea else None
    pools = load_pack_file(case.pack, idea=idea)
    return build_prompt_model(
        "agent_envelope",
        pools,
        idea=idea,
        knowledge=load_knowledge(case.knowledge_dir),
        counter=counter,
        limits=case.limits,
    )


def test_every_capture_is_covered() -> None:
    names = {c.name for c in CASES}
    assert len(names) == 20
    assert {c.knowledge_dir.name for c in CASES} == {"knowledge", "knowledge_real"}
    assert any(n.startswith("small_2x4x10x0") for n in names) and any(n.startswith("small_2x4x0x8") for n in names)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_capture_is_rendered_byte_for_byte(case: PromptCase) -> None:
    expected = case.file.read_bytes()
    text = model_for(case, COUNTERS["o200k_base"]).render(case.selection())
    assert text.encode("utf-8") == expected


@pytest.mark.parametrize("counter", sorted(COUNTERS))
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_arithmetic_count_equals_the_real_count(case: PromptCase, counter: str) -> None:
    c = COUNTERS[counter]
    assert model_for(case, c).tokens(case.selection()) == c.count(case.file.read_text(encoding="utf-8"))


def test_no_operator_pack_carries_every_signature_and_visual_card() -> None:
    """Section 3.1: with no operator in the pack every signature and visual card is sent;
    the old engine sent none and undercounted this prompt by 69%."""
    import json

    case = next(c for c in CASES if c.name == "small_2x4x10x0.knowledge_real.untrimmed")
    doc = json.loads(model_for(case, COUNTERS["rough4"]).render(case.selection()))
    kp = doc["knowledge_pack"]
    knowledge = load_knowledge(case.knowledge_dir)
    assert (
        kp["operator_signature_pack"]["operator_count"] == len(knowledge["operator_signature_pack"]["operators"]) == 40
    )
    assert len(kp["fastexpr_visual_pack"]["operators"]) == 40
    assert len(kp["fastexpr_visual_pack"]["example_cards"]) == 8  # capped at MAX
    assert list(kp["fastexpr_visual_pack"]) == [
        "version",
        "generated_at",
        "operators",
        "error_taxonomy",
        "example_cards",
    ]
    assert kp["compact_policy"] == {"operator_candidates": 0, "field_candidates": 10, "max_examples": 8}
