"""Reading a policy: a file or a directory, and the files it includes.

Includes resolve relative to the including file and must stay inside the policy's root
directory (the directory of the top file, or the directory given): absolute paths and
`..` escapes, symlinked or not, are refused. Precedence, lowest first: included files in
the order they are included (a later include overrides an earlier one), then the including
file's own statements, which override everything it includes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from policy_engine.dsl import ast as A
from policy_engine.dsl.parser import parse
from policy_engine.errors import Diagnostic, RuleSyntaxError, Span

MAX_INCLUDE_DEPTH = 16
ENTRY_FILE = "main.policy"


@dataclass(frozen=True, slots=True)
class SourceSet:
    """Parsed files in precedence order (lowest first), their texts, and problems found."""

    files: list[tuple[A.PolicyFile, str]]
    texts: dict[str, str]
    problems: list[Diagnostic]


def entry_files(path: Path) -> tuple[Path, list[Path]]:
    """(root directory, entry files). A directory means its main.policy, else every
    *.policy file in it (name order) — each then is a separate policy for `policy check`."""
    if path.is_dir():
        main = path / ENTRY_FILE
        if main.is_file():
            return path, [main]
        return path, sorted(p for p in path.glob("*.policy") if p.is_file())
    return path.parent, [path]


def read_text(path: Path, label: str, span: Span | None = None) -> tuple[str | None, Diagnostic | None]:
    try:
        return path.read_text(encoding="utf-8"), None
    except FileNotFoundError:
        return None, Diagnostic("E301" if span else "E307", f"{label}: no such rule file", hint="check the path", span=span or Span(label, 0, 0))
    except (OSError, UnicodeDecodeError) as exc:
        detail = exc.strerror if isinstance(exc, OSError) else "not UTF-8"
        return None, Diagnostic("E307", f"{label}: cannot read ({detail})", hint="check the path and permissions", span=span or Span(label, 0, 0))


def collect(entry: Path, root: Path) -> SourceSet:
    files: list[tuple[A.PolicyFile, str]] = []
    texts: dict[str, str] = {}
    problems: list[Diagnostic] = []
    real_root = root.resolve()

    def visit(path: Path, chain: tuple[Path, ...], via: Span | None) -> None:
        label = str(path)
        if len(chain) > MAX_INCLUDE_DEPTH:
            problems.append(Diagnostic("E305", f"includes nest deeper than {MAX_INCLUDE_DEPTH} files", hint="flatten the include chain", span=via))
            return
        text, err = read_text(path, label, via)
        if err is not None:
            problems.append(err)
            return
        assert text is not None
        texts[label] = text
        try:
            tree = parse(text, label)
        except RuleSyntaxError as exc:
            problems.extend(exc.diagnostics)
            return
        for node in tree.statements:
            if not isinstance(node, A.Include):
                continue
            target_text = node.path.value
            span = node.path.span
            if os.path.isabs(target_text):
                problems.append(Diagnostic("E303", f"include path `{target_text}` is absolute", hint="write it relative to this file", span=span))
                continue
            target = path.parent / target_text
            try:
                resolved = target.resolve()
            except (OSError, RuntimeError):
                problems.append(Diagnostic("E301", f"cannot resolve include `{target_text}`", hint="check the path", span=span))
                continue
            if resolved != real_root and real_root not in resolved.parents:
                problems.append(Diagnostic("E302", f"include `{target_text}` leaves the policy directory {root}", hint="keep included files inside the policy's root directory", span=span))
                continue
            if resolved in chain:
                cycle = " -> ".join(p.name for p in chain + (resolved,))
                problems.append(Diagnostic("E304", f"include cycle: {cycle}", hint="remove one of these includes", span=span))
                continue
            visit(target, chain + (resolved,), span)
        files.append((tree, text))

    visit(entry, (entry.resolve(),), None)
    return SourceSet(files, texts, problems)
