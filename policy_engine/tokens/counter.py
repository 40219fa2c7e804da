"""Token counters: one interface for exact tiktoken counts and the named rough estimate.

The evaluator adds up per-candidate pieces instead of re-counting the whole prompt per
rung, so a counter exposes an *additive measure* (`measure`) and a final conversion
(`finish`): for tiktoken the measure is tokens of a newline-terminated piece (per-line
counts sum exactly to the whole prompt's count), for the rough estimator it is characters
and `finish` applies ``ceil(chars / ratio)`` once, as upstream's chars/4 did.
"""

from __future__ import annotations

import dataclasses
import math
import re
from array import array
from collections.abc import Callable, Sequence
from decimal import ROUND_CEILING, Decimal
from functools import cache
from itertools import accumulate, chain, compress, filterfalse, repeat
from operator import add, methodcaller, sub
from typing import TYPE_CHECKING, Protocol

from policy_engine.errors import Diagnostic, TokenizerError
from policy_engine.policy import Tokenizer
from policy_engine.tokens.compose import (
    boundary_pattern,
    comma_end,
    heads_and_tails,
    safe_joint,
    safe_lines,
    split_pieces,
    word_pieces,
)
from policy_engine.tokens.resolve import encoding_for_model, resolve_encoding

if TYPE_CHECKING:
    import tiktoken


class TokenCounter(Protocol):
    name: str
    exact: bool
    vocab_hash: str

    def count(self, text: str) -> int: ...

    def count_whole(self, text: str) -> int:
        """The count computed without composing pieces (the verification mode's check)."""
        ...

    def measure(self, text: str) -> int: ...

    def measure_many(self, texts: Sequence[str], *, json_lines: bool = False) -> list[int]:
        """``[measure(t) for t in texts]``, free to share work between the texts (optional:
        the prompt model falls back to `measure` per text for a counter without it).
        ``json_lines``: each text is indented printed JSON ending with a newline (see
        `TiktokenCounter.measure_many`)."""
        ...

    def finish(self, total_measure: int) -> int: ...


class _PieceCounts(dict[str, int]):
    """Counts of pieces seen before, filled on a miss: `map(counts.__getitem__, pieces)`
    runs in C and calls back into Python only for a piece never counted. Bounded: when
    full it is cleared (pieces of the next prompt refill it)."""

    __slots__ = ("_count",)

    def __init__(self, count: Callable[[str], int]) -> None:
        super().__init__()
        self._count = count

    def __missing__(self, piece: str) -> int:
        n = self._count(piece)
        if len(piece) <= _PIECE_MAX_CHARS:
            self.remember(piece, n)
        return n

    def remember(self, text: str, n: int) -> None:
        if len(self) >= _PIECES_MAX:
            self.clear()
        self[text] = n

    def remember_many(self, texts: list[str], counts: list[int], *, longest: int | None = None) -> None:
        """`remember` for each text and its count; texts too long to keep are skipped.
        ``longest``: no text is longer (the caller knows, so the texts are not measured)."""
        if len(self) + len(texts) > _PIECES_MAX:
            self.clear()
        if (longest if longest is not None else max(map(len, texts), default=0)) <= _PIECE_MAX_CHARS:
            self.update(zip(texts, counts, strict=True))
        else:
            self.update((t, n) for t, n in zip(texts, counts, strict=True) if len(t) <= _PIECE_MAX_CHARS)


#: the boundary pattern of the cl100k/o200k family (`measure_many`'s ``json_lines``)
_SPACED = boundary_pattern("o200k_base")

#: fewer new lines than this are counted one by one: the joined encode and its cut save
#: nothing below (8 short lines cost two thirds of their single encodes, 16 about half)
_BATCH_MIN_LINES = 8


