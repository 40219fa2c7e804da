"""The agent's gate replaced by `policy_engine.adapters.agent.enforce_alpha_prompt_budget`,
driven with stand-ins of the agent's models (tests/adapters/agent_standins.py) and the
shared packs, configs and both knowledge directories.

- The stand-in prompt builder is the agent's: it reproduces every captured agent prompt.
- Decisions equal `policy eval`'s with the same rules (the budget converted by
  `policy import-config --tokenizer o200k_base`, or an explicit rule file).
- A builder that differs from the template (drift) is caught, and the real prompt's count
  decides: a prompt the engine alone would admit over the limit is trimmed further or
  blocked, never sent.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from policy_engine.adapters import agent as gate
from policy_engine.cli.main import main as cli
from policy_engine.dsl.importer import import_config
from policy_engine.errors import PackError, RuleCheckError, UsageInputError
from policy_engine.policy import Tokenizer
from policy_engine.tokens import get_counter
from tests.adapters.agent_standins import (
    BudgetUsage,
    IdeaSpec,
    LlmBudget,
    RetrievalPack,
    agent_prompt,
    idea_from_pack,
    read_budget,
    read_bundle,
    read_idea,
    read_pack,
)
from tests.conftest import SHARED
from tests.render.prompt_cases import CASES, CONFIG_KEYS

PACKS = sorted(p.stem for p in (SHARED / "packs").glob("*.json"))
CONFIGS = ("llm_budget", "llm_budget_tight")
KNOWLEDGE = ("knowledge", "knowledge_real")
IDEA = SHARED / "ideaspec.example.json"
O200K = get_counter(Tokenizer("tiktoken", "o200k_base"))


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.delenv("POLICY_RULES", raising=False)
    gate.configure()
    gate.reset_template_drift()
    yield
    gate.configure()


def call(
    pack: str = "seed_5x15x72x60",
    config: str = "llm_budget",
    knowledge: str = "knowledge_real",
    *,
    builder: Any = agent_prompt,
    usage: BudgetUsage | None = None,
    max_output_tokens: int | None = None,
    seen: set[str] | None = None,
    **extra: Any,
) -> gate.BudgetGateResult:
    budget = read_budget(SHARED / "configs" / f"{config}.json")
    return gate.enforce_alpha_prompt_budget(
        idea=read_idea(IDEA),
        retrieval_pack=read_pack(SHARED / "packs" / f"{pack}.json"),
        knowledge_bundle=read_bundle(SHARED / knowledge),
        budget=budget,
        usage=usage or BudgetUsage(),
        seen_combo_keys=seen or set(),
        prompt_builder=builder,
        max_output_tokens=budget.max_completion_tokens if max_output_tokens is None else max_output_tokens,
        **extra,
    )


def engine_eval(
    tmp_path: Path, pack: str, rules: Path, knowledge: str, completion: int, usage: dict[str, Any] | None = None
) -> dict[str, Any]:
    out = tmp_path / f"{pack}.{knowledge}.{rules.stem}.json"
    argv = [
        "eval",
        str(SHARED / "packs" / f"{pack}.json"),
        "--rules",
        str(rules),
        "--knowledge-pack-dir",
        str(SHARED / knowledge),
        "--idea",
        str(IDEA),
        "--completion-tokens",
        str(completion),
        "--format",
        "json",
        "--output",
        str(out),
    ]
    if usage is not None:
        (tmp_path / "usage.json").write_text(json.dumps(usage))
        argv += ["--usage", str(tmp_path / "usage.json")]
    assert cli(argv) in (0, 2)
    return json.loads(out.read_text())["results"][0]["decision"]


def imported_rules(tmp_path: Path, config: str) -> Path:
    path = tmp_path / f"{config}.policy"
    doc = json.loads((SHARED / "configs" / f"{config}.json").read_text())
    path.write_text(import_config(doc, llm_file="budget", tokenizer="o200k_base", name="agent-budget"))
    return path


def assert_same_decision(result: gate.BudgetGateResult, expected: dict[str, Any]) -> None:
    ev = result.evaluation
    assert result.allowed is expected["allowed"] is ev.passed
    assert list(ev.reasons) == expected["reasons"]
    assert ev.selected_topk == expected["selected_topk"]
    selection = {
        pool: {lane: list(ids) for lane, ids in lanes.items()} for pool, lanes in ev.decision.selection.items()
    }
    assert selection == expected["selection"]
    assert (
        ev.prompt_tokens_rough == ev.prompt_tokens == expected["metrics"]["prompt_tokens"] == O200K.count(result.prompt)
    )
    assert ev.projected_batch_tokens == expected["metrics"]["projected_batch_tokens"]
    assert ev.projected_day_tokens == expected["metrics"]["projected_day_tokens"]
    assert (
        ev.fallback_count
        == expected["fallback_count"]
        == len([s for s in result.fallback_steps if s["phase"] != "template_drift"])
    )
    assert ev.coverage_kpi == expected["kpis"]["coverage"]
    assert ev.combo_sample == expected["kpis"]["combo_sample"]
    assert ev.exceeded["explore_floor"] is not all(f["preserved"] for f in expected["explore_floor"].values())
    assert {k for k, v in ev.exceeded.items() if v and k != "explore_floor"} == set(expected["reasons"])


# ---- the stand-in builder is the agent's ------------------------------------------------------


@pytest.mark.parametrize("case", [c for c in CASES if c.decision is None], ids=lambda c: c.name)
def test_untrimmed_gate_call_sends_exactly_the_captured_agent_prompt(case: Any) -> None:
    """With the limits the capture echoes, nothing is trimmed and the prompt sent is the
    agent's own capture, byte for byte (the pack the gate returns carries the limits under
    budget_policy.llm_budget, as the agent's gate wrote them)."""
    pack = read_pack(case.pack)
    budget = LlmBudget(**{key: case.limits[metric] for key, metric in CONFIG_KEYS})
    result = gate.enforce_alpha_prompt_budget(
        idea=read_idea(case.idea) if case.idea else idea_from_pack(pack),
        retrieval_pack=pack,
        knowledge_bundle=read_bundle(case.knowledge_dir),
        budget=budget,
        usage=BudgetUsage(),
        seen_combo_keys=set(),
        prompt_builder=agent_prompt,
        max_output_tokens=1600,
    )
    assert result.prompt.encode("utf-8") == case.file.read_bytes()
    assert result.allowed and result.fallback_steps == [] and result.evaluation.template_drift is None
    assert result.evaluation.prompt_tokens_rough == O200K.count(case.file.read_text(encoding="utf-8"))
    assert isinstance(result.pack, RetrievalPack)
    assert result.pack.budget_policy["llm_budget"]["max_prompt_tokens"] == case.limits["request_prompt"]
    assert gate.template_drift_count() == 0


