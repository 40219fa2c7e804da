"""`content_key`: one key for JSON values that print alike, different keys otherwise, so
a cached block can never serve another item's text."""

from __future__ import annotations

import json
import sys
from collections import OrderedDict

from hypothesis import given
from hypothesis import strategies as st

from policy_engine.render.caches import content_key

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**60), 2**60) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4),
    max_leaves=20,
)  # fmt: skip


@given(a=JSON, b=JSON)
def test_keys_are_equal_exactly_when_the_json_is(a: object, b: object) -> None:
    same_text = json.dumps(a) == json.dumps(b)
    assert (content_key(a) == content_key(b)) is same_text


@given(value=JSON)
def test_a_copy_with_other_objects_has_the_same_key(value: object) -> None:
    """Format 2 has no back-references: sharing (or not) string objects changes nothing."""
    copy = json.loads(json.dumps(value))
    assert content_key(copy) == content_key(value)


def test_what_json_prints_apart_is_keyed_apart() -> None:
    assert len({content_key(v) for v in (1, 1.0, True, 0.0, -0.0, "1", None, [1], {"1": 1})}) == 9
    assert content_key({"a": 1, "b": 2}) != content_key({"b": 2, "a": 1})  # key order shapes the prompt
    shared = sys.intern("shared-" + "text")
    assert content_key([shared, shared]) == content_key(["shared-text", "".join(["shared-", "text"])])


def test_other_types_fall_back_to_their_repr_in_their_own_key_space() -> None:
    ordered = content_key(OrderedDict(a=1))  # marshal takes exact types only
    assert ordered == "OrderedDict([('a', 1)])" and ordered != content_key({"a": 1})
    key = content_key([object.__new__(type("Odd", (), {"__repr__": lambda self: "odd"}))])
    assert key == "[odd]" and isinstance(key, str)
