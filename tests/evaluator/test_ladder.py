"""Evaluator behaviours, each on its own: ladder order and rung kinds, lanes and floors,
cascade, minimums, reserve and expansion, warn limits, usage, USD, conditions, the
exhausted reason, purity and determinism."""

from __future__ import annotations

import copy
import json

import pytest

from policy_engine.dsl import load_policy_text
from policy_engine.evaluator import evaluate
from policy_engine.packs import load_pack, load_pack_file
from policy_engine.render import load_idea, load_knowledge
from policy_engine.usage import Request, UsageSnapshot
from tests.conftest import SHARED

HEAD = "tokenizer rough 4 chars per token\n"
LADDER = """ladder {
  stage f: fields factor 0.85 0.70 0.55 0.40
  stage o: operators factor 0.85 0.70 0.55 0.40
  stage s: subcategories factor 0.85 0.70 0.55 0.40
  on exhausted block
}
"""
SEED_DOC = json.loads((SHARED / "packs" / "seed_5x15x72x60.json").read_text())
SEED = load_pack(SEED_DOC)
SMALL = load_pack_file(SHARED / "packs" / "small_2x4x10x8.json")


def policy(body: str, ladder: str = LADDER):
    return load_policy_text(HEAD + body + ladder, "t.policy")


def untrimmed(body: str, pack=SEED) -> int:
    """Prompt tokens of the whole pack under ``body``'s settings. Limits are rendered into
    the agent's envelope (budget_policy.llm_budget), so they must be the same values: turning
    them into warnings keeps the text and stops trimming."""
    warned = "".join(line + " warn\n" if line.startswith("limit") else line + "\n" for line in body.splitlines())
    return evaluate(policy(warned, ""), pack).metrics["prompt_tokens"]


def at_limit(template: str, delta: int = 0) -> tuple[str, int]:
    """A body whose prompt limit is the untrimmed prompt + delta (same digit count, so the
    rendered limit has the same length)."""
    value = 10_000
    for _ in range(3):
        value = untrimmed(template.format(value)) + delta
    return template.format(value), value - delta


FULL = untrimmed("")


def kept(decision, pool: str) -> list[str]:
    return [i for lane in ("exploit", "explore") for i in decision.selection[pool][lane]]


def test_fits_without_trimming() -> None:
    body, full = at_limit("limit p: request_prompt <= {} tokens\n")
    d = evaluate(policy(body), SEED)
    assert d.metrics["prompt_tokens"] == full
    assert (d.outcome, d.fallback_count, d.reason) == ("allowed", 0, None)
    assert d.selected_topk == {"subcategories": 5, "datasets": 15, "fields": 72, "operators": 60}


def test_stops_at_the_first_rung_that_fits_and_trace_lists_rungs_in_order() -> None:
    d = evaluate(policy(f"limit p: request_prompt <= {FULL - 1500} tokens\n"), SEED)
    assert d.outcome == "trimmed"
    rungs = [(s.pool, s.step_value) for s in d.rungs]
    assert rungs[0] == ("fields", "0.85")
    assert [s.rung for s in d.rungs] == sorted(s.rung for s in d.rungs)
    assert d.rungs[-1].verdict == "pass" and all(s.verdict == "fail" for s in d.rungs[:-1])
    assert d.metrics["prompt_tokens"] <= FULL - 1500


def test_factor_steps_compound_on_the_current_count() -> None:
    d = evaluate(policy("limit p: request_prompt <= 10 tokens\n"), SEED)
    field_counts = [sum(s.counts_after["fields"].values()) for s in d.rungs if s.pool == "fields"]
    assert field_counts == [61, 42, 23, 9]


def test_share_and_keep_steps() -> None:
    ladder = "ladder {\n  stage f: fields share 50% 10% then keep 3\n}\n"
    d = evaluate(policy("limit p: request_prompt <= 10 tokens\n", ladder), SEED)
    assert [sum(s.counts_after["fields"].values()) for s in d.rungs] == [36, 7, 3]


def test_stage_minimum_is_never_crossed() -> None:
    ladder = "ladder {\n  stage f: fields factor 0.5 0.2 0.1 min 20\n}\n"
    d = evaluate(policy("limit p: request_prompt <= 10 tokens\n", ladder), SEED)
    assert d.selected_topk["fields"] == 20
    assert [s.verdict for s in d.trace if s.kind == "rung"] == ["fail", "fail", "skipped"]


