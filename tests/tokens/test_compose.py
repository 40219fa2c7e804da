"""Composed counts (pieces cut at safe boundaries, counted once, added) equal tiktoken's
count of the whole text: the lemma the evaluator's final count rests on."""

from __future__ import annotations

import json
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policy_engine.tokens import counter as counter_module
from policy_engine.tokens.compose import (
    boundary_pattern,
    comma_end,
    heads_and_tails,
    safe_lines,
    split_pieces,
    word_pieces,
)
from policy_engine.tokens.compose import safe_joint as compose_safe_joint
from policy_engine.tokens.counter import _PIECE_MAX_CHARS, TiktokenCounter, _line_counts, _LineEnds
from tests.conftest import SHARED
from tests.strategies import column_text, json_values, one_line_values

ENCODINGS = ("cl100k_base", "o200k_base", "o200k_harmony")

#: fragments chosen to hit each alternative of the two patterns at a line boundary:
#: whitespace of every kind (vertical tab, NEL, line separator, no-break space, FS), the
#: slash o200k's punctuation tail takes, contractions, digits, marks, CJK, JSON shapes
FRAGMENTS = [
    " ", "  ", "\n", "\r", "\r\n", "\t", "\x0b", "\x0c", "\x85", "\u2028", "\u00a0", "\x1c",
    "/", "//", "'", "'s", "'LL", "s", "x", "Ab", "ABc", "1", "1234", ",", '",', "{", "}", "[", "]",
    ":", "-", "é", "e\u0301", "中文", "🙂", '  "id": ', "\n  ", "\n\n", " \n", "/\n", "\n/", "<|endoftext|>",
    "_", "_x", "ab_1", "__", "'s_", "1_",
]  # fmt: skip


@pytest.fixture(scope="module", params=ENCODINGS)
def counter(request: pytest.FixtureRequest) -> TiktokenCounter:
    return TiktokenCounter(request.param)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.lists(st.sampled_from(FRAGMENTS), max_size=40).map("".join))
def test_composed_count_equals_the_whole_count(counter: TiktokenCounter, text: str) -> None:
    assert counter.count(text) == counter.count_whole(text)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=60))
def test_composed_count_equals_the_whole_count_on_any_text(counter: TiktokenCounter, text: str) -> None:
    assert counter.count(text) == counter.count_whole(text)


@pytest.mark.parametrize(
    ("text", "pieces"),
    [
        ("", [""]),
        ("no newline", ["no newline"]),
        ('{\n  "a": 1\n}', ["{\n", '  "a": 1\n', "}"]),
        ("a\n\nb", ["a\n\n", "b"]),  # an empty line joins the newline before it
        ("a\n   \nb", ["a\n   \n", "b"]),  # so does a blank line of spaces
        ("a\n/b", ["a\n/b"]),  # o200k's punctuation tail may take a slash
        ("a\n /b", ["a\n", " /b"]),  # after a space it cannot
        ("a\n\tb", ["a\n\tb"]),  # only spaces may lead the next line
        ("a\r\nb", ["a\r\n", "b"]),
        ("a\n", ["a\n"]),  # a trailing newline is not a boundary (nothing follows)
    ],
)
def test_safe_boundaries_of_the_cl100k_and_o200k_patterns(text: str, pieces: list[str]) -> None:
    assert split_pieces(text, boundary_pattern("o200k_base")) == pieces
    assert "".join(pieces) == text


def test_r50k_style_patterns_split_only_before_unindented_lines() -> None:
    boundary = boundary_pattern("r50k_base")
    assert split_pieces('{\n  "a": 1\n}', boundary) == ['{\n  "a": 1\n', "}"]


def test_unknown_encodings_are_never_split() -> None:
    assert boundary_pattern("some_future_base") is None
    assert split_pieces("a\nb", None) == ["a\nb"]


def test_every_agent_prompt_composes_exactly(counter: TiktokenCounter) -> None:
    prompts = sorted((SHARED / "agent_prompts").glob("*.txt"))
    assert prompts
    for path in prompts:
        text = path.read_text(encoding="utf-8")
        assert len(split_pieces(text, counter._boundary)) > 100, path.name  # really composed
        assert counter.count(text) == counter.count_whole(text), path.name


