"""`fit`: every answer is re-checked here independently, by writing the suggested change into
the rule *text*, parsing it and evaluating the pack (the suggestion must allow the call, and
the next smaller change must not)."""

from __future__ import annotations

import pytest

from policy_engine.dsl import load_policy_text
from policy_engine.evaluator import evaluate
from policy_engine.fit import fit
from policy_engine.packs import load_pack_file
from policy_engine.render import load_knowledge
from policy_engine.usage import UsageSnapshot
from tests.conftest import ROOT

EX = ROOT / "examples"
KNOWLEDGE = load_knowledge(EX / "knowledge")
DEFAULT = (ROOT / "rules" / "default.policy").read_text()
SEED = load_pack_file(EX / "packs" / "seed_5x15x72x60.json")
BLOCKED = load_pack_file(EX / "packs" / "blocked_oversized_guard.json")
SMALL = load_pack_file(EX / "packs" / "small_2x4x10x8.json")

FIELDS_ONLY = """policy "fields_only"
tokenizer tiktoken "o200k_base"
limit request_prompt: request_prompt <= {limit} tokens
completion budget 1_600 tokens
lanes exploit 70% explore 30%
explore floor {floor}
ladder {{
  stage trim_fields: fields factor 0.85 0.70 0.55 0.40 min 1
{extra}  on exhausted block
}}
"""


def decide(text: str, pools, usage: UsageSnapshot = UsageSnapshot()):
    return evaluate(load_policy_text(text, "<test>"), pools, knowledge=KNOWLEDGE, usage=usage)


def fields_only(limit: int, floor: int = 1, extra: str = "") -> str:
    return FIELDS_ONLY.format(limit=limit, floor=floor, extra=extra)


def test_trimmed_pack_smallest_untrimmed_limit() -> None:
    report = fit(load_policy_text(DEFAULT, "default.policy"), SEED, knowledge=KNOWLEDGE)
    assert report.decision.outcome == "trimmed" and report.changes == ()
    (limit,) = report.untrimmed_fit
    assert limit.metric == "request_prompt" and limit.value == report.untrimmed_tokens and limit.minimal
    value = limit.value
    assert decide(DEFAULT.replace("12_000", str(value)), SEED).outcome == "allowed"
    assert decide(DEFAULT.replace("12_000", str(value - 1)), SEED).outcome == "trimmed"


def test_blocked_pack_names_the_limit_the_overshoot_and_the_smallest_raise() -> None:
    report = fit(load_policy_text(DEFAULT, "default.policy"), BLOCKED, knowledge=KNOWLEDGE)
    d = report.decision
    assert d.outcome == "blocked" and report.over == {"request_prompt": d.metrics["prompt_tokens"] - 12_000}
    raise_it = next(c for c in report.changes if c.kind == "limit")
    assert raise_it.metric == "request_prompt" and raise_it.delta == report.over["request_prompt"] and raise_it.minimal
    assert decide(DEFAULT.replace("12_000", str(raise_it.value)), BLOCKED).allowed
    assert not decide(DEFAULT.replace("12_000", str(raise_it.value - 1)), BLOCKED).allowed
    # the pack's fixed part is too big for any rung: every pool at 1 is still over 12,000
    assert not [c for c in report.changes if c.kind == "rung"]
    assert any("still blocked keeping 1" in note for note in report.not_enough)


def test_add_a_rung_is_the_largest_keep_that_allows_it() -> None:
    policy = fields_only(9_000)
    report = fit(load_policy_text(policy, "<fields_only>"), SEED, knowledge=KNOWLEDGE)
    assert report.decision.outcome == "blocked"
    rungs = {
        c.change.split("`")[1].split(":")[0].removeprefix("stage fit_"): c for c in report.changes if c.kind == "rung"
    }
    assert "operators" in rungs and "fields" not in rungs  # fields already at the ladder's end; keeping 1 is not enough
    for pool, c in rungs.items():
        keep = c.value
        stage = f"  stage fit_{pool}: {pool} keep {keep}\n"
        assert decide(fields_only(9_000, extra=stage), SEED).allowed, pool
        assert not decide(fields_only(9_000, extra=f"  stage fit_{pool}: {pool} keep {keep + 1}\n"), SEED).allowed, pool
    # cheapest first: the rung that keeps the most candidates leads (operators do not cascade)
    ordered = [c for c in report.changes if c.kind == "rung"]
    assert ordered[0] is rungs["operators"]
    assert [sum(c.sizes.values()) for c in ordered] == sorted((sum(c.sizes.values()) for c in ordered), reverse=True)


