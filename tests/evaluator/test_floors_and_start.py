"""The start state (top-k per lane, in rank order), the explore floor's report and warnings,
and the walk's stop reasons, each pinned to its exact words."""

from __future__ import annotations

import json
from typing import Any

from policy_engine.dsl import load_policy_text
from policy_engine.evaluator import evaluate
from policy_engine.evaluator.floors import floor_statuses, floor_warnings
from policy_engine.evaluator.state import initial_state, with_pool
from policy_engine.packs import load_pack
from policy_engine.policy import TopK
from policy_engine.pools import Candidate, Pools
from policy_engine.usage import UsageSnapshot
from tests.conftest import ROOT

SMALL_DOC = json.loads((ROOT / "examples" / "packs" / "small_2x4x10x8.json").read_text(encoding="utf-8"))
HEAD = 'tokenizer tiktoken "o200k_base"\n'


def _doc() -> dict[str, Any]:
    return json.loads(json.dumps(SMALL_DOC))


def test_top_k_keeps_each_lanes_first_candidates_in_rank_order() -> None:
    lanes = ["exploit", "explore", "exploit", "exploit", "explore", "explore", "exploit"]
    fields = tuple(Candidate(f"f{i}", "fields", lane, "d0") for i, lane in enumerate(lanes))
    pools = _pools(fields)
    state = initial_state(pools, (TopK("fields", "exploit", 2), TopK("fields", "explore", 1)))
    assert state["fields"].ids == ("f0", "f1", "f2")
    state = initial_state(pools, (TopK("fields", "explore", 2),))  # exploit uncapped
    assert state["fields"].ids == ("f0", "f1", "f2", "f3", "f4", "f6")
    assert set(state) == {"subcategories", "datasets", "fields", "operators"}


def test_no_floor_no_floor_report() -> None:
    decision = evaluate(load_policy_text(HEAD + "explore floor 0\n", "t.policy"), load_pack(_doc()))
    assert decision.explore_floor == ()
    decision = evaluate(load_policy_text(HEAD + "explore floor 1\n", "t.policy"), load_pack(_doc()))
    assert {f.pool for f in decision.explore_floor} == {"subcategories", "datasets", "fields", "operators"}


def test_a_pack_short_of_explore_candidates_is_named_as_the_cause() -> None:
    doc = _doc()
    explore = [f["id"] for f in doc["candidate_fields"] if f["lane"] == "explore"]
    floor = len(explore) + 1
    decision = evaluate(load_policy_text(HEAD + f"explore floor {floor}\n", "t.policy"), load_pack(doc))
    (status,) = [f for f in decision.explore_floor if f.pool == "fields"]
    assert (status.status, status.available, status.kept) == ("pack_short", len(explore), len(explore))
    messages = [w.message for w in decision.warnings if w.code == "explore_floor" and w.message.startswith("fields:")]
    assert messages == [
        f"fields: the pack offered {len(explore)} explore candidate(s), fewer than the floor of {floor}"
    ]


def _pools(fields: tuple[Candidate, ...]) -> Pools:
    return Pools(
        {
            "subcategories": (Candidate("s0", "subcategories", "exploit"), Candidate("s1", "subcategories", "explore")),
            "datasets": (Candidate("d0", "datasets", "exploit", "s0"), Candidate("d1", "datasets", "explore", "s1")),
            "fields": fields,
        },
        {},
        "test",
    )


def test_a_floor_the_top_k_or_cascade_holds_back_names_the_policy() -> None:
    fields = (Candidate("f0", "fields", "explore", "d0"), Candidate("f1", "fields", "explore", "d9"))
    pools = _pools(fields)
    start = initial_state(pools, ())  # f1's dataset is not in the pack: the cascade drops it
    (status,) = [f for f in floor_statuses(2, start, start) if f.pool == "fields"]
    assert (status.status, status.available, status.kept) == ("pack_short", 1, 1)
    assert [w.message for w in floor_warnings([status], pools)] == [
        "fields: the pack offered 2 explore candidate(s) but the policy's top-k and parent pools"
        " leave 1, fewer than the floor of 2"
    ]


def test_a_cascade_that_drops_explore_owners_breaks_the_floor_and_says_so() -> None:
    fields = (Candidate("f0", "fields", "exploit", "d1"), Candidate("f1", "fields", "explore", "d0"))
    pools = _pools(fields)
    start = initial_state(pools, ())
    final = with_pool(start, "subcategories", start["subcategories"].items[1:])  # s0 goes, d0 and f1 with it
    statuses = {f.pool: f for f in floor_statuses(1, start, final)}
    assert statuses["fields"].status == "not_preserved" and statuses["fields"].kept == 0
    assert statuses["subcategories"].status == "preserved"
    assert [w.code for w in floor_warnings([statuses["fields"]], pools)] == ["explore_floor"]
    assert [w.message for w in floor_warnings([statuses["fields"]], pools)] == [
        "fields: only 0 explore candidate(s) kept, below the floor of 1: their owners were dropped by the cascade"
    ]
    assert floor_warnings([statuses["subcategories"]], pools) == []


def test_stop_reasons_word_for_word() -> None:
    no_ladder = (
        HEAD + "limit request_prompt: request_prompt <= 10 tokens\nlimit batch_total: batch_total <= 20 tokens\n"
    )
    decision = evaluate(load_policy_text(no_ladder, "t.policy"), load_pack(_doc()))
    start, stop = decision.trace[0], decision.trace[-1]
    assert start.message == "initial selection: the pack's top-k exceeds request_prompt, batch_total"
    assert stop.message == "no fallback ladder" and decision.outcome == "blocked"
    usd = (
        HEAD
        + 'price "m": prompt $1 per 1k, completion $1 per 1k\npricing model "m"\n'
        + "limit day_spend: day_usd <= $5\nlimit day_total: day_total <= 1_000_000 tokens\n"
        + "ladder {\n  stage f: fields factor 0.5\n  on exhausted block\n}\n"
    )
    decision = evaluate(
        load_policy_text(usd, "t.policy"), load_pack(_doc()), usage=UsageSnapshot(day_micro_usd=5_000_001)
    )
    assert decision.trace[-1].message == "trimming cannot fix day_usd (it fails even with an empty prompt)"


def test_full_explain_prices_every_starting_candidate() -> None:
    decision = evaluate(load_policy_text(HEAD, "t.policy"), load_pack(_doc()), explain="full")
    start = decision.trace[0]
    assert start.item_tokens is not None
    for pool, lanes in decision.selection.items():
        ids = {i for lane in lanes.values() for i in lane}
        assert set(start.item_tokens[pool]) == ids
        assert all(n > 0 for n in start.item_tokens[pool].values())
