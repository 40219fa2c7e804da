"""Output formats for decisions and diagnostics: text, json, junit, sarif, github.

Formatters are pure: they take a `Report` (or diagnostics) and return a string; the command
writes it. Each machine format is shaped for its real consumer (jq, JUnit readers, GitHub
code scanning, workflow commands) and tested against it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import policy_engine
from policy_engine.decision import Decision
from policy_engine.diagnostics import render_text
from policy_engine.errors import Diagnostic, Severity
from policy_engine.pretty_json import dumps_indented, plain_float

if TYPE_CHECKING:
    import xml.etree.ElementTree as ET

FORMATS = ("text", "json", "junit", "sarif", "github")
DOCS_URI = "https://github.com/policy-engine/policy-engine/blob/main/docs/rules-reference.md"


@dataclass(frozen=True, slots=True)
class Brief:
    """What a run's report and exit code read of a decision: its outcome, its reason and
    how many warnings it has (`PackResult.brief`)."""

    outcome: str
    reason: str | None
    warnings: int


@dataclass(frozen=True, slots=True)
class PackResult:
    """One pack's outcome: a decision, or the diagnostics that stopped it.

    A `--jobs` worker that has written a result's JSON entry (`with_json_item`) sends the
    entry and the decision's `Brief` back instead of the decision: pickling the decision
    and its trace cost the parent more than a third of what evaluating the pack had cost
    the worker, and the JSON report reads nothing else of it."""

    file: str
    decision: Decision | None = None
    problems: tuple[Diagnostic, ...] = ()
    seconds: float = 0.0
    #: this result as it stands in the JSON report (`result_json_text`), when a `--jobs`
    #: worker has already written it
    json_item: str | None = field(default=None, compare=False, repr=False)
    #: the decision's brief, when the worker kept the entry and dropped the decision
    briefed: Brief | None = None

    def brief(self) -> Brief | None:
        """The decision's brief; None for an invalid pack."""
        if self.briefed is not None:
            return self.briefed
        d = self.decision
        return None if d is None else Brief(d.outcome, d.reason, len(d.warnings))

    @property
    def status(self) -> str:
        brief = self.brief()
        return "invalid" if brief is None else brief.outcome


@dataclass(frozen=True, slots=True)
class Report:
    """What `policy eval` found; `failed` and `exit`'s notion of failure are the same
    function, so every format's counts agree with the exit code."""

    results: tuple[PackResult, ...]
    fail_on_warn: bool = False
    seconds: float = 0.0

    def failure(self, r: PackResult) -> str | None:
        """Why this pack fails the run ("blocked", "warning"), None if it passes; invalid
        packs are errors, not failures."""
        brief = r.brief()
        if brief is None:
            return None
        if brief.outcome == "blocked":
            return "blocked"
        if self.fail_on_warn and brief.warnings:
            return "warning"
        return None


def blocked_line(reason: str | None, file: str) -> str:
    """The agent's contract line on stderr, naming the pack (one line per blocked pack)."""
    return json.dumps(
        {
            "error": "budget_blocked",
            "message": f"alpha generation blocked by budget policy: {reason}",
            "pack": file,
        },
        separators=(",", ":"),
        ensure_ascii=False,
    )


def summary_counts(results: Sequence[PackResult]) -> dict[str, int]:
    counts = {k: sum(1 for r in results if r.status == k) for k in ("allowed", "trimmed", "blocked", "invalid")}
    counts["packs"] = len(results)
    counts["warnings"] = sum(brief.warnings for brief in map(PackResult.brief, results) if brief is not None)
    return counts


def summary_line(results: Sequence[PackResult]) -> str:
    counts = summary_counts(results)
    text = f"{len(results)} pack{'s' if len(results) != 1 else ''}: {counts['allowed']} allowed, {counts['trimmed']} trimmed, {counts['blocked']} blocked"
    if counts["invalid"]:
        text += f", {counts['invalid']} invalid"
    return text


# ---- limits in words -------------------------------------------------------------------


def _amount(value: int, unit: str) -> str:
    if unit == "micro_usd":
        whole, frac = divmod(value, 1_000_000)
        return f"${whole:,}.{frac:06d}".rstrip("0").rstrip(".")
    return f"{value:,} tokens"