def test_stage_order_is_the_users() -> None:
    ladder = "ladder {\n  stage o: operators factor 0.5\n  stage f: fields factor 0.5\n}\n"
    d = evaluate(policy("limit p: request_prompt <= 10 tokens\n", ladder), SEED)
    assert [s.pool for s in d.rungs] == ["operators", "fields"]


@pytest.mark.parametrize("limit", [10, FULL // 2, FULL - 2000])
def test_trimming_keeps_a_top_ranked_prefix_per_lane(limit: int) -> None:
    d = evaluate(policy(f"limit p: request_prompt <= {limit} tokens\n"), SEED)
    kept_datasets = {i for ids in d.selection["datasets"].values() for i in ids}
    trimmed_fields = 0
    for pool in ("fields", "operators"):
        for lane in ("exploit", "explore"):
            # the cascade removes the fields of dropped datasets wherever they rank, so a
            # field's prefix is taken among those whose dataset survived
            ranked = [
                c.id for c in SEED.pool(pool) if c.lane == lane and (pool != "fields" or c.parent in kept_datasets)
            ]
            chosen = list(d.selection[pool][lane])
            assert chosen == ranked[: len(chosen)], (pool, lane)
            if pool == "fields":
                trimmed_fields += len(ranked) - len(chosen)
    assert trimmed_fields > 0, "the case must trim fields beyond the cascade, or the check is empty"
    if limit > 10:
        assert d.selection["fields"]["exploit"] and d.selection["fields"]["explore"], "both lanes keep fields"


def test_lane_split_rounds_half_to_even_like_the_agent() -> None:
    d = evaluate(policy(f"limit p: request_prompt <= {FULL - 2000} tokens\n"), SEED)
    first = d.rungs[0]
    assert first.counts_after["fields"] == {"exploit": 47, "explore": 14}  # 61 * 0.3 = 18.3 > 14 available
    second = d.rungs[1]
    assert second.counts_after["fields"] == {"exploit": 29, "explore": 13}  # 42 * 0.3 = 12.6 -> 13


def test_explore_floor_wins_the_last_slot() -> None:
    ladder = "ladder {\n  stage f: fields keep 1\n}\n"
    d = evaluate(policy("limit p: request_prompt <= 10 tokens\nexplore floor 1\n", ladder), SEED)
    assert d.selection["fields"]["explore"] and not d.selection["fields"]["exploit"]
    assert {f.pool: f.status for f in d.explore_floor}["fields"] == "preserved"


def test_explore_floor_of_zero_lets_exploit_take_it() -> None:
    ladder = "ladder {\n  stage f: fields keep 1\n}\n"
    d = evaluate(policy("limit p: request_prompt <= 10 tokens\nexplore floor 0\n", ladder), SEED)
    assert d.selection["fields"]["exploit"] and not d.selection["fields"]["explore"]


def test_floor_reported_when_the_pack_is_short() -> None:
    d = evaluate(policy("explore floor 5\n", ""), SMALL)
    statuses = {f.pool: f.status for f in d.explore_floor}
    assert statuses["subcategories"] == "pack_short"
    assert any(w.code == "explore_floor" for w in d.warnings)


def test_cascade_drops_datasets_and_fields_of_dropped_subcategories() -> None:
    ladder = "ladder {\n  stage s: subcategories keep 2\n}\n"
    d = evaluate(policy("limit p: request_prompt <= 10 tokens\n", ladder), SEED)
    subs = set(kept(d, "subcategories"))
    assert len(subs) == 2
    datasets = {c.id: c.parent for c in SEED.pool("datasets")}
    assert all(datasets[ds] in subs for ds in kept(d, "datasets"))
    fields = {c.id: c.parent for c in SEED.pool("fields")}
    assert all(fields[f] in kept(d, "datasets") for f in kept(d, "fields"))
    assert d.rungs[0].removed["fields"]


def test_exhausted_ladder_blocks_with_the_limits_name_or_a_custom_reason() -> None:
    d = evaluate(policy("limit p: request_prompt <= 10 tokens\n"), SEED)
    assert (d.outcome, d.reason, d.reasons) == ("blocked", "request_prompt", ("request_prompt",))
    custom = LADDER.replace("on exhausted block", 'on exhausted block "pack_too_large"')
    d = evaluate(policy("limit p: request_prompt <= 10 tokens\n", custom), SEED)
    assert d.reason == "pack_too_large" and d.reasons == ("request_prompt",)


def test_warn_limit_never_trims() -> None:
    d = evaluate(policy("limit p: request_prompt <= 10 tokens warn\n"), SEED)
    assert (d.outcome, d.fallback_count) == ("allowed", 0)
    assert [w.code for w in d.warnings] == ["request_prompt"]


def test_batch_and_day_limits_use_the_usage_snapshot() -> None:
    body, full = at_limit("limit b: batch_total <= {} tokens\ncompletion budget 1600 tokens\n", delta=1600 + 1000)
    need = full + 1600
    assert evaluate(policy(body), SEED, usage=UsageSnapshot(batch_tokens=1000)).outcome == "allowed"
    d = evaluate(policy(body), SEED, usage=UsageSnapshot(batch_tokens=1500))
    assert d.outcome == "trimmed" and d.metrics["projected_batch_tokens"] <= need + 1000
    day, _ = at_limit("limit d: day_total <= {} tokens\ncompletion budget 1600 tokens\n", delta=1600 + 10)
    assert evaluate(policy(day), SEED, usage=UsageSnapshot(day_tokens=100)).metrics["batch_tokens_used_before"] == 0
    assert evaluate(policy(day), SEED, usage=UsageSnapshot(day_tokens=100)).outcome == "trimmed"


def test_unfixable_limit_blocks_at_once() -> None:
    d = evaluate(
        policy("limit b: batch_total <= 5000 tokens\ncompletion budget 1600 tokens\n"),
        SEED,
        usage=UsageSnapshot(batch_tokens=4000),
    )
    assert (d.outcome, d.reason, d.fallback_count) == ("blocked", "batch_total", 0)
    assert "cannot fix" in d.trace[-1].message


def test_completion_budget_is_checked_not_clamped() -> None:
    body = "limit c: request_completion <= 1600 tokens\ncompletion budget 1600 tokens\n"
    assert evaluate(policy(body), SEED).outcome == "allowed"
    d = evaluate(policy(body), SEED, request=Request(completion_tokens=4000))
    assert (d.outcome, d.reason) == ("blocked", "request_completion")


def test_expansion_reserve_is_held_back_and_spent_by_expansions() -> None:
    body, full = at_limit(
        "limit b: batch_total <= {} tokens\ncompletion budget 1600 tokens\nexpansion reserve 2_000 tokens\n",
        delta=1600 + 100,
    )
    need = full + 1600
    ordinary = evaluate(policy(body), SEED)
    assert ordinary.outcome == "trimmed" and ordinary.limits["batch_total"]["effective"] == need + 100 - 2000
    expansion = evaluate(policy(body), SEED, request=Request(expansion=True))
    assert expansion.outcome == "allowed" and expansion.limits["batch_total"]["effective"] == need + 100


def test_expansion_may_exceed_the_prompt_limit_by_the_reserve() -> None:
    body, _ = at_limit("limit p: request_prompt <= {} tokens\nexpansion reserve 600 tokens\n", delta=-500)
    assert evaluate(policy(body), SEED).outcome == "trimmed"
    assert evaluate(policy(body), SEED, request=Request(expansion=True)).outcome == "allowed"


def test_usd_limits_are_exact_micro_dollars() -> None:
    body = 'price "m": prompt $1 per 1M, completion $2 per 1M\npricing model "m"\ncompletion budget 1000 tokens\n'
    cost = untrimmed(body) * 1 + 1000 * 2
    d = evaluate(policy(body + f"limit r: request_usd <= ${cost / 1_000_000:.6f}\n"), SEED)
    assert (d.outcome, d.metrics["request_micro_usd"], d.metrics["request_usd"]) == ("allowed", cost, f"0.{cost:06d}")
    d = evaluate(policy(body + f"limit r: request_usd <= ${(cost - 1) / 1_000_000:.6f}\n"), SEED)
    assert d.outcome == "trimmed"
    d = evaluate(policy(body + "limit day: day_usd <= $1\n"), SEED, usage=UsageSnapshot(day_micro_usd=999_999))
    assert (d.outcome, d.reason) == ("blocked", "day_usd")


def test_conditions_change_limits_for_matching_packs_and_appear_in_the_trace() -> None:
    body = f'limit p: request_prompt <= {FULL} tokens\nwhen usa: region == "USA" and fields.count > 50 {{\n  limit p: request_prompt <= {FULL - 2000} tokens\n}}\n'
    d = evaluate(policy(body), SEED)
    assert d.outcome == "trimmed" and d.trace[0].kind == "condition" and d.trace[0].rule == "usa"
    d = evaluate(policy(body), SMALL)
    assert d.outcome == "allowed" and all(s.kind != "condition" for s in d.trace)


def test_conditions_can_replace_a_stage_and_the_floor() -> None:
    body = 'limit p: request_prompt <= 10 tokens\nwhen tagged: tags contains "momentum" {\n  explore floor 3\n  ladder {\n    stage f: fields keep 5\n  }\n}\n'
    idea = load_idea(SHARED / "ideaspec.example.json")
    pools = load_pack(SEED_DOC, idea=idea)
    d = evaluate(policy(body), pools, idea=idea)
    field_rungs = [s for s in d.rungs if s.pool == "fields"]
    assert [s.step_value for s in field_rungs] == ["5"]
    assert len(d.selection["fields"]["explore"]) >= 3 or d.selection["fields"]["explore"] == ()


def test_full_explain_adds_per_candidate_tokens_and_off_drops_the_trace() -> None:
    body = f"limit p: request_prompt <= {FULL - 800} tokens\n"
    full = evaluate(policy(body), SEED, explain="full")
    assert full.trace[0].item_tokens and len(full.trace[0].item_tokens["fields"]) == 72
    removed = full.rungs[0].removed["fields"]
    assert set(full.rungs[0].item_tokens["fields"]) == set(removed)
    assert "trace" not in json.loads(evaluate(policy(body), SEED, explain="off").to_json())


def test_reported_prompt_tokens_are_an_exact_count_of_the_final_prompt() -> None:
    from policy_engine.render import build_prompt_model
    from policy_engine.tokens import get_counter

    exact = load_policy_text(
        'tokenizer tiktoken "cl100k_base"\nlimit p: request_prompt <= 9_000 tokens\n' + LADDER, "x.policy"
    )
    knowledge = load_knowledge(SHARED / "knowledge")
    d = evaluate(exact, SEED, knowledge=knowledge)
    counter = get_counter(exact.tokenizer)
    m = build_prompt_model(
        "agent_envelope", SEED, idea=None, knowledge=knowledge, counter=counter, limits={"request_prompt": 9000}
    )
    selection = {p: tuple(i for lane in d.selection[p].values() for i in lane) for p in d.selection}
    assert d.metrics["prompt_tokens"] == counter.count(m.render(selection))
    assert all(s.kind != "stop" or s.rule != "accounting" for s in d.trace)


def test_pure_and_deterministic() -> None:
    doc = copy.deepcopy(SEED_DOC)
    before = json.dumps(doc)
    p = policy("limit p: request_prompt <= 5000 tokens\n")
    a = evaluate(p, load_pack(doc)).to_json()
    b = evaluate(p, load_pack(doc)).to_json()
    assert a == b and json.dumps(doc) == before


def test_a_rung_never_shrinks_a_pool_below_the_explore_floor() -> None:
    """Regression (found by tests/verify, the `floors` property): with `explore floor 3`
    and `min 1`, a factor step took 8 operators (6 exploit, 2 explore) down to one slot, so
    one explore operator survived although two were available and the floor asked for 3;
    the decision then blamed the cascade."""
    p = load_policy_text(
        HEAD + "limit p: request_prompt <= 10 tokens\nlanes exploit 70% explore 30%\nexplore floor 3\n"
        "ladder {\n  stage o: operators factor 0.1 min 1\n  on exhausted block\n}\n",
        "t.policy",
    )
    d = evaluate(p, SMALL)
    rung = d.rungs[0]
    explore_before = rung.counts_before["operators"]["explore"]
    assert explore_before == 2
    assert rung.counts_after["operators"]["explore"] == explore_before
    assert sum(rung.counts_after["operators"].values()) == explore_before
    assert [f.status for f in d.explore_floor if f.pool == "operators"] == ["pack_short"]


def test_floor_warning_blames_the_policys_topk_not_the_pack() -> None:
    """`topk fields ... explore 0` under `explore floor 1`: the pack offered explore fields,
    the policy's own top-k held them back; the warning says so (it used to say the pack
    offered 0)."""
    offered = sum(1 for c in SMALL.pool("fields") if c.lane == "explore")
    assert offered >= 1
    d = evaluate(policy("topk fields exploit 10 explore 0\nexplore floor 1\n", ""), SMALL)
    (warning,) = [w for w in d.warnings if w.code == "explore_floor" and w.message.startswith("fields")]
    assert f"offered {offered} explore" in warning.message and "top-k" in warning.message


def test_usd_limits_say_they_hold_micro_usd() -> None:
    d = evaluate(
        load_policy_text(
            HEAD
            + 'price "m": prompt $1 per 1M, completion $1 per 1M\npricing model "m"\nlimit d: day_usd <= $5 warn\n',
            "t.policy",
        ),
        SMALL,
    )
    assert d.limits["day_usd"]["unit"] == "micro_usd" and d.limits["day_usd"]["value"] == 5_000_000
