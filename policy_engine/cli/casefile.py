"""`policy test`: run policy test cases from YAML or JSON files.

A case file::

    rules: ../rules/default.policy        # optional default for its cases
    knowledge: knowledge                  # optional knowledge pack directory
    idea: ideaspec.json                   # optional idea spec
    cases:
      - name: seed pack is trimmed then allowed
        pack: packs/seed.json
        usage: {batch: {tokens: 0}}        # optional, inline or a file path
        expansion: false                  # optional
        expect:
          outcome: trimmed                # allowed | trimmed | blocked
          reason: null
          topk: {fields: 23}
          prompt_tokens: {max: 12000}

Paths are relative to the case file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from policy_engine.decision import Decision
from policy_engine.errors import Diagnostic, UsageInputError

EXPECT_KEYS = {"outcome", "allowed", "reason", "topk", "prompt_tokens", "fallback_count", "warnings"}
CASE_KEYS = {"name", "pack", "usage", "rules", "idea", "knowledge", "expansion", "completion_tokens", "expect"}


@dataclass(frozen=True, slots=True)
class Case:
    name: str
    file: str
    pack: Path
    rules: Path | None
    knowledge: Path | None
    idea: Path | None
    usage: Any
    expansion: bool
    completion_tokens: int | None
    expect: Mapping[str, Any]


@dataclass
class CaseResult:
    case: Case
    failures: list[str] = field(default_factory=list)
    decision: Decision | None = None
    error: str | None = None


def _bad(file: str, pointer: str, message: str, hint: str) -> UsageInputError:
    return UsageInputError([Diagnostic("P116", f"{pointer}: {message}", hint=hint, file=file, pointer=pointer)])


def load_cases(path: Path) -> list[Case]:
    label = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise _bad(label, "", f"cannot read ({exc.strerror})", "check the path") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise _bad(label, "", f"not valid YAML/JSON{where}", "fix the syntax") from None
    if not isinstance(doc, Mapping) or not isinstance(doc.get("cases"), list):
        raise _bad(label, "/cases", "expected a mapping with a `cases` list", "see docs/cli.md, policy test")
    base = path.parent

    def opt_path(value: Any, pointer: str) -> Path | None:
        if value is None:
            return None
        if not isinstance(value, str):
            raise _bad(label, pointer, "expected a path", "a path relative to the case file")
        return base / value

    defaults = {k: opt_path(doc.get(k), f"/{k}") for k in ("rules", "knowledge", "idea")}
    cases = []
    for i, raw in enumerate(doc["cases"]):
        ptr = f"/cases/{i}"
        if not isinstance(raw, Mapping):
            raise _bad(label, ptr, "expected a mapping", "each case has name, pack and expect")
        unknown = set(raw) - CASE_KEYS
        if unknown:
            raise _bad(label, f"{ptr}/{sorted(unknown)[0]}", "unknown key", "known: " + ", ".join(sorted(CASE_KEYS)))
        if "pack" not in raw or "expect" not in raw:
            raise _bad(label, ptr, "a case needs `pack` and `expect`", "add them")
        expect = raw["expect"]
        if not isinstance(expect, Mapping) or set(expect) - EXPECT_KEYS:
            raise _bad(label, f"{ptr}/expect", "expect holds " + ", ".join(sorted(EXPECT_KEYS)), "remove other keys")
        usage = raw.get("usage")
        if isinstance(usage, str):
            usage = base / usage
        cases.append(
            Case(
                name=str(raw.get("name", f"case {i + 1}")), file=label, pack=base / str(raw["pack"]),
                rules=opt_path(raw.get("rules"), f"{ptr}/rules") or defaults["rules"],
                knowledge=opt_path(raw.get("knowledge"), f"{ptr}/knowledge") or defaults["knowledge"],
                idea=opt_path(raw.get("idea"), f"{ptr}/idea") or defaults["idea"],
                usage=usage, expansion=bool(raw.get("expansion", False)),
                completion_tokens=raw.get("completion_tokens"), expect=expect,
            )
        )
    return cases


def compare(expect: Mapping[str, Any], decision: Decision) -> list[str]:
    """Expected-vs-actual lines for every mismatch."""
    out = []
    if "outcome" in expect and expect["outcome"] != decision.outcome:
        out.append(f"outcome: expected {expect['outcome']}, got {decision.outcome}")
    if "allowed" in expect and bool(expect["allowed"]) != decision.allowed:
        out.append(f"allowed: expected {expect['allowed']}, got {decision.allowed}")
    if "reason" in expect and expect["reason"] != decision.reason:
        out.append(f"reason: expected {expect['reason']}, got {decision.reason}")
    if "fallback_count" in expect and expect["fallback_count"] != decision.fallback_count:
        out.append(f"fallback_count: expected {expect['fallback_count']}, got {decision.fallback_count}")
    for pool, want in (expect.get("topk") or {}).items():
        got = decision.selected_topk.get(pool)
        if got != want:
            out.append(f"topk.{pool}: expected {want}, got {got}")
    bounds = expect.get("prompt_tokens") or {}
    tokens = decision.metrics["prompt_tokens"]
    if "min" in bounds and tokens < bounds["min"]:
        out.append(f"prompt_tokens: expected >= {bounds['min']}, got {tokens}")
    if "max" in bounds and tokens > bounds["max"]:
        out.append(f"prompt_tokens: expected <= {bounds['max']}, got {tokens}")
    if "warnings" in expect:
        got_codes = sorted(w.code for w in decision.warnings)
        if sorted(expect["warnings"]) != got_codes:
            out.append(f"warnings: expected {sorted(expect['warnings'])}, got {got_codes}")
    return out
