"""Output formats for decisions and diagnostics: text (rich), json, junit, sarif, github.

Formatters are pure: they return strings; the command writes them. A name → formatter
dict makes adding one a one-line change.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import policy_engine
from policy_engine.decision import Decision
from policy_engine.diagnostics import render_text
from policy_engine.errors import Diagnostic

FORMATS = ("text", "json", "junit", "sarif", "github")


@dataclass(frozen=True, slots=True)
class PackResult:
    """One pack's outcome: a decision, or the diagnostics that stopped it."""

    file: str
    decision: Decision | None = None
    problems: tuple[Diagnostic, ...] = ()

    @property
    def status(self) -> str:
        return "invalid" if self.decision is None else self.decision.outcome


def blocked_line(decision: Decision) -> str:
    return json.dumps({"error": "budget_blocked", "message": f"alpha generation blocked by budget policy: {decision.reason}"}, separators=(",", ":"))


def summary_line(results: Sequence[PackResult]) -> str:
    counts = {k: sum(1 for r in results if r.status == k) for k in ("allowed", "trimmed", "blocked", "invalid")}
    text = f"{len(results)} pack{'s' if len(results) != 1 else ''}: {counts['allowed']} allowed, {counts['trimmed']} trimmed, {counts['blocked']} blocked"
    if counts["invalid"]:
        text += f", {counts['invalid']} invalid"
    return text


# ---- decisions -------------------------------------------------------------------------

def _limit_text(decision: Decision) -> str:
    limit = decision.limits.get("request_prompt")
    tokens = decision.metrics["prompt_tokens"]
    if limit:
        return f"prompt {tokens:,} / {limit['effective']:,} tokens"
    return f"prompt {tokens:,} tokens"


def decision_text(results: Sequence[PackResult], sources: Mapping[str, str] | None = None) -> str:
    lines = []
    for r in results:
        if r.decision is None:
            lines.append(f"INVALID  {r.file}")
            lines.append(render_text(r.problems, sources).rstrip("\n"))
            continue
        d = r.decision
        tag = {"allowed": "ALLOWED", "trimmed": "TRIMMED", "blocked": "BLOCKED"}[d.outcome]
        detail = _limit_text(d)
        if d.outcome == "trimmed":
            detail += f", {d.fallback_count} rung{'s' if d.fallback_count != 1 else ''}"
        if d.outcome == "blocked":
            detail += f", reason {d.reason}"
        topk = ", ".join(f"{k} {v}" for k, v in d.selected_topk.items())
        lines.append(f"{tag:<8} {r.file}: {detail}; kept {topk}")
        for w in d.warnings:
            lines.append(f"         warning {w.code}: {w.message}")
    if len(results) > 1:
        lines.append(summary_line(results))
    return "\n".join(lines) + "\n"


def decision_json(results: Sequence[PackResult]) -> str:
    if len(results) == 1:
        r = results[0]
        if r.decision is not None:
            return r.decision.to_json()
        return json.dumps({"file": r.file, "errors": [d.to_dict() for d in r.problems]}, sort_keys=True, indent=2) + "\n"
    out = []
    for r in results:
        if r.decision is not None:
            out.append(json.dumps({"file": r.file, "decision": r.decision.to_dict()}, sort_keys=True, separators=(",", ":"), ensure_ascii=False))
        else:
            out.append(json.dumps({"file": r.file, "errors": [d.to_dict() for d in r.problems]}, sort_keys=True, separators=(",", ":")))
    return "\n".join(out) + "\n"


def decision_junit(results: Sequence[PackResult]) -> str:
    suite = ET.Element("testsuite", name="policy eval", tests=str(len(results)))
    failures = errors = 0
    for r in results:
        case = ET.SubElement(suite, "testcase", classname="policy.eval", name=r.file)
        if r.decision is None:
            errors += 1
            err = ET.SubElement(case, "error", type="invalid_input", message=r.problems[0].message if r.problems else "invalid")
            err.text = render_text(r.problems)
        elif r.decision.outcome == "blocked":
            failures += 1
            fail = ET.SubElement(case, "failure", type=r.decision.reason or "blocked", message=f"blocked by budget policy: {r.decision.reason}")
            fail.text = _limit_text(r.decision)
        else:
            out = ET.SubElement(case, "system-out")
            out.text = f"{r.decision.outcome}: {_limit_text(r.decision)}"
    suite.set("failures", str(failures))
    suite.set("errors", str(errors))
    return ET.tostring(suite, encoding="unicode", xml_declaration=True) + "\n"


def _sarif(results: list[dict[str, Any]], rules: dict[str, str]) -> str:
    doc = {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "policy_engine",
                        "version": policy_engine.__version__,
                        "informationUri": "https://github.com/policy-engine/policy-engine",
                        "rules": [{"id": rid, "shortDescription": {"text": text}} for rid, text in sorted(rules.items())],
                    }
                },
                "results": results,
            }
        ],
    }
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


def _sarif_location(file: str, line: int | None = None, column: int | None = None) -> dict[str, Any]:
    physical: dict[str, Any] = {"artifactLocation": {"uri": file}}
    if line:
        physical["region"] = {"startLine": line, "startColumn": max(column or 1, 1)}
    return {"physicalLocation": physical}


def _diag_sarif(d: Diagnostic) -> dict[str, Any]:
    if d.span is not None:
        loc = _sarif_location(d.span.file, d.span.line or None, d.span.column or None)
    else:
        loc = _sarif_location(d.file or "<input>")
        if d.pointer is not None:
            loc["logicalLocations"] = [{"fullyQualifiedName": d.pointer or "/", "kind": "member"}]
    message = d.message + (f" (hint: {d.hint})" if d.hint else "")
    return {"ruleId": d.code, "level": "error" if d.severity.value == "error" else "warning", "message": {"text": message}, "locations": [loc]}


