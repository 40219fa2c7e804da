"""The two call forms of `evaluate`: with an `Engine` (built once by the caller) and with a
`Policy` (the compatibility form, which keeps one engine per policy and counter so repeated
calls stay warm), and the counter and knowledge pack each form honours."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

import pytest

from policy_engine.dsl import load_policy_text
from policy_engine.errors import RuleCheckError, UsageInputError
from policy_engine.evaluator import Engine, core, evaluate
from policy_engine.packs import load_pack_file
from policy_engine.render import load_knowledge
from policy_engine.tokens import RoughCounter
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


@pytest.mark.parametrize(("level", "hint"), [("ful", "did you mean 'full'? "), ("verbose", "")])
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
