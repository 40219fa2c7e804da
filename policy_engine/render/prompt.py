"""The prompt text behind a decision, and where a captured prompt departs from it.

`policy render` shows the text whose tokens a decision counted; `policy conform` checks a
prompt the agent really sent against it, so a user learns the day the agent's prompt
builder and the template part ways (and exactly where: line, JSON Pointer, both texts).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from policy_engine.pools import Pools, Selection


def decision_selection(decision: Any) -> dict[str, tuple[str, ...]]:
    """A decision's final selection as the prompt model takes it (pool -> ids)."""
    return {pool: tuple(i for lane in lanes.values() for i in lane) for pool, lanes in decision.selection.items()}


def whole_pack(pools: Pools) -> dict[str, tuple[str, ...]]:
    return {pool: tuple(c.id for c in items) for pool, items in pools.pools.items()}


def prompt_text(
    policy: Any,
    pools: Pools,
    selection: Selection,
    *,
    idea: Mapping[str, Any] | None,
    knowledge: Any,
    counter: Any = None,
) -> tuple[str, int]:
    """(text, tokens) of the prompt the policy's template renders for a selection, counted
    by the policy's tokenizer: the model the evaluator builds, so for a decision's final
    selection the count is the decision's prompt_tokens."""
    from policy_engine.render import policy_prompt_model

    model, counter, _ = policy_prompt_model(policy, pools, idea=idea, knowledge=knowledge, counter=counter)
    text = model.render(selection)
    return text, counter.count(text)


@dataclass(frozen=True, slots=True)
class Difference:
    """The first line where two prompts differ (1-based), the JSON Pointer of the value on
    that line (None when it cannot be located), and a few lines of each text around it."""

    line: int
    pointer: str | None
    expected: tuple[tuple[int, str], ...]
    actual: tuple[tuple[int, str], ...]


def _lines_with_pointers(
    value: Any,
    indent: int,
    ensure_ascii: bool,
    pointer: str = "",
    key: str | None = None,
    depth: int = 0,
    last: bool = True,
) -> Iterator[tuple[str, str]]:
    """(line, pointer) in the order ``json.dumps(value, indent=indent)`` prints lines."""
    pad = " " * (indent * depth)
    head = pad + ("" if key is None else json.dumps(key, ensure_ascii=ensure_ascii) + ": ")
    comma = "" if last else ","
    if isinstance(value, dict) and value:
        yield head + "{", pointer
        items = list(value.items())
        for i, (k, v) in enumerate(items):
            yield from _lines_with_pointers(
                v, indent, ensure_ascii, f"{pointer}/{_escape(k)}", k, depth + 1, i == len(items) - 1
            )
        yield pad + "}" + comma, pointer
    elif isinstance(value, list) and value:
        yield head + "[", pointer
        for i, v in enumerate(value):
            yield from _lines_with_pointers(
                v, indent, ensure_ascii, f"{pointer}/{i}", None, depth + 1, i == len(value) - 1
            )
        yield pad + "]" + comma, pointer
    else:
        yield head + json.dumps(value, ensure_ascii=ensure_ascii) + comma, pointer


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def _pointer_at(text: str, line: int) -> str | None:
    """The JSON Pointer of the value printed on a line of a pretty-printed JSON text, when
    the text is one (indent guessed from its second line)."""
    try:
        doc = json.loads(text)
    except ValueError:
        return None
    lines = text.split("\n")
    indent = len(lines[1]) - len(lines[1].lstrip(" ")) if len(lines) > 1 else 2
    if indent < 1:
        return None
    for ensure_ascii in (False, True):
        mapped = list(_lines_with_pointers(doc, indent, ensure_ascii))
        if [m[0] for m in mapped] == lines[: len(mapped)] and len(mapped) == len(lines):
            return mapped[line - 1][1] if line <= len(mapped) else None
    return None


def first_difference(expected: str, actual: str, context: int = 2) -> Difference | None:
    """None when the two texts are byte-identical."""
    if expected == actual:
        return None
    a, b = expected.split("\n"), actual.split("\n")
    index = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
    line = index + 1
    pointer = _pointer_at(expected, line) or _pointer_at(actual, line)

    def around(lines: list[str]) -> tuple[tuple[int, str], ...]:
        start, end = max(0, index - context), min(len(lines), index + context + 1)
        return tuple((n + 1, lines[n]) for n in range(start, end))

    return Difference(line, pointer, around(a), around(b))