def decision_sarif(results: Sequence[PackResult]) -> str:
    out: list[dict[str, Any]] = []
    rules: dict[str, str] = {}
    for r in results:
        if r.decision is None:
            for d in r.problems:
                out.append(_diag_sarif(d))
                rules[d.code] = "invalid input"
            continue
        d = r.decision
        if d.outcome == "blocked":
            rules[f"budget/{d.reason}"] = f"blocked by the {d.reason} limit"
            out.append({"ruleId": f"budget/{d.reason}", "level": "error", "message": {"text": f"blocked by budget policy: {d.reason} ({_limit_text(d)})"}, "locations": [_sarif_location(r.file)]})
        for w in d.warnings:
            rules[f"budget/{w.code}"] = f"warning: {w.code}"
            out.append({"ruleId": f"budget/{w.code}", "level": "warning", "message": {"text": w.message}, "locations": [_sarif_location(r.file)]})
    return _sarif(out, rules)


def _gh_escape(text: str, prop: bool = False) -> str:
    text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    if prop:
        text = text.replace(":", "%3A").replace(",", "%2C")
    return text


def _gh(level: str, message: str, *, file: str | None = None, line: int | None = None, col: int | None = None, title: str | None = None) -> str:
    props = []
    if file:
        props.append(f"file={_gh_escape(file, True)}")
    if line:
        props.append(f"line={line}")
    if col:
        props.append(f"col={col}")
    if title:
        props.append(f"title={_gh_escape(title, True)}")
    return f"::{level} {','.join(props)}::{_gh_escape(message)}" if props else f"::{level}::{_gh_escape(message)}"


def _diag_github(d: Diagnostic) -> str:
    message = d.message + (f" (hint: {d.hint})" if d.hint else "")
    if d.span is not None:
        return _gh("error", message, file=d.span.file, line=d.span.line or None, col=d.span.column or None, title=d.code)
    return _gh("error", message, file=d.file, title=d.code)


def decision_github(results: Sequence[PackResult]) -> str:
    lines = []
    for r in results:
        if r.decision is None:
            lines.extend(_diag_github(d) for d in r.problems)
            continue
        d = r.decision
        if d.outcome == "blocked":
            lines.append(_gh("error", f"blocked by budget policy: {d.reason} ({_limit_text(d)})", file=r.file, title=f"budget_blocked: {d.reason}"))
        elif d.outcome == "trimmed":
            lines.append(_gh("notice", f"trimmed in {d.fallback_count} rung(s): {_limit_text(d)}", file=r.file, title="budget_trimmed"))
        for w in d.warnings:
            lines.append(_gh("warning", w.message, file=r.file, title=w.code))
    lines.append(summary_line(results))
    return "\n".join(lines) + "\n"


DECISION_FORMATS: dict[str, Callable[..., str]] = {
    "text": decision_text,
    "json": lambda results, sources=None: decision_json(results),
    "junit": lambda results, sources=None: decision_junit(results),
    "sarif": lambda results, sources=None: decision_sarif(results),
    "github": lambda results, sources=None: decision_github(results),
    "html": lambda results, sources=None: _html(results),
}


def _html(results: Sequence[PackResult]) -> str:
    from policy_engine.cli.html_report import decision_html  # the dashboard extra, on demand

    return decision_html(results)


# ---- diagnostics (policy check) -------------------------------------------------------

def check_junit(problems: Sequence[Diagnostic], checked: Sequence[str]) -> str:
    suite = ET.Element("testsuite", name="policy check", tests=str(max(len(checked), 1)), failures=str(len(problems)), errors="0")
    by_file: dict[str, list[Diagnostic]] = {}
    for d in problems:
        by_file.setdefault(d.span.file if d.span else (d.file or "<input>"), []).append(d)
    for name in checked or ["<rules>"]:
        case = ET.SubElement(suite, "testcase", classname="policy.check", name=name)
        for d in by_file.pop(name, []):
            fail = ET.SubElement(case, "failure", type=d.code, message=f"{d.location}: {d.message}")
            fail.text = d.hint
    for name, items in by_file.items():
        case = ET.SubElement(suite, "testcase", classname="policy.check", name=name)
        for d in items:
            ET.SubElement(case, "failure", type=d.code, message=f"{d.location}: {d.message}").text = d.hint
    return ET.tostring(suite, encoding="unicode", xml_declaration=True) + "\n"


def check_output(fmt: str, problems: Sequence[Diagnostic], sources: Mapping[str, str], checked: Sequence[str]) -> str:
    if fmt == "text":
        if not problems:
            return f"{len(checked)} rule file{'s' if len(checked) != 1 else ''} checked: no problems\n"
        return render_text(problems, sources) + f"{len(problems)} problem{'s' if len(problems) != 1 else ''} in {len(checked)} rule file{'s' if len(checked) != 1 else ''}\n"
    if fmt == "json":
        return json.dumps({"checked": list(checked), "problems": [d.to_dict() for d in problems]}, sort_keys=True, indent=2) + "\n"
    if fmt == "junit":
        return check_junit(problems, checked)
    if fmt == "sarif":
        return _sarif([_diag_sarif(d) for d in problems], {d.code: d.message.split(":")[0] for d in problems})
    lines = [_diag_github(d) for d in problems]
    return "\n".join(lines) + ("\n" if lines else "")
