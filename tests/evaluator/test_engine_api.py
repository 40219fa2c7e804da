"""The two call forms of `evaluate`: with an `Engine` (built once by the caller) and with a
`Policy` (the compatibility form, which keeps one engine per policy and counter so repeated
calls stay warm), and the counter and knowledge pack each form honours."""

from __future__ import annotations

import dataclasses
import json
from decimal import Decimal
from typing import Any

import pytest

from policy_engine.dsl import load_policy_text
from policy_engine.errors import RuleCheckError, UsageInputError
from policy_engine.evaluator import Engine, core, evaluate
from policy_engine.evaluator.engine import evaluate as engine_evaluate
from policy_engine.packs import load_pack, load_pack_file
from policy_engine.render import load_knowledge
from policy_engine.render.prompt import decision_selection
from policy_engine.tokens import RoughCounter
from policy_engine.usage import UsageSnapshot
from tests.conftest import ROOT

SMALL = load_pack_file(ROOT / "examples" / "packs" / "small_2x4x10x8.json")
KNOWLEDGE = load_knowledge(ROOT / "examples" / "knowledge")
RULES = 'tokenizer tiktoken "o200k_base"\nlimit request_prompt: request_prompt <= 100_000 tokens\n'


def _policy(text: str = RULES):
    return load_policy_text(text, "t.policy")


def test_the_policy_form_keeps_one_engine_per_policy_and_counter() -> None:
    core._COMPAT_ENGINES.clear()
    policy = _policy()
    evaluate(policy, SMALL)
    assert len(core._COMPAT_ENGINES) == 1
    (engine,) = core._COMPAT_ENGINES.values()
    assert engine.policy is policy
    evaluate(policy, SMALL)
    assert list(core._COMPAT_ENGINES.values()) == [engine]  # reused, not rebuilt
    other = _policy()
    evaluate(other, SMALL)
    assert len(core._COMPAT_ENGINES) == 2 and {e.policy for e in core._COMPAT_ENGINES.values()} == {policy, other}


def test_the_policy_forms_engines_are_bounded() -> None:
    core._COMPAT_ENGINES.clear()
    policies = [_policy() for _ in range(core._COMPAT_MAX + 1)]
    for policy in policies[: core._COMPAT_MAX]:
        evaluate(policy, SMALL)
    assert len(core._COMPAT_ENGINES) == core._COMPAT_MAX
    evaluate(policies[-1], SMALL)  # full: cleared, then this one kept
    assert [e.policy for e in core._COMPAT_ENGINES.values()] == [policies[-1]]


def test_a_counter_given_to_the_policy_form_is_the_one_used() -> None:
    core._COMPAT_ENGINES.clear()
    rough = RoughCounter(Decimal(4))
    decision = evaluate(_policy(), SMALL, counter=rough)
    assert decision.manifest["tokenizer"] == rough.name and decision.manifest["tokenizer_exact"] is False
    (engine,) = core._COMPAT_ENGINES.values()
    assert engine.counter is rough


def test_a_counter_given_with_an_engine_overrides_the_engines_own() -> None:
    engine = Engine.build(_policy(), knowledge=KNOWLEDGE)
    exact = evaluate(engine, SMALL)
    assert exact.manifest["tokenizer"] == "o200k_base"
    rough = evaluate(engine, SMALL, counter=RoughCounter(Decimal(4)))
    assert rough.manifest["tokenizer"].startswith("rough:") and rough.metrics["prompt_tokens"] == -(
        -rough.metrics["prompt_chars"] // 4
    )
    # the engine's own counter passed again is the engine itself
    assert evaluate(engine, SMALL, counter=engine.counter).to_json() == exact.to_json()


