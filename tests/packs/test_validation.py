"""Every pack-validation error path: a distinct code, the file, a JSON Pointer, a hint."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from policy_engine.errors import PackError, UsageInputError
from policy_engine.packs import load_pack, load_pack_file, load_seen_combos, load_usage
from tests.conftest import SHARED

SEED = json.loads((SHARED / "packs" / "seed_5x15x72x60.json").read_text())


def problems(doc: object, tmp_path: Path | None = None) -> list[tuple[str, str | None, str]]:
    with pytest.raises(PackError) as err:
        load_pack(doc, file="p.json")  # type: ignore[arg-type]
    return [(d.code, d.pointer, d.message) for d in err.value.diagnostics]


def mutated(fn) -> dict:
    doc = copy.deepcopy(SEED)
    fn(doc)
    return doc


def test_all_sample_packs_validate_and_map() -> None:
    for path in sorted((SHARED / "packs").glob("*.json")):
        pools = load_pack_file(path)
        assert pools.format == "agent-retrieval-pack/v1"
        # names are subcategories x datasets x fields x operators (small_2x4x10x0: no operators)
        sizes = [int(n) for n in path.stem.split("_")[1].split("x")]
        assert [len(pools.pool(p)) for p in ("subcategories", "datasets", "fields", "operators")] == sizes


def test_score_of_wrong_type_reports_pointer_and_plain_message() -> None:
    doc = mutated(lambda d: d["candidate_fields"][12].__setitem__("score", "high"))
    assert problems(doc) == [
        ("P107", "/candidate_fields/12/score", '/candidate_fields/12/score: expected number, got "high"')
    ]


def test_every_schema_violation_is_reported() -> None:
    def break_many(d: dict) -> None:
        d["candidate_fields"][0]["lane"] = "sideways"
        del d["candidate_operators"][3]["name"]
        d["lanes"]["explore"]["field_ids"] = "x"

    found = problems(mutated(break_many))
    pointers = [p for _, p, _ in found]
    assert pointers == ["/candidate_fields/0/lane", "/candidate_operators/3", "/lanes/explore/field_ids"]
    assert 'expected one of "exploit", "explore", got "sideways"' in found[0][2]
    assert "missing required key 'name'" in found[1][2]


def test_missing_top_level_key() -> None:
    assert problems(mutated(lambda d: d.pop("lanes"))) == [("P107", "", "/: missing required key 'lanes'")]


def test_duplicate_candidate_ids() -> None:
    doc = mutated(lambda d: d["candidate_operators"][5].__setitem__("name", d["candidate_operators"][0]["name"]))
    codes = {c for c, _, _ in problems(doc)}
    assert "P108" in codes


def test_dangling_dataset_reference() -> None:
    doc = mutated(lambda d: d["candidate_fields"][3].__setitem__("dataset_id", "nope"))
    assert ("P109", "/candidate_fields/3/dataset_id") in [(c, p) for c, p, _ in problems(doc)]


def test_lanes_lists_disagreeing_with_candidates() -> None:
    doc = mutated(lambda d: d["lanes"]["exploit"]["field_ids"].pop())
    assert [(c, p) for c, p, _ in problems(doc)] == [("P110", "/lanes/exploit/field_ids")]


def test_not_an_object() -> None:
    assert problems([1, 2, 3])[0][0] == "P112"


@pytest.mark.parametrize(
    "content, code",
    [
        ("", "P115"),
        ("{not json", "P103"),
        ('{"a": 1, "a": 2}', "P104"),
        ('{"a": NaN}', "P105"),
        ("[]", "P112"),
    ],
)
def test_file_level_problems(tmp_path: Path, content: str, code: str) -> None:
    path = tmp_path / "p.json"
    path.write_text(content)
    with pytest.raises(PackError) as err:
        load_pack_file(path)
    d = err.value.diagnostics[0]
    assert d.code == code
    assert (d.span.file if d.span else d.file) == str(path)
    assert d.hint


def test_json_syntax_error_has_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text('{\n  "a": 1,\n  "b": ,\n}')
    with pytest.raises(PackError) as err:
        load_pack_file(path)
    d = err.value.diagnostics[0]
    assert (d.span.line, d.span.column) == (3, 8)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    for path, code in ((tmp_path / "none.json", "P101"), (tmp_path, "P102")):
        with pytest.raises(PackError) as err:
            load_pack_file(path)
        assert err.value.diagnostics[0].code == code


def test_input_mapping_is_never_mutated() -> None:
    doc = copy.deepcopy(SEED)
    before = json.dumps(doc, sort_keys=True)
    pools = load_pack(doc)
    assert json.dumps(doc, sort_keys=True) == before
    assert pools.source is not doc


def test_subcategory_lane_is_derived_from_its_datasets() -> None:
    pools = load_pack(SEED)
    assert {c.id: c.lane for c in pools.pool("subcategories")}["sentiment-news"] == "explore"
    assert pools.attributes["fields.explore.count"] == 14


def test_usage_snapshot(tmp_path: Path) -> None:
    path = tmp_path / "u.json"
    path.write_text('{"batch": {"tokens": 10, "usd": "0.000002"}, "day": {"tokens": 20, "usd": 1.5}}')
    u = load_usage(path)
    assert (u.batch_tokens, u.day_tokens, u.batch_micro_usd, u.day_micro_usd) == (10, 20, 2, 1_500_000)
    for bad in ('{"batch": {"tokens": -1}}', '{"batch": {"tokens": 1.5}}', '{"day": {"usd": "abc"}}', '{"week": {}}'):
        path.write_text(bad)
        with pytest.raises(UsageInputError) as err:
            load_usage(path)
        assert err.value.diagnostics[0].code == "P113"


def test_seen_combos(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    path.write_text('["a::b", "c::d"]')
    assert load_seen_combos(path) == frozenset({"a::b", "c::d"})
    path.write_text('["a::b", 3]')
    with pytest.raises(UsageInputError) as err:
        load_seen_combos(path)
    assert err.value.diagnostics[0].pointer == "/1"
