"""Strict YAML for policy test-case files: safe types only, no aliases, bounded.

Aliases are refused outright rather than counted: a case file has no need for them, and an
alias bomb ("billion laughs") expands exponentially before any counting could run. After
loading, the document obeys the same rules as JSON input: string keys, finite numbers
within range, bounded nesting.
"""

from __future__ import annotations

import math
from typing import Any

import yaml

from policy_engine.errors import Diagnostic, PolicyError, Span
from policy_engine.reading.bounds import MAX_JSON_INTEGER, MAX_NUMBER_LITERAL, Bounds
from policy_engine.reading.json_text import check_depth, json_pointer


class _AliasRefused(yaml.YAMLError):
    def __init__(self, mark: Any) -> None:
        super().__init__("alias")
        self.problem_mark = mark


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses aliases and over-long number literals before converting."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            raise _AliasRefused(self.peek_event().start_mark)  # type: ignore[no-untyped-call]  # unannotated in types-PyYAML
        return super().compose_node(parent, index)

    def construct_yaml_int(self, node: Any) -> Any:
        if len(str(node.value)) > MAX_NUMBER_LITERAL:
            raise yaml.constructor.ConstructorError(None, None, "integer literal too long", node.start_mark)
        return super().construct_yaml_int(node)


_StrictLoader.add_constructor("tag:yaml.org,2002:int", _StrictLoader.construct_yaml_int)


def _mark_span(file: str, mark: Any) -> Span:
    return Span(file, mark.line + 1, mark.column + 1) if mark is not None else Span(file, 0, 0)


def _values(doc: Any) -> Any:
    stack: list[tuple[Any, tuple[Any, ...]]] = [(doc, ())]
    while stack:
        value, path = stack.pop()
        yield value, path
        if isinstance(value, dict):
            stack.extend((v, path + (k,)) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((v, path + (i,)) for i, v in enumerate(value))


def parse_yaml_text(text: str, file: str, *, error: type[PolicyError], code: str, bounds: Bounds) -> Any:
    """Codes: ``code`` for syntax and type problems, with a line/column or a JSON Pointer."""
    try:
        doc = yaml.load(text, Loader=_StrictLoader)
    except _AliasRefused as exc:
        raise error(
            [
                Diagnostic(
                    code,
                    "YAML aliases (*name) are not allowed in case files",
                    hint="write the value out; aliases can expand exponentially",
                    span=_mark_span(file, exc.problem_mark),
                )
            ]
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise error(
            [
                Diagnostic(
                    code,
                    f"not valid YAML: {problem}",
                    hint="fix the syntax at this line and column",
                    span=_mark_span(file, mark),
                )
            ]
        ) from None
    except (RecursionError, ValueError, TypeError, OverflowError) as exc:
        raise error(
            [
                Diagnostic(
                    code,
                    f"not a usable YAML document ({type(exc).__name__})",
                    hint="keep the case file to plain mappings, lists, strings and numbers",
                    file=file,
                    pointer="",
                )
            ]
        ) from None
    check_depth(doc, bounds, error=error, code=code, file=file)
    for value, path in _values(doc):
        where = json_pointer(path)
        if isinstance(value, dict) and any(not isinstance(k, str) for k in value):
            raise error(
                [
                    Diagnostic(
                        code,
                        f"{where or '/'}: mapping keys must be strings",
                        hint="quote the key",
                        file=file,
                        pointer=where,
                    )
                ]
            )
        if isinstance(value, float) and not math.isfinite(value):
            raise error(
                [
                    Diagnostic(
                        code,
                        f"{where or '/'}: {value!r} is not a finite number",
                        hint="use a finite number",
                        file=file,
                        pointer=where,
                    )
                ]
            )
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_JSON_INTEGER:
            raise error(
                [
                    Diagnostic(
                        code,
                        f"{where or '/'}: integer out of range",
                        hint=f"integers must lie within ±{MAX_JSON_INTEGER:,}",
                        file=file,
                        pointer=where,
                    )
                ]
            )
    return doc