def test_an_engines_knowledge_pack_is_the_default_and_a_call_may_replace_it() -> None:
    with_knowledge = evaluate(Engine.build(_policy(), knowledge=KNOWLEDGE), SMALL)
    without = evaluate(Engine.build(_policy()), SMALL)
    assert with_knowledge.metrics["prompt_tokens"] > without.metrics["prompt_tokens"]
    engine = Engine.build(_policy())
    assert evaluate(engine, SMALL, knowledge=KNOWLEDGE).to_json() == with_knowledge.to_json()
    # and a counter override keeps the engine's knowledge pack
    overridden = evaluate(Engine.build(_policy(), knowledge=KNOWLEDGE), SMALL, counter=engine.counter)
    assert overridden.metrics["prompt_tokens"] == with_knowledge.metrics["prompt_tokens"]


@pytest.mark.parametrize(
    ("level", "hint"), [("ful", "did you mean 'full'? "), ("fullest", "did you mean 'full'? "), ("verbose", "")]
)
def test_an_unknown_explain_level_is_refused_with_a_suggestion(level: str, hint: str) -> None:
    with pytest.raises(UsageInputError) as info:
        evaluate(_policy(), SMALL, explain=level)
    (diag,) = info.value.diagnostics
    assert diag.code == "V102" and diag.message == f"unknown explain level {level!r}"
    assert diag.hint == hint + "use 'off', 'rules', 'full'"


def test_a_usd_limit_without_a_price_is_refused_at_its_rule() -> None:
    """The checker refuses such a rule file (E211); a Policy built or changed in code is
    refused by the evaluator, at the first USD limit."""
    priced = _policy(
        RULES
        + "limit spend: request_usd <= $1\nlimit day_spend: day_usd <= $5\n"
        + 'price "m": prompt $1 per 1k, completion $1 per 1k\npricing model "m"\n'
    )
    policy = dataclasses.replace(priced, price_model=None)
    with pytest.raises(RuleCheckError) as info:
        evaluate(policy, SMALL)
    (diag,) = info.value.diagnostics
    assert diag.code == "V101" and diag.message == "limit 'spend' is in USD but the policy prices no model"
    assert diag.span is not None and diag.span.line == 3
    assert diag.hint == 'add a price table and `price model "..."`'


def test_each_counter_gets_its_own_engine_in_the_policy_form() -> None:
    core._COMPAT_ENGINES.clear()
    policy = _policy()
    first, second = RoughCounter(Decimal(4)), RoughCounter(Decimal(4))
    evaluate(policy, SMALL, counter=first)
    evaluate(policy, SMALL, counter=second)
    evaluate(policy, SMALL, counter=first)
    assert sorted(id(e.counter) for e in core._COMPAT_ENGINES.values()) == sorted((id(first), id(second)))


def test_the_engine_passed_is_the_engine_used() -> None:
    """Its memos fill (models, cuts), even when its own counter is passed along."""
    engine = Engine.build(_policy(TIGHT_RULES))
    decision = evaluate(engine, SMALL, counter=engine.counter)
    assert decision.outcome == "trimmed"
    assert engine.caches.models and engine.cuts and engine.starts


def test_seen_combos_reach_novelty_in_both_forms() -> None:
    policy = _policy()
    fresh = evaluate(policy, SMALL)
    assert fresh.kpis["novelty"] == 1.0
    seen = frozenset(fresh.kpis["combo_sample"][:2])
    for decision in (
        evaluate(policy, SMALL, seen_combos=seen),
        engine_evaluate(Engine.build(policy), SMALL, seen_combos=seen),
    ):
        count = decision.kpis["combo_count"]
        assert decision.kpis["novelty"] == round((count - 2) / count, 6)


def test_the_pure_form_takes_the_engines_knowledge_unless_the_call_gives_one() -> None:
    bare, loaded = Engine.build(_policy()), Engine.build(_policy(), knowledge=KNOWLEDGE)
    with_knowledge = engine_evaluate(loaded, SMALL).metrics["prompt_tokens"]
    without = engine_evaluate(bare, SMALL).metrics["prompt_tokens"]
    assert with_knowledge > without
    assert engine_evaluate(bare, SMALL, knowledge=KNOWLEDGE).metrics["prompt_tokens"] == with_knowledge


TIGHT_RULES = """tokenizer tiktoken "o200k_base"
limit request_prompt: request_prompt <= 1_950 tokens
limit request_completion: request_completion <= 100 tokens
completion budget 50 tokens
ladder {
  stage f: fields factor 0.5 min 1
  stage o: operators factor 0.5 min 1
  on exhausted block
}
"""


