"""`dumps_indented` prints what ``json.dumps(..., indent=N)`` prints, on any JSON value.

The comparisons run with the rent paid (msgspec's path: the stdlib's path is ``json.dumps``
itself); the last tests check, in fresh processes, that a first value takes the stdlib's
path without importing msgspec, and that msgspec takes over once the rent is paid."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policy_engine import msgspec_rent, pretty_json
from policy_engine.pretty_json import dumps_indented
from tests.conftest import ROOT, fresh_python


@pytest.fixture(autouse=True, scope="module")
def rent_paid() -> Iterator[None]:
    before = msgspec_rent._Rent.spent
    msgspec_rent._Rent.spent = msgspec_rent.RENT_LIMIT
    yield
    msgspec_rent._Rent.spent = before


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


def _fresh(code: str) -> str:
    return fresh_python(code).strip()


def test_a_first_value_is_laid_out_without_importing_msgspec() -> None:
    out = _fresh(
        "import json, sys; from policy_engine.pretty_json import dumps_indented; "
        "v = {'a': [1, 2.5, None], 'b': {}}; assert dumps_indented(v, indent=2) == json.dumps(v, indent=2); "
        "print('msgspec' in sys.modules)"
    )
    assert out == "False"


def test_msgspec_takes_over_once_the_rent_is_paid() -> None:
    """Each call spends some time in the stdlib's encoder, so the switch comes; every text
    on the way, and after it, is json's."""
    out = _fresh(
        "import json, sys; from policy_engine.pretty_json import dumps_indented; "
        "v = {'ids': [f'field_{i}' for i in range(200)], 'nested': [{'x': i, 'y': [i, str(i)]} for i in range(50)]}; "
        "expected = json.dumps(v, indent=2); calls = 0\n"
        "while 'msgspec' not in sys.modules and calls < 1_000_000:\n"
        "    assert dumps_indented(v, indent=2) == expected; calls += 1\n"
        "assert dumps_indented(v, indent=2) == expected\n"
        "print('msgspec' in sys.modules, calls > 0)"
    )
    assert out == "True True"


plain_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.floats(min_value=1e-4, max_value=1e16, exclude_max=True).flatmap(lambda f: st.sampled_from([f, -f, 0.0]))
    | st.text(),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5),
    max_leaves=40,
)


@settings(max_examples=400, deadline=None)
@given(value=plain_values, indent=st.integers(1, 4), sort_keys=st.booleans())
def test_plain_floats_by_msgspec_equal_the_standard_library(value: Any, indent: int, sort_keys: bool) -> None:
    """With floats where msgspec writes them as json does, msgspec writes the whole text."""
    expected = json.dumps(value, indent=indent, ensure_ascii=False, sort_keys=sort_keys)
    assert dumps_indented(value, indent=indent, ensure_ascii=False, sort_keys=sort_keys, plain_floats=True) == expected


@pytest.mark.parametrize(
    ("value", "plain"),
    [(2.5e-05, False), (1e16, False), (-1e-07, False), (1.5e300, False), (0.0001, True), (9999999999999998.0, True)]
    + [(0.0, True), (-0.0, True), (None, True), (0.333333, True)],
)
def test_plain_float_marks_where_msgspec_writes_floats_as_json(value: float | None, plain: bool) -> None:
    import msgspec

    assert pretty_json.plain_float(value) == plain
    if plain:
        assert msgspec.json.encode(value).decode() == json.dumps(value)


#: JSON values as a validated pack holds them: any finite float, ints within 2**53
pack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from(["1e5", "0.00001", "x0.0000", "2E3"])
    | st.text(),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5),
    max_leaves=40,
)


@settings(max_examples=400, deadline=None)
@given(value=pack_values, indent=st.integers(1, 4))
def test_json_values_with_any_floats_equal_the_standard_library(value: Any, indent: int) -> None:
    """Floats checked on msgspec's text: whatever the floats, the text is json's."""
    expected = json.dumps(value, indent=indent, ensure_ascii=False)
    assert dumps_indented(value, indent=indent, ensure_ascii=False, json_values=True) == expected


def _floats_across_the_range() -> list[float]:
    """Every decade from the subnormals to the largest float, with several mantissas and
    both signs, and the edges of json's plain range."""
    out = [0.0, -0.0, 5e-324, 1e-4, 9.999999999999999e-05, 1e16, 9999999999999998.0, 1.7976931348623157e308]
    for exponent in range(-323, 309):
        for mantissa in ("1", "1.5", "2", "5", "9.999999", "1.2345678901234567", "9.999999999999998"):
            x = float(f"{mantissa}e{exponent}")
            if x != float("inf"):
                out += [x, -x]
    return out


@settings(max_examples=2000, deadline=None)
@given(st.one_of(st.sampled_from(_floats_across_the_range()), st.floats(allow_nan=False, allow_infinity=False)))
def test_the_float_guard_sees_every_float_msgspec_writes_unlike_json(value: float) -> None:
    import msgspec

    written = msgspec.json.encode(value)
    if written.decode() != json.dumps(value):
        assert pretty_json.floats_may_differ(written)


def test_the_float_guard_over_every_decade() -> None:
    import msgspec

    missed = [
        x
        for x in _floats_across_the_range()
        if msgspec.json.encode(x).decode() != json.dumps(x)
        and not pretty_json.floats_may_differ(msgspec.json.encode(x))
    ]
    assert missed == []
