"""Prompt templates as data: reading, validating and finding ``*.template.json`` files.

What the agent's prompt builder does (its envelope's constants, the pack keys it leaves
out, how each knowledge list follows the selection) is declared in a template file, so a
change in the agent is a data edit, not a code change. The engine ships
``agent_envelope``; a user's policy directory may hold ``NAME.template.json`` files,
selected by ``template "NAME"`` in the rules (a user file wins over a shipped one of the
same name). A template is checked like a rule file: every problem is reported with a code,
the file, a JSON Pointer and a hint (R106 unreadable, R107 schema, R108 inconsistent).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import Any

from policy_engine.errors import Diagnostic, PackError, RuleCheckError
from policy_engine.packs.document import document_digest, parse_json_text, read_json_file
from policy_engine.packs.validate import schema_diagnostics

SUFFIX = ".template.json"
SHIPPED = ("agent_envelope",)
#: the entry kinds: exactly one of these keys says where an entry's value comes from
_SOURCES = ("const", "copy", "list", "count", "pool_count", "setting")
_HINT = "see `policy schema template` and the shipped agent_envelope.template.json"


@dataclass(frozen=True, slots=True)
class Template:
    """A checked template document (read-only), where it came from and its digest."""

    name: str
    file: str
    doc: Mapping[str, Any]
    digest: str

    def __getitem__(self, key: str) -> Any:
        return self.doc[key]


def _freeze(value: Any) -> Any:
    if isinstance(value, dict):
        return MappingProxyType({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


def thaw(value: Any) -> Any:
    """A template constant as plain JSON values (lists and dicts) for json.dumps."""
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [thaw(v) for v in value]
    return value


def _semantic(doc: Mapping[str, Any], file: str) -> Iterator[Diagnostic]:
    def diag(ptr: str, msg: str, hint: str) -> Diagnostic:
        return Diagnostic("R108", f"{ptr}: {msg}", hint=hint, file=file, pointer=ptr)

    seen: dict[str, int] = {}
    inserts: dict[str, int] = {}
    for i, entry in enumerate(doc["envelope"]):
        if entry["key"] in seen:
            yield diag(
                f"/envelope/{i}/key",
                f"key {entry['key']!r} appears twice (first at /envelope/{seen[entry['key']]})",
                "each envelope key once",
            )
        seen.setdefault(entry["key"], i)
        if "insert" in entry:
            if entry["insert"] in inserts:
                yield diag(
                    f"/envelope/{i}/insert", f"{entry['insert']!r} is inserted twice", "insert each section once"
                )
            inserts.setdefault(entry["insert"], i)
    for i, part in enumerate(doc["knowledge_pack"]["parts"]):
        where = f"/knowledge_pack/parts/{i}"
        entries = part.get("entries", [])
        keys: dict[str, int] = {}
        lists = {e["key"] for e in entries if "list" in e}
        for j, entry in enumerate(entries):
            ptr = f"{where}/entries/{j}"
            sources = [s for s in _SOURCES if s in entry]
            if len(sources) != 1:
                yield diag(
                    ptr,
                    "an entry takes its value from exactly one of "
                    + ", ".join(_SOURCES)
                    + (f" (this one names {', '.join(sources)})" if sources else ""),
                    "keep one",
                )
            if entry["key"] in keys:
                yield diag(f"{ptr}/key", f"key {entry['key']!r} appears twice in this part", "each key once")
            keys.setdefault(entry["key"], j)
            if "count" in entry and entry["count"] not in lists:
                yield diag(
                    f"{ptr}/count",
                    f"no list entry with key {entry['count']!r} in this part",
                    'count names a sibling entry that has "list"' + (": " + ", ".join(sorted(lists)) if lists else ""),
                )
            if "file" not in part and ("copy" in entry or "list" in entry):
                yield diag(
                    ptr,
                    'copy and list read a knowledge file, but this part names no "file"',
                    'add "file" to the part, or use const/count/pool_count/setting',
                )
        uses_max = part.get("entries") and any(e.get("cap") == "max_examples" or "setting" in e for e in entries)
        if uses_max and "max_examples" not in doc["knowledge_pack"]:
            yield diag(
                where, "uses max_examples, but knowledge_pack sets none", 'add "max_examples": 8 to knowledge_pack'
            )


def check_template(doc: Any, file: str, name: str | None = None) -> list[Diagnostic]:
    """Every problem of a template document (schema first; the cross-checks only on a
    document of the right shape)."""
    problems = schema_diagnostics(doc, "template", file, "R107", _HINT)
    if problems:
        return problems
    problems = list(_semantic(doc, file))
    if name is not None and doc["name"] != name:
        problems.append(
            Diagnostic(
                "R108",
                f"/name: the file is named for {name!r} but declares {doc['name']!r}",
                hint=f'rename the file to {doc["name"]}{SUFFIX} or fix "name"',
                file=file,
                pointer="/name",
            )
        )
    return problems


def _read(path: str | os.PathLike[str]) -> tuple[Any, str]:
    try:
        return read_json_file(path)
    except PackError as exc:
        raise RuleCheckError(
            [
                Diagnostic("R106", d.message, hint=d.hint, span=d.span, file=d.file, pointer=d.pointer)
                for d in exc.diagnostics
            ]
        ) from None


def template_from_document(doc: Any, file: str, name: str | None = None, *, shipped: bool = False) -> Template:
    """``shipped``: a template of this package, checked by its test suite
    (tests/render/test_template.py), not again at every start-up (jsonschema's import and
    validation cost more than the rest of a cold `policy eval`)."""
    problems = [] if shipped else check_template(doc, file, name)
    if problems:
        raise RuleCheckError(problems)
    return Template(doc["name"], file, _freeze(doc), document_digest(doc))


def load_template_file(path: str | os.PathLike[str]) -> Template:
    """Read and check one template file (raises RuleCheckError listing every problem)."""
    doc, label = _read(path)
    base = Path(path).name
    return template_from_document(doc, label, base[: -len(SUFFIX)] if base.endswith(SUFFIX) else None)


@lru_cache(maxsize=8)
def shipped_template(name: str) -> Template:
    if name not in SHIPPED:
        raise KeyError(name)
    # beside this module, not through importlib.resources (its import costs a cold start ~9 ms)
    text = (Path(__file__).with_name("templates") / (name + SUFFIX)).read_text(encoding="utf-8")
    file = f"<shipped>/{name}{SUFFIX}"
    try:
        doc = parse_json_text(text, file)
    except PackError as exc:  # a packaging bug, reported like any template problem
        raise RuleCheckError(exc.diagnostics) from None
    return template_from_document(doc, file, name, shipped=True)


def user_template_names(directory: str | os.PathLike[str] | None) -> list[str]:
    if directory is None or not Path(directory).is_dir():
        return []
    return sorted(p.name[: -len(SUFFIX)] for p in Path(directory).glob("*" + SUFFIX) if p.is_file())


def find_template(name: str, directory: str | os.PathLike[str] | None) -> Template | None:
    """The user's ``NAME.template.json`` in the policy directory, else the shipped one of
    that name, else None (a registered Python template, or unknown)."""
    if directory is not None:
        path = Path(directory) / (name + SUFFIX)
        if path.is_file():
            return load_template_file(path)
    if name in SHIPPED:
        return shipped_template(name)
    return None
