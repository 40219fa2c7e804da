"""Exact token counts of long text as sums of cached counts of its lines.

tiktoken first cuts text into pre-tokens with its encoding's regular expression and then
applies byte-pair merges inside each pre-token only, so a text's count is the sum of its
pre-tokens' counts. If a position is a pre-token boundary of the whole text, and the
pattern matches the text before it and the text after it exactly as it matches them
inside the whole, the whole's count is the sum of the two parts' counts. This module owns
the test for such a position (a *safe boundary*) and the splitting of a text at them;
`TiktokenCounter` then counts each piece once, caches it, and adds. A prompt is mostly
repeated JSON lines (keys, indentation, candidates seen in earlier rungs and earlier
packs), so the final count of a 45 KB prompt becomes a few hundred dictionary lookups.

Why a boundary right after a newline is safe for the cl100k_base and o200k_base patterns
when the next line starts with optional spaces and then a character that is not
whitespace (and, with no spaces, not ``/``); the argument is in docs/architecture.md
("Exact counts by lines") and a hypothesis property in tests/tokens/test_compose.py
compares composed and whole counts on adversarial text in both encodings:

* no alternative of either pattern matches a newline followed by a non-whitespace
  character, except o200k's punctuation run, whose tail ``[\\r\\n/]*`` may take a ``/``
  (hence the ``/`` exclusion);
* the whitespace alternatives that can take the newline (``\\s*[\\r\\n]``,
  ``\\s*[\\r\\n]+``, cl100k's ``\\s++$`` at the end of the left part alone) end at the
  last newline of the whitespace run, which is this one when the next line's leading
  whitespace holds no newline, so the left part matches alike alone and in context;
* the patterns have no look-behind, so the right part matches alike from its start.

The r50k/p50k pattern joins a newline with the next line's indentation (``\\s+(?!\\S)``),
so for those encodings only a newline followed directly by a non-whitespace character is
a boundary. Any other encoding is never split (counted whole).
"""

from __future__ import annotations

import re
from itertools import accumulate, repeat
from operator import add, getitem

#: after a newline: optional spaces, then a non-whitespace character; ``/`` only after a space
_SAFE_NEXT_SPACED = re.compile(r"(?<=\n)(?= *[^\s/]| +/)")
#: after a newline: directly a non-whitespace character
_SAFE_NEXT_DIRECT = re.compile(r"(?<=\n)(?=\S)")

#: encoding -> the boundary pattern its pre-tokeniser allows (None: count whole)
_BOUNDARIES: dict[str, re.Pattern[str]] = {
    "cl100k_base": _SAFE_NEXT_SPACED,
    "o200k_base": _SAFE_NEXT_SPACED,
    "o200k_harmony": _SAFE_NEXT_SPACED,
    "r50k_base": _SAFE_NEXT_DIRECT,
    "p50k_base": _SAFE_NEXT_DIRECT,
    "p50k_edit": _SAFE_NEXT_DIRECT,
}
#: boundary pattern -> a newline that is not one of its boundaries (possessive: spaces are
#: all taken before the whitespace test, so a space never counts as that whitespace)
_UNSAFE: dict[re.Pattern[str], re.Pattern[str]] = {
    _SAFE_NEXT_SPACED: re.compile(r"\n(?:/| *+\s| ++\Z)"),
    _SAFE_NEXT_DIRECT: re.compile(r"\n\s"),
}


def boundary_pattern(encoding_name: str) -> re.Pattern[str] | None:
    """The safe-boundary pattern of an encoding, or None when its text is never split."""
    return _BOUNDARIES.get(encoding_name)


def split_pieces(text: str, boundary: re.Pattern[str] | None) -> list[str]:
    """``text`` cut at every safe boundary: the pieces' counts add up to the text's count."""
    if boundary is None or "\n" not in text:
        return [text]
    return boundary.split(text)


#: characters of a piece's start `safe_joint` looks at first (an indentation is shorter)
_JOINT_HEAD = 64


def safe_joint(piece: str, boundary: re.Pattern[str] | None) -> bool:
    """Whether a newline followed by ``piece`` (the rest of the text) is a safe boundary:
    the same unsafe-newline search as `safe_lines`, on the newline and what it can see (the
    piece's leading spaces and the character after them, or the end)."""
    unsafe = _UNSAFE.get(boundary) if boundary is not None else None
    if unsafe is None:
        return False
    head = piece[:_JOINT_HEAD]  # the piece may be a whole list: look at its start only
    spaces = len(head) - len(head.lstrip(" "))
    if spaces == len(head) and len(piece) > len(head):  # a longer run of spaces: measure it all
        spaces = len(piece) - len(piece.lstrip(" "))
    return unsafe.match("\n" + piece[: spaces + 1]) is None


