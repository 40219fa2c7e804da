"""The auxiliary inputs (usage snapshot, seen combos): what an absent part means, and the
exact diagnostics a bad file gets (code, message, hint, file and pointer are what `policy`
prints and what a CI annotation points at)."""

from __future__ import annotations

from pathlib import Path

import pytest

from policy_engine.errors import UsageInputError
from policy_engine.packs import load_seen_combos, load_usage
from policy_engine.packs.usage_input import usage_from_document
from policy_engine.reading.bounds import SMALL_DOCUMENT_BOUNDS
from policy_engine.usage import UsageSnapshot


def _diagnostics(
    err: pytest.ExceptionInfo[UsageInputError],
) -> list[tuple[str, str, str | None, str | None, str | None]]:
    return [(d.code, d.message, d.hint, d.file, d.pointer) for d in err.value.diagnostics]


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        ({}, UsageSnapshot()),
        ({"batch": {}}, UsageSnapshot()),
        ({"day": {"tokens": 7}}, UsageSnapshot(day_tokens=7)),
        ({"batch": {"usd": "0.25"}}, UsageSnapshot(batch_micro_usd=250_000)),
        ({"batch": {"tokens": 3}, "day": {"usd": 2}}, UsageSnapshot(batch_tokens=3, day_micro_usd=2_000_000)),
    ],
)
def test_what_a_usage_file_leaves_out_was_not_spent(doc: dict[str, object], expected: UsageSnapshot) -> None:
    assert usage_from_document(doc, "u.json") == expected


def test_a_schema_violation_names_the_file_the_place_and_the_schema(tmp_path: Path) -> None:
    path = tmp_path / "u.json"
    path.write_text('{"batch": {"tokens": -1}}')
    with pytest.raises(UsageInputError) as err:
        load_usage(path)
    (d,) = err.value.diagnostics
    assert (d.code, d.file, d.pointer, d.hint) == ("P113", str(path), "/batch/tokens", "see `policy schema usage`")


def test_a_value_json_cannot_hold_is_refused_before_the_schema() -> None:
    with pytest.raises(UsageInputError) as err:
        usage_from_document({"batch": {"usd": float("nan")}}, "u.json")
    (d,) = err.value.diagnostics
    assert (d.code, d.file, d.pointer) == ("P105", "u.json", "/batch/usd")


def test_a_usage_file_is_read_within_the_small_document_bounds(tmp_path: Path) -> None:
    path = tmp_path / "u.json"
    path.write_text('{"batch": {"tokens": 1}}' + " " * SMALL_DOCUMENT_BOUNDS.max_bytes)
    with pytest.raises(UsageInputError):
        load_usage(path)


def test_seen_combos_that_are_not_a_list(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    path.write_text('{"a::b": 1}')
    with pytest.raises(UsageInputError) as err:
        load_seen_combos(path)
    assert _diagnostics(err) == [
        ("P114", "expected a JSON list of combo strings", '["fnd6_epspxq::ts_rank", ...]', str(path), "")
    ]


def test_every_bad_combo_is_named_at_its_index(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    path.write_text('["a::b", 3, "no separator", "c::d"]')
    with pytest.raises(UsageInputError) as err:
        load_seen_combos(path)
    hint = "each combo is a string with ::"
    assert _diagnostics(err) == [
        ("P114", '/1: expected "<field_id>::<operator_name>"', hint, str(path), "/1"),
        ("P114", '/2: expected "<field_id>::<operator_name>"', hint, str(path), "/2"),
    ]


def test_seen_combos_are_read_within_the_small_document_bounds(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    path.write_text('["a::b"]' + " " * SMALL_DOCUMENT_BOUNDS.max_bytes)
    with pytest.raises(UsageInputError):
        load_seen_combos(path)


def test_an_unknown_key_is_named_as_unknown() -> None:
    with pytest.raises(UsageInputError) as err:
        usage_from_document({"week": {}}, "u.json")
    assert [(d.code, d.message, d.pointer) for d in err.value.diagnostics] == [
        ("P113", "/: unknown key(s) ('week' was unexpected)", "")
    ]