def test_lower_the_floor() -> None:
    """Floor 14 keeps all 14 explore fields; lowering it lets the ladder cut them."""
    report = fit(load_policy_text(fields_only(10_000, floor=14), "<floor>"), SEED, knowledge=KNOWLEDGE)
    (floor,) = [c for c in report.changes if c.kind == "floor"]
    assert decide(fields_only(10_000, floor=floor.value), SEED).allowed
    assert not decide(fields_only(10_000, floor=floor.value + 1), SEED).allowed


def test_stage_minimum_is_lowered_when_it_stops_the_ladder() -> None:
    text = fields_only(10_000).replace("min 1", "min 30")
    report = fit(load_policy_text(text, "<min>"), SEED, knowledge=KNOWLEDGE)
    (minimum,) = [c for c in report.changes if c.kind == "minimum"]
    assert decide(text.replace("min 30", f"min {minimum.value}"), SEED).allowed
    assert not decide(text.replace("min 30", f"min {minimum.value + 1}"), SEED).allowed


def test_a_when_block_is_what_gets_changed() -> None:
    """The limit that applies comes from a `when` block: the suggestion names its rule."""
    text = DEFAULT + "\nwhen wide: fields.count > 50 {\n  limit wide_prompt: request_prompt <= 11_000 tokens\n}\n"
    report = fit(load_policy_text(text, "when.policy"), SEED, knowledge=KNOWLEDGE)
    (limit,) = report.untrimmed_fit
    assert limit.rule == "wide_prompt" and limit.delta == limit.value - 11_000
    assert decide(text.replace("11_000", str(limit.value)), SEED).outcome == "allowed"


def test_several_blocking_limits_together() -> None:
    """Day usage over the demo's 40,000 cap and a prompt over 12,000: both limits must move;
    raising the prompt limit alone cannot allow the call."""
    demo = (EX / "policies" / "demo.policy").read_text()
    usage = UsageSnapshot(batch_tokens=30_000, day_tokens=1_200_000)
    report = fit(load_policy_text(demo, "demo.policy"), SEED, knowledge=KNOWLEDGE, usage=usage)
    assert {c.metric for c in report.untrimmed_fit} == {"request_prompt", "day_total"}
    assert report.untrimmed_fit_checked is not None and report.untrimmed_fit_checked.outcome == "allowed"
    values = {c.metric: c.value for c in report.untrimmed_fit}
    both = demo.replace("12_000", str(values["request_prompt"])).replace("40_000", str(values["day_total"]))
    assert decide(both, SEED, usage).outcome == "allowed"
    assert any(note.startswith("raising request_prompt alone does not allow it") for note in report.not_enough)
    day = next(c for c in report.changes if c.metric == "day_total")
    assert decide(demo.replace("40_000", str(day.value)), SEED, usage).allowed
    assert not decide(demo.replace("40_000", str(day.value - 1)), SEED, usage).allowed


def test_calls_left_in_the_batch_and_day() -> None:
    """default: batch 52,000 minus the 2,500 reserve; with 30,000 spent, 19,500 remain."""
    usage = UsageSnapshot(batch_tokens=30_000, day_tokens=1_490_000)
    report = fit(load_policy_text(DEFAULT, "default.policy"), SMALL, knowledge=KNOWLEDGE, usage=usage)
    size = report.decision.metrics["request_tokens"]
    left = {r.metric: r for r in report.remaining}
    assert left["batch_total"].limit == 49_500 and left["batch_total"].calls == 19_500 // size
    assert left["day_total"].calls == 10_000 // size
    assert left["day_usd"].calls is None  # $0 prices: calls cost nothing
    # the last call that fits, and one more of the same size does not (its prompt must shrink or it is blocked)
    calls = left["day_total"].calls
    last = UsageSnapshot(batch_tokens=0, day_tokens=1_490_000 + (calls - 1) * size)
    after = UsageSnapshot(batch_tokens=0, day_tokens=1_490_000 + calls * size)
    assert decide(DEFAULT, SMALL, last).outcome == "allowed"
    assert decide(DEFAULT, SMALL, after).outcome != "allowed"


@pytest.mark.parametrize("pack", ["small_2x4x10x8", "seed_5x15x72x60", "blocked_oversized_guard"])
def test_json_is_plain(pack: str) -> None:
    import json

    report = fit(
        load_policy_text(DEFAULT, "default.policy"), load_pack_file(EX / "packs" / f"{pack}.json"), knowledge=KNOWLEDGE
    )
    data = json.loads(json.dumps(report.to_json()))
    assert data["untrimmed_prompt_tokens"] >= data["prompt_tokens"]
