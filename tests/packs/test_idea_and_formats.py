"""The idea spec's refusals and the pack-format registry's: exact diagnostics (code,
message, hint, file, pointer), since they are what the user reads."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from policy_engine.errors import PackError
from policy_engine.packs import load_pack, load_pack_file, read_pack_document, registry
from policy_engine.packs.idea_input import idea_from_document, load_idea
from policy_engine.packs.registry import find_format, formats
from policy_engine.reading.bounds import SMALL_DOCUMENT_BOUNDS
from tests.conftest import SHARED

IDEA = json.loads((SHARED / "ideaspec.example.json").read_text())
SEED = json.loads((SHARED / "packs" / "seed_5x15x72x60.json").read_text())


def _diagnostics(err: pytest.ExceptionInfo[PackError]) -> list[tuple[str, str, str | None, str | None, str | None]]:
    return [(d.code, d.message, d.hint, d.file, d.pointer) for d in err.value.diagnostics]


def test_a_valid_idea_is_returned_as_given(tmp_path: Path) -> None:
    path = tmp_path / "idea.json"
    path.write_text(json.dumps(IDEA))
    assert load_idea(path) == IDEA
    assert idea_from_document(IDEA) is IDEA


@pytest.mark.parametrize(("doc", "kind"), [([], "list"), ("idea", "str"), (None, "NoneType")])
def test_an_idea_that_is_not_an_object(doc: Any, kind: str) -> None:
    with pytest.raises(PackError) as err:
        idea_from_document(doc, "i.json")
    hint = "see the agent's idea spec format (reference section 2)"
    assert _diagnostics(err) == [("R104", f"an idea spec is a JSON object, got a {kind}", hint, "i.json", "")]


def test_an_idea_read_from_a_file_is_named_by_its_path_and_one_passed_in_by_a_placeholder(tmp_path: Path) -> None:
    path = tmp_path / "idea.json"
    path.write_text("[]")
    with pytest.raises(PackError) as err:
        load_idea(path)
    assert err.value.diagnostics[0].file == str(path)
    with pytest.raises(PackError) as err:
        idea_from_document([])
    assert err.value.diagnostics[0].file == "<idea>"


def test_an_idea_tag_that_is_not_a_string_is_refused_at_its_place() -> None:
    with pytest.raises(PackError) as err:
        idea_from_document({**IDEA, "theme_tags": ["value", ["nested"]]}, "i.json")
    (d,) = err.value.diagnostics
    assert (d.code, d.hint, d.file, d.pointer) == ("R104", "see `policy schema ideaspec`", "i.json", "/theme_tags/1")


def test_an_idea_value_json_cannot_hold_is_refused_before_the_schema() -> None:
    with pytest.raises(PackError) as err:
        idea_from_document({**IDEA, "score": float("inf")}, "i.json")
    (d,) = err.value.diagnostics
    assert (d.code, d.file, d.pointer) == ("P105", "i.json", "/score")


def test_an_idea_file_is_read_within_the_small_document_bounds(tmp_path: Path) -> None:
    path = tmp_path / "idea.json"
    path.write_text(json.dumps(IDEA) + " " * SMALL_DOCUMENT_BOUNDS.max_bytes)
    with pytest.raises(PackError):
        load_idea(path)


def test_the_built_in_format_is_registered_and_detected() -> None:
    assert list(formats()) == ["agent-retrieval-pack/v1"]
    fmt = find_format(SEED, "p.json", None)
    assert fmt.name == "agent-retrieval-pack/v1" and fmt.quick_check is not None
    assert find_format(SEED, "p.json", "agent-retrieval-pack/v1") is fmt
    assert find_format({"no": "markers"}, "p.json", None) is fmt  # validated against the built-in schema


def test_a_registered_format_is_found_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    """The plugin contract: what `register_format` adds, `find_format` hands out."""
    monkeypatch.setattr(registry, "_FORMATS", dict(formats()))  # formats() loads the built-ins first
    builtin = find_format(SEED, "p.json", None)
    other = dataclasses.replace(builtin, name="other/v2", detect=lambda doc: "other" in doc)
    registry.register_format(other)
    assert find_format(SEED, "p.json", "other/v2") is other
    assert find_format({"other": 1}, "p.json", None) is other
    assert set(formats()) == {"agent-retrieval-pack/v1", "other/v2"}


def test_an_unknown_format_name_lists_the_known_ones() -> None:
    with pytest.raises(PackError) as err:
        find_format(SEED, "p.json", "other/v2")
    assert _diagnostics(err) == [
        ("P111", "unknown pack format 'other/v2'", "known: agent-retrieval-pack/v1", "p.json", "")
    ]


@pytest.mark.parametrize(("doc", "kind"), [([1], "list"), (None, "null"), (3, "int")])
def test_the_registry_refuses_a_pack_that_is_not_an_object(doc: Any, kind: str) -> None:
    with pytest.raises(PackError) as err:
        find_format(doc, "p.json", None)
    hint = "a pack is one JSON object with candidate_datasets, candidate_fields, candidate_operators and lanes"
    assert _diagnostics(err) == [("P112", f"expected a JSON object (a retrieval pack), got {kind}", hint, "p.json", "")]


@pytest.mark.parametrize(("doc", "kind"), [("{}", "JSON string"), ([SEED], "list")])
def test_load_pack_refuses_a_pack_that_is_not_an_object(doc: Any, kind: str) -> None:
    with pytest.raises(PackError) as err:
        load_pack(doc, file="p.json")
    hint = "a pack is the agent's retrieval pack object; API callers pass the document (a dict), or read a file with load_pack_file(path)"
    assert _diagnostics(err) == [("P112", f"a retrieval pack is a JSON object, got a {kind}", hint, "p.json", "")]
    with pytest.raises(PackError) as err:
        load_pack(doc)
    assert err.value.diagnostics[0].file == "<pack>"


def test_load_pack_file_passes_the_idea_and_the_format_on(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text(json.dumps(SEED))
    assert load_pack_file(path, idea={"theme_tags": ["value"]}).attributes["tags"] == ("value",)
    with pytest.raises(PackError) as err:
        load_pack_file(path, format="other/v2")
    assert [(d.code, d.file) for d in err.value.diagnostics] == [("P111", str(path))]
    assert read_pack_document(path) == (SEED, str(path))