# ---- parity with `policy eval` --------------------------------------------------------------


@pytest.mark.parametrize("knowledge", KNOWLEDGE)
@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("pack", PACKS)
def test_decision_matches_policy_eval_with_the_imported_rules(
    tmp_path: Path, pack: str, config: str, knowledge: str
) -> None:
    rules = imported_rules(tmp_path, config)
    completion = read_budget(SHARED / "configs" / f"{config}.json").max_completion_tokens
    expected = engine_eval(tmp_path, pack, rules, knowledge, completion)
    from_budget = call(pack, config, knowledge)
    assert_same_decision(from_budget, expected)
    from_file = call(pack, config, knowledge, rules=rules)
    assert_same_decision(from_file, expected)
    assert from_file.prompt == from_budget.prompt
    assert from_budget.evaluation.template_drift is None and gate.template_drift_count() == 0
    # the pack handed back is the agent's model of the final selection, and the prompt is its builder's text for it
    assert type(from_budget.pack) is RetrievalPack
    assert from_budget.prompt == agent_prompt(read_idea(IDEA), from_budget.pack, read_bundle(SHARED / knowledge))
    kept = {f.id for f in from_budget.pack.candidate_fields}
    assert kept == {i for lane in expected["selection"]["fields"].values() for i in lane}
    assert from_budget.pack.context_guard["max_items"]["fields"] == len(kept)


