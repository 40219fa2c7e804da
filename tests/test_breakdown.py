"""The breakdown: its sections sum exactly to the decision's prompt tokens (final and
untrimmed) on every pack the suite uses and on generated packs and policies; sections
and items land where a reader expects them; and it appears only with explain "full"."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from hypothesis import given

from policy_engine.breakdown import Line, _paths, breakdown, prompt_lines, section_of, share_text
from policy_engine.dsl import load_policy, load_policy_text
from policy_engine.evaluator import evaluate
from policy_engine.packs import load_pack, load_pack_file
from policy_engine.render import load_idea, load_knowledge
from policy_engine.tokens import get_counter
from tests.conftest import ROOT, SHARED
from tests.strategies import packs, policy_specs

SCHEMA = json.loads((ROOT / "schemas" / "decision.schema.json").read_text())
KNOWLEDGE = load_knowledge(SHARED / "knowledge")
IDEA = load_idea(SHARED / "ideaspec.example.json")
SUITE_PACKS = sorted((SHARED / "packs").glob("*.json")) + sorted((ROOT / "examples" / "packs").glob("*.json"))
SUITE_RULES = [
    ROOT / "rules" / "default.policy",
    ROOT / "rules" / "tight.policy",
    ROOT / "examples" / "policies" / "demo.policy",
]


def _sums(decision) -> None:
    bd = decision.breakdown
    assert bd is not None
    jsonschema.validate(json.loads(decision.to_json()), SCHEMA)
    final, untrimmed = bd["final"], bd["untrimmed"]
    assert final["prompt_tokens"] == decision.metrics["prompt_tokens"]
    start = next(step for step in decision.trace if step.kind == "start")
    assert untrimmed["prompt_tokens"] == start.prompt_tokens_after
    for part in (final, untrimmed):
        assert sum(s["tokens"] for s in part["sections"]) == part["prompt_tokens"]
        assert len({s["section"] for s in part["sections"]}) == len(part["sections"])
        tops = [i["tokens"] for i in part["top_items"]]
        assert tops == sorted(tops, reverse=True) and len(tops) <= 10


@pytest.mark.parametrize("rules", SUITE_RULES, ids=lambda p: p.stem)
@pytest.mark.parametrize("pack", SUITE_PACKS, ids=lambda p: p.stem)
@pytest.mark.parametrize("knowledge", [True, False], ids=["knowledge", "bare"])
def test_parts_sum_to_prompt_tokens_on_every_suite_pack(pack: Path, rules: Path, knowledge: bool) -> None:
    policy = load_policy(rules)
    idea = IDEA if knowledge else None
    decision = evaluate(
        policy, load_pack_file(pack, idea=idea), idea=idea, knowledge=KNOWLEDGE if knowledge else None, explain="full"
    )
    _sums(decision)


@given(spec=policy_specs(), pack=packs())
def test_parts_sum_to_prompt_tokens_on_generated_packs_and_policies(spec, pack) -> None:
    """Any tokenizer (exact or rough), any ladder, with and without the knowledge pack."""
    policy = load_policy_text(spec.text(), "<generated>")
    for knowledge in (None, KNOWLEDGE):
        _sums(evaluate(policy, load_pack(pack), knowledge=knowledge, explain="full"))


def test_breakdown_only_with_explain_full() -> None:
    policy = load_policy(ROOT / "rules" / "default.policy")
    pools = load_pack_file(SHARED / "packs" / "seed_5x15x72x60.json", idea=IDEA)
    for explain in ("off", "rules"):
        decision = evaluate(policy, pools, idea=IDEA, knowledge=KNOWLEDGE, explain=explain)
        assert decision.breakdown is None and "breakdown" not in json.loads(decision.to_json())
    full = json.loads(evaluate(policy, pools, idea=IDEA, knowledge=KNOWLEDGE, explain="full").to_json())
    assert set(full["breakdown"]) == {"final", "untrimmed"}


def test_sections_of_the_seed_pack_are_the_ones_a_reader_expects() -> None:
    policy = load_policy(ROOT / "rules" / "default.policy")
    pools = load_pack_file(SHARED / "packs" / "seed_5x15x72x60.json", idea=IDEA)
    d = evaluate(policy, pools, idea=IDEA, knowledge=KNOWLEDGE, explain="full")
    final = {s["section"]: s["tokens"] for s in d.breakdown["final"]["sections"]}
    untrimmed = {s["section"]: s["tokens"] for s in d.breakdown["untrimmed"]["sections"]}
    assert list(final)[:2] == ["envelope", "idea"]
    assert {
        "pool:subcategories",
        "pool:datasets",
        "pool:fields",
        "pool:operators",
        "limits_echo",
        "knowledge:operator_signature_pack",
        "knowledge:fastexpr_examples_pack",
        "knowledge:compact_policy",
    } <= set(final)
    # only fields were trimmed: the fields section shrinks, the other pools do not change
    assert d.selected_topk["fields"] < 72 and untrimmed["pool:fields"] > final["pool:fields"]
    for pool in ("subcategories", "datasets", "operators"):
        assert untrimmed[f"pool:{pool}"] == final[f"pool:{pool}"]
    assert untrimmed["idea"] == final["idea"] and untrimmed["limits_echo"] == final["limits_echo"]


def test_the_limits_echo_is_the_llm_budget_lines() -> None:
    """Four echoed limits: the `llm_budget` key line, one line per limit, the closing brace."""
    counter = get_counter(load_policy(ROOT / "rules" / "default.policy").tokenizer)
    policy = load_policy(ROOT / "rules" / "default.policy")
    from policy_engine.render import build_prompt_model, limits_view

    pools = load_pack_file(SHARED / "packs" / "small_2x4x10x8.json", idea=IDEA)
    model = build_prompt_model(
        policy.template, pools, idea=IDEA, knowledge=KNOWLEDGE, counter=counter, limits=limits_view(policy.settings)
    )
    lines = prompt_lines(model, {p: tuple(c.id for c in pools.pool(p)) for p in pools.pools})
    echo = [line.text.strip() for line in lines if section_of(line.path) == "limits_echo"]
    assert echo == [
        '"llm_budget": {',
        '"max_prompt_tokens": 12000,',
        '"max_completion_tokens": 1600,',
        '"max_tokens_per_batch": 52000,',
        '"max_tokens_per_day": 1500000',
        "}",
    ]


def test_paths_of_nested_json() -> None:
    doc = {
        "a": {"b": [1, {"c": "x"}], "d": []},
        "retrieval_pack": {"candidate_fields": [{"id": "f1", "t": "M"}, {"id": "f2"}]},
    }
    lines = list(_paths(json.dumps(doc, indent=2)))
    assert "".join(line.text for line in lines) == json.dumps(doc, indent=2)
    by_text = [(line.text.strip(), line.path) for line in lines]
    assert by_text[:8] == [
        ("{", ()),
        ('"a": {', ("a",)),
        ('"b": [', ("a", "b")),
        ("1,", ("a", "b", 0)),
        ("{", ("a", "b", 1)),
        ('"c": "x"', ("a", "b", 1, "c")),
        ("}", ("a", "b", 1)),
        ("],", ("a", "b")),
    ]
    assert ('"d": []', ("a", "d")) in by_text
    assert ('"id": "f2"', ("retrieval_pack", "candidate_fields", 1, "id")) in by_text
    assert by_text[-1] == ("}", ())


def test_items_are_named_and_ranked_and_ties_are_stable() -> None:
    class Chars:
        exact = True

        def measure(self, text: str) -> int:
            return len(text)

    text = json.dumps(
        {
            "retrieval_pack": {
                "candidate_fields": [{"id": "short"}, {"id": "a_much_longer_one"}, {"id": "tie_a"}, {"id": "tie_b"}]
            }
        },
        indent=2,
    )
    lines = list(_paths(text))
    bd = breakdown(lines, Chars(), len(text))
    assert [i.name for i in bd.top_items] == ["a_much_longer_one", "short", "tie_a", "tie_b"]
    assert {s.name for s in bd.sections} == {"envelope", "pool:fields"}
    with pytest.raises(AssertionError):
        breakdown(lines, Chars(), len(text) + 1)  # a seam that loses a line is a bug, not a rounding


def test_rough_counts_are_apportioned_to_the_rounded_total() -> None:
    class Rough:
        exact = False

        def measure(self, text: str) -> int:
            return len(text)

        def finish(self, m: int) -> int:
            return -(-m // 4)

    lines = [Line("abc\n", ()), Line("defgh\n", ("idea",)), Line("ij", ("idea",))]
    bd = breakdown(lines, Rough(), 3)  # 12 chars -> 3 tokens
    assert sum(s.tokens for s in bd.sections) == 3
    assert {s.name: s.tokens for s in bd.sections} == {"envelope": 1, "idea": 2}


def test_share_text() -> None:
    assert (
        share_text(1, 3) == "33.3"
        and share_text(2, 3) == "66.7"
        and share_text(0, 0) == "0.0"
        and share_text(5, 5) == "100.0"
    )


def test_other_templates_still_sum(monkeypatch) -> None:
    """A prompt that is not indent-2 JSON is still attributed line by line."""
    text = "plain text\n  not json\n]\nend"
    lines = list(_paths(text))
    assert "".join(line.text for line in lines) == text
