"""The strict JSON reader's fast path (msgspec) gives exactly what the strict reader gives.

`_fast_document` may decline (``_SLOW``) whenever it likes; when it answers, the answer must
be the strict reader's, to the type (marshal's bytes tell 1 from 1.0 from True, -0.0 from
0.0, and key order). And `parse_json_text` says the same thing, document or coded error,
whichever path it takes."""

from __future__ import annotations

import json
import marshal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policy_engine import msgspec_rent
from policy_engine.errors import PackError
from policy_engine.reading.json_text import (
    _SLOW,
    JSON_PART,
    SharedValues,
    _fast_document,
    _fast_shared,
    _strict_document,
    parse_json_parts,
)
from tests.conftest import ROOT, fresh_python

keys = st.text(alphabet=st.sampled_from('ab:"\\é\u2028\x1f\ud83d\ude00 1'), max_size=4)
numbers = (
    st.integers(min_value=-(2**60), max_value=2**60)
    | st.integers(min_value=-(2**53) - 2, max_value=-(2**53) + 2)
    | st.integers(min_value=2**53 - 2, max_value=2**53 + 2)
    | st.floats(allow_nan=False, allow_infinity=False)
)
json_values = st.recursive(
    st.none() | st.booleans() | numbers | st.text(max_size=6) | keys,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=4),
    max_leaves=30,
)


#: the fast readers (the ones with parts) from the first document on
pytestmark = pytest.mark.usefixtures("msgspec_rent_paid")


def _strict(text: str) -> tuple[str, Any]:
    try:
        return "doc", _strict_document(text)
    except Exception as exc:  # any refusal: then the fast path must not have answered
        return "refused", type(exc).__name__


def _same_as_strict(text: str, shared: SharedValues | None = None) -> None:
    """Both fast readers: the whole-text one, and the one that takes values read before
    from a run's memory (fresh, then warm with this very text's values)."""
    for fast, parts in (
        _fast_document(text),
        _fast_shared(text, SharedValues()),
        _fast_shared(text, shared if shared is not None else SharedValues()),
        _fast_shared(text, shared if shared is not None else SharedValues()),
    ):
        if fast is _SLOW:
            assert parts is None
            continue
        kind, strict = _strict(text)
        assert kind == "doc", f"fast path accepted what the strict reader refuses: {text!r}"
        assert marshal.dumps(fast, 2) == marshal.dumps(strict, 2)
        _parts_are_the_values(fast, parts)


def _parts_are_the_values(doc: Any, parts: dict[str, bytes] | None) -> None:
    """An object's parts are its values' JSON texts, marked, in its key order; they read
    back as the values (so equal parts are equal values, of the same JSON types)."""
    if type(doc) is not dict:
        assert parts is None
        return
    assert parts is not None and list(parts) == list(doc)
    for key, part in parts.items():
        assert part.startswith(JSON_PART)
        back = json.loads(part[len(JSON_PART) :])
        assert marshal.dumps(back, 2) == marshal.dumps(doc[key], 2)


def _texts(value: Any, ascii_: bool, indent: int | None) -> str:
    return json.dumps(value, ensure_ascii=ascii_, indent=indent)


@settings(max_examples=300, deadline=None)
@given(json_values, st.booleans(), st.sampled_from([None, 0, 2]))
def test_generated_documents(value: Any, ascii_: bool, indent: int | None) -> None:
    _same_as_strict(_texts(value, ascii_, indent))


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(keys, json_values, min_size=1, max_size=4),
    st.data(),
    st.sampled_from(
        ["dup", "escaped dup", "colon value", "nan", "big", "cut", "deep", "inner dup", "big inside", "deep inside"]
    ),
)
def test_texts_the_strict_reader_refuses_or_reads_differently(obj: dict[str, Any], data: Any, how: str) -> None:
    """Duplicate keys (also spelled with escapes, also hiding a colon in a string, also
    in a value), NaN, integers just past 2^53, cut texts and deep nesting (also in a
    value of an object, where the reader with a memory cuts the text). The memory is
    warm with the object's own values: the trap's text must still be refused."""
    key = data.draw(st.sampled_from(sorted(obj)))
    body = json.dumps(obj)[1:-1]
    member = json.dumps(key) + ": " + json.dumps(obj[key])
    if how == "dup":
        text = "{" + body + ", " + member + "}"
    elif how == "escaped dup":
        text = "{" + body + ", " + json.dumps(key, ensure_ascii=True).replace("a", "\\u0061") + ": 1}"
    elif how == "colon value":
        text = "{" + body + ', "' + key.replace("\\", "").replace('"', "") + '": "\\u003a"}'
    elif how == "nan":
        text = "{" + body + ', "n": NaN}'
    elif how == "big":
        text = json.dumps([obj, data.draw(st.sampled_from([2**53 - 1, 2**53, -(2**53), 10**16, 10**400]))])
    elif how == "cut":
        full = json.dumps(obj)
        text = full[: data.draw(st.integers(0, len(full) - 1))]
    elif how == "inner dup":
        text = json.dumps({"outer": obj})[:-2] + ", " + member + "}}"
    elif how == "big inside":
        text = json.dumps({"n": [data.draw(st.sampled_from([2**53 - 1, 2**53, -(2**53), 10**16, 10**400]))]})
    elif how == "deep inside":
        depth = data.draw(st.integers(880, 1100))
        text = '{"v": ' + "[" * depth + json.dumps(obj) + "]" * depth + "}"
    else:
        depth = data.draw(st.integers(880, 1100))
        text = "[" * depth + json.dumps(obj) + "]" * depth
    warm = SharedValues()
    _fast_shared(json.dumps(obj), warm)
    _same_as_strict(text, warm)