def test_rung_messages_name_every_failing_limit_and_an_empty_pool() -> None:
    text = """tokenizer tiktoken "o200k_base"
limit request_prompt: request_prompt <= 10 tokens
limit batch_total: batch_total <= 20 tokens
limit day_total: day_total <= 1_000_000 tokens
completion budget 5 tokens
ladder {
  stage f: fields factor 0.5 0.4 0.3 0.2 0.1 0.05 min 1
  on exhausted block
}
"""
    doc = json.loads((ROOT / "examples" / "packs" / "small_2x4x10x8.json").read_text(encoding="utf-8"))
    decision = evaluate(_policy(text), load_pack(doc))
    rungs = [s for s in decision.trace if s.kind == "rung"]
    assert rungs[0].message.endswith("still exceeds request_prompt, batch_total")
    assert rungs[-1].verdict == "skipped" and rungs[-1].message == "no change: fields already at 1 (minimum 1)"
    doc["candidate_fields"], doc["lanes"]["exploit"]["field_ids"], doc["lanes"]["explore"]["field_ids"] = [], [], []
    empty = evaluate(_policy(text), load_pack(doc))
    assert all(s.message == "no change: pool is empty" for s in empty.trace if s.kind == "rung")


def test_full_explain_prices_each_removed_candidate() -> None:
    decision = evaluate(_policy(TIGHT_RULES), SMALL, explain="full")
    rungs = [s for s in decision.trace if s.kind == "rung" and s.verdict != "skipped"]
    assert rungs
    for step in rungs:
        assert step.item_tokens is not None and step.removed
        for pool, ids in step.removed.items():
            assert set(step.item_tokens[pool]) == set(ids)
            assert all(n > 0 for n in step.item_tokens[pool].values())


def test_the_pure_form_passes_the_idea_and_a_prompt_model_on() -> None:
    from policy_engine.render import limits_view, load_idea

    policy = _policy()
    idea = load_idea(ROOT / "examples" / "ideaspec.json")
    engine = Engine.build(policy)
    plain = engine_evaluate(engine, SMALL).metrics["prompt_tokens"]
    with_idea = engine_evaluate(engine, SMALL, idea=idea).metrics["prompt_tokens"]
    assert with_idea != plain
    # a prompt model handed in is the one priced (here: the knowledge pack's, through the model)
    model = Engine.build(policy).prompt_model(
        SMALL, idea=None, knowledge=KNOWLEDGE, limits=limits_view(policy.resolve(SMALL.attributes)[0])
    )
    for run in (engine_evaluate, evaluate):
        priced = run(engine, SMALL, prompt_model=model).metrics["prompt_tokens"]
        assert priced == engine_evaluate(Engine.build(policy, knowledge=KNOWLEDGE), SMALL).metrics["prompt_tokens"]


def test_a_pack_walked_again_reuses_its_states() -> None:
    """The second decision on one pack adds no cut and no measure: every state object of the
    first walk is served again (observable as the engine's and the model's memo sizes)."""
    engine = Engine.build(_policy(TIGHT_RULES))
    first = engine_evaluate(engine, SMALL)
    (entry,) = engine.caches.models.values()
    model = entry[1]
    cuts, measures = len(engine.cuts), len(model._measures)
    assert cuts >= first.fallback_count > 0
    again = engine_evaluate(engine, SMALL)
    assert again.to_json() == first.to_json()
    assert (len(engine.cuts), len(model._measures)) == (cuts, measures)


class _MiscountingCounter:
    """An exact counter whose composed count is one token off: stands for a broken lemma."""

    exact = True

    def __init__(self, real: Any) -> None:
        self._real = real
        self.name, self.vocab_hash = real.name, real.vocab_hash

    def count(self, text: str) -> int:
        return self._real.count(text) + 1

    def count_whole(self, text: str) -> int:
        return self._real.count_whole(text)

    def measure(self, text: str) -> int:
        return self._real.measure(text)

    def finish(self, total: int) -> int:
        return int(self._real.finish(total))