def test_huge_pieces_are_counted_but_not_kept(counter: TiktokenCounter) -> None:
    line = "word " * (_PIECE_MAX_CHARS // 5 + 10)
    assert counter.count(line) == counter.count_whole(line)
    assert line not in counter._pieces
    assert "short line" not in counter._pieces
    counter.count("short line")
    assert counter._pieces["short line"] == counter.count_whole("short line")


@settings(max_examples=400, deadline=None)
@given(
    text=st.lists(st.sampled_from(FRAGMENTS), max_size=40).map("".join),
    encoding=st.sampled_from(["o200k_base", "r50k_base"]),
)
def test_the_fast_line_check_agrees_with_the_boundary_pattern(text: str, encoding: str) -> None:
    """When every newline is a safe boundary the lines are the pieces; when one is not,
    the fast check says so (None) and the pattern's split is used."""
    boundary = boundary_pattern(encoding)
    lines = safe_lines(text, boundary)
    pieces = split_pieces(text, boundary)
    if lines is not None:
        expected = [line + "\n" for line in lines[:-1]] + ([lines[-1]] if lines[-1] else [])
        assert [p for p in pieces if p] == expected
    else:
        assert len(pieces) < text.count("\n") + 1 or text.startswith("/") or "\n/" in text


@pytest.mark.parametrize(
    ("text", "safe"),
    [
        ('{\n  "a": 1\n}\n', True),
        ("a\n\nb", False),
        ("a\n  \nb", False),
        ("a\n/b", False),
        ("a\n /b", True),  # a slash after spaces cannot join the newline
        ("a\n\tb", False),
        ("a\n   ", False),  # trailing spaces may join the newline at the end of the text
        ("a\n", True),
        ("a\n  \tb", False),  # spaces, then other whitespace
        ("a\n\u2028b", False),  # Unicode whitespace counts as whitespace
        ("a\n \x85b", False),
        ("a\n  \n", False),
        ("a\n\u00e9\n", True),
    ],
)
def test_fast_line_check_cases(text: str, safe: bool) -> None:
    assert (safe_lines(text, boundary_pattern("o200k_base")) is not None) is safe


# ---- counting many texts: new lines share one encode ------------------------------------


def _fresh(encoding: str) -> TiktokenCounter:
    return TiktokenCounter(encoding)


#: texts of any kind: empty, newline-terminated fragments, a fragment run without a newline
ANY_TEXT = st.one_of(
    st.just(""),
    st.lists(st.sampled_from(FRAGMENTS), min_size=1, max_size=12).map(lambda f: "".join(f) + "\n"),
    st.lists(st.sampled_from(FRAGMENTS), max_size=6).map("".join),  # not newline-terminated
)


@settings(max_examples=150, deadline=None)
@given(texts=st.lists(ANY_TEXT, max_size=30), encoding=st.sampled_from(ENCODINGS))
def test_counting_many_texts_equals_counting_each_whole(texts: list[str], encoding: str) -> None:
    assert _fresh(encoding).measure_many(texts) == [_fresh(encoding).count_whole(t) for t in texts]


@settings(max_examples=100, deadline=None)
@given(texts=st.lists(ANY_TEXT, max_size=30), seen=st.data(), encoding=st.sampled_from(ENCODINGS))
def test_counting_many_texts_some_counted_before(texts: list[str], seen: st.DataObject, encoding: str) -> None:
    """Texts counted before come from the cache and only the others go by lines: the
    counts are still each text's whole count, in order."""
    counter = _fresh(encoding)
    earlier = seen.draw(st.lists(st.sampled_from(texts), max_size=len(texts)) if texts else st.just([]))
    counter.measure_many(earlier)
    assert counter.measure_many(texts) == [_fresh(encoding).count_whole(t) for t in texts]


#: a line that may follow a newline at a safe boundary: spaces, then not whitespace nor "/"
SAFE_LINE = st.tuples(
    st.sampled_from(["", " ", "    "]),
    st.sampled_from(["{", "}", "a", "A", '"', "1", ",", "é", "中", "🙂", "'s", "<|endoftext|>", "-"]),
    st.lists(st.sampled_from([f for f in FRAGMENTS if "\n" not in f]), max_size=8).map("".join),
).map("".join)


@settings(max_examples=150, deadline=None)
@given(
    first=st.lists(st.sampled_from(FRAGMENTS), max_size=6).map(lambda f: "".join(f).replace("\n", " ")),
    lines=st.lists(SAFE_LINE, max_size=60),
    encoding=st.sampled_from(ENCODINGS),
)
def test_one_encode_gives_each_line_its_own_count(first: str, lines: list[str], encoding: str) -> None:
    """The joined encode's tokens, attributed to lines by their bytes, are each line's own
    count when every line after the first is a safe continuation (the first may be
    anything without a newline)."""
    counter = _fresh(encoding)
    lines = [first, *lines]
    assert safe_lines("\n".join(lines) + "\n", counter._boundary) is not None
    counts = _line_counts(counter._encoding, lines)
    assert counts is not None
    assert counts == [counter.count_whole(line + "\n") for line in lines]


@settings(max_examples=150, deadline=None)
@given(
    learnt=st.lists(SAFE_LINE, max_size=20),
    lines=st.lists(SAFE_LINE, min_size=1, max_size=40),
    encoding=st.sampled_from(ENCODINGS),
)
def test_the_split_at_known_line_ends_gives_the_lookups_counts(
    learnt: list[str], lines: list[str], encoding: str
) -> None:
    """`_LineEnds.cut` splits the tokens at the ranks it knows end a line; ranks it has not
    met yet (here: whatever an earlier batch did not hold) must not make it cut wrongly: it
    answers as the per-token lookup does, and knows the new ranks afterwards."""
    encoding_ = _fresh(encoding)._encoding
    ends = _LineEnds(encoding_.decode_single_token_bytes)
    if learnt:
        ends.cut(encoding_.encode_ordinary("\n".join(learnt) + "\n"), len(learnt))
    tokens = encoding_.encode_ordinary("\n".join(lines) + "\n")
    expected = [len(encoding_.encode_ordinary(line + "\n")) for line in lines]
    assert ends.cut(tokens, len(lines)) == expected
    assert ends.cut(tokens, len(lines)) == expected  # now by the split alone
    assert ends.cut(tokens, len(lines) + 1) is None


def test_a_token_that_holds_a_newline_inside_is_no_line_end(counter: TiktokenCounter) -> None:
    """A rank ending a line in one batch does not make a token with a newline inside (or two)
    count as one: the count of parts is checked, and the lookup refuses too."""
    encoding = counter._encoding
    ends = _LineEnds(encoding.decode_single_token_bytes)
    assert ends.cut(encoding.encode_ordinary("a\nb\n"), 2) == [2, 2]
    two = encoding.encode_ordinary("a\n\nb\n")  # "\n\n" is one token: three newlines, two line ends
    assert ends.cut(two, 3) is None
    assert ends.cut([], 0) == []


def test_ranks_beyond_unicode_are_cut_by_the_lookup() -> None:
    """A vocabulary larger than Unicode's range (none ships today) cannot be read as one
    character per rank: its tokens go through the lookup, with the same answer."""
    ends = _LineEnds(lambda rank: b"\n" if rank == 1 else b"x")
    assert ends.cut([7, 1], 1) == [2]  # learns rank 1; the next cut has a pattern
    assert ends.cut([0x110000, 7, 1, 1], 2) == [3, 1]


#: line material for the comma rule: ASCII punctuation runs, spaces, letters, digits, and
#: what may join a punctuation run (marks, symbols, non-ASCII letters, other whitespace)
COMMA_FRAGMENTS = [
    " ", "  ", "\t", "\u00a0", '"', '",', "'", "'s", "}", "]", "},", "])", "/", "//", ":", "-", "_", ".", "!",
    "x", "Ab", "1", "1234", "é", "e\u0301", "\u0301", "中文", "🙂", "€", "\x1c", '"id": ', "null", "true",
]  # fmt: skip


@settings(max_examples=600, deadline=None)
@given(
    line=st.lists(st.sampled_from(COMMA_FRAGMENTS), min_size=1, max_size=10).map("".join),
    encoding=st.sampled_from(ENCODINGS),
)
def test_a_line_without_its_comma_counts_from_the_line_with_it(line: str, encoding: str) -> None:
    """Where `comma_end` names the end a comma joins, the line's count follows from the
    count with the comma: only the last pre-token differs."""
    end = comma_end(line)
    counter = _fresh(encoding)
    if end is None:
        return
    assert line.endswith(end)
    derived = counter.count_whole(line + ",\n") - counter.count_whole(end + ",\n") + counter.count_whole(end + "\n")
    assert derived == counter.count_whole(line + "\n")


@pytest.mark.parametrize(
    ("line", "end"),
    [
        ('      "X"', '"'),
        ("    }", " }"),
        ('"a"', '"'),
        ('"', '"'),
        ('a "]', ' "]'),
        ("x", ""),
        ("12", ""),
        ("a]", "]"),
        ("a ", None),  # a space at the end: whitespace, not a run
        ("é]", None),  # a non-ASCII character before the run may join it
        ("\u0301", None),
        ("", None),
        ("a\nb", None),
    ],
)
def test_the_end_a_comma_joins(line: str, end: str | None) -> None:
    assert comma_end(line) == end


def test_the_last_id_of_a_list_is_counted_without_an_encode(
    counter: TiktokenCounter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A list's last item, printed without its comma, is counted from the line with the
    comma the list's batch counted: no encode of the line (the ends' deltas are encoded
    once per counter)."""
    fresh = TiktokenCounter(counter.encoding_name)
    lines = [f'      "field_{i}",\n' for i in range(40)]
    fresh.measure_many(lines, json_lines=True)
    fresh.count('      "field_0"\n')  # learns the delta of ' "field_0"'-like ends... per end text
    encoded: list[str] = []
    real = fresh._encode
    monkeypatch.setattr(fresh, "_encode", lambda text: encoded.append(text) or real(text))
    for i in (1, 7, 39):
        assert fresh.count(f'      "field_{i}"\n') == counter.count_whole(f'      "field_{i}"\n')
    assert all("field" not in text for text in encoded), encoded


def test_a_lone_surrogate_is_left_to_the_line_by_line_count(counter: TiktokenCounter) -> None:
    assert _line_counts(counter._encoding, ["a", "\ud800"]) is None
    texts = [f"x{i}\n" for i in range(20)] + ["\ud800\n"]
    assert TiktokenCounter(counter.encoding_name).measure_many(texts) == list(map(counter.count_whole, texts))


def test_a_cold_prompt_is_counted_in_a_few_encodes(counter: TiktokenCounter) -> None:
    """An agent prompt's new lines are encoded together, not one call per line, and every
    piece's count is still its whole count."""
    text = (SHARED / "agent_prompts").glob("*.txt").__next__().read_text(encoding="utf-8")
    pieces = [line + "\n" for line in text.split("\n")[:-1]]
    fresh = TiktokenCounter(counter.encoding_name)
    calls: list[str] = []
    real = fresh._lines._count
    fresh._lines._count = lambda line: calls.append(line) or real(line)  # type: ignore[method-assign]
    assert fresh.measure_many(pieces) == [fresh.count_whole(p) for p in pieces]
    assert len(pieces) > 100
    assert len(calls) == 0


def test_counting_nothing_and_duplicates(counter: TiktokenCounter) -> None:
    assert counter.measure_many([]) == []
    block = '  {\n    "id": "f1"\n  },\n'
    assert counter.measure_many([block] * 40) == [counter.count_whole(block)] * 40


@settings(max_examples=300, deadline=None)
@given(
    parts=st.lists(
        st.one_of(ANY_TEXT, st.lists(SAFE_LINE, min_size=1, max_size=4).map(lambda lines: "\n".join(lines) + "\n")),
        max_size=12,
    ),
    encoding=st.sampled_from(ENCODINGS),
)
def test_counting_by_parts_equals_counting_the_joined_text(parts: list[str], encoding: str) -> None:
    """The final proof counts the rendered prompt by its parts: exact whatever the parts,
    whether each joint is a safe boundary (added) or not (the joined text is counted)."""
    counter = _fresh(encoding)
    for _ in range(2):  # the second time, parts counted before answer
        assert counter.count_parts(parts) == counter.count_whole("".join(parts))


def test_an_agent_prompt_counted_by_parts_equals_the_whole_count(counter: TiktokenCounter) -> None:
    """A rendered prompt's parts (fixed runs, lists, value lines) meet at safe joints."""
    from policy_engine.dsl import default_rules_path, load_policy
    from policy_engine.evaluator import Engine
    from policy_engine.packs import load_pack_file
    from policy_engine.render import limits_view

    policy = load_policy(default_rules_path())
    engine = Engine.build(policy, counter=counter)
    pools = load_pack_file(SHARED / "packs" / "seed_5x15x72x60.json")
    model = engine.prompt_model(pools, idea=None, knowledge=None, limits=limits_view(policy.settings))
    parts = model.render_parts(engine.start_state(pools, policy.settings.topk).selection())  # type: ignore[attr-defined]
    assert len(parts) > 10 and all(compose_safe_joint(p, counter._boundary) for p in parts[1:] if p)
    assert counter.count_parts(parts) == counter.count_whole("".join(parts))


@pytest.mark.parametrize("spaces", [0, 1, 63, 64, 65, 200])
@pytest.mark.parametrize("then", ["x", "\t", "/", "", "\n"])
def test_a_joint_sees_past_long_indentation(spaces: int, then: str) -> None:
    """`safe_joint` says what the unsafe-newline search says of "\n" + the whole piece,
    whatever the length of its leading spaces (it looks at a bounded head first)."""
    from policy_engine.tokens.compose import _UNSAFE

    piece = " " * spaces + then + ("rest\n" if then else "")
    for encoding in ("cl100k_base", "o200k_base", "r50k_base"):
        boundary = boundary_pattern(encoding)
        assert boundary is not None
        expected = _UNSAFE[boundary].match("\n" + piece) is None
        assert compose_safe_joint(piece, boundary) == expected, (encoding, spaces, then)


#: JSON values whose strings hold what the patterns treat specially at a line's start
_JSON_VALUES = json_values(
    st.lists(st.sampled_from(FRAGMENTS), max_size=4).map("".join), st.sampled_from(FRAGMENTS), max_leaves=10
)


@settings(max_examples=150, deadline=None)
@given(
    values=st.lists(_JSON_VALUES, max_size=12),
    width=st.integers(1, 4),
    depth=st.integers(0, 2),
    ensure_ascii=st.booleans(),
    encoding=st.sampled_from(ENCODINGS),
)
def test_printed_json_lines_need_no_safety_search(
    values: list, width: int, depth: int, ensure_ascii: bool, encoding: str
) -> None:
    """``json_lines=True`` skips the unsafe-newline search: for JSON printed with an
    indentation, as the prompt model prints list items, the counts are still the whole
    counts."""
    import json

    indent = " " * (width * (depth + 1))
    texts = [
        "\n".join(indent + line for line in json.dumps(v, indent=width, ensure_ascii=ensure_ascii).split("\n")) + ",\n"
        for v in values
    ]
    assert _fresh(encoding).measure_many(texts, json_lines=True) == [_fresh(encoding).count_whole(t) for t in texts]


# ---- heads and tails: a line's count is its head's plus its tail's ----------------------


@pytest.mark.parametrize(
    ("line", "head"),
    [
        ('  "id": "X",', '  "id":'),  # indentation and key
        ('    "X",', "   "),  # a list item: the indentation but its last space
        (' "a": 1', ' "a":'),  # one space of indentation: the key alone
        ("{", ""),  # no indentation
        ('"a": 1', ""),  # a key at column 0 is not cut
        ('  "a":  1', " "),  # two spaces after the colon: only the indentation is cut
        ('  "a":', " "),  # nothing after the colon
        ('  "a\\"b": 1', " "),  # an escaped quote: the key is not looked into
        ('  "a": /', '  "a":'),  # a slash after a space is a safe continuation
        ("   \tx", ""),  # other whitespace after the spaces: no cut
        ("     ", ""),  # blank
        ("", ""),
        ('  "k": "v: w"', '  "k":'),  # only the key's colon
    ],
)
def test_heads_and_tails_cases(line: str, head: str) -> None:
    heads, tails = heads_and_tails([line, line])
    assert heads == [head, head] and tails == [line[len(head) :]] * 2
    for encoding in ENCODINGS:
        counter = _fresh(encoding)
        assert counter.count_whole(line + "\n") == counter.count_whole(head) + counter.count_whole(tails[0] + "\n")


#: a line of anything but a newline, often shaped like a printed JSON line
ANY_LINE = st.one_of(
    st.lists(st.sampled_from([f for f in FRAGMENTS if "\n" not in f]), max_size=10).map("".join),
    st.tuples(
        st.sampled_from(["", " ", "  ", "      "]),
        st.sampled_from(["", '"id": ', '"a b": ', '"é": ', '"": ', '"k":  ', '"k":']),
        st.lists(st.sampled_from([f for f in FRAGMENTS if "\n" not in f]), max_size=6).map("".join),
    ).map("".join),
)


@settings(max_examples=400, deadline=None)
@given(line=ANY_LINE, encoding=st.sampled_from(ENCODINGS))
def test_a_line_counts_as_its_head_and_its_tail(line: str, encoding: str) -> None:
    """The lemma the cold count rests on, on adversarial lines: both cuts are safe
    boundaries of the line followed by its newline."""
    counter = _fresh(encoding)
    (head,), (tail,) = heads_and_tails([line])
    assert head + tail == line
    assert counter.count_whole(line + "\n") == counter.count_whole(head) + counter.count_whole(tail + "\n")


@settings(max_examples=200, deadline=None)
@given(
    first=ANY_LINE,
    lines=st.lists(SAFE_LINE, min_size=16, max_size=60),
    encoding=st.sampled_from(ENCODINGS),
    pieces_from=st.sampled_from([1, counter_module._WORD_PIECES_MIN]),
)
def test_new_lines_are_counted_by_heads_and_tails(
    first: str, lines: list[str], encoding: str, pieces_from: int
) -> None:
    """A batch of new lines (any first line, then safe continuations) gets each line's
    own count through its head and tail, also when the heads and tails are learnt first
    from other lines with the same pieces, whether the tails are cut into word pieces
    (``pieces_from`` 1: every batch that may be) or not."""
    lines = [first, *lines]
    counter = _fresh(encoding)
    with mock.patch.object(counter_module, "_WORD_PIECES_MIN", pieces_from):
        counter._learn_lines(lines)
        assert [counter._lines[line] for line in lines] == [counter.count_whole(line + "\n") for line in lines]
        reindented = [" " + line for line in lines[1:]]  # new heads, the same tails
        counter._learn_lines(reindented)
        assert [counter._lines[line] for line in reindented] == [
            counter.count_whole(line + "\n") for line in reindented
        ]


#: identifier material: ASCII words and numbers joined by underscores, and what may stand
#: before an underscore without making it a cut (punctuation, marks, non-ASCII letters,
#: spaces, contractions)
WORD_FRAGMENTS = [
    "_", "__", "a", "Ab", "ABC", "x1", "1", "123", "1234", "'s", "'S", "'ll", '"', '",', " ", "  ", "\t",
    "é", "e\u0301", "\u0301", "中", "🙂", "-", "/", ".", ":", "\x0b", "\u00a0",
]  # fmt: skip


@settings(max_examples=500, deadline=None)
@given(
    tails=st.lists(st.lists(st.sampled_from(WORD_FRAGMENTS), max_size=12).map("".join), min_size=1, max_size=6),
    encoding=st.sampled_from(ENCODINGS),
)
def test_a_tail_counts_as_its_word_pieces(tails: list[str], encoding: str) -> None:
    """The lemma of the word cut, on adversarial text: each tail's pieces, counted alone,
    add up to the tail's count with its newline; a piece that does not end its tail ends
    with an ASCII letter or digit (so its newline in a batch is a boundary of its own)."""
    cut = word_pieces(tails)
    if cut is None:
        assert all("_" not in tail for tail in tails) or any("\x00" in tail for tail in tails)
        return
    pieces, ends = cut
    assert len(ends) == len(tails) and ends[-1] == len(pieces)
    counter = _fresh(encoding)
    at = 0
    for tail, end in zip(tails, ends, strict=True):
        own = pieces[at:end]
        at = end
        assert "".join(own) == tail + "\n"
        assert all("\n" not in piece for piece in own[:-1])
        assert all(piece[-1:].isascii() and piece[-1:].isalnum() for piece in own[:-1])
        assert sum(map(counter.count_whole, own)) == counter.count_whole(tail + "\n")
    assert at == len(pieces)


@pytest.mark.parametrize(
    ("tails", "pieces"),
    [
        ([' "fnd6_newa1_capxq",'], [' "fnd6', "_newa1", '_capxq",\n']),
        ([" a__b", " _x", " é_x", ' "_y', " 's_t"], [" a", "__b\n", " _x\n", " é_x\n", ' "_y\n', " 's", "_t\n"]),
        ([" plain", " x_"], [" plain\n", " x", "_\n"]),
        ([" no cut here"], None),
        ([" a_b\x00"], None),
    ],
)
def test_word_pieces_cases(tails: list[str], pieces: list[str] | None) -> None:
    cut = word_pieces(tails)
    assert (cut[0] if cut is not None else None) == pieces


def test_only_heads_and_tails_never_counted_are_encoded(monkeypatch: pytest.MonkeyPatch) -> None:
    """A second list of the same values under other keys and indentation encodes only
    its new heads (each with the probe tail): its tails are known. The first list's tails
    are encoded as their word pieces (the shared ``"field`` once)."""
    from policy_engine.tokens import counter as counter_module

    batches: list[list[str]] = []
    real = counter_module._line_counts
    monkeypatch.setattr(counter_module, "_line_counts", lambda enc, lines: batches.append(lines) or real(enc, lines))
    monkeypatch.setattr(counter_module, "_WORD_PIECES_MIN", 1)  # a large list's tails, in small
    counter = _fresh("o200k_base")
    values = [f'"field_{i}",' for i in range(40)]
    counter._learn_lines(["    " + v for v in values])
    assert batches[-1][:41] == [' "field'] + [f'_{i}",' for i in range(40)]  # the tails' pieces
    assert batches[-1][41:] == ["    0"]  # then the one head's probe
    keyed = [f'      "key_{i}": {v}' for i, v in enumerate(values)]
    counter._learn_lines(keyed)
    assert batches[-1] == [f'      "key_{i}": 0' for i in range(40)]
    few = [f'  "name": {v}' for v in values[:20]]  # one new head: encoded alone, no batch
    counter._learn_lines(few)
    assert len(batches) == 2
    for line in keyed + few:
        assert counter._lines[line] == counter.count_whole(line + "\n")


def test_new_tails_of_known_pieces_are_counted_without_an_encode(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tails never seen whose word pieces were all counted (``"a_y",`` after ``"a_x",`` and
    ``"b_y",``) are summed from the pieces: nothing is encoded, and every count is exact."""
    from policy_engine.tokens import counter as counter_module

    monkeypatch.setattr(counter_module, "_WORD_PIECES_MIN", 1)
    counter = _fresh("o200k_base")
    first = [f'    "p{i}_x{j}",' for i in range(20) for j in range(5)]
    counter._learn_lines(first + [f'    "q{j}_y{i}",' for i in range(20) for j in range(5)])
    batches: list[list[str]] = []
    real = counter_module._line_counts
    monkeypatch.setattr(counter_module, "_line_counts", lambda enc, lines: batches.append(lines) or real(enc, lines))
    mixed = [f'    "p{i}_y{i}",' for i in range(20)]
    counter._learn_lines(mixed)
    assert batches == []
    assert [counter._lines[line] for line in mixed] == [counter.count_whole(line + "\n") for line in mixed]


@pytest.mark.parametrize(
    ("tails", "cut"),
    [
        ([f'"fnd6_item{i % 40}_q{i % 7}",' for i in range(300)], True),  # many, repeating pieces
        ([f'"fnd6_item{i % 40}_q{i % 7}",' for i in range(100)], False),  # too few to pay
        ([f'"w{i}x_y{i}z_{i}k",' for i in range(300)], False),  # many, but the pieces do not repeat
    ],
)
def test_tails_are_cut_into_word_pieces_only_when_it_pays(
    tails: list[str], cut: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch is cut into word pieces when it has many new tails whose new pieces hold at
    most half their text; else its tails are encoded whole. The counts are exact either way."""
    from policy_engine.tokens import counter as counter_module

    batches: list[list[str]] = []
    real = counter_module._line_counts
    monkeypatch.setattr(counter_module, "_line_counts", lambda enc, lines: batches.append(lines) or real(enc, lines))
    counter = _fresh("o200k_base")
    lines = ["    " + tail for tail in dict.fromkeys(tails)]
    counter._learn_lines(lines)
    assert (batches[-1][0] == ' "fnd6') is cut
    assert [counter._lines[line] for line in lines] == [counter.count_whole(line + "\n") for line in lines]


def test_a_huge_line_among_new_lines() -> None:
    """A line too long to keep is still counted exactly (its tail is encoded on its own)."""
    counter = _fresh("o200k_base")
    huge = '  "blob": "' + "word " * (_PIECE_MAX_CHARS // 5 + 10) + '",'
    lines = [f'  "k{i}": {i},' for i in range(20)] + [huge]
    counter._learn_lines(lines)
    assert counter._lines[huge] == counter.count_whole(huge + "\n")
    assert huge[len('  "blob":') :] not in counter._tails


#: lines at one indentation with no key, as a lane's id list prints them (the cut's fast
#: path), sometimes spoiled by a line that is deeper, blank, keyed or opens with a tab
_SCALAR_LINES = st.tuples(
    st.sampled_from(["", " ", "  ", "        "]),
    st.lists(
        st.sampled_from(['"x",', '"é"', "12,", "true", '"a: b",', '"a\\": b",', "{", "]"]), min_size=1, max_size=8
    ),
    st.sampled_from([None, "", "   ", '  "k": 1', "\t1", "  x", "\u3000x"]),
).map(lambda t: [t[0] + v for v in t[1]] + ([] if t[2] is None else [t[2]]))


@settings(max_examples=300, deadline=None)
@given(lines=st.one_of(_SCALAR_LINES, st.lists(ANY_LINE, max_size=8)))
def test_the_cut_without_a_search_per_line_gives_the_searchs_heads(lines: list[str]) -> None:
    from policy_engine.tokens.compose import _cut_by_search

    assert heads_and_tails(lines) == _cut_by_search(lines, "\n" + "\n".join(lines))


@pytest.mark.parametrize("json_lines", [False, True])
def test_one_line_texts_and_texts_that_only_look_so(json_lines: bool) -> None:
    """Texts of one line each are counted line by line; an empty text beside a two-line one
    (as many lines as texts, but not one each) is not taken for that."""
    counter = _fresh("o200k_base")
    one_each = [f'  "id_{i}",\n' for i in range(20)]
    assert counter.measure_many(one_each, json_lines=json_lines) == [counter.count_whole(t) for t in one_each]
    tricky = ["", '  "a",\n  "b",\n', *[f'  "c{i}",\n' for i in range(18)]]
    counter = _fresh("o200k_base")
    assert counter.measure_many(tricky, json_lines=json_lines) == [counter.count_whole(t) for t in tricky]


# ---- measuring a list of flat objects by columns -----------------------------------------


def _column_tails(values: list, last: bool) -> list[str]:
    """What `TemplateModel._measure_records` passes: each value after one space, with the
    comma an object's lines but its last carry."""
    return [" " + json.dumps(v, ensure_ascii=False) + ("" if last else ",") for v in values]


@settings(max_examples=200, deadline=None)
@given(
    keys=st.lists(column_text, min_size=1, max_size=4, unique=True),
    rows=st.integers(1, 12),
    data=st.data(),
    depth=st.integers(1, 6),
    encoding=st.sampled_from(ENCODINGS),
)
def test_columns_of_flat_objects_cost_what_their_lines_cost(
    keys: list[str], rows: int, data: st.DataObject, depth: int, encoding: str
) -> None:
    """Each row's sum is the whole count of its lines, each counted alone with its newline;
    a key the head pattern does not take whole (an escape in it) gives None, never a
    wrong sum."""
    indent = " " * depth
    heads = [indent + json.dumps(key, ensure_ascii=False) + ":" for key in keys]
    values = [data.draw(st.lists(one_line_values, min_size=rows, max_size=rows)) for _ in keys]
    columns = [_column_tails(column, j == len(keys) - 1) for j, column in enumerate(values)]
    fresh = TiktokenCounter(encoding)
    braces = [indent[:-1] + "{\n", indent[:-1] + "},\n"] if depth > 1 else []
    measured = fresh.measure_columns(heads, columns, braces)
    if any("\\" in head or '"' in json.loads(head[depth:-1]) for head in heads):
        assert measured is None
        return
    assert measured is not None
    sums, brace_counts = measured
    assert brace_counts == [fresh.count_whole(line) for line in braces]
    whole = [
        sum(fresh.count_whole(head + column[i] + "\n") for head, column in zip(heads, columns, strict=True))
        for i in range(rows)
    ]
    assert sums == whole


def test_columns_of_many_new_tails_are_counted_in_a_few_encodes(counter: TiktokenCounter) -> None:
    """A thousand objects' new tails (identifiers made of a few words) share one encode of
    their word pieces: no encode per tail or per line."""
    ids = [f"fnd{i % 7}_{['capx', 'eps', 'rev'][i % 3]}_q{i % 11}_{i}" for i in range(1000)]
    heads = ['    "id":', '    "dataset_id":', '    "score":']
    columns = [
        _column_tails(ids, False),
        _column_tails([f"fundamental{i % 5}" for i in range(1000)], False),
        _column_tails([round(0.5 + i / 3000, 4) for i in range(1000)], True),
    ]
    fresh = TiktokenCounter(counter.encoding_name)
    calls: list[str] = []
    real = fresh._encode
    fresh._encode = lambda text: calls.append(text) or real(text)  # type: ignore[method-assign]
    measured = fresh.measure_columns(heads, columns)
    assert len(calls) <= 3, len(calls)
    assert measured is not None
    sums = measured[0]
    for i in (0, 1, 499, 999):
        assert sums[i] == sum(counter.count_whole(h + c[i] + "\n") for h, c in zip(heads, columns, strict=True))


def test_columns_are_refused_where_lines_do_not_add_up_by_heads() -> None:
    """The r50k family joins a newline with the next line's indentation: no heads there
    (its BPE file is not shipped offline, so an o200k counter is given its boundary rule)."""
    r50k_like = TiktokenCounter("o200k_base")
    r50k_like._boundary = boundary_pattern("r50k_base")
    assert r50k_like.measure_columns(['  "a":'], [[" 1"]]) is None
    o200k = TiktokenCounter("o200k_base")
    assert o200k.measure_columns([], []) is None
    assert o200k.measure_columns(['  "a":', '  "b":'], [[" 1,"]]) is None  # a head without its column
    assert o200k.measure_columns(['  "a":'], [[" 1"]], ["  }"]) is None  # a line without its newline


def test_a_text_of_many_new_lines_is_counted_in_a_few_encodes(counter: TiktokenCounter) -> None:
    """`count` of a block whose lines were never counted (a kept list measured by columns,
    then rendered) counts them together: one batch, not one encode per line."""
    text = "".join(f'    {{\n      "id": "f_{i}_x",\n      "n": {i}\n    }},\n' for i in range(60))
    fresh = TiktokenCounter(counter.encoding_name)
    calls: list[str] = []
    real = fresh._encode
    fresh._encode = lambda t: calls.append(t) or real(t)  # type: ignore[method-assign]
    assert fresh.count(text) == counter.count_whole(text)
    assert len(calls) <= 4, len(calls)