@pytest.mark.parametrize(
    "text",
    [
        '{"a": 1, "a": 2}',
        '{"a": "x:y", "a": 1}',
        '{"a": 1, "\\u0061": 2}',
        '{"a": 1, "a": "\\u003a"}',
        '{"a": 1, "a": "\\u003A"}',
        "[9007199254740992]",
        "[-9007199254740992]",
        "[1e400]",
        "[NaN]",
        "[Infinity]",
        '["\\ud800"]',
        "[" * 950 + "]" * 950,
    ],
)
def test_each_trap_is_left_to_the_strict_reader(text: str) -> None:
    assert _fast_document(text) == (_SLOW, None)
    assert _fast_shared(text, SharedValues()) == (_SLOW, None)
    inside = '{"k": ' + text + "}"
    assert _fast_shared(inside, SharedValues()) == (_SLOW, None)
    assert _fast_document(inside) == (_SLOW, None)


def test_a_memory_shares_equal_values_between_documents_and_is_bounded() -> None:
    shared = SharedValues()
    first, first_parts = _fast_shared('{"a": [1, {"b": "x"}], "q": "one"}', shared)
    second, second_parts = _fast_shared('{"q": "two", "a": [1, {"b": "x"}]}', shared)
    assert first["a"] is second["a"]  # the same text, parsed once
    assert first_parts is not None and second_parts is not None
    assert first_parts["a"] is second_parts["a"] and first_parts["q"] != second_parts["q"]
    assert second == {"q": "two", "a": [1, {"b": "x"}]} and list(second) == ["q", "a"]
    for i in range(SharedValues.MAX + 5):
        _fast_shared(f'{{"n": {i}}}', shared)
    assert 0 < len(shared) <= SharedValues.MAX
    # and by size: texts over the budget are not all kept
    big = SharedValues(max_bytes=100)
    for i in range(10):
        _fast_shared('{"s": "%s"}' % ("abcdefghij"[i] * 40), big)
    assert 0 < big.held <= 100 and big.held == sum(map(len, big))
    # a text that is no object is read whole
    assert _fast_shared("[1, 2]", shared) == ([1, 2], None)


def test_the_fast_path_reads_the_packs_it_is_for() -> None:
    """It must actually be taken: every example and sample pack goes through it."""
    paths = sorted((ROOT / "examples" / "packs").glob("*.json"))
    assert paths
    for path in paths:
        text = path.read_text(encoding="utf-8")
        doc, parts = _fast_document(text)
        assert doc is not _SLOW, path.name
        assert marshal.dumps(doc, 2) == marshal.dumps(_strict_document(text), 2)
        _parts_are_the_values(doc, parts)


@settings(max_examples=200, deadline=None)
@given(json_values, st.sampled_from(['{"a": 1, "a": 2}', "[NaN]", "[12345678901234567890]", "[1,]", "", "{}"]))
def test_parse_json_text_says_the_same_on_either_path(value: Any, bad: str) -> None:
    """The strict reader, the fast one and the fast one with a run's memory (warm from the
    text before) give the same document or the same errors."""
    shared = SharedValues()
    for text in (json.dumps({"v": value}), json.dumps(value), bad, json.dumps([value, value])[:-1]):
        answers = []
        for owned, memory in ((False, None), (True, None), (True, shared), (True, shared)):
            real = msgspec_rent.owned
            msgspec_rent.owned = lambda owned=owned: owned  # type: ignore[assignment]
            try:
                doc, _ = parse_json_parts(text, "f.json", shared=memory)
                answers.append(("doc", marshal.dumps(doc, 2)))
            except PackError as exc:
                answers.append(("error", [d.to_dict() for d in exc.diagnostics]))
            finally:
                msgspec_rent.owned = real  # type: ignore[method-assign]
        assert answers[0] == answers[1] == answers[2] == answers[3]


def test_a_run_that_reads_many_packs_moves_to_the_fast_path() -> None:
    """In a fresh process: the first pack is read without importing msgspec; the strict
    reader's time pays the rent, and then msgspec answers."""
    out = fresh_python(
        "import sys, pathlib; from policy_engine.reading.json_text import parse_json_text, _fast_document, _SLOW\n"
        f"text = pathlib.Path({str(ROOT / 'examples' / 'packs' / 'seed_5x15x72x60.json')!r}).read_text(encoding='utf-8')\n"
        "parse_json_text(text, 'p.json'); first = 'msgspec' in sys.modules; reads = 1\n"
        "while 'msgspec' not in sys.modules and reads < 100_000:\n"
        "    parse_json_text(text, 'p.json'); reads += 1\n"
        "print(first, reads > 1, _fast_document(text)[0] is not _SLOW)"
    )
    assert out.strip() == "False True True"
