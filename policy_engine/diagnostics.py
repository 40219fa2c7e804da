"""The one renderer of `Diagnostic`s: ``file:line:col: CODE message``, the source line,
carets under the span, ``hint: ...``; or a JSON form. Pure functions (rich only adds colour
in the CLI), golden-tested byte for byte."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping

from policy_engine.errors import Diagnostic, Span


def _snippet(span: Span | None, sources: Mapping[str, str] | None, mark: str = "^") -> list[str]:
    if span is None or span.line <= 0 or not sources or span.file not in sources:
        return []
    source_lines = sources[span.file].split("\n")
    if span.line > len(source_lines):
        return []
    text = source_lines[span.line - 1].replace("\t", " ")
    width = 1
    if span.end_line == span.line and span.end_column >= span.column:
        width = span.end_column - span.column + 1
    width = max(1, min(width, max(1, len(text) - span.column + 1)))
    gutter = f"{span.line:>4} | "
    return [gutter + text, " " * (len(gutter) - 2) + "| " + " " * (span.column - 1) + mark * width]


def render_one(diag: Diagnostic, sources: Mapping[str, str] | None = None) -> str:
    lines = [f"{diag.location}: {diag.code} {diag.message}"]
    lines += _snippet(diag.span, sources)
    for span, note in diag.related:
        lines.append(f"  note: {note} ({span})")
        lines += _snippet(span, sources, "-")
    if diag.hint:
        lines.append(f"  hint: {diag.hint}")
    return "\n".join(lines)


def render_text(diagnostics: Iterable[Diagnostic], sources: Mapping[str, str] | None = None) -> str:
    return "\n".join(render_one(d, sources) for d in diagnostics) + "\n"


def to_json(diagnostics: Iterable[Diagnostic]) -> str:
    return json.dumps([d.to_dict() for d in diagnostics], sort_keys=True, indent=2) + "\n"
