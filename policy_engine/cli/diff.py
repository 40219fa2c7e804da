"""`policy diff OLD_RULES NEW_RULES PACKS...`: what a rule change does to a corpus, for a
pull request's reviewer: the packs whose outcome, reason, rungs, sizes or prompt tokens
change, and totals and prompt-size distribution before and after. `--fail-on-change`
exits 1 when any pack changes, for CI."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from policy_engine.cli.exit_codes import ExitCode

if TYPE_CHECKING:
    from policy_engine.rule_diff import Side


def register(sub: Any) -> None:
    p = sub.add_parser(
        "diff",
        help="evaluate a corpus under two rule sets and report what changes",
        description="Evaluate every pack under OLD_RULES and NEW_RULES and report the packs whose outcome, reason, rungs, "
        "final sizes or prompt tokens change, with token and USD totals and the prompt-token distribution "
        "(min, median, p95, max; nearest rank) of the calls that would be sent, before and after.",
    )
    p.add_argument("old_rules", metavar="OLD_RULES", help="rule file or policy directory before the change")
    p.add_argument("new_rules", metavar="NEW_RULES", help="rule file or policy directory after the change")
    p.add_argument("packs", nargs="+", metavar="PACK", help="pack files or directories of *.json packs")
    p.add_argument("--usage", metavar="FILE", help="usage snapshot JSON every pack is evaluated with")
    p.add_argument("--knowledge-pack-dir", metavar="DIR", help="the agent's knowledge pack directory")
    p.add_argument("--idea", metavar="FILE", help="the idea spec JSON the prompts carry")
    p.add_argument(
        "--completion-tokens", type=int, metavar="N", help="completion budget asked for (default: each policy's)"
    )
    p.add_argument("--expansion", action="store_true", help="evaluate as repair-loop expansions")
    p.add_argument("--format", choices=("text", "json", "html"), default="text")
    p.add_argument("--output", metavar="FILE", help="write the report here instead of stdout")
    p.add_argument("--fail-on-change", action="store_true", help="exit 1 when any pack's decision changes (for CI)")
    p.set_defaults(run=cmd_diff, seen=None)


def cmd_diff(args: argparse.Namespace) -> int:
    from pathlib import Path

    from policy_engine.cli.commands import _evaluate_one, _inputs, pack_paths
    from policy_engine.diagnostics import render_text
    from policy_engine.dsl import load_policy
    from policy_engine.rule_diff import CorpusDiff, PackDiff, Side

    old, new = load_policy(args.old_rules), load_policy(args.new_rules)
    paths = pack_paths(args.packs)
    common = _inputs(args)
    diffs: list[PackDiff] = []
    invalid = []
    for path in paths:
        before, _ = _evaluate_one(old, path, common, "rules")
        if before.decision is None:
            invalid.append(before)
            continue
        after, _ = _evaluate_one(new, path, common, "rules")
        assert after.decision is not None  # the pack loaded a moment ago
        diffs.append(PackDiff(before.file, Side.of(before.decision), Side.of(after.decision)))
    report = CorpusDiff(args.old_rules, args.new_rules, tuple(diffs))
    text = {"text": diff_text, "json": diff_json, "html": diff_html}[args.format](report)
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
        print(f"{len(report.changed)} of {len(report.packs)} packs change; report in {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    for r in invalid:
        sys.stderr.write(render_text(r.problems))
    if invalid:
        return ExitCode.INVALID_INPUT
    if args.fail_on_change and report.changed:
        return ExitCode.FAILED
    return ExitCode.OK


# ---- renderers ------------------------------------------------------------------------


def _n(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def _delta(a: int | None, b: int | None) -> str:
    if a is None or b is None:
        return ""
    return f"{b - a:+,}"


def _side_text(side: Side) -> str:
    return side.outcome + (f" ({side.reason})" if side.reason else "")


def _pack_lines(p: Any) -> list[str]:
    b, a = p.before, p.after
    parts = []
    if "outcome" in p.changes or "reason" in p.changes:
        parts.append(f"{_side_text(b)} -> {_side_text(a)}")
    else:
        parts.append(_side_text(b))
    if "rungs" in p.changes:
        parts.append(f"rungs {len(b.rungs)} -> {len(a.rungs)}")
    if "sizes" in p.changes:
        old, new = dict(b.sizes), dict(a.sizes)
        parts.extend(
            f"{pool} {old.get(pool, 0)} -> {new.get(pool, 0)}" for pool in new if old.get(pool) != new.get(pool)
        )
    parts.append(
        f"prompt {b.prompt_tokens:,} -> {a.prompt_tokens:,} ({_delta(b.prompt_tokens, a.prompt_tokens)})"
        if "prompt_tokens" in p.changes
        else f"prompt {b.prompt_tokens:,}"
    )
    lines = [f"CHANGED  {p.file}: " + "; ".join(parts)]
    if "rungs" in p.changes:
        lines.append(f"         rungs before: {', '.join(b.rungs) or 'none'}")
        lines.append(f"         rungs after:  {', '.join(a.rungs) or 'none'}")
    return lines


def _summary_rows(report: Any) -> list[tuple[str, str, str, str]]:
    data = report.to_json()
    b, a = data["before"], data["after"]
    rows = [
        (
            "allowed / trimmed / blocked",
            "{allowed} / {trimmed} / {blocked}".format(**b["outcomes"]),
            "{allowed} / {trimmed} / {blocked}".format(**a["outcomes"]),
            "",
        ),
        ("calls sent", _n(b["sent_calls"]), _n(a["sent_calls"]), _delta(b["sent_calls"], a["sent_calls"])),
        (
            "prompt tokens (sent)",
            _n(b["prompt_tokens"]),
            _n(a["prompt_tokens"]),
            _delta(b["prompt_tokens"], a["prompt_tokens"]),
        ),
        (
            "request USD (sent)",
            b["request_usd"] or "unpriced",
            a["request_usd"] or "unpriced",
            ""
            if b["request_micro_usd"] is None or a["request_micro_usd"] is None
            else _usd_delta(a["request_micro_usd"] - b["request_micro_usd"]),
        ),
    ]
    for stat in ("min", "median", "p95", "max"):
        x = (b["prompt_tokens_distribution"] or {}).get(stat)
        y = (a["prompt_tokens_distribution"] or {}).get(stat)
        rows.append((f"prompt tokens {stat}", _n(x), _n(y), _delta(x, y)))
    return rows


def _usd_delta(micro: int) -> str:
    from policy_engine.decision import usd_text

    text = usd_text(abs(micro)) or "0"
    return ("-" if micro < 0 else "+") + text


def diff_text(report: Any) -> str:
    out = [
        f"policy diff {report.old_rules} -> {report.new_rules}: {len(report.changed)} of {len(report.packs)} pack{'s' if len(report.packs) != 1 else ''} change"
    ]
    for p in report.changed:
        out.extend(_pack_lines(p))
    out.append("")
    rows = [("", "before", "after", "change")] + _summary_rows(report)
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        out.append(f"{r[0]:<{widths[0]}}  {r[1]:>{widths[1]}}  {r[2]:>{widths[2]}}  {r[3]:>{widths[3]}}".rstrip())
    return "\n".join(out) + "\n"


def diff_json(report: Any) -> str:
    return json.dumps(report.to_json(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def diff_html(report: Any) -> str:
    """A self-contained page (no scripts, no external assets) to attach to a pull request.
    Built as an element tree, so every pack name and rule path is escaped."""
    import xml.etree.ElementTree as ET  # only for the HTML report

    html = ET.Element("html", lang="en")
    head = ET.SubElement(html, "head")
    ET.SubElement(head, "meta", charset="utf-8")
    ET.SubElement(head, "title").text = f"policy diff {report.old_rules} -> {report.new_rules}"
    ET.SubElement(head, "style").text = (
        "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #ccc;padding:.3em .6em;text-align:right}td:first-child,th:first-child{text-align:left}"
        ".changed{background:#fff4d6}"
    )
    body = ET.SubElement(html, "body")
    ET.SubElement(body, "h1").text = f"{len(report.changed)} of {len(report.packs)} packs change"
    ET.SubElement(body, "p").text = f"old rules: {report.old_rules} — new rules: {report.new_rules}"
    summary = ET.SubElement(body, "table", id="summary")
    row = ET.SubElement(summary, "tr")
    for h in ("", "before", "after", "change"):
        ET.SubElement(row, "th").text = h
    for cells in _summary_rows(report):
        row = ET.SubElement(summary, "tr")
        for c in cells:
            ET.SubElement(row, "td").text = c
    packs = ET.SubElement(body, "table", id="packs")
    row = ET.SubElement(packs, "tr")
    for h in (
        "pack",
        "changes",
        "outcome before",
        "outcome after",
        "rungs before",
        "rungs after",
        "sizes before",
        "sizes after",
        "prompt before",
        "prompt after",
    ):
        ET.SubElement(row, "th").text = h
    for p in report.packs:
        row = ET.SubElement(packs, "tr", attrib={"class": "changed"} if p.changes else {})
        b, a = p.before, p.after
        for c in (
            p.file,
            ", ".join(p.changes) or "none",
            _side_text(b),
            _side_text(a),
            str(len(b.rungs)),
            str(len(a.rungs)),
            " ".join(f"{k} {v}" for k, v in b.sizes),
            " ".join(f"{k} {v}" for k, v in a.sizes),
            _n(b.prompt_tokens),
            _n(a.prompt_tokens),
        ):
            ET.SubElement(row, "td").text = c
    return "<!DOCTYPE html>\n" + ET.tostring(html, encoding="unicode", method="html") + "\n"
