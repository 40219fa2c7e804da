"""The cross-reference refusals JSON Schema cannot express, and the loader's own: each
diagnostic exactly (code, message, hint, file, pointer), since that is what the user reads
and what a CI annotation points at."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest

from policy_engine.errors import PackError
from policy_engine.packs import load_pack
from policy_engine.packs.validate import schema_diagnostics
from policy_engine.reading.bounds import PACK_BOUNDS
from tests.conftest import SHARED

SEED = json.loads((SHARED / "packs" / "seed_5x15x72x60.json").read_text())
LANES_HINT = "keep lanes lists and candidates' lane values in agreement"

Row = tuple[str, str, str | None, str | None, str | None]


def refusals(change: Callable[[dict[str, Any]], object]) -> list[Row]:
    doc = copy.deepcopy(SEED)
    change(doc)
    with pytest.raises(PackError) as err:
        load_pack(doc, file="p.json")
    return [(d.code, d.message, d.hint, d.file, d.pointer) for d in err.value.diagnostics]


def test_a_subcategory_listed_twice() -> None:
    rows = refusals(lambda d: d["selected_subcategories"].append("pv-price-volume"))
    ptr = "/selected_subcategories/5"
    message = f"{ptr}: subcategory 'pv-price-volume' is listed twice (first at index 2)"
    assert rows == [("P108", message, "list each subcategory once", "p.json", ptr)]


def test_a_candidate_id_repeated_within_its_pool() -> None:
    def change(d: dict[str, Any]) -> None:
        d["candidate_operators"].append(copy.deepcopy(d["candidate_operators"][1]))
        d["lanes"][d["candidate_operators"][1]["lane"]]["operator_names"].append(d["candidate_operators"][1]["name"])

    ptr = f"/candidate_operators/{len(SEED['candidate_operators'])}/name"
    rows = refusals(change)
    assert rows[0] == (
        "P108",
        f"{ptr}: name 'ts_mean' repeats /candidate_operators/1",
        "candidate ids must be unique within a pool",
        "p.json",
        ptr,
    )


def test_dangling_references() -> None:
    def change(d: dict[str, Any]) -> None:
        d["candidate_datasets"][1]["subcategory_id"] = "nowhere"
        d["candidate_fields"][0]["dataset_id"] = "nothing"

    ds, field = "/candidate_datasets/1/subcategory_id", "/candidate_fields/0/dataset_id"
    assert refusals(change) == [
        (
            "P109",
            f"{ds}: 'nowhere' is not in selected_subcategories",
            "add the subcategory or drop the dataset",
            "p.json",
            ds,
        ),
        (
            "P109",
            f"{field}: 'nothing' is not a candidate dataset",
            "add the dataset or drop the field",
            "p.json",
            field,
        ),
    ]


def test_a_lanes_list_naming_ids_outside_its_lane() -> None:
    extra = ["x1", "x2", "x3", "x4", "x5", "x6"]
    rows = refusals(lambda d: d["lanes"]["exploit"]["operator_names"].extend(extra))
    ptr = "/lanes/exploit/operator_names"
    listed = "'x1', 'x2', 'x3', 'x4', 'x5' ..."
    assert rows == [
        ("P110", f"{ptr}: lists {listed} not in exploit lane of candidate_operators", LANES_HINT, "p.json", ptr)
    ]


EXPLORE_FIELDS = sorted(SEED["lanes"]["explore"]["field_ids"])


def test_a_lanes_list_omitting_ids_of_its_lane() -> None:
    rows = refusals(lambda d: d["lanes"]["explore"].update(field_ids=EXPLORE_FIELDS[2:]))
    ptr = "/lanes/explore/field_ids"
    omitted = f"{EXPLORE_FIELDS[0]!r}, {EXPLORE_FIELDS[1]!r}"
    assert rows == [("P110", f"{ptr}: omits {omitted}", LANES_HINT, "p.json", ptr)]


def test_a_lanes_list_both_naming_and_omitting_and_one_repeating() -> None:
    def change(d: dict[str, Any]) -> None:
        d["lanes"]["explore"]["field_ids"] = [*EXPLORE_FIELDS[1:], "pv2_capxq"]
        d["lanes"]["exploit"]["operator_names"].append(d["lanes"]["exploit"]["operator_names"][0])

    ops, fields = "/lanes/exploit/operator_names", "/lanes/explore/field_ids"
    message = f"{fields}: lists 'pv2_capxq' not in explore lane of candidate_fields; omits {EXPLORE_FIELDS[0]!r}"
    assert refusals(change) == [
        ("P110", f"{ops}: repeats an id", LANES_HINT, "p.json", ops),
        ("P110", message, LANES_HINT, "p.json", fields),
    ]


def test_a_pack_nested_too_deep_is_refused_at_the_deepest_place() -> None:
    deep: dict[str, Any] = {}
    node = deep
    for _ in range(PACK_BOUNDS.max_depth + 5):
        node["k"] = {}
        node = node["k"]
    rows = refusals(lambda d: d.update(telemetry=deep))
    (code, message, hint, file, ptr) = rows[0]
    assert (code, message, hint, file) == (
        "P119",
        f"nested deeper than {PACK_BOUNDS.max_depth} levels",
        "flatten the document",
        "p.json",
    )
    assert ptr is not None and ptr.startswith("/telemetry/k/k/")


def test_the_digest_is_the_content_digest_on_both_paths() -> None:
    digest = load_pack(SEED).digest  # the fast path
    assert len(digest) == 64
    slow = copy.deepcopy(SEED)
    slow["query"] = type("Text", (str,), {})(SEED["query"])  # a str subclass: the fast path defers
    assert load_pack(slow).digest == digest
    assert load_pack(json.loads(json.dumps(SEED))).digest == digest  # other objects, same content
    changed = copy.deepcopy(SEED)
    changed["query"] += " "
    assert load_pack(changed).digest != digest


def test_a_lanes_list_cut_after_five_ids() -> None:
    """Five named ids are shown in full; from the sixth on, the list ends in `...`."""
    five = ["x1", "x2", "x3", "x4", "x5"]
    (row,) = refusals(lambda d: d["lanes"]["exploit"]["operator_names"].extend(five))
    assert (
        row[1]
        == "/lanes/exploit/operator_names: lists 'x1', 'x2', 'x3', 'x4', 'x5' not in exploit lane of candidate_operators"
    )
    explore_ops = sorted(SEED["lanes"]["explore"]["operator_names"])
    assert len(explore_ops) >= 6
    for kept, shown in ((len(explore_ops) - 5, ""), (len(explore_ops) - 6, " ...")):
        (row,) = refusals(
            lambda d, k=kept: d["lanes"]["explore"].update(operator_names=explore_ops[len(explore_ops) - k :])
        )
        assert row[1] == "/lanes/explore/operator_names: omits " + ", ".join(map(repr, explore_ops[:5])) + shown


def test_a_container_of_the_wrong_kind_is_named_with_its_json_type() -> None:
    def change(d: dict[str, Any]) -> None:
        d["candidate_fields"] = {}
        d["target"] = ["USA"]

    messages = [row[1] for row in refusals(change)]
    assert messages == [
        "/candidate_fields: expected array, got object {}",
        '/target: expected object, got array ["USA"]',
    ]


def test_a_wrong_value_is_quoted_as_json_and_cut_after_sixty_characters() -> None:
    (row,) = refusals(lambda d: d["target"].update(region=["Zürich"]))
    assert row[1] == '/target/region: expected string, got array ["Zürich"]'  # as JSON, not escaped
    fits = ["q" * 56]  # 60 characters as JSON
    (row,) = refusals(lambda d: d.update(query=fits))
    assert row[1] == f'/query: expected string, got array ["{"q" * 56}"]'
    (row,) = refusals(lambda d: d.update(query=["q" * 57]))
    assert row[1] == '/query: expected string, got array ["' + "q" * 55 + "..."


def test_a_value_of_neither_allowed_type_names_both() -> None:
    doc = {"cases": [{"pack": "p.json", "expect": {}, "name": 1.5}]}
    (d,) = schema_diagnostics(doc, "testcases", "t.yaml", "P116", "hint")
    assert d.message == "/cases/0/name: expected string or integer, got 1.5"


def test_empty_strings_and_numbers_below_the_minimum_are_named_plainly() -> None:
    def change(d: dict[str, Any]) -> None:
        d["selected_subcategories"][0] = ""
        d["target"]["delay"] = -1

    assert [row[1] for row in refusals(change)] == [
        '/selected_subcategories/0: expected a non-empty string, got ""',
        "/target/delay: expected a number >= 0, got -1",
    ]


def test_the_precise_path_copies_deeply_and_passes_the_idea_on() -> None:
    doc = copy.deepcopy(SEED)
    doc["query"] = type("Text", (str,), {})(SEED["query"])  # a str subclass: the fast path defers
    pools = load_pack(doc, idea={"theme_tags": ["value"]})
    assert pools.attributes["tags"] == ("value",)
    assert pools.source is not doc
    doc["candidate_fields"][0]["lane"] = "explore"  # the caller changes its object afterwards
    assert pools.source["candidate_fields"][0]["lane"] == "exploit"