def blocking_limit(decision: Decision) -> tuple[str, Mapping[str, Any]] | None:
    """The limit a blocked decision failed: its reason when that is a metric, else the
    first failing metric (a custom `on exhausted block "reason"`)."""
    for metric in (decision.reason, *decision.reasons):
        if metric and metric in decision.limits:
            return metric, decision.limits[metric]
    return None


def limit_words(decision: Decision) -> str:
    """`limit request_prompt: request_prompt <= 12,000 tokens` for the limit that blocked."""
    found = blocking_limit(decision)
    if found is None:
        return f"reason {decision.reason}"
    metric, info = found
    return f"limit {info['rule']}: {metric} <= {_amount(int(info['effective']), str(info['unit']))}"


def _limit_text(decision: Decision) -> str:
    limit = decision.limits.get("request_prompt")
    tokens = decision.metrics["prompt_tokens"]
    if limit:
        return f"prompt {tokens:,} / {limit['effective']:,} tokens"
    return f"prompt {tokens:,} tokens"


# ---- text and json ---------------------------------------------------------------------


def decision_text(report: Report, sources: Mapping[str, str] | None = None) -> str:
    lines = []
    for r in report.results:
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
            detail += f", reason {d.reason} ({limit_words(d)})"
        topk = ", ".join(f"{k} {v}" for k, v in d.selected_topk.items())
        lines.append(f"{tag:<8} {r.file}: {detail}; kept {topk}")
        for w in d.warnings:
            lines.append(f"         warning {w.code}: {w.message}")
    if len(report.results) > 1:
        lines.append(summary_line(report.results))
    return "\n".join(lines) + "\n"


def _result_item(r: PackResult) -> dict[str, Any]:
    item: dict[str, Any] = {"file": r.file, "outcome": r.status}
    if r.decision is not None:
        item["decision"] = r.decision.to_dict()
    else:
        item["errors"] = [d.to_dict() for d in r.problems]
    return item


def result_json_text(r: PackResult) -> str:
    """One result's entry in the JSON report's ``results`` list, indented for that depth:
    what ``json.dumps(..., indent=2)`` prints there (a nested value's lines are its own,
    moved right by its depth; JSON strings hold no raw newline)."""
    # a decision's only float is its novelty (tests/test_decision_json.py holds it to that)
    plain = r.decision is None or plain_float(r.decision.kpis.get("novelty"))
    text = dumps_indented(_result_item(r), indent=2, sort_keys=True, ensure_ascii=False, plain_floats=plain)
    return "    " + text.replace("\n", "\n    ")


def with_json_item(r: PackResult) -> PackResult:
    """``r`` as its JSON entry and its decision's brief: a `--jobs` worker writes the
    entry, so the parent only joins the entries (writing them was most of the parent's
    serial work), and sends no decision back (see `PackResult`)."""
    if r.decision is None:
        return dataclasses.replace(r, json_item=result_json_text(r))
    return PackResult(r.file, None, r.problems, r.seconds, json_item=result_json_text(r), briefed=r.brief())


def decision_json(report: Report) -> str:
    """One document whatever the number of packs: `results` (file, outcome, and the
    decision or the errors) and a `summary`. Deterministic: no timings. Assembled from
    each result's entry, byte for byte ``json.dumps({"results": [...], "summary": {...}},
    indent=2, sort_keys=True, ensure_ascii=False)`` (tests/cli/test_corpus.py)."""
    entries = [r.json_item if r.json_item is not None else result_json_text(r) for r in report.results]
    results = "[\n" + ",\n".join(entries) + "\n  ]" if entries else "[]"
    summary = dumps_indented(summary_counts(report.results), indent=2, sort_keys=True, ensure_ascii=False)
    return '{\n  "results": ' + results + ',\n  "summary": ' + summary.replace("\n", "\n  ") + "\n}\n"


# ---- junit -----------------------------------------------------------------------------


def _seconds(value: float) -> str:
    return f"{value:.3f}"


