"""Reading a policy: a file or a directory, and the files it includes.

Includes resolve relative to the including file and must stay inside the policy's root
directory (the directory of the top file, or the directory given): absolute paths and
`..` escapes, symlinked or not, are refused. Precedence, lowest first: included files in
the order they are included (a later include overrides an earlier one), then the including
file's own statements, which override everything it includes.

Each file is read and parsed once. A file reached again through another file (a diamond:
main includes a and b, both include common) enters the policy once, at its first
inclusion, as a module import does; the same file included twice by one file is a mistake
(E308). The include graph is bounded (E309: files, E310: total bytes), so 3 KB of rules
cannot expand into minutes of parsing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from policy_engine.dsl import ast as A
from policy_engine.dsl.parser import MAX_FILE_BYTES, parse
from policy_engine.errors import Diagnostic, RuleSyntaxError, Span

MAX_INCLUDE_DEPTH = 16
MAX_INCLUDE_FILES = 64
MAX_TOTAL_BYTES = 2 * 1024 * 1024
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
    """Bounded, strict UTF-8 (the byte offset of a bad byte), no NUL: a rule file is text."""
    where = span or Span(label, 0, 0)
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        return None, Diagnostic(
            "E301" if span else "E307", f"{label}: no such rule file", hint="check the path", span=where
        )
    except (OSError, ValueError) as exc:
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else "invalid path"
        return None, Diagnostic(
            "E307", f"{label}: cannot read ({detail})", hint="check the path and permissions", span=where
        )
    if len(raw) > MAX_FILE_BYTES:
        return None, Diagnostic(
            "E104",
            f"{label}: rule file is larger than {MAX_FILE_BYTES:,} bytes",
            hint="split it into files joined with include",
            span=Span(label, 1, 1),
        )
    return decode_rule_text(raw, label)


def decode_rule_text(raw: bytes, label: str) -> tuple[str | None, Diagnostic | None]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        return None, Diagnostic(
            "E106",
            f"not UTF-8: invalid byte 0x{raw[exc.start]:02x} at byte offset {exc.start}",
            hint="save the rule file as UTF-8",
            span=Span(label, line, column),
        )
    if "\0" in text:
        pos = text.index("\0")
        line = text.count("\n", 0, pos) + 1
        return None, Diagnostic(
            "E106",
            "the rule file contains a NUL character",
            hint="a rule file is text; remove the NUL byte",
            span=Span(label, line, pos - (text.rfind("\n", 0, pos) + 1) + 1),
        )
    return text, None


def collect(entry: Path, root: Path) -> SourceSet:
    files: list[tuple[A.PolicyFile, str]] = []
    texts: dict[str, str] = {}
    problems: list[Diagnostic] = []
    real_root = root.resolve()
    seen: set[Path] = set()
    budget = {"files": 0, "bytes": 0}

    def include_target(path: Path, node: A.Include, chain: tuple[Path, ...], mine: dict[Path, Span]) -> Path | None:
        target_text = node.path.value
        span = node.path.span
        if any(ord(ch) < 32 for ch in target_text):
            problems.append(
                Diagnostic(
                    "E301", "include path contains a control character", hint="write a plain relative path", span=span
                )
            )
            return None
        if os.path.isabs(target_text):
            problems.append(
                Diagnostic(
                    "E303",
                    f"include path `{target_text}` is absolute",
                    hint="write it relative to this file",
                    span=span,
                )
            )
            return None
        target = path.parent / target_text
        try:
            resolved = target.resolve()
        except (OSError, RuntimeError, ValueError):
            problems.append(
                Diagnostic("E301", f"cannot resolve include `{target_text}`", hint="check the path", span=span)
            )
            return None
        if resolved != real_root and real_root not in resolved.parents:
            problems.append(
                Diagnostic(
                    "E302",
                    f"include `{target_text}` leaves the policy directory {root}",
                    hint="keep included files inside the policy's root directory",
                    span=span,
                )
            )
            return None
        if resolved in chain:
            cycle = " -> ".join(p.name for p in chain + (resolved,))
            problems.append(
                Diagnostic("E304", f"include cycle: {cycle}", hint="remove one of these includes", span=span)
            )
            return None
        if resolved in mine:
            problems.append(
                Diagnostic(
                    "E308",
                    f"`{target_text}` is already included by this file at line {mine[resolved].line}",
                    hint="remove the repeated include",
                    span=span,
                )
            )
            return None
        mine[resolved] = span
        return target

    def visit(path: Path, chain: tuple[Path, ...], via: Span | None) -> None:
        label = str(path)
        if len(chain) > MAX_INCLUDE_DEPTH:
            problems.append(
                Diagnostic(
                    "E305",
                    f"includes nest deeper than {MAX_INCLUDE_DEPTH} files",
                    hint="flatten the include chain",
                    span=via,
                )
            )
            return
        if chain[-1] in seen:  # a diamond: the file is already in the policy, at its first inclusion
            return
        seen.add(chain[-1])
        budget["files"] += 1
        if budget["files"] > MAX_INCLUDE_FILES:
            problems.append(
                Diagnostic(
                    "E309",
                    f"the policy includes more than {MAX_INCLUDE_FILES} files",
                    hint="merge small rule files",
                    span=via,
                )
            )
            return
        text, err = read_text(path, label, via)
        if err is not None:
            problems.append(err)
            return
        assert text is not None
        budget["bytes"] += len(text.encode("utf-8"))
        if budget["bytes"] > MAX_TOTAL_BYTES:
            problems.append(
                Diagnostic(
                    "E310",
                    f"the policy's files hold more than {MAX_TOTAL_BYTES:,} bytes in all",
                    hint="a policy is a few KB; check for generated or duplicated files",
                    span=via or Span(label, 1, 1),
                )
            )
            return
        texts[label] = text
        try:
            tree = parse(text, label)
        except RuleSyntaxError as exc:
            problems.extend(exc.diagnostics)
            return
        mine: dict[Path, Span] = {}
        for node in tree.statements:
            if isinstance(node, A.Include):
                target = include_target(path, node, chain, mine)
                if target is not None:
                    visit(target, chain + (target.resolve(),), node.path.span)
                if budget["files"] > MAX_INCLUDE_FILES or budget["bytes"] > MAX_TOTAL_BYTES:
                    return
        files.append((tree, text))

    visit(entry, (entry.resolve(),), None)
    return SourceSet(files, texts, problems)
