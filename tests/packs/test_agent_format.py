"""The agent's pack format: the attributes guards read, and `trim` (the `--trimmed-pack` the
agent reads back as it reads any pack)."""

from __future__ import annotations

import copy
import json

from policy_engine.packs import agent_format, load_pack
from policy_engine.policy import POOLS
from tests.conftest import SHARED

SEED = json.loads((SHARED / "packs" / "seed_5x15x72x60.json").read_text())


def test_packs_with_equal_lists_share_candidates_not_attributes() -> None:
    """Pools built from equal candidate lists are reused (the loader passes their bytes);
    the attributes are each pack's own, and other lists give other pools."""
    other_target = {**SEED, "idea_id": "another", "target": {**SEED["target"], "region": "EUR"}}
    first, second = load_pack(SEED), load_pack(other_target)
    assert all(first.pools[p] is second.pools[p] for p in POOLS)
    assert second.attributes["region"] == "EUR" and second.attributes["idea_id"] == "another"
    assert first.attributes["region"] == "USA"
    fewer = copy.deepcopy(SEED)
    dropped = fewer["candidate_operators"].pop()
    fewer["lanes"][dropped["lane"]]["operator_names"].remove(dropped["name"])
    third = load_pack(fewer)
    assert third.pools["operators"] == first.pools["operators"][:-1]
    assert third.attributes["operators.count"] == first.attributes["operators.count"] - 1
    assert agent_format.adapt(SEED).pools == first.pools  # without parts: built afresh, equal


def test_attributes_come_from_the_target_the_query_and_the_idea() -> None:
    pools = load_pack(SEED, idea={"theme_tags": ["momentum", "quality"]})
    a = pools.attributes
    assert (a["region"], a["universe"], a["delay"], a["instrument_type"]) == ("USA", "TOP3000", 1, "EQUITY")
    assert (a["query"], a["idea_id"]) == (SEED["query"], "idea-0020")
    assert a["tags"] == ("momentum", "quality")
    for name, key in (("fields", "candidate_fields"), ("operators", "candidate_operators")):
        lanes = [c["lane"] for c in SEED[key]]
        assert a[f"{name}.count"] == len(lanes)
        assert (a[f"{name}.exploit.count"], a[f"{name}.explore.count"]) == (
            lanes.count("exploit"),
            lanes.count("explore"),
        )
    assert (a["datasets.exploit.count"], a["datasets.explore.count"]) == (12, 3)
    assert (a["subcategories.exploit.count"], a["subcategories.explore.count"]) == (4, 1)


def test_every_candidate_names_its_pool_and_owner() -> None:
    pools = load_pack(SEED)
    for name in POOLS:
        assert {c.pool for c in pools.pool(name)} == {name}
    assert {c.parent for c in pools.pool("datasets")} == set(SEED["selected_subcategories"])
    assert {c.parent for c in pools.pool("subcategories")} == {c.parent for c in pools.pool("operators")} == {None}


def test_a_pack_without_an_idea_has_no_tags_and_missing_target_values_are_absent() -> None:
    doc = copy.deepcopy(SEED)
    doc["target"] = {"region": "EUR"}
    a = load_pack(doc).attributes
    assert "tags" not in a
    assert (a["region"], a["universe"], a["delay"], a["instrument_type"]) == ("EUR", None, None, None)
    assert load_pack(SEED, idea={}).attributes["tags"] == ()


def test_a_subcategory_is_explore_only_when_all_its_datasets_are() -> None:
    doc = copy.deepcopy(SEED)
    doc["candidate_datasets"][0]["lane"] = "explore"  # fundamental-earnings keeps exploit datasets
    doc["candidate_datasets"][12]["lane"] = "exploit"  # sentiment-news now has one exploit dataset
    lanes = {c.id: c.lane for c in load_pack(doc).pool("subcategories")}
    assert lanes["fundamental-earnings"] == "exploit" and lanes["sentiment-news"] == "exploit"


SELECTION = {
    "subcategories": {"exploit": ("fundamental-earnings",), "explore": ("sentiment-news",)},
    "datasets": {"exploit": ("fundamental1", "model5"), "explore": ("risk14",)},
    "fields": {"exploit": (SEED["lanes"]["exploit"]["field_ids"][0],), "explore": ()},
    "operators": {"exploit": ("ts_rank",), "explore": ("rank_v2",)},
}


def test_trim_keeps_the_selection_and_its_lanes_and_guard_consistent() -> None:
    before = copy.deepcopy(SEED)
    out = agent_format.trim(SEED, SELECTION)
    assert before == SEED  # the input is not modified
    assert out["selected_subcategories"] == ["fundamental-earnings", "sentiment-news"]
    assert [d["id"] for d in out["candidate_datasets"]] == ["fundamental1", "model5", "risk14"]
    assert [f["id"] for f in out["candidate_fields"]] == [SEED["lanes"]["exploit"]["field_ids"][0]]
    assert [o["name"] for o in out["candidate_operators"]] == ["ts_rank", "rank_v2"]
    assert out["lanes"]["exploit"] == {
        "field_ids": [SEED["lanes"]["exploit"]["field_ids"][0]],
        "operator_names": ["ts_rank"],
    }
    assert out["lanes"]["explore"] == {"field_ids": [], "operator_names": ["rank_v2"]}
    assert out["context_guard"]["max_items"] == {"subcategories": 2, "datasets": 3, "fields": 1, "operators": 2}
    assert {k: out[k] for k in ("query", "target", "idea_id")} == {k: SEED[k] for k in ("query", "target", "idea_id")}


def test_the_trimmed_pack_shares_no_container_with_its_input() -> None:
    doc = copy.deepcopy(SEED)
    doc["extra"] = {"nested": [{"deep": [1, 2.5, None, True]}], "kept": ("a", ["b"])}
    out = agent_format.trim(doc, SELECTION)
    out["extra"]["nested"][0]["deep"].append("changed")
    out["extra"]["kept"][1].append("changed")
    out["lanes"]["exploit"]["operator_names"].append("changed")
    out["candidate_datasets"][0]["id"] = "changed"
    assert doc["extra"] == {"nested": [{"deep": [1, 2.5, None, True]}], "kept": ("a", ["b"])}
    assert type(out["extra"]["kept"]) is tuple, "a value JSON has no container for is deep-copied as it is"
    assert doc["lanes"] == SEED["lanes"] and doc["candidate_datasets"] == SEED["candidate_datasets"]


def test_trim_leaves_a_guard_it_does_not_know_alone() -> None:
    doc = copy.deepcopy(SEED)
    doc["context_guard"] = {"max_items": {"fields": 72, "other": 9}}
    assert agent_format.trim(doc, SELECTION)["context_guard"] == {"max_items": {"fields": 1, "other": 9}}
    doc["context_guard"] = {"max_items": "none"}
    assert agent_format.trim(doc, SELECTION)["context_guard"] == {"max_items": "none"}
    del doc["context_guard"]
    assert "context_guard" not in agent_format.trim(doc, SELECTION)


def test_the_format_is_detected_by_its_candidate_fields_and_lanes() -> None:
    """What lets another registered format claim a document this one does not."""
    assert agent_format.detect(SEED)
    assert agent_format.detect({"candidate_fields": [], "lanes": {}})
    assert not agent_format.detect({"candidate_fields": []})
    assert not agent_format.detect({"lanes": {}})
    assert not agent_format.detect(["candidate_fields", "lanes"])
