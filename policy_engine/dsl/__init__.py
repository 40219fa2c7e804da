"""The rules DSL: parse rule text, check it into a `Policy`, format it canonically, and
import the agent's JSON configs. See docs/rules-reference.md."""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

from policy_engine import rules
from policy_engine.dsl.checker import TEMPLATES, build_policy
from policy_engine.dsl.formatter import format_ast
from policy_engine.dsl.importer import import_config
from policy_engine.dsl.includes import SourceSet, collect, entry_files
from policy_engine.dsl.parser import parse
from policy_engine.errors import Diagnostic, RuleCheckError, RuleSyntaxError, Severity, Span
from policy_engine.policy import Policy

__all__ = [
    "check_paths",
    "default_rules_path",
    "format_text",
    "import_config",
    "load_policy",
    "load_policy_text",
    "parse",
]


def default_rules_path() -> Path:
    """The shipped rules, read from the package's folder (not through importlib.resources,
    whose import costs a cold start ~9 ms; the package is always installed as files)."""
    return Path(rules.__file__).with_name("default.policy")


def _digest(sources: SourceSet) -> str:
    h = hashlib.sha256()
    for tree, _text in sources.files:
        h.update(tree.file.rsplit("/", 1)[-1].encode() + b"\0" + format_ast(tree).encode() + b"\0")
    return "sha256:" + h.hexdigest()


def _raise(problems: list[Diagnostic]) -> None:
    """Raise when any problem is an error; warnings alone never stop a policy loading."""
    if all(d.severity is Severity.WARNING for d in problems):
        return
    syntax = [d for d in problems if d.code.startswith("E1")]
    if syntax:
        raise RuleSyntaxError(problems)
    raise RuleCheckError(problems)


def _with_template(policy: Policy | None, root: Path | None, problems: list[Diagnostic]) -> Policy | None:
    """Attach the data template the policy selects (the policy directory's
    ``NAME.template.json``, else a shipped one), checked like the rules: its problems join
    the policy's."""
    from policy_engine.render.template import find_template

    if policy is None:
        return None
    try:
        spec = find_template(policy.template, root)
    except RuleCheckError as exc:
        problems.extend(exc.diagnostics)
        return policy
    return dataclasses.replace(policy, template_spec=spec) if spec is not None else policy


def _compile(entry: Path, root: Path) -> tuple[Policy | None, list[Diagnostic], dict[str, str]]:
    from policy_engine.render.template import user_template_names

    sources = collect(entry, root)
    if sources.problems:
        return None, sources.problems, sources.texts
    policy, problems = build_policy(
        sources.files, _digest(sources), tuple(dict.fromkeys(TEMPLATES + tuple(user_template_names(root))))
    )
    policy = _with_template(policy, root, problems)
    if policy is not None:
        # Relative to the policy's root, so a decision's manifest is the same on every machine.
        rel = tuple(os.path.relpath(f, root) for f in policy.source_files)
        policy = dataclasses.replace(policy, source_files=rel)
    return policy, problems, sources.texts


def load_policy(path: str | os.PathLike[str]) -> Policy:
    p = Path(path)
    if not p.exists():
        raise RuleCheckError(
            [
                Diagnostic(
                    "E307",
                    "no such rule file or directory",
                    hint="pass a .policy file or a policy directory",
                    span=Span(str(p), 0, 0),
                )
            ]
        )
    root, entries = entry_files(p)
    if len(entries) != 1:
        found = ", ".join(e.name for e in entries) or "none"
        raise RuleCheckError(
            [
                Diagnostic(
                    "E306",
                    f"a policy directory needs main.policy or exactly one .policy file (found {found})",
                    hint="add main.policy that includes the others",
                    span=Span(str(p), 0, 0),
                )
            ]
        )
    policy, problems, _ = _compile(entries[0], root)
    _raise(problems)
    assert policy is not None
    return policy


def load_policy_text(text: str, file: str = "<string>") -> Policy:
    tree = parse(text, file)
    if any(n.__class__.__name__ == "Include" for n in tree.statements):
        raise RuleCheckError(
            [
                Diagnostic(
                    "E301", "include needs a rule file on disk", hint="use load_policy(path)", span=Span(file, 1, 1)
                )
            ]
        )
    sources = SourceSet([(tree, text)], {file: text}, [])
    policy, problems = build_policy(sources.files, _digest(sources))
    policy = _with_template(policy, None, problems)
    _raise(problems)
    assert policy is not None
    return policy


