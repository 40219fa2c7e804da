"""An engine's memos (prompt models, start states, cuts, measures by identity) change speed,
never decisions: a warm engine, a fresh engine and the verification mode agree byte for
byte, whatever order packs come in; and the ladder state shares what a rung left alone."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policy_engine.dsl import default_rules_path, load_policy, load_policy_text
from policy_engine.evaluator import Engine
from policy_engine.evaluator.engine import evaluate
from policy_engine.evaluator.state import PoolState, initial_state, removed_between, with_pool
from policy_engine.packs import load_pack
from policy_engine.pools import Candidate, Pools
from policy_engine.render import load_idea, load_knowledge
from policy_engine.usage import UsageSnapshot
from policy_engine.verify.strategies import packs, policy_specs
from tests.conftest import ROOT

EXAMPLES = ROOT / "examples"
KNOWLEDGE = load_knowledge(EXAMPLES / "knowledge")
IDEA = load_idea(EXAMPLES / "ideaspec.json")
DEFAULT = load_policy(default_rules_path())
ROUGH = load_policy_text(
    default_rules_path()
    .read_text(encoding="utf-8")
    .replace('tokenizer tiktoken "o200k_base"', "tokenizer rough 4 chars per token"),
    "rough.policy",
)


def _json(decision: Any) -> str:
    return json.dumps(decision.to_json(), sort_keys=True)


def _pack_docs() -> list[dict[str, Any]]:
    return [json.loads(p.read_text(encoding="utf-8")) for p in sorted((EXAMPLES / "packs").glob("*.json"))]


def test_warm_fresh_and_verified_engines_agree_in_any_order() -> None:
    docs = _pack_docs()
    assert len(docs) >= 3
    for policy in (DEFAULT, ROUGH):
        warm = Engine.build(policy, knowledge=KNOWLEDGE)
        for usage in (UsageSnapshot(), UsageSnapshot(day_tokens=1_480_000)):
            for doc in docs + docs[::-1]:
                pools = load_pack(doc, idea=IDEA)
                got = _json(evaluate(warm, pools, idea=IDEA, usage=usage))
                fresh = Engine.build(policy, knowledge=KNOWLEDGE)
                assert got == _json(evaluate(fresh, load_pack(doc, idea=IDEA), idea=IDEA, usage=usage))
                verified = Engine.build(policy, knowledge=KNOWLEDGE, verify_counts=True)
                decision = evaluate(verified, load_pack(doc, idea=IDEA), idea=IDEA, usage=usage)
                assert got == _json(decision)
                assert all(step.rule != "accounting" for step in decision.trace)


def test_rough_characters_equal_the_rendered_prompt() -> None:
    for doc in _pack_docs():
        verified = evaluate(Engine.build(ROUGH, knowledge=KNOWLEDGE, verify_counts=True), load_pack(doc), idea=IDEA)
        quick = evaluate(Engine.build(ROUGH, knowledge=KNOWLEDGE), load_pack(doc), idea=IDEA)
        assert quick.metrics["prompt_chars"] == verified.metrics["prompt_chars"] > 0


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(docs=st.lists(packs(), min_size=1, max_size=3), data=st.data())
def test_one_engine_over_generated_packs_equals_a_fresh_engine_per_pack(docs: list[dict[str, Any]], data: Any) -> None:
    spec = data.draw(policy_specs(scale=700 + len(json.dumps(docs[0])) // 3))
    policy = load_policy_text(spec.text(), "generated.policy")
    warm = Engine.build(policy)
    for doc in docs + docs:
        got = _json(evaluate(warm, load_pack(doc)))
        assert got == _json(evaluate(Engine.build(policy, verify_counts=True), load_pack(doc)))


def _with_operators_of(doc: dict[str, Any], other: dict[str, Any]) -> dict[str, Any]:
    """``doc`` with ``other``'s operators (and the lanes' operator lists that go with them)."""
    out = json.loads(json.dumps(doc))
    out["candidate_operators"] = other["candidate_operators"]
    for lane in ("exploit", "explore"):
        out["lanes"][lane]["operator_names"] = other["lanes"][lane]["operator_names"]
    return out


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(docs=st.lists(packs(), min_size=2, max_size=2), data=st.data())
def test_packs_sharing_lists_share_states_and_still_decide_alone(docs: list[dict[str, Any]], data: Any) -> None:
    """A corpus's packs often differ only outside their candidate lists (another idea, query
    or target) or in one list: one engine shares their ladder states and list measures,
    and each decision is still the one a fresh engine makes for that pack alone."""
    base, other = docs
    renamed = {**base, "idea_id": base["idea_id"] + "-again", "query": base["query"] + " again"}
    mixed = _with_operators_of(base, other)
    spec = data.draw(policy_specs(scale=700 + len(json.dumps(base)) // 3))
    policy = load_policy_text(spec.text(), "generated.policy")
    warm = Engine.build(policy)
    for doc in (base, renamed, mixed, other, renamed, base):
        got = _json(evaluate(warm, load_pack(doc)))
        assert got == _json(evaluate(Engine.build(policy, verify_counts=True), load_pack(doc)))
    settings_ = policy.resolve(load_pack(base).attributes)[0]
    if settings_ is policy.resolve(load_pack(renamed).attributes)[0]:
        assert warm.start_state(load_pack(base), settings_.topk) is warm.start_state(load_pack(renamed), settings_.topk)


def test_pack_identity_parts() -> None:
    """The digest tells documents apart; the structure key only the candidate lists."""
    seed = _pack_docs()[0]
    renamed = {**seed, "idea_id": "another idea"}
    a, b = load_pack(seed), load_pack(renamed)
    assert a.digest != b.digest and a.structure_key == b.structure_key and len(a.structure_key) == 4
    assert load_pack(json.loads(json.dumps(seed))).digest == a.digest
    moved = {**seed, "candidate_fields": seed["candidate_fields"][::-1]}
    assert load_pack(moved).structure_key != a.structure_key
    assert Pools({}, {}, "test").structure_key == ()


# ---- the ladder state ------------------------------------------------------------------


def _cands(pool: str, n: int, parent: str | None = None, lane: str = "exploit") -> tuple[Candidate, ...]:
    return tuple(Candidate(f"{pool[0]}{i}", pool, lane, parent) for i in range(n))


def _state() -> Any:
    subs = _cands("subcategories", 2)
    datasets = (Candidate("d0", "datasets", "exploit", "s0"), Candidate("d1", "datasets", "explore", "s1"))
    fields = (Candidate("f0", "fields", "exploit", "d0"), Candidate("f1", "fields", "explore", "d1"))
    return initial_state(
        Pools(
            {"subcategories": subs, "datasets": datasets, "fields": fields, "operators": _cands("operators", 3)},
            {},
            "test",
        ),
        (),
    )


def test_a_cut_shares_the_pools_it_leaves_alone() -> None:
    state = _state()
    after = with_pool(state, "operators", state["operators"].items[:1])
    assert all(after[p] is state[p] for p in ("subcategories", "datasets", "fields"))
    assert removed_between(state, after) == {"operators": ("o1", "o2")}


def test_a_cut_cascades_to_owned_pools_only_when_owners_go() -> None:
    state = _state()
    after = with_pool(state, "subcategories", state["subcategories"].items[:1])
    assert after["datasets"].ids == ("d0",) and after["fields"].ids == ("f0",)
    assert after["operators"] is state["operators"]
    assert removed_between(state, after) == {"subcategories": ("s1",), "datasets": ("d1",), "fields": ("f1",)}
    # cutting a dataset nobody else owns leaves subcategories alone and cascades to fields
    after = with_pool(state, "datasets", state["datasets"].items[1:])
    assert after["subcategories"] is state["subcategories"] and after["fields"].ids == ("f1",)


def test_a_pool_state_splits_its_lanes_in_rank_order() -> None:
    ps = PoolState.of((Candidate("a", "fields", "explore"), Candidate("b", "fields", "exploit")))
    assert ps.ids == ("a", "b") and [c.id for c in ps.explore] == ["a"] and ps.counts() == {"exploit": 1, "explore": 1}