def _junit(name: str, cases: list[ET.Element], seconds: float) -> str:
    import xml.etree.ElementTree as ET  # only for JUnit output

    failures = sum(1 for c in cases if c.find("failure") is not None)
    errors = sum(1 for c in cases if c.find("error") is not None)
    counts = {
        "tests": str(len(cases)),
        "failures": str(failures),
        "errors": str(errors),
        "skipped": "0",
        "time": _seconds(seconds),
    }
    root = ET.Element("testsuites", {"name": name, **counts})
    suite = ET.SubElement(root, "testsuite", {"name": name, **counts})
    suite.extend(cases)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def decision_junit(report: Report) -> str:
    """One testcase per pack: blocked (or warned, with --fail-on-warn) is a failure, an
    invalid pack an error; so `failures + errors > 0` exactly when the exit code is not 0."""
    import xml.etree.ElementTree as ET  # only for JUnit output

    cases = []
    for r in report.results:
        case = ET.Element("testcase", classname="policy.eval", name=r.file, file=r.file, time=_seconds(r.seconds))
        why = report.failure(r)
        if r.decision is None:
            err = ET.SubElement(
                case, "error", type="invalid_input", message=r.problems[0].message if r.problems else "invalid"
            )
            err.text = render_text(r.problems)
        elif why == "blocked":
            fail = ET.SubElement(
                case,
                "failure",
                type=r.decision.reason or "blocked",
                message=f"blocked by budget policy: {r.decision.reason} ({limit_words(r.decision)})",
            )
            fail.text = _limit_text(r.decision)
        elif why == "warning":
            fail = ET.SubElement(
                case, "failure", type="warning", message=f"{len(r.decision.warnings)} warning(s) with --fail-on-warn"
            )
            fail.text = "\n".join(f"{w.code}: {w.message}" for w in r.decision.warnings)
        else:
            out = ET.SubElement(case, "system-out")
            out.text = f"{r.decision.outcome}: {_limit_text(r.decision)}" + "".join(
                f"\nwarning {w.code}: {w.message}" for w in r.decision.warnings
            )
        cases.append(case)
    return _junit("policy eval", cases, report.seconds)


# ---- sarif -----------------------------------------------------------------------------


def _catalogue() -> dict[str, tuple[str, str]]:
    from policy_engine.adapters.codes import CODES as ADAPTERS
    from policy_engine.cli.codes import CODES as CLI
    from policy_engine.dsl.codes import CODES as DSL
    from policy_engine.packs.codes import CODES as PACKS
    from policy_engine.render.codes import CODES as RENDER
    from policy_engine.tokens.codes import CODES as TOKENS

    return {**DSL, **PACKS, **RENDER, **TOKENS, **CLI, **ADAPTERS}


_BUDGET_RULES = {
    "request_prompt": "the prompt exceeds its token limit",
    "request_completion": "the completion budget exceeds its token limit",
    "batch_total": "the batch's tokens would exceed their limit",
    "day_total": "the day's tokens would exceed their limit",
    "request_usd": "the request's cost exceeds its USD limit",
    "batch_usd": "the batch's cost would exceed its USD limit",
    "day_usd": "the day's cost would exceed its USD limit",
    "explore_floor": "the explore floor is not held",
}


def _rule(rule_id: str) -> dict[str, Any]:
    if rule_id.startswith("budget/"):
        metric = rule_id.split("/", 1)[1]
        title = _BUDGET_RULES.get(metric, f"blocked: {metric}")
        fix = "trim the pack, raise the limit, or add a ladder stage that reaches it"
        anchor = "lanes-floor-and-top-k" if metric == "explore_floor" else "limits"
    else:
        title, fix = _catalogue().get(rule_id, (rule_id, "see the rules reference"))
        anchor = "error-codes"
    name = "".join(w.capitalize() for w in "".join(c if c.isalnum() else " " for c in title).split())
    return {
        "id": rule_id,
        "name": name,
        "shortDescription": {"text": title},
        "fullDescription": {"text": f"{title}: {fix}"},
        "help": {
            "text": fix,
            "markdown": f"**{rule_id}** {title}. Fix: {fix}. See [the rules reference]({DOCS_URI}#{anchor}).",
        },
        "helpUri": f"{DOCS_URI}#{anchor}",
    }


def _artifact(file: str) -> dict[str, Any]:
    """A URI relative to the working directory (the checkout, under %SRCROOT%) when the
    file is inside it, as code scanning expects; an absolute file URI otherwise."""
    if file.startswith("<"):
        return {"uri": quote(file.strip("<>"))}
    path = Path(file)
    absolute = path if path.is_absolute() else Path.cwd() / path
    try:
        rel = Path(os.path.normpath(absolute)).relative_to(Path.cwd())
    except ValueError:
        return {"uri": Path(os.path.normpath(absolute)).as_uri()}
    return {"uri": quote(rel.as_posix()), "uriBaseId": "%SRCROOT%"}