def test_verification_trusts_the_whole_count_and_says_so() -> None:
    policy = _policy()
    honest = Engine.build(policy)
    counter = _MiscountingCounter(honest.counter)
    verified = engine_evaluate(Engine.build(policy, counter=counter, verify_counts=True), SMALL)
    assert verified.metrics["prompt_tokens"] == engine_evaluate(honest, SMALL).metrics["prompt_tokens"]
    (note,) = [s for s in verified.trace if s.rule == "accounting"]
    assert (note.kind, note.verdict) == ("stop", "info")
    whole = verified.metrics["prompt_tokens"]
    assert (
        note.message == f"composed count {whole + 1} differs from the whole-text count {whole}: the whole count is used"
    )
    # without verification the composed count disagrees with the arithmetic: the ladder is re-walked whole
    unverified = engine_evaluate(Engine.build(policy, counter=counter), SMALL)
    assert unverified.metrics["prompt_tokens"] == whole
    assert any(s.rule == "accounting" and s.message.startswith("arithmetic gave") for s in unverified.trace)


class _CountingRenders:
    def __init__(self, model: Any) -> None:
        self.model, self.renders = model, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)

    def render(self, selection: Any) -> str:
        self.renders += 1
        return str(self.model.render(selection))


def test_the_rough_estimator_renders_nothing_unless_verifying() -> None:
    from policy_engine.render import limits_view

    policy = _policy("tokenizer rough 4 chars per token\nlimit request_prompt: request_prompt <= 100_000 tokens\n")
    limits = limits_view(policy.resolve(SMALL.attributes)[0])
    for verify, renders in ((False, 0), (True, 1)):
        engine = Engine.build(policy, verify_counts=verify)
        model = _CountingRenders(engine.prompt_model(SMALL, idea=None, knowledge=None, limits=limits))
        decision = engine_evaluate(engine, SMALL, prompt_model=model)
        assert model.renders == renders
        assert decision.metrics["prompt_chars"] == len(model.model.render(decision_selection(decision)))


def test_a_failing_warn_limit_is_a_warn_check_and_a_warning() -> None:
    policy = _policy(RULES + "limit day_total: day_total <= 1_000 tokens warn\n")
    decision = evaluate(policy, SMALL)
    assert decision.allowed
    (check,) = [s for s in decision.trace if s.kind == "check" and s.rule == "day_total"]
    assert check.verdict == "warn"
    assert decision.limits["day_total"]["verdict"] == "fail"
    (warning,) = decision.warnings
    projected = decision.metrics["projected_day_tokens"]
    assert (warning.code, warning.rule) == ("day_total", "day_total")
    assert warning.message == f"day_total exceeds its warning limit: {projected} > 1000"
    passing = [s for s in decision.trace if s.kind == "check" and s.rule == "request_prompt"]
    assert [s.verdict for s in passing] == ["pass"]


def test_an_engines_models_follow_idea_knowledge_and_limits() -> None:
    from policy_engine.render import limits_view

    policy = _policy()
    engine = Engine.build(policy)
    limits = limits_view(policy.resolve(SMALL.attributes)[0])
    base = engine.prompt_model(SMALL, idea=None, knowledge=None, limits=limits)
    assert engine.prompt_model(SMALL, idea=None, knowledge=None, limits=dict(limits)) is base
    assert engine.prompt_model(SMALL, idea=None, knowledge=KNOWLEDGE, limits=limits) is not base
    other_limits = {**limits, "request_prompt": 99}
    assert engine.prompt_model(SMALL, idea=None, knowledge=None, limits=other_limits) is not base


def test_a_matched_condition_opens_the_trace() -> None:
    text = RULES + "when everywhere: fields.count > 0 {\n  limit request_prompt: request_prompt <= 90_000 tokens\n}\n"
    decision = evaluate(_policy(text), SMALL)
    first = decision.trace[0]
    assert (first.kind, first.rule, first.verdict) == ("condition", "everywhere", "applied")
    assert first.message == "condition matched: its settings override the base policy"
    assert first.span is not None and first.span.line == 3
    assert decision.limits["request_prompt"]["value"] == 90_000


