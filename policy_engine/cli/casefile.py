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

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from policy_engine.decision import Decision
from policy_engine.errors import UsageInputError


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


def load_cases(path: Path) -> list[Case]:
    """Read (bounded, UTF-8, YAML without aliases), then validate against
    schemas/testcases.schema.json, so every problem has a JSON Pointer and nothing of the
    wrong type reaches the comparison (a string where a count belongs, say)."""
    from policy_engine.packs.validate import schema_diagnostics
    from policy_engine.reading import decode_utf8, parse_yaml_text, read_bounded
    from policy_engine.reading.bounds import SMALL_DOCUMENT_BOUNDS

    raw, label = read_bounded(path, SMALL_DOCUMENT_BOUNDS, error=UsageInputError)
    text = decode_utf8(raw, label, error=UsageInputError, code="P116")
    doc = parse_yaml_text(text, label, error=UsageInputError, code="P116", bounds=SMALL_DOCUMENT_BOUNDS)
    problems = schema_diagnostics(doc, "testcases", label, "P116", "see `policy schema testcases`")
    if problems:
        raise UsageInputError(problems)
    base = path.parent

    def opt_path(value: Any, pointer: str) -> Path | None:
        if value is None:
            return None
        return base / Path(value)

    defaults = {k: opt_path(doc.get(k), f"/{k}") for k in ("rules", "knowledge", "idea")}
    cases = []
    for i, raw in enumerate(doc["cases"]):
        ptr = f"/cases/{i}"
        expect = raw["expect"]
        usage = raw.get("usage")
        if isinstance(usage, str):
            usage = base / usage
        cases.append(
            Case(
                name=str(raw.get("name", f"case {i + 1}")),
                file=label,
                pack=base / str(raw["pack"]),
                rules=opt_path(raw.get("rules"), f"{ptr}/rules") or defaults["rules"],
                knowledge=opt_path(raw.get("knowledge"), f"{ptr}/knowledge") or defaults["knowledge"],
                idea=opt_path(raw.get("idea"), f"{ptr}/idea") or defaults["idea"],
                usage=usage,
                expansion=raw.get("expansion", False),
                completion_tokens=raw.get("completion_tokens"),
                expect=expect,
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