@pytest.mark.parametrize("pack", ["seed_5x15x72x60", "small_2x4x10x8"])
def test_decision_matches_policy_eval_with_the_shipped_default_rules_and_usage(
    tmp_path: Path, pack: str, root: Path
) -> None:
    rules = root / "rules" / "default.policy"
    usage = BudgetUsage(
        run_prompt_tokens=30_000, run_completion_tokens=4_000, day_prompt_tokens=900_000, day_completion_tokens=100_000
    )
    expected = engine_eval(
        tmp_path, pack, rules, "knowledge_real", 1600, {"batch": {"tokens": 34_000}, "day": {"tokens": 1_000_000}}
    )
    assert_same_decision(call(pack, rules=rules, usage=usage), expected)


# ---- the real prompt, checked at the gate ------------------------------------------------------


def padded(extra_tokens_text: str):
    def builder(idea: IdeaSpec, pack: RetrievalPack, bundle: dict[str, Any]) -> str:
        return agent_prompt(idea, pack, bundle) + "\n\n" + extra_tokens_text

    return builder


def test_drift_over_the_limit_is_trimmed_further_never_sent(tmp_path: Path) -> None:
    """The engine alone admits its choice (under 12,000 tokens by its template); the
    agent's builder adds text, so the real prompt for that choice is over the limit. The
    gate catches the drift and goes on down the ladder counting the real text."""
    honest = call()
    assert honest.allowed
    margin = 12_000 - honest.evaluation.prompt_tokens_rough
    extra = "Think step by step and double-check every operator signature. " * 80
    assert (
        O200K.count(honest.prompt + "\n\n" + extra) > 12_000 and margin > 0
    )  # the engine's choice, really sent, would be over
    result = call(builder=padded(extra))
    ev = result.evaluation
    assert result.allowed
    assert extra in result.prompt
    assert ev.prompt_tokens_rough == O200K.count(result.prompt) <= 12_000
    assert sum(ev.selected_topk.values()) < sum(honest.evaluation.selected_topk.values())
    assert ev.fallback_count > honest.evaluation.fallback_count
    drift = ev.template_drift
    assert (
        drift is not None
        and drift.engine_prompt_tokens == honest.evaluation.prompt_tokens_rough
        and drift.real_prompt_tokens > 12_000
    )
    assert ev.warnings[0] == drift.message and "template drift" in drift.message
    assert gate.template_drift_count() == 1 and gate.last_template_drift() == drift
    phases = [s["phase"] for s in result.fallback_steps]
    at = phases.index("template_drift")
    assert at == honest.evaluation.fallback_count  # right after the engine's choice
    assert result.fallback_steps[at]["prompt_tokens"] == drift.real_prompt_tokens
    assert result.fallback_steps[at]["budget_exceeded"]["request_prompt"] is True
    assert (
        result.fallback_steps[at - 1]["prompt_tokens"] == drift.real_prompt_tokens
    )  # the engine's rung, re-measured from the real text
    assert all(s["prompt_tokens"] <= 12_000 for s in result.fallback_steps[at + 1 :][-1:])


def test_drift_that_no_rung_can_fix_blocks() -> None:
    huge = "x " * 20_000
    result = call(builder=padded(huge))
    ev = result.evaluation
    assert not result.allowed and not ev.passed
    assert ev.exceeded["request_prompt"] is True and "request_prompt" in ev.reasons
    assert ev.prompt_tokens_rough == O200K.count(result.prompt) > 12_000
    assert ev.template_drift is not None and gate.template_drift_count() == 1
    # what the orchestrator does with a blocked result: its own error, with the reasons that are true
    message = "alpha generation blocked by budget policy: " + ", ".join(k for k, v in ev.exceeded.items() if v)
    assert message.endswith("request_prompt")


def test_a_shorter_real_prompt_is_reported_but_keeps_the_engines_choice() -> None:
    def compact(idea: IdeaSpec, pack: RetrievalPack, bundle: dict[str, Any]) -> str:
        return json.dumps(json.loads(agent_prompt(idea, pack, bundle)), ensure_ascii=False)

    honest = call()
    result = call(builder=compact)
    assert result.allowed and result.evaluation.selected_topk == honest.evaluation.selected_topk
    assert result.evaluation.prompt_tokens_rough == O200K.count(result.prompt) < honest.evaluation.prompt_tokens_rough
    assert result.evaluation.template_drift is not None and gate.template_drift_count() == 1