def _line_counts(encoding: tiktoken.Encoding, lines: list[str]) -> list[int] | None:
    """The count of each ``line + "\n"``, from one encode of all of them joined.

    The caller guarantees every line after the first is a safe continuation
    (`compose.safe_lines`), so each newline is a boundary no token crosses, and a line's
    count is the number of tokens from the one after the previous line's last to its own
    last. A line's last token is the one whose bytes end with its newline: the text holds
    one newline per line, so when exactly as many tokens end with a newline (and hold no
    other), every line end is a token end; if not (which the lemma rules out), nothing is
    returned and the lines are counted one by one. No byte offsets: the tokens are cut
    where such a token stands (`_LineEnds.cut`)."""
    text = "\n".join(lines) + "\n"
    if not text.isascii():
        try:
            text.encode()
        except UnicodeEncodeError:  # a lone surrogate: tiktoken would replace it
            return None
    return _line_ends(encoding).cut(encoding.encode_ordinary(text), len(lines))


#: array typecode of a 32-bit unsigned int (a token rank as one UTF-32 code unit)
_RANK_CODE = "I" if array("I").itemsize == 4 else "L"


class _LineEnds(dict[int, bool]):
    """Whether a token's bytes end with its only newline, by rank, for the tokens met so
    far. Filled on a miss: a table of all 200,000 ranks cost 20 ms on a process's first
    batch (a cold start pays it), while a 1,000-field batch meets 600 distinct tokens."""

    __slots__ = ("_decode", "_ends")

    def __init__(self, decode: Callable[[int], bytes]) -> None:
        super().__init__()
        self._decode = decode
        #: a character class of the ranks known to end a line (None: rebuild it)
        self._ends: re.Pattern[str] | None = None

    def __missing__(self, rank: int) -> bool:
        token = self._decode(rank)
        ends = self[rank] = token.endswith(b"\n") and token.count(b"\n") == 1
        if ends:
            self._ends = None
        return ends

    def cut(self, tokens: list[int], lines: int) -> list[int] | None:
        """Tokens per line, when exactly ``lines`` tokens end a line (see `_line_counts`).

        The tokens are read as a string of one character per rank (their UTF-32 bytes,
        written in C), split at the ranks known to end a line: a regex split and the parts'
        lengths cost a third of a lookup per token. The split trusts only ranks known to end
        a line, so a part is a line exactly when ``lines`` of them are found; a rank not met
        before (or none known yet) sends the tokens through the lookup, which learns it."""
        pattern = self._ends
        if pattern is None and any(self.values()):
            pattern = self._ends = re.compile("[" + "".join(re.escape(chr(r)) for r, e in self.items() if e) + "]")
        if pattern is not None:
            try:
                ranks = array(_RANK_CODE, tokens).tobytes().decode("utf-32-le", "surrogatepass")
            except (OverflowError, UnicodeDecodeError):  # a rank beyond Unicode's range
                ranks = None
            if ranks is not None:
                parts = pattern.split(ranks)
                if len(parts) == lines + 1 and not parts[-1]:
                    del parts[-1]
                    return [len(part) + 1 for part in parts]
        ends = list(compress(range(len(tokens)), map(self.__getitem__, tokens)))
        if len(ends) != lines:
            return None
        return list(map(sub, ends, [-1, *ends[:-1]]))


@cache
def _line_ends(encoding: tiktoken.Encoding) -> _LineEnds:
    """`_LineEnds` of ``encoding`` (one per process and encoding)."""
    return _LineEnds(encoding.decode_single_token_bytes)


#: fewer new tails than this are encoded whole, not cut into word pieces (see
#: `TiktokenCounter._learn_tails_and_heads`)
_WORD_PIECES_MIN = 256

#: the tail a line's head is measured with in a batch (`TiktokenCounter._learn_lines`): a
#: space and a non-whitespace character, so the head's cut stays a safe boundary
_PROBE = " 0"

#: pieces longer than this (one huge line) are counted but not kept
_PIECE_MAX_CHARS = 16_384
_PIECES_MAX = 262_144
#: distinct line ends kept (`TiktokenCounter._count_line`): a few in printed JSON
_COMMA_DELTAS_MAX = 1024