def _location(
    file: str, line: int | None = None, column: int | None = None, message: str | None = None
) -> dict[str, Any]:
    physical: dict[str, Any] = {"artifactLocation": _artifact(file)}
    if line:
        physical["region"] = {"startLine": line, "startColumn": max(column or 1, 1)}
    loc: dict[str, Any] = {"physicalLocation": physical}
    if message:
        loc["message"] = {"text": message}
    return loc


def _fingerprint(*parts: str) -> dict[str, str]:
    """Stable across runs and line moves: what is wrong and where, not the numbers."""
    digest = hashlib.sha256("\0".join(parts).encode("utf-8")).hexdigest()[:32]
    return {"policyEngine/v1": digest}


def _diag_sarif(d: Diagnostic) -> dict[str, Any]:
    if d.span is not None:
        loc = _location(d.span.file, d.span.line or None, d.span.column or None)
        where = d.span.file
    else:
        where = d.file or "<input>"
        loc = _location(where)
        if d.pointer is not None:
            loc["logicalLocations"] = [{"fullyQualifiedName": d.pointer or "/", "kind": "member"}]
    message = d.message + (f" (hint: {d.hint})" if d.hint else "")
    out: dict[str, Any] = {
        "ruleId": d.code,
        "level": "warning" if d.severity is Severity.WARNING else "error",
        "message": {"text": message},
        "locations": [loc],
        "partialFingerprints": _fingerprint(d.code, _artifact(where)["uri"], d.message, d.pointer or ""),
    }
    if d.related:
        out["relatedLocations"] = [
            {**_location(span.file, span.line or None, span.column or None, note), "id": i}
            for i, (span, note) in enumerate(d.related)
        ]
    return out