def check_paths(paths: Sequence[str | os.PathLike[str]]) -> tuple[list[Diagnostic], dict[str, str], int]:
    """Every problem in every policy under the paths (files or directories), without
    raising; also the texts read (for caret snippets) and how many policies were checked."""
    problems: list[Diagnostic] = []
    texts: dict[str, str] = {}
    checked = 0
    done: set[tuple[Path, Path]] = set()
    for raw in paths:
        p = Path(raw)
        if not p.exists():
            problems.append(
                Diagnostic("E307", "no such rule file or directory", hint="check the path", span=Span(str(p), 0, 0))
            )
            continue
        templates = _templates_under(p)
        for template in templates:
            checked += 1
            problems.extend(_template_problems(template))
        if p.is_file() and templates:
            continue
        found = _policies_under(p)
        if p.is_file():
            # A fragment (included by another rule file) is checked as part of the policy
            # that includes it: pre-commit passes changed files one at a time.
            found = [(e.parent, e) for e in _includers(p)] or found
        if not found:
            problems.append(
                Diagnostic(
                    "E306",
                    "no .policy files here",
                    hint="give a .policy file or a directory holding some",
                    span=Span(str(p), 0, 0),
                )
            )
        for root, entry in found:
            if (root, entry) in done:
                continue
            done.add((root, entry))
            checked += 1
            _, diagnostics, read = _compile(entry, root)
            problems.extend(diagnostics)
            texts.update(read)
    # a template selected by a checked policy and found in its directory is reported once
    return list(dict.fromkeys(problems)), texts, checked


def _templates_under(path: Path) -> list[Path]:
    from policy_engine.render.template import SUFFIX

    if path.is_file():
        return [path] if path.name.endswith(SUFFIX) else []
    return sorted(p for p in path.rglob("*" + SUFFIX) if p.is_file())


def _template_problems(path: Path) -> list[Diagnostic]:
    from policy_engine.render.template import load_template_file

    try:
        load_template_file(path)
    except RuleCheckError as exc:
        return list(exc.diagnostics)
    return []


def _includers(fragment: Path, levels: int = 8) -> list[Path]:
    """The top-level rule files that include `fragment`, directly or through other
    includes. Includes stay inside the including file's directory, so only the fragment's
    directory and its ancestors can hold them; the walk stops at the working directory
    when the fragment is under it."""
    target = fragment.resolve()
    cwd = Path.cwd().resolve()
    here = fragment.parent
    candidates: list[Path] = []
    for _ in range(levels):
        candidates.extend(sorted(x for x in here.glob("*.policy") if x.is_file() and x.resolve() != target))
        if here.resolve() == cwd or cwd not in here.resolve().parents:
            break
        here = here.parent
    including: list[Path] = []
    included: set[Path] = set()
    for candidate in candidates:
        sources = collect(candidate, candidate.parent)
        reached = {Path(name).resolve() for name in sources.texts if Path(name).resolve() != candidate.resolve()}
        included |= reached
        if target in reached:
            including.append(candidate)
    return [c for c in including if c.resolve() not in included]


def _policies_under(path: Path) -> list[tuple[Path, Path]]:
    """(root, entry) pairs: a file, a policy directory (main.policy or its *.policy files),
    and, for a directory without main.policy, also the policies in its subdirectories (so
    `policy check examples` checks every example policy)."""
    root, entries = entry_files(path)
    if not path.is_dir() or (path / "main.policy").is_file():
        return [(root, e) for e in entries]
    out: list[tuple[Path, Path]] = [(root, e) for e in entries]
    for sub in sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")):
        out.extend(_policies_under(sub))
    return out


def format_text(text: str, file: str = "<string>") -> str:
    """Canonical text; verifies, as black does, that the result parses to the same AST and
    formats to itself."""
    tree = parse(text, file)
    out = format_ast(tree)
    again = parse(out, file)
    if again != tree or format_ast(again) != out:
        raise AssertionError(f"formatter bug on {file}: output is not equivalent or not stable")
    return out
