"""The importer on upstream's real configs, and its refusals (upstream silently defaulted)."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from policy_engine.dsl import import_config, load_policy_text
from policy_engine.errors import RuleCheckError
from policy_engine.policy import StepKind
from tests.conftest import SHARED

CONFIGS = SHARED / "configs"


def load(name: str) -> dict:
    return json.loads((CONFIGS / name).read_text())


def test_default_config_imports_with_the_same_values() -> None:
    text = import_config(
        load("llm_budget.json"),
        load("retrieval_budget.json"),
        llm_file="llm_budget.json",
        retrieval_file="retrieval_budget.json",
    )
    policy = load_policy_text(text, "imported.policy")
    s = policy.settings
    assert {lim.metric: lim.value for lim in s.limits} == {
        "request_prompt": 12000,
        "request_completion": 1600,
        "batch_total": 52000,
        "day_total": 1500000,
    }
    assert [st.pool for st in s.ladder.stages] == ["fields", "operators", "subcategories"]
    for stage in s.ladder.stages:
        assert [st.kind for st in stage.steps] == [StepKind.FACTOR] * 4
        assert [st.value for st in stage.steps] == [Decimal("0.85"), Decimal("0.7"), Decimal("0.55"), Decimal("0.4")]
    assert (s.lanes.exploit_ratio, s.lanes.explore_ratio, s.lanes.explore_floor) == (Decimal("0.7"), Decimal("0.3"), 1)
    assert s.expansion_reserve == 2500 and s.completion_budget == 1600
    assert policy.tokenizer.kind == "rough" and policy.tokenizer.chars_per_token == 4
    assert policy.price is not None and policy.price.prompt_per_million == 0
    assert s.topk == ()  # the agent's gate never re-applies retrieval top-k
    assert "# topk fields exploit 60 explore 12" in text


def test_tight_config_prices_per_1k_exactly() -> None:
    policy = load_policy_text(import_config(load("llm_budget_tight.json")), "t.policy")
    assert policy.settings.limit("request_prompt").value == 1500
    assert policy.price.prompt_per_million == Decimal("2.5")
    assert policy.price.completion_per_million == Decimal("10")


def test_exact_tokenizer_on_request() -> None:
    policy = load_policy_text(import_config(load("llm_budget.json"), tokenizer="o200k_base"), "t.policy")
    assert policy.tokenizer.kind == "tiktoken" and policy.tokenizer.name == "o200k_base"


@pytest.mark.parametrize(
    "patch, pointer",
    [
        ({"fallback_topk_steps": [0.85, 1.5, 0.4]}, "/fallback_topk_steps/1"),
        ({"fallback_topk_steps": [0.85, "x"]}, "/fallback_topk_steps/1"),
        ({"fallback_topk_steps": [0.5, 0.7]}, "/fallback_topk_steps/1"),
        ({"fallback_topk_steps": []}, "/fallback_topk_steps"),
        ({"max_prompt_tokens": -5}, "/max_prompt_tokens"),
        ({"max_prompt_tokens": 12.5}, "/max_prompt_tokens"),
        ({"max_prompt_tokens": True}, "/max_prompt_tokens"),
        ({"explore_ratio": 0.5}, "/explore_ratio"),
        ({"exploit_ratio": 0}, "/exploit_ratio"),
        ({"max_promt_tokens": 5}, "/max_promt_tokens"),
        ({"estimated_cost_per_1k_prompt_tokens": -1}, "/estimated_cost_per_1k_prompt_tokens"),
    ],
)
def test_invalid_values_are_refused_with_a_pointer(patch: dict, pointer: str) -> None:
    doc = {**load("llm_budget.json"), **patch}
    with pytest.raises(RuleCheckError) as err:
        import_config(doc, llm_file="llm_budget.json")
    pointers = [d.pointer for d in err.value.diagnostics]
    assert pointer in pointers
    assert all(d.code == "E401" and d.file == "llm_budget.json" for d in err.value.diagnostics)


def test_all_bad_values_reported_together() -> None:
    doc = {**load("llm_budget.json"), "fallback_topk_steps": [2, 0.5], "max_tokens_per_day": 0}
    with pytest.raises(RuleCheckError) as err:
        import_config(doc)
    assert {d.pointer for d in err.value.diagnostics} == {"/fallback_topk_steps/0", "/max_tokens_per_day"}


def test_not_an_object() -> None:
    with pytest.raises(RuleCheckError) as err:
        import_config([1, 2])
    assert err.value.diagnostics[0].code == "E402"