def test_drift_in_a_call_that_needs_no_trimming_is_checked_from_the_start() -> None:
    small = call("small_2x4x10x8")
    assert small.allowed and small.evaluation.fallback_count == 0
    room = 12_000 - small.evaluation.prompt_tokens_rough
    result = call("small_2x4x10x8", builder=padded("pad " * (room + 50)))
    assert result.evaluation.template_drift is not None
    assert (
        result.fallback_steps[0]["phase"] == "template_drift"
        and result.fallback_steps[0]["budget_exceeded"]["request_prompt"]
    )
    assert (not result.allowed) or result.evaluation.prompt_tokens_rough <= 12_000
    assert result.evaluation.prompt_tokens_rough == O200K.count(result.prompt)


# ---- what does not change, and what does -----------------------------------------------------


def test_inputs_are_not_mutated() -> None:
    pack, idea = read_pack(SHARED / "packs" / "seed_5x15x72x60.json"), read_idea(IDEA)
    bundle, budget, usage, seen = (
        read_bundle(SHARED / "knowledge_real"),
        read_budget(SHARED / "configs" / "llm_budget.json"),
        BudgetUsage(10, 20, 30, 40, 1, 2),
        {"a::b"},
    )
    before = (
        pack.model_dump(),
        idea.model_dump(),
        copy.deepcopy(bundle),
        budget.model_dump(),
        copy.copy(usage),
        set(seen),
    )
    result = gate.enforce_alpha_prompt_budget(
        idea=idea,
        retrieval_pack=pack,
        knowledge_bundle=bundle,
        budget=budget,
        usage=usage,
        seen_combo_keys=seen,
        prompt_builder=agent_prompt,
        max_output_tokens=1600,
    )
    assert (pack.model_dump(), idea.model_dump(), bundle, budget.model_dump(), usage, seen) == before
    assert result.usage is usage and result.pack is not pack and "llm_budget" not in pack.budget_policy


def test_the_completion_check_can_fail() -> None:
    """The agent clamped max_output_tokens to max_completion_tokens (defect 5)."""
    result = call("small_2x4x10x8", max_output_tokens=4000)
    assert (
        not result.allowed
        and result.evaluation.exceeded["request_completion"]
        and result.evaluation.completion_tokens_budget == 4000
    )


def test_day_usage_is_taken_whole_and_blocks() -> None:
    result = call("small_2x4x10x8", usage=BudgetUsage(day_prompt_tokens=1_400_000, day_completion_tokens=99_000))
    assert (
        not result.allowed and result.evaluation.reasons == ("day_total",) and result.evaluation.exceeded["day_total"]
    )
    assert result.evaluation.projected_day_tokens == 1_499_000 + result.evaluation.prompt_tokens_rough + 1600


def test_the_explore_floor_never_blocks_where_the_prompt_fits() -> None:
    """The agent blocked small_2x4x10x8 under the tight config for `explore_floor` (defect 7);
    the engine keeps the floor while trimming, so the floor is never a reason."""
    agent = json.loads((SHARED / "agent_decisions" / "small_2x4x10x8.llm_budget_tight.json").read_text())
    assert agent["reasons"] == ["explore_floor"]
    result = call("small_2x4x10x8", "llm_budget_tight", "knowledge")
    assert "explore_floor" not in result.evaluation.reasons
    assert result.evaluation.explore_floor_preserved


def test_novelty_uses_the_seen_combos() -> None:
    fresh = call("small_2x4x10x8")
    seen = set(fresh.evaluation.combo_sample)
    again = call("small_2x4x10x8", seen=seen)
    combos = fresh.evaluation.decision.kpis["combo_count"]  # 10 fields x 8 operators; the sample is the first 64
    assert fresh.evaluation.novelty_kpi == 1.0 and again.evaluation.novelty_kpi == (combos - 64) / combos == 0.2


# ---- where the policy comes from --------------------------------------------------------------