class TiktokenCounter:
    """Exact counts. Special-token text (``<|endoftext|>``) is counted as ordinary text:
    a prompt is data, and the provider tokenises it the same way.

    A text is cut at the boundaries its encoding's pre-tokeniser cannot merge across
    (`tokens/compose.py`), each piece is counted once per counter and the counts are
    added: the sum equals tiktoken's count of the whole text. `count_whole` encodes the
    text in one call, for the verification mode that checks the sum against it."""

    exact = True

    def __init__(self, encoding_name: str, *, model: str | None = None) -> None:
        resolved = resolve_encoding(encoding_name)
        self._encoding = resolved.encoding
        self._encode = resolved.encoding.encode_ordinary
        self.name = encoding_name if model is None else f"{encoding_name} (model {model})"
        self.encoding_name = encoding_name
        self.vocab_hash = resolved.sha256
        self.source = resolved.source
        self._boundary = boundary_pattern(encoding_name)
        self._pieces = _PieceCounts(self.count_whole)
        #: line (without its newline) -> count of the line with its newline
        self._lines = _PieceCounts(self._count_line)
        #: a line's end (`compose.comma_end`) -> count(end + "\n") - count(end + ",\n")
        self._comma_deltas: dict[str, int] = {}
        #: a line's tail (`compose.heads_and_tails`) -> count of the tail with a newline
        self._tails = _PieceCounts(lambda tail: len(self._encode(tail + "\n")))

    def _count_line(self, line: str) -> int:
        """What `_lines` counts a line it has not met by: the line with its newline encoded,
        or, when the same line with a trailing comma was counted (the last item a list keeps,
        printed without its comma), that count adjusted by the end the comma joins."""
        with_comma = self._lines.get(line + ",")
        if with_comma is not None:
            return self.measure_without_comma(line, with_comma)
        return len(self._encode(line + "\n"))

    def measure_without_comma(self, line: str, with_comma: int) -> int:
        """count(line + "\n"), given that count(line + ",\n") is ``with_comma`` (``line``
        holds no newline): the last item a list keeps is printed without its comma, and its
        count follows from the one with it by the end the comma joins (`compose.comma_end`;
        each end's delta is encoded once per counter), with no encode of the line. A line
        the rule does not cover is encoded."""
        end = comma_end(line) if self._boundary is _SPACED else None
        if end is None:
            return len(self._encode(line + "\n"))
        delta = self._comma_deltas.get(end)
        if delta is None:
            if len(self._comma_deltas) >= _COMMA_DELTAS_MAX:
                self._comma_deltas.clear()
            delta = self._comma_deltas[end] = len(self._encode(end + "\n")) - len(self._encode(end + ",\n"))
        return with_comma + delta

    def count(self, text: str) -> int:
        pieces = self._pieces
        newline = text.find("\n")
        if newline < 0:
            return pieces[text]
        if newline == len(text) - 1:  # one line and its newline (a value line): no boundary to check
            return self._lines[text[:-1]]
        known = pieces.get(text)  # a block counted before (a candidate seen in an earlier pack)
        if known is not None:
            return known
        lines = safe_lines(text, self._boundary)
        if lines is not None:
            last = lines.pop()
            counts = list(map(self._lines.get, lines))
            if None in counts:
                # lines never counted (a list's items measured by columns, `measure_columns`):
                # counted together, not one encode each
                self._learn_lines(lines)
                counts = list(map(self._lines.__getitem__, lines))
            n = sum(counts) + (pieces[last] if last else 0)  # type: ignore[arg-type]
        else:
            n = sum(map(pieces.__getitem__, split_pieces(text, self._boundary)))
        if len(text) <= _PIECE_MAX_CHARS:
            pieces.remember(text, n)
        return n

    def count_parts(self, parts: Sequence[str]) -> int:
        """``count("".join(parts))``, counted part by part when every part but the last ends
        with a newline and each newline between two parts is a safe boundary (then the
        counts add up exactly, as lines do): a part counted before, such as a list a run's
        packs share, costs a lookup. Otherwise the joined text is counted."""
        pieces = [part for part in parts if part]
        last = len(pieces) - 1
        for i, piece in enumerate(pieces):
            if (i < last and not piece.endswith("\n")) or (i and not safe_joint(piece, self._boundary)):
                return self.count("".join(pieces))
        return sum(map(self.count, pieces))

    def count_whole(self, text: str) -> int:
        return len(self._encode(text))

    def measure(self, text: str) -> int:
        return self.count(text)

    def measure_many(self, texts: Sequence[str], *, json_lines: bool = False) -> list[int]:
        """Each text's count. Lines never counted before are counted together, in one
        encode of the text they make when joined: a tiktoken call per short line costs
        about twice its share of one long call, and a cold prompt is thousands of lines.

        When every text ends with a newline and the joined text is safe to cut at every
        line, each text's count is the sum of its lines' counts. ``json_lines``: the caller
        printed the texts as JSON indented by at least one space, so every line opens with
        spaces and a JSON token (never whitespace, never ``/``) and every newline is safe
        for the spaced patterns; the search for an unsafe one (a third of the work on a
        list of new items) is skipped. The final count of the prompt still checks."""
        known = list(map(self._pieces.get, texts))  # texts counted before (a run's fixed lines)
        if None not in known:
            return known  # type: ignore[return-value]
        if any(known):  # only the new texts go by lines (a pack's own lines among fixed ones)
            counted = iter(self._measure_new([t for t, n in zip(texts, known, strict=True) if n is None], json_lines))
            return [next(counted) if n is None else n for n in known]
        return self._measure_new(texts, json_lines)

    def measure_columns(
        self, heads: Sequence[str], columns: Sequence[Sequence[str]], lines: Sequence[str] = ()
    ) -> tuple[list[int], list[int]] | None:
        """Per row ``i``, the sum over columns ``j`` of count(heads[j] + columns[j][i] + "\n"),
        and the count of each of ``lines`` (more printed lines of the list, such as its items'
        braces, each with its newline, learned in the same batch and kept as lines); or None when this
        counter cannot add lines up that way (the caller counts the lines).

        Why: a list of flat JSON objects (the pack's fields) prints one line per key and item,
        ``"key": value`` after the items' indentation, so its lines are a few heads (the
        indentation and a key) and the values' tails: each item's cost is a sum of cached
        tail counts, with no line of it built, split or hashed (for a 1,000-field list: 7,000
        lines never made). The cut between head and tail is the one `heads_and_tails` finds
        (checked here once per head); the caller vouches that every tail is a space and then
        a printed JSON value (no newline, no whitespace after the space), as
        ``json.dumps(values, indent=1)`` prints a list's elements, and that the lines sit
        inside printed JSON indented by at least one space (every newline between them is a
        safe boundary, as for `measure_many`'s ``json_lines``). The final count of the prompt
        still checks."""
        if self._boundary is not _SPACED or not heads or len(heads) != len(columns):
            return None
        cut_heads, _ = heads_and_tails([head + " 0" for head in heads])
        if cut_heads != list(heads):  # a key the head pattern does not take whole (an escape)
            return None
        if any(not line.endswith("\n") or "\n" in line[:-1] for line in lines):
            return None
        line_heads, line_tails = heads_and_tails([line[:-1] for line in lines]) if lines else ([], [])
        tail_counts, head_counts = self._tails, self._pieces
        fresh_tails = list(
            filterfalse(tail_counts.__contains__, dict.fromkeys(chain(chain.from_iterable(columns), line_tails)))
        )
        fresh_heads = list(filterfalse(head_counts.__contains__, dict.fromkeys([*heads, *line_heads])))
        if len(fresh_tails) + len(fresh_heads) >= _BATCH_MIN_LINES:
            longest = max(max(map(len, fresh_tails), default=0), max(map(len, heads)), max(map(len, lines), default=0))
            # if the batch cannot be cut into lines, the lookups below count each one alone
            self._learn_tails_and_heads(fresh_tails, fresh_heads, longest)
        sums = list(map(tail_counts.__getitem__, columns[0]))
        for column in columns[1:]:
            sums = list(map(add, sums, map(tail_counts.__getitem__, column)))
        fixed = sum(map(head_counts.__getitem__, heads))
        line_counts = list(map(add, map(head_counts.__getitem__, line_heads), map(tail_counts.__getitem__, line_tails)))
        if lines:  # kept as lines too: the final count of a prompt meets them as lines
            self._lines.remember_many([line[:-1] for line in lines], line_counts)
        return list(map(add, sums, repeat(fixed))), line_counts

    def remember_lines(self, head: str, tails: list[str], lines: list[str]) -> None:
        """Keep the count of each of ``lines``, each ``head + tail`` with its tail in
        ``tails``, as the head's count plus the tail's (the cut `measure_columns` checked):
        the lines of a list measured by columns are then found counted when a prompt that
        keeps them is counted, as printed lines measured by lines are."""
        if self._boundary is not _SPACED:
            return
        known = self._pieces[head] if head else 0
        self._lines.remember_many(lines, list(map(add, repeat(known), map(self._tails.__getitem__, tails))))

    def _measure_new(self, texts: Sequence[str], json_lines: bool) -> list[int]:
        joined = "".join(texts)
        if json_lines and self._boundary is _SPACED and joined.endswith("\n"):
            lines: list[str] | None = joined.split("\n")
        else:
            lines = safe_lines(joined, self._boundary)
        # printed JSON texts each end with a newline (the caller vouches): no check
        if (
            lines is None
            or lines[-1]
            or not (json_lines or all(map(methodcaller("endswith", "\n"), filter(None, texts))))
        ):
            return list(map(self.count, texts))
        del lines[-1]
        self._learn_lines(lines)
        if len(lines) == len(texts) and all(texts):  # each text one line (a list of scalars)
            counts = list(map(self._lines.__getitem__, lines))
        else:
            totals = [0, *accumulate(map(self._lines.__getitem__, lines))]
            ends = list(accumulate(map(str.count, texts, repeat("\n")), initial=0))
            counts = list(map(sub, map(totals.__getitem__, ends[1:]), map(totals.__getitem__, ends[:-1])))
        self._pieces.remember_many(list(texts), counts)
        return counts

    def _learn_lines(self, lines: list[str]) -> None:
        """Count the lines not counted before in one encode (the first line of the list
        need not be a safe continuation: it stays first).

        For the cl100k/o200k family a line's count is its head's plus its tail's
        (`compose.heads_and_tails`), and only the heads and tails not counted before are
        encoded: a cold 1,000-field prompt's distinct lines are 30,600 tokens, their
        distinct tails 12,600 and their heads (indentation and a key) about a hundred."""
        known = self._lines
        new = list(filterfalse(known.__contains__, dict.fromkeys(lines)))
        if len(new) < _BATCH_MIN_LINES:
            return
        longest = max(map(len, new))  # a head or a tail is no longer than its line
        if self._boundary is not _SPACED:
            counts = _line_counts(self._encoding, new)
            if counts is not None:
                known.remember_many(new, counts, longest=longest)
            return
        heads, tails = heads_and_tails(new)
        head_counts, tail_counts = self._pieces, self._tails
        fresh_tails = list(filterfalse(tail_counts.__contains__, dict.fromkeys(tails)))
        fresh_heads = list(filterfalse(head_counts.__contains__, dict.fromkeys(heads)))
        enough = len(fresh_tails) + len(fresh_heads) >= _BATCH_MIN_LINES
        if enough and not self._learn_tails_and_heads(fresh_tails, fresh_heads, longest):
            return
        sums = map(add, map(head_counts.__getitem__, heads), map(tail_counts.__getitem__, tails))
        known.remember_many(new, list(sums), longest=longest)

    def _learn_tails_and_heads(self, tails: list[str], heads: list[str], longest: int) -> bool:
        """Count new tails and heads in one encode; False if the batch could not be cut into
        lines (then they are counted one by one when read).

        Many tails (a large list's) are cut into word pieces first (`compose.word_pieces`):
        only the pieces never counted are encoded, each as a line of the batch (less the
        newline's own count when the piece does not end the tail), and a tail's count is its
        pieces' sum. That pays only when pieces repeat: each piece is a line of its own, with
        its newline token and its bookkeeping. The 1,000-field pack's 1,075 new tails are 257
        new pieces of a tenth of their text, while a seed pack's 147 tails are 202 pieces of
        four fifths of theirs, and cutting them made its cold decision 9% slower. So a batch
        of fewer than `_WORD_PIECES_MIN` tails is not cut, nor one whose new pieces hold more
        than half of its tails' text. A head is measured as the line head + " 0": the
        probe's own count is taken off."""
        cut = word_pieces(tails) if len(tails) >= _WORD_PIECES_MIN else None
        piece_counts, tail_counts = self._pieces, self._tails
        lines = tails
        if cut is not None:
            units = list(filterfalse(piece_counts.__contains__, dict.fromkeys(cut[0])))
            if 2 * sum(map(len, units)) > sum(map(len, tails)) + len(tails):  # most of the text is new
                cut = None
            else:
                lines = [unit.removesuffix("\n") for unit in units]
        batch = lines + [head + _PROBE for head in heads]
        # new tails made of pieces all counted before need no encode
        counted = _line_counts(self._encoding, batch) if batch else []
        if counted is None:
            return False
        if cut is None:
            tail_counts.remember_many(tails, counted[: len(tails)], longest=longest)
        else:
            pieces, ends = cut
            newline = piece_counts["\n"]
            piece_counts.remember_many(
                units,
                [n if unit.endswith("\n") else n - newline for unit, n in zip(units, counted, strict=False)],
                longest=longest + 1,
            )
            # each tail's count: its pieces' sum (a tail's last piece ends with the newline)
            totals = list(accumulate(map(piece_counts.__getitem__, pieces), initial=0))
            sums = map(sub, map(totals.__getitem__, ends), map(totals.__getitem__, [0, *ends[:-1]]))
            tail_counts.remember_many(tails, list(sums), longest=longest)
        probe = tail_counts[_PROBE]
        piece_counts.remember_many(heads, [n - probe for n in counted[len(lines) :]], longest=longest)
        return True

    def finish(self, total_measure: int) -> int:
        return total_measure


