"""`dumps_indented` prints what ``json.dumps(..., indent=N)`` prints, on any JSON value."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policy_engine.pretty_json import dumps_indented

ROOT = Path(__file__).resolve().parents[1]

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5),
    max_leaves=40,
)


@settings(max_examples=400, deadline=None)
@given(
    value=json_values,
    indent=st.integers(0, 4),
    ensure_ascii=st.booleans(),
    sort_keys=st.booleans(),
)
def test_equals_the_standard_library(value: Any, indent: int, ensure_ascii: bool, sort_keys: bool) -> None:
    expected = json.dumps(value, indent=indent, ensure_ascii=ensure_ascii, sort_keys=sort_keys)
    assert dumps_indented(value, indent=indent, ensure_ascii=ensure_ascii, sort_keys=sort_keys) == expected


@pytest.mark.parametrize(
    "value",
    [{}, [], {"a": []}, {"a": {}}, [[]], {"x": 1e-06, "y": 0.1, "z": 'é\u2028\x1f"\\/', "n": -0.0}, "s", 1, 10**20],
)
def test_edge_values(value: Any) -> None:
    for ensure_ascii in (True, False):
        expected = json.dumps(value, indent=2, ensure_ascii=ensure_ascii, sort_keys=True)
        assert dumps_indented(value, indent=2, ensure_ascii=ensure_ascii, sort_keys=True) == expected


def test_every_example_pack() -> None:
    for path in sorted((ROOT / "examples" / "packs").glob("*.json")):
        doc = json.loads(path.read_text(encoding="utf-8"))
        assert dumps_indented(doc, indent=2, ensure_ascii=False) == json.dumps(doc, indent=2, ensure_ascii=False)