def test_policy_sources_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def rules(limit: int) -> Path:
        path = tmp_path / f"r{limit}.policy"
        path.write_text(f'tokenizer tiktoken "o200k_base"\nlimit request_prompt: request_prompt <= {limit} tokens\n')
        return path

    assert call("small_2x4x10x8").allowed  # the budget object: 12,000
    monkeypatch.setenv("POLICY_RULES", str(rules(100)))
    assert call("small_2x4x10x8").evaluation.reasons == ("request_prompt",)  # $POLICY_RULES beats the budget
    gate.configure(rules=rules(200_000))
    assert call("small_2x4x10x8").allowed  # configure() beats the environment
    assert call("small_2x4x10x8", rules=rules(100)).evaluation.reasons == ("request_prompt",)  # rules= beats everything


def test_the_converted_budget_is_compiled_once_per_content(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = gate.import_config
    monkeypatch.setattr(gate, "import_config", lambda *a, **k: calls.append(1) or real(*a, **k))
    call("small_2x4x10x8")
    call("small_2x4x10x8")
    assert len(calls) == 1
    call("small_2x4x10x8", "llm_budget_tight")
    assert len(calls) == 2


def test_configure_tokenizer_changes_the_count() -> None:
    gate.configure(tokenizer="cl100k_base")
    result = call("small_2x4x10x8")
    assert result.evaluation.tokenizer == "cl100k_base"
    assert result.evaluation.prompt_tokens_rough == get_counter(Tokenizer("tiktoken", "cl100k_base")).count(
        result.prompt
    )


# ---- bad input: typed errors with codes and pointers ---------------------------------------------


def test_a_missing_knowledge_document_is_an_error() -> None:
    bundle = read_bundle(SHARED / "knowledge_real")
    del bundle["fastexpr_visual_pack"]
    with pytest.raises(PackError) as info:
        gate.enforce_alpha_prompt_budget(
            idea=read_idea(IDEA),
            retrieval_pack=read_pack(SHARED / "packs" / "small_2x4x10x8.json"),
            knowledge_bundle=bundle,
            budget=LlmBudget(),
            usage=BudgetUsage(),
            seen_combo_keys=set(),
            prompt_builder=agent_prompt,
            max_output_tokens=1600,
        )
    (d,) = info.value.diagnostics
    assert (d.code, d.pointer) == ("R102", "/fastexpr_visual_pack")


@pytest.mark.parametrize(
    ("change", "error", "code", "pointer"),
    [
        ({"usage": BudgetUsage(run_prompt_tokens=-1)}, UsageInputError, "P120", "/run_prompt_tokens"),
        ({"seen_combo_keys": {"no-separator"}}, UsageInputError, "P114", ""),
        ({"budget": LlmBudget(max_prompt_tokens=-5)}, RuleCheckError, "E401", "/max_prompt_tokens"),
        ({"budget": LlmBudget(fallback_topk_steps=[0.7, 0.85])}, RuleCheckError, "E401", "/fallback_topk_steps/1"),
        ({"retrieval_pack": {"idea_id": "x"}}, PackError, "P112", ""),
        ({"idea": {"idea_id": "x"}}, PackError, "R104", ""),
        ({"max_output_tokens": 0}, UsageInputError, "P120", "/completion_tokens"),
    ],
)
def test_bad_inputs_raise_typed_errors(change: dict[str, Any], error: type, code: str, pointer: str) -> None:
    kwargs: dict[str, Any] = dict(
        idea=read_idea(IDEA),
        retrieval_pack=read_pack(SHARED / "packs" / "small_2x4x10x8.json"),
        knowledge_bundle=read_bundle(SHARED / "knowledge"),
        budget=LlmBudget(),
        usage=BudgetUsage(),
        seen_combo_keys=set(),
        prompt_builder=agent_prompt,
        max_output_tokens=1600,
    )
    kwargs.update(change)
    with pytest.raises(error) as info:
        gate.enforce_alpha_prompt_budget(**kwargs)
    d = info.value.diagnostics[0]
    assert (d.code, d.pointer) == (code, pointer)


def test_a_builder_returning_no_text_is_refused() -> None:
    with pytest.raises(PackError) as info:
        call("small_2x4x10x8", builder=lambda idea, pack, bundle: None)
    assert info.value.diagnostics[0].code == "P112"