class RoughCounter:
    """``ceil(chars / chars_per_token)``: upstream's estimator, available only by name."""

    exact = False

    def __init__(self, chars_per_token: Decimal) -> None:
        if not chars_per_token.is_finite() or chars_per_token <= 0:
            raise TokenizerError(
                [
                    Diagnostic(
                        "T105",
                        f"rough tokenizer ratio must be > 0, got {chars_per_token}",
                        hint="e.g. tokenizer rough 4 chars per token",
                    )
                ]
            )
        self.ratio = chars_per_token
        self.name = f"rough:chars/{chars_per_token.normalize()}"
        self.vocab_hash = self.name

    def count(self, text: str) -> int:
        return self.finish(len(text))

    def count_whole(self, text: str) -> int:
        return self.count(text)

    def measure(self, text: str) -> int:
        return len(text)

    def measure_many(self, texts: Sequence[str], *, json_lines: bool = False) -> list[int]:
        return list(map(len, texts))

    def finish(self, total_measure: int) -> int:
        if self.ratio == 4:
            return math.ceil(total_measure / 4) if total_measure % 4 else total_measure // 4
        return int((Decimal(total_measure) / self.ratio).to_integral_value(rounding=ROUND_CEILING))


@cache
def get_counter(tokenizer: Tokenizer) -> TokenCounter:
    """The process-wide counter a rule file's `tokenizer` line asks for (its count cache
    shared by every caller). Errors point at that line."""
    return new_counter(tokenizer)


def new_counter(tokenizer: Tokenizer) -> TokenCounter:
    """A counter with its own count cache, for an owner that wants its memory to itself (an
    `Engine`). The encoding itself is loaded once per process. Errors point at the rule."""
    try:
        return _make_counter(tokenizer)
    except TokenizerError as exc:
        span = tokenizer.span if tokenizer.span.line > 0 else None
        if span is None:
            raise
        raise TokenizerError(
            [d if d.span is not None or d.pointer else dataclasses.replace(d, span=span) for d in exc.diagnostics]
        ) from None


def _make_counter(tokenizer: Tokenizer) -> TokenCounter:
    if tokenizer.kind == "rough":
        return RoughCounter(tokenizer.chars_per_token if tokenizer.chars_per_token is not None else Decimal(0))
    if tokenizer.kind == "model":
        return TiktokenCounter(encoding_for_model(tokenizer.name), model=tokenizer.name)
    if tokenizer.kind == "tiktoken":
        return TiktokenCounter(tokenizer.name)
    raise TokenizerError(
        [Diagnostic("T101", f"unknown tokenizer kind {tokenizer.kind!r}", hint="use tiktoken, model or rough")]
    )
