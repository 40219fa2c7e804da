"""Pack loader fuzz: random JSON, mutated valid packs and random text never raise anything
but `PackError`, and every problem is located (a JSON Pointer for documents, a line and
column for text that is not JSON)."""

from __future__ import annotations

import copy
import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from policy_engine.errors import PackError
from policy_engine.packs import load_pack, parse_json_text
from tests.conftest import SHARED
from tests.strategies import packs

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=25,
)


def _resolves(doc: Any, pointer: str) -> bool:
    """The pointer's parent exists in the document (the pointer itself may name a key
    that is missing, as for `missing required key`)."""
    if pointer == "":
        return True
    parts = [p.replace("~1", "/").replace("~0", "~") for p in pointer.split("/")[1:]]
    node = doc
    for part in parts[:-1]:
        if isinstance(node, list):
            node = node[int(part)]
        elif isinstance(node, dict):
            node = node[part]
        else:
            return False
    return True


def _assert_located(exc: PackError, doc: Any) -> None:
    assert exc.diagnostics
    for diag in exc.diagnostics:
        assert diag.code.startswith("P"), diag
        assert diag.pointer is not None, diag
        assert diag.pointer == "" or diag.pointer.startswith("/"), diag
        assert _resolves(doc, diag.pointer), diag


@given(json_values)
def test_random_json_documents_fail_only_with_located_pack_errors(doc: Any) -> None:
    try:
        load_pack(doc)
    except PackError as exc:
        _assert_located(exc, doc)


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(doc, dict):
        for key, value in doc.items():
            out.extend(_paths(value, prefix + (key,)))
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            out.extend(_paths(value, prefix + (i,)))
    return out


@st.composite
def mutated_packs(draw: Any) -> Any:
    doc = copy.deepcopy(draw(packs()))
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _paths(doc) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = doc
        for part in path[:-1]:
            parent = parent[part]
        key = path[-1]
        action = draw(st.sampled_from(["delete", "replace", "nan", "duplicate"]))
        if action == "delete":
            del parent[key]
        elif action == "replace":
            parent[key] = draw(json_values)
        elif action == "nan":
            parent[key] = draw(st.sampled_from([float("nan"), float("inf"), -float("inf")]))
        elif isinstance(parent, list):
            parent.insert(key, copy.deepcopy(parent[key]))
    return doc


@given(mutated_packs())
def test_mutated_packs_fail_only_with_located_pack_errors(doc: Any) -> None:
    try:
        load_pack(doc)
    except PackError as exc:
        _assert_located(exc, doc)


@given(st.one_of(st.text(), packs().map(lambda p: json.dumps(p)[: len(json.dumps(p)) // 2])))
def test_random_text_fails_only_with_pack_errors_that_have_a_place(text: str) -> None:
    try:
        parse_json_text(text, "fuzz.json")
    except PackError as exc:
        for diag in exc.diagnostics:
            assert diag.pointer is not None or (
                diag.span is not None and diag.span.line >= 1 and diag.span.column >= 1
            ), diag


def test_nan_in_a_python_document_is_refused_with_its_pointer() -> None:
    """Regression (found by the mutation fuzz): JSON Schema's "number" accepts NaN, so a
    pack passed as a Python object with a NaN score was evaluated."""
    doc = json.loads((SHARED / "packs" / "small_2x4x10x8.json").read_text())
    doc["candidate_fields"][3]["score"] = float("nan")
    try:
        load_pack(doc)
    except PackError as exc:
        assert [(d.code, d.pointer) for d in exc.diagnostics] == [("P105", "/candidate_fields/3/score")]
    else:
        raise AssertionError("NaN accepted")