#: a line's head, after the newline before it (the cl100k/o200k family, see
#: `heads_and_tails`): its leading spaces but the last, when a non-whitespace character
#: follows them, and then the JSON key opening the line when a space and a non-whitespace
#: character follow its colon; else nothing
_HEAD = re.compile(r'\n( *(?= \S)(?: "[^"\\\n]*+":(?= \S))?)?')  # an optional group: a third faster than `|)`


def indentation(line: str) -> str:
    """A printed line's leading spaces (its depth in the JSON)."""
    return line[: len(line) - len(line.lstrip(" "))]


def heads_and_tails(lines: list[str]) -> tuple[list[str], list[str]]:
    """Each line (no newline in it) cut in two, so that for the cl100k and o200k patterns
    count(line + "\n") = count(head) + count(tail + "\n").

    Why: a cold prompt's distinct lines are mostly the same few keys at a few indentations
    before values that recur under other keys and in the lanes' id lists (`"id": "X",` and
    `"X",` share the tail ` "X",`). Cut, the tails are a third of the lines' text, and only
    they are encoded; the heads are a hundred or so.

    Both cuts are safe boundaries (the argument is in docs/architecture.md, "Heads and
    tails"): a pre-token holding a colon ends at the colon when a space follows (only the
    punctuation run takes a colon, and it stops at whitespace), and leading spaces followed
    by a non-whitespace character are matched as a whitespace pre-token without their last
    space (``\\s+(?!\\S)``). A tail opens with a space and a non-whitespace character, or is
    its whole line: joined by newlines, the tails after the first are safe continuations
    whenever the lines after the first were. One regex search from each newline (a scan
    from the start of each line for its first colon took twice as long).

    A list of scalars (a lane's ids) has no key and one indentation: then every head is
    that indentation but its last space, found without a search per line (the lines'
    least and greatest share it, one search finds no line with more spaces or other
    whitespace after it, and no ``": `` occurs). Same heads as the search, in less than
    half the time."""
    text = "\n" + "\n".join(lines)
    if lines and '": ' not in text:
        indent = indentation(min(lines))
        if max(lines).startswith(indent) and re.search("\n" + indent + r"(?!\S)", text) is None:
            head = indent[:-1]
            return [head] * len(lines), list(map(getitem, lines, repeat(slice(len(head), None))))
    return _cut_by_search(lines, text)


def _cut_by_search(lines: list[str], text: str) -> tuple[list[str], list[str]]:
    """`heads_and_tails` by one search from each newline of ``text`` (the lines joined, after
    a newline)."""
    heads: list[str] = _HEAD.findall(text)
    return heads, list(map(str.removeprefix, lines, heads))


#: a cut that is no safe boundary: the mark at the start or after anything but an ASCII
#: letter or digit (`word_pieces`)
_UNSAFE_CUT = re.compile("(?:^|(?<![A-Za-z0-9]))\x00")
#: byte -> "a" for an ASCII letter or digit, "_" for the underscore, "." for any other
#: (bytes of non-ASCII characters included)
_CHARACTER_KINDS = bytes(
    ord("a") if chr(b).isascii() and chr(b).isalnum() else ord("_") if b == ord("_") else ord(".") for b in range(256)
)


