"""Where a prompt's tokens go: tokens per section (envelope, idea, each pool, each
knowledge part, the limits echo) and the most expensive items, summing exactly to the
prompt's count.

This module reads the render layer through one narrow seam, `prompt_lines`: the rendered
prompt cut into newline-terminated lines, each with its JSON path. Counts of
newline-terminated pieces add up exactly to the whole prompt's count (the same property the
incremental token model relies on, and the evaluator proves on every decision), so
attributing each line to a section gives parts that sum to ``prompt_tokens`` by
construction, whatever the template does inside. When the render layer grows its own
per-section costs, only `prompt_lines` needs re-pointing; the property test
(tests/test_breakdown.py) guards the sum.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

#: retrieval_pack keys -> the pool their candidates belong to
_POOL_KEYS = {
    "selected_subcategories": "subcategories",
    "candidate_datasets": "datasets",
    "candidate_fields": "fields",
    "candidate_operators": "operators",
}
#: lanes lists -> pool (a lane's id list is part of what its pool costs)
_LANE_KEYS = {"field_ids": "fields", "operator_names": "operators"}
#: knowledge parts whose list items are worth naming in the top items
_KNOWLEDGE_ITEMS = {"operator_signature_pack": "operators", "fastexpr_examples_pack": "examples"}
TOP_ITEMS = 10
_DECODER = json.JSONDecoder()


@dataclass(frozen=True, slots=True)
class Line:
    """One newline-terminated line of the prompt and the JSON path it belongs to (object
    keys as strings, list positions as ints)."""

    text: str
    path: tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Section:
    name: str
    tokens: int


@dataclass(frozen=True, slots=True)
class Item:
    section: str
    name: str
    tokens: int


@dataclass(frozen=True, slots=True)
class Breakdown:
    prompt_tokens: int
    sections: tuple[Section, ...]  # in prompt order; tokens sum to prompt_tokens
    top_items: tuple[Item, ...]  # most expensive first, at most TOP_ITEMS

    def to_json(self) -> dict[str, Any]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "sections": [
                {"section": s.name, "tokens": s.tokens, "share": share_text(s.tokens, self.prompt_tokens)}
                for s in self.sections
            ],
            "top_items": [{"section": i.section, "item": i.name, "tokens": i.tokens} for i in self.top_items],
        }


def share_text(part: int, total: int) -> str:
    """A percentage with one decimal, as a string: decision JSON carries no floats."""
    if total <= 0:
        return "0.0"
    return str((Decimal(part) * 100 / Decimal(total)).quantize(Decimal("0.1"), rounding=ROUND_HALF_EVEN))


# ---- the seam: rendered prompt -> lines with paths --------------------------------------


def prompt_lines(model: Any, selection: Mapping[str, Sequence[str]]) -> list[Line]:
    """The prompt the agent would send for ``selection``, as lines with JSON paths."""
    return list(_paths(model.render(selection)))


def _paths(text: str) -> Iterator[Line]:
    """Track the path of each line of ``json.dumps(..., indent=2)`` output by its indent.
    A line that is not of that shape (another template) keeps the last path seen, so every
    line is still attributed somewhere and the sum stays exact."""
    raw = text.split("\n")
    path: list[str | int] = []
    kinds: list[str] = []  # container kind at each depth: "{" or "["
    index: list[int] = []  # next list position at each depth
    for i, line in enumerate(raw):
        piece = line + ("\n" if i < len(raw) - 1 else "")
        if not piece:
            continue
        body = line.lstrip(" ")
        depth = (len(line) - len(body)) // 2
        if depth == 0 or not body:
            yield Line(piece, ())
            _open(body, path, kinds, index, 0)
            continue
        if body[0] in "]}":
            yield Line(piece, tuple(path[:depth]))
            del path[depth:], kinds[depth:], index[depth:]
            continue
        del path[depth - 1 :]
        if len(kinds) < depth:
            yield Line(piece, tuple(path))  # not indent-2 JSON: keep the last path
            continue
        parent = kinds[depth - 1]
        rest = body
        if parent == "{" and body.startswith('"'):
            try:
                key, end = _DECODER.raw_decode(body)
            except ValueError:
                key, end = body, len(body)
            path.append(str(key))
            rest = body[end:].lstrip(": ")
        else:
            path.append(index[depth - 1])
            index[depth - 1] += 1
        yield Line(piece, tuple(path))
        _open(rest, path, kinds, index, depth)


def _open(rest: str, path: list[str | int], kinds: list[str], index: list[int], depth: int) -> None:
    """Record the container a line opens (``{`` or ``[`` at its end, not closed on it)."""
    del kinds[depth:], index[depth:]
    stripped = rest.rstrip(",")
    if stripped in ("{", "["):
        while len(kinds) < depth:
            kinds.append("?")
            index.append(0)
        kinds.append(stripped)
        index.append(0)


# ---- attribution --------------------------------------------------------------------


def section_of(path: tuple[str | int, ...]) -> str:
    if not path:
        return "envelope"
    top = path[0]
    if top == "idea":
        return "idea"
    if top == "retrieval_pack" and len(path) > 1:
        key = path[1]
        if key in _POOL_KEYS:
            return f"pool:{_POOL_KEYS[key]}"
        if key == "lanes" and len(path) > 3 and path[3] in _LANE_KEYS:
            return f"pool:{_LANE_KEYS[str(path[3])]}"
        if key == "budget_policy" and len(path) > 2 and path[2] == "llm_budget":
            return "limits_echo"
    if top == "knowledge_pack" and len(path) > 1:
        return f"knowledge:{path[1]}"
    return "envelope"


def _item_of(path: tuple[str | int, ...]) -> tuple[str, int] | None:
    """(list the item is in, its position) for a pool candidate or a knowledge list item."""
    if len(path) >= 3 and path[0] == "retrieval_pack" and path[1] in _POOL_KEYS and isinstance(path[2], int):
        return str(path[1]), path[2]
    if len(path) >= 4 and path[0] == "knowledge_pack" and path[1] in _KNOWLEDGE_ITEMS and isinstance(path[3], int):
        return f"{path[1]}.{path[2]}", path[3]
    return None


def _item_name(lines: list[str], fallback: str) -> str:
    text = "".join(lines).strip().rstrip(",")
    try:
        value = json.loads(text)
    except ValueError:
        return fallback
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        for key in ("id", "name", "expression", "expr"):
            named = value.get(key)
            if isinstance(named, str):
                return named
    return fallback


def breakdown(lines: Sequence[Line], counter: Any, prompt_tokens: int) -> Breakdown:
    """Sections and top items of one prompt. ``prompt_tokens`` is the decision's exact
    count; for an exact counter the line counts sum to it (asserted: a mismatch is a bug in
    the seam, never silently spread). A rough counter's sections are its characters,
    apportioned to its ceil(chars / ratio) total by largest remainder."""
    measures: dict[str, int] = {}
    item_measure: dict[tuple[str, str, int], int] = {}
    item_text: dict[tuple[str, str, int], list[str]] = {}
    for line in lines:
        m = counter.measure(line.text)
        name = section_of(line.path)
        measures[name] = measures.get(name, 0) + m
        item = _item_of(line.path)
        if item is not None:
            key = (name, *item)
            item_measure[key] = item_measure.get(key, 0) + m
            item_text.setdefault(key, []).append(line.text)
    total = sum(measures.values())
    if counter.exact:
        if total != prompt_tokens:
            raise AssertionError(f"breakdown lines count {total} tokens, the prompt {prompt_tokens}")
        tokens = measures
        items = item_measure
    else:
        tokens = _apportion(measures, prompt_tokens)
        items = {k: counter.finish(v) for k, v in item_measure.items()}
    ranked = sorted(items.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_ITEMS]
    top = tuple(Item(key[0], _item_name(item_text[key], f"{key[1]}[{key[2]}]"), value) for key, value in ranked)
    return Breakdown(prompt_tokens, tuple(Section(n, t) for n, t in tokens.items()), top)


def _apportion(measures: Mapping[str, int], total_tokens: int) -> dict[str, int]:
    whole = sum(measures.values())
    if whole == 0:
        return {name: 0 for name in measures}
    shares = {name: (m * total_tokens) // whole for name, m in measures.items()}
    left = total_tokens - sum(shares.values())
    by_remainder = sorted(measures, key=lambda n: (-((measures[n] * total_tokens) % whole), list(measures).index(n)))
    for name in by_remainder[:left]:
        shares[name] += 1
    return shares


def prompt_breakdown(
    model: Any,
    counter: Any,
    final: Mapping[str, Sequence[str]],
    final_tokens: int,
    untrimmed: Mapping[str, Sequence[str]],
    untrimmed_tokens: int,
) -> dict[str, Any]:
    """The decision's ``breakdown``: the final and the untrimmed prompt."""
    return {
        "final": breakdown(prompt_lines(model, final), counter, final_tokens).to_json(),
        "untrimmed": breakdown(prompt_lines(model, untrimmed), counter, untrimmed_tokens).to_json(),
    }