def test_the_rewalk_note_and_the_full_breakdown() -> None:
    policy = _policy()
    counter = _MiscountingCounter(Engine.build(policy).counter)
    rewalked = engine_evaluate(Engine.build(policy, counter=counter), SMALL, explain="full")
    (note,) = [s for s in rewalked.trace if s.rule == "accounting"]
    assert (note.kind, note.verdict) == ("stop", "info")
    assert rewalked.breakdown is not None
    assert evaluate(policy, SMALL).breakdown is None


def test_two_packs_with_the_same_cut_sizes_share_no_memo() -> None:
    """Cuts and start states are keyed by the state and the pack: two packs whose rungs have
    the same sizes, on one engine, decide as on fresh engines (also for pools built without
    a digest)."""
    doc = json.loads((ROOT / "examples" / "packs" / "small_2x4x10x8.json").read_text(encoding="utf-8"))
    twin = json.loads(json.dumps(doc))
    for f in twin["candidate_fields"]:
        f["id"] = "twin_" + f["id"]
    for lane in ("exploit", "explore"):
        twin["lanes"][lane]["field_ids"] = ["twin_" + i for i in twin["lanes"][lane]["field_ids"]]
    policy = _policy(TIGHT_RULES)
    for strip_digest in (False, True):
        engine = Engine.build(policy)
        for d in (doc, twin):
            pools = load_pack(d)
            if strip_digest:
                pools = dataclasses.replace(pools, digest="")
            got = engine_evaluate(engine, pools)
            assert got.fallback_count > 0
            assert got.to_json() == engine_evaluate(Engine.build(policy), load_pack(d)).to_json()


def test_two_unfixable_limits_are_both_named() -> None:
    text = (
        RULES
        + 'price "m": prompt $1 per 1k, completion $1 per 1k\npricing model "m"\n'
        + "limit day_spend: day_usd <= $5\nlimit day_total: day_total <= 1_000 tokens\n"
        + "ladder {\n  stage f: fields factor 0.5\n  on exhausted block\n}\n"
    )
    usage = UsageSnapshot(day_micro_usd=5_000_001, day_tokens=5_000)
    decision = evaluate(_policy(text), SMALL, usage=usage)
    assert decision.trace[-1].message == "trimming cannot fix day_total, day_usd (it fails even with an empty prompt)"


def test_one_engine_keeps_two_knowledge_packs_apart(tmp_path: Any) -> None:
    import shutil

    other_dir = tmp_path / "knowledge"
    shutil.copytree(ROOT / "examples" / "knowledge", other_dir)
    first = other_dir / "simulation_settings_allowed_pack.json"  # the template prints it whole
    doc = json.loads(first.read_text(encoding="utf-8"))
    doc["note_for_the_test"] = "a different knowledge pack"
    first.write_text(json.dumps(doc), encoding="utf-8")
    other = load_knowledge(other_dir)
    engine = Engine.build(_policy())
    a = engine_evaluate(engine, SMALL, knowledge=KNOWLEDGE).to_json()
    b = engine_evaluate(engine, SMALL, knowledge=other).to_json()
    assert a == engine_evaluate(Engine.build(_policy()), SMALL, knowledge=KNOWLEDGE).to_json()
    assert b == engine_evaluate(Engine.build(_policy()), SMALL, knowledge=other).to_json()
    assert a != b  # the change reaches the prompt, so a shared model would show


def test_decisions_of_one_pack_share_no_mutable_selection() -> None:
    """The kept ids are computed once per ladder state, but each decision gets its own
    dicts: a caller editing one decision's selection never changes another's."""
    engine = Engine.build(_policy())
    first, second = engine_evaluate(engine, SMALL), engine_evaluate(engine, SMALL)
    assert first.selection == second.selection
    first.selection["fields"]["exploit"] = ()
    del first.selection["operators"]
    third = engine_evaluate(engine, SMALL)
    assert second.selection == third.selection and "operators" in third.selection
    assert third.selection["fields"]["exploit"]