def word_pieces(tails: list[str]) -> tuple[list[str], list[int]] | None:
    """The tails (no newline in them) cut before each ``_`` that follows an ASCII letter or
    digit, as one flat list (a tail's last piece ends with a newline, the others do not),
    and the index after each tail's last piece.
    count(tail + "\\n") is the sum of its pieces' counts (cl100k/o200k family). None when a
    tail holds the character the cut marks with (NUL), or there is nothing to cut.

    Why: a cold pack's new tails are mostly identifiers (``"fnd6_newa1_capxq",``) made of a
    few dataset prefixes, names and numbers: the 1,000-field pack's 1,075 new field tails
    (10,000 tokens) are 257 new pieces (1,000 tokens). Encoding the pieces instead of the
    tails is most of a cold decision's encode saved (the counter cuts only where that pays).

    Why the cut is safe: the pre-token holding the letter or digit before the ``_`` is a
    letter run (possibly opened by one other character or closed by a contraction such as
    ``'s``), a digit run of at most three, or a contraction: none can hold a ``_``, so it
    ends there in the whole text and, being greedy, alone too (no alternative that could
    have matched first looks past it: the look-ahead ``(?!\\S)`` and cl100k's end anchor
    belong to whitespace runs, and the character before the cut is no whitespace). The
    patterns have no look-behind, so the text from the ``_`` is cut alike alone. The same
    argument makes the newline after a piece ending with a letter or digit a boundary of its
    own, so a piece can be measured as a line of a batch, less the newline's count."""
    text = "\n".join(tails) + "\n"
    if "_" not in text or "\x00" in text:
        return None
    marked = text.replace("_", "\x00_")
    # each character as its kind (a regular expression over the text took five times as
    # long): a cut is unsafe where an underscore opens the text or follows one that is no
    # ASCII letter or digit (another underscore included)
    kinds = text.encode("utf-8", "surrogatepass").translate(_CHARACTER_KINDS)
    if kinds.startswith(b"_") or b"._" in kinds or b"__" in kinds:
        marked = _UNSAFE_CUT.sub("", marked)
    pieces = marked.replace("\n", "\n\x00").split("\x00")
    del pieces[-1]  # after the last newline
    # where each tail's pieces end: its cuts and its last piece (a scan per tail in C; a
    # test of each piece for its newline took three times as long)
    per_tail = marked.split("\n")
    del per_tail[-1]
    return pieces, list(accumulate(map(add, map(str.count, per_tail, repeat("\x00")), repeat(1))))


#: ASCII characters neither letter, digit nor whitespace: every pattern of the family takes
#: them in its punctuation run and in no other alternative that can end at them
_ASCII_PUNCT = frozenset("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
#: ASCII characters a letter or digit run is made of
_ASCII_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")


def comma_end(line: str) -> str | None:
    """The end of ``line`` that a comma joins (cl100k/o200k family), or None when the rule
    below does not apply: then count(line + "\n") = count(line + ",\n") - count(end + ",\n")
    + count(end + "\n").

    Why: the last item a list keeps is printed without its comma, and its line is new even
    though the line with the comma was counted with its list (a lane's last id is
    ``"X"``, counted as ``"X",``). Its count follows from the counted one with no encode.

    The end is the line's trailing run of ASCII punctuation, with the one space before it if
    there is one. The punctuation alternative (`` ?[^\\s\\p{L}\\p{N}]+``, then ``[\\r\\n]*`` or
    o200k's ``[\\r\\n/]*``) takes that run, the comma and the newline as one pre-token, or
    the run and the newline without the comma; no other alternative can start inside the
    run (a letter run may open with one punctuation character but then needs a letter).
    Everything before the end is cut alike either way: a letter or digit run stops at the
    run, and whitespace before the space sees a non-whitespace character after it in both
    texts. So only the last pre-token differs. Without a space before the run, the character
    before it must be an ASCII letter or digit (a mark, say, would join o200k's or
    cl100k's punctuation run); with no run, the line must end with one (then ``,\n`` is
    one pre-token and ``\n`` another)."""
    if not line or "\n" in line:
        return None
    start = len(line)
    while start and line[start - 1] in _ASCII_PUNCT:
        start -= 1
    if start == len(line):  # no punctuation at the end
        return "" if line[-1] in _ASCII_ALNUM else None
    if start and line[start - 1] == " ":
        return line[start - 1 :]
    if not start or line[start - 1] in _ASCII_ALNUM:
        return line[start:]
    return None


def safe_lines(text: str, boundary: re.Pattern[str] | None) -> list[str] | None:
    """``text.split("\n")`` when every newline in it is a safe boundary (the usual case for
    printed JSON, which has no blank lines and no line opening with ``/``), else None.

    The boundary pattern above looks around every position of the text in Python's regex
    engine (about 1 ms for a 45 KB prompt, as long as the encode it saves); instead one
    search for an *unsafe* newline runs the engine only from each newline onward: a
    newline followed by spaces and then whitespace or the end of the text (a blank line,
    indentation that is not spaces) or, for the cl100k/o200k patterns, directly by ``/``.
    A newline that ends the text is no boundary, so it is never unsafe."""
    unsafe = _UNSAFE.get(boundary) if boundary is not None else None
    if unsafe is None or unsafe.search(text) is not None:
        return None
    return text.split("\n")