def _sarif(results: list[dict[str, Any]]) -> str:
    rule_ids = sorted({r["ruleId"] for r in results})
    for r in results:
        r["ruleIndex"] = rule_ids.index(r["ruleId"])
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
                        "rules": [_rule(rid) for rid in rule_ids],
                    }
                },
                "originalUriBaseIds": {"%SRCROOT%": {"uri": Path.cwd().as_uri() + "/"}},
                "results": results,
            }
        ],
    }
    return dumps_indented(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def _limit_location(decision: Decision) -> dict[str, Any] | None:
    found = blocking_limit(decision)
    if found is None:
        return None
    _, info = found
    span = info.get("span") or {}
    if not span.get("file") or not span.get("line"):
        return None
    return _location(str(span["file"]), int(span["line"]), int(span.get("column") or 1), limit_words(decision))


def decision_sarif(report: Report) -> str:
    out: list[dict[str, Any]] = []
    for r in report.results:
        if r.decision is None:
            out.extend(_diag_sarif(d) for d in r.problems)
            continue
        d = r.decision
        if d.outcome == "blocked":
            result: dict[str, Any] = {
                "ruleId": f"budget/{(blocking_limit(d) or (d.reason or 'blocked',))[0]}",
                "level": "error",
                "message": {"text": f"blocked by budget policy: {d.reason} ({_limit_text(d)}; {limit_words(d)})"},
                "locations": [_location(r.file, 1, 1)],
                "partialFingerprints": _fingerprint("blocked", _artifact(r.file)["uri"], str(d.reason)),
            }
            limit = _limit_location(d)
            if limit is not None:
                result["relatedLocations"] = [{**limit, "id": 0}]
            out.append(result)
        level = "error" if report.fail_on_warn else "warning"
        for w in d.warnings:
            out.append(
                {
                    "ruleId": f"budget/{w.code}",
                    "level": level,
                    "message": {"text": w.message},
                    "locations": [_location(r.file, 1, 1)],
                    "partialFingerprints": _fingerprint("warning", _artifact(r.file)["uri"], w.code, w.rule or ""),
                }
            )
    return _sarif(out)


# ---- github workflow commands ------------------------------------------------------------


def _gh_escape(text: str, prop: bool = False) -> str:
    text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    if prop:
        text = text.replace(":", "%3A").replace(",", "%2C")
    return text


def _gh(
    level: str,
    message: str,
    *,
    file: str | None = None,
    line: int | None = None,
    col: int | None = None,
    title: str | None = None,
) -> str:
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
    level = "warning" if d.severity is Severity.WARNING else "error"
    if d.span is not None:
        return _gh(level, message, file=d.span.file, line=d.span.line or None, col=d.span.column or None, title=d.code)
    return _gh(level, message, file=d.file, title=d.code)


def decision_github(report: Report) -> str:
    lines: list[str] = []
    for r in report.results:
        if r.decision is None:
            lines.extend(_diag_github(d) for d in r.problems)
            continue
        d = r.decision
        if d.outcome == "blocked":
            lines.append(
                _gh(
                    "error",
                    f"blocked by budget policy: {d.reason} ({_limit_text(d)})",
                    file=r.file,
                    title=f"budget blocked by {limit_words(d)}",
                )
            )
        elif d.outcome == "trimmed":
            lines.append(
                _gh(
                    "notice",
                    f"trimmed in {d.fallback_count} rung(s): {_limit_text(d)}",
                    file=r.file,
                    title="budget trimmed",
                )
            )
        level = "error" if report.fail_on_warn else "warning"
        for w in d.warnings:
            lines.append(_gh(level, w.message, file=r.file, title=f"budget warning: {w.code}"))
    lines.append(summary_line(report.results))
    return "\n".join(lines) + "\n"


DECISION_FORMATS: dict[str, Callable[..., str]] = {
    "text": decision_text,
    "json": lambda report, sources=None: decision_json(report),
    "junit": lambda report, sources=None: decision_junit(report),
    "sarif": lambda report, sources=None: decision_sarif(report),
    "github": lambda report, sources=None: decision_github(report),
    "html": lambda report, sources=None: _html(report),
}


def _html(report: Report) -> str:
    from policy_engine.cli.html_report import decision_html  # the dashboard extra, on demand

    return decision_html(report.results)


# ---- diagnostics (policy check) -------------------------------------------------------


def check_junit(problems: Sequence[Diagnostic], checked: Sequence[str], seconds: float = 0.0) -> str:
    """One testcase per rule file; a file with errors has one failure listing them all
    (warnings go to system-out), so `failures > 0` exactly when `check` exits 3."""
    import xml.etree.ElementTree as ET  # only for JUnit output

    by_file: dict[str, list[Diagnostic]] = {}
    for d in problems:
        by_file.setdefault(d.span.file if d.span else (d.file or "<input>"), []).append(d)
    names = list(checked) + [name for name in by_file if name not in checked]
    cases = []
    for name in names or ["<rules>"]:
        case = ET.Element("testcase", classname="policy.check", name=name, file=name, time=_seconds(0.0))
        items = by_file.get(name, [])
        errors = [d for d in items if d.severity is not Severity.WARNING]
        warnings = [d for d in items if d.severity is Severity.WARNING]
        if errors:
            first = errors[0]
            message = f"{len(errors)} problem{'s' if len(errors) != 1 else ''}; first: {first.location}: {first.code} {first.message}"
            ET.SubElement(case, "failure", type=first.code, message=message).text = render_text(errors)
        if warnings:
            ET.SubElement(case, "system-out").text = render_text(warnings)
        cases.append(case)
    return _junit("policy check", cases, seconds)


def check_output(
    fmt: str, problems: Sequence[Diagnostic], sources: Mapping[str, str], checked: Sequence[str], seconds: float = 0.0
) -> str:
    errors = [d for d in problems if d.severity is not Severity.WARNING]
    warnings = [d for d in problems if d.severity is Severity.WARNING]
    if fmt == "text":
        n = len(checked)
        files = f"{n} rule file{'s' if n != 1 else ''}"
        tail = f"{len(warnings)} warning{'s' if len(warnings) != 1 else ''}" if warnings else ""
        if not errors:
            return (
                render_text(problems, sources) * bool(problems)
                + f"{files} checked: no problems"
                + (f", {tail}" if tail else "")
                + "\n"
            )
        return (
            render_text(problems, sources)
            + f"{len(errors)} problem{'s' if len(errors) != 1 else ''}"
            + (f" and {tail}" if tail else "")
            + f" in {files}\n"
        )
    if fmt == "json":
        return (
            json.dumps(
                {"checked": list(checked), "problems": [d.to_dict() for d in problems]}, sort_keys=True, indent=2
            )
            + "\n"
        )
    if fmt == "junit":
        return check_junit(problems, checked, seconds)
    if fmt == "sarif":
        return _sarif([_diag_sarif(d) for d in problems])
    lines = [_diag_github(d) for d in problems]
    return "\n".join(lines) + ("\n" if lines else "")
