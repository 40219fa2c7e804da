"""`policy fit PACK`: what would make this pack fit, every answer checked by evaluating the
changed policy; and how many calls of this size the batch and day budgets still hold."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from policy_engine.cli.exit_codes import ExitCode


def register(sub: Any, inputs: Any) -> None:
    p = sub.add_parser(
        "fit",
        help="what would make a pack fit (smallest limits, cheapest changes), each checked by evaluation",
        description="For a trimmed or blocked pack: the smallest limits under which the untrimmed pack fits; for a blocked "
        "pack, which limit blocked and by how many tokens, and the cheapest changes that would allow it "
        "(raise that limit; add a rung on one pool; lower a stage minimum or the explore floor), each checked "
        "by evaluating the changed policy. Also: calls of this size the batch and day limits still hold.",
    )
    p.add_argument("pack", metavar="PACK")
    inputs(p)
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.set_defaults(run=cmd_fit)


def cmd_fit(args: argparse.Namespace) -> int:
    from policy_engine.cli.commands import _inputs, load_rules, pack_paths
    from policy_engine.fit import fit
    from policy_engine.packs import load_pack, read_pack_document

    policy = load_rules(args)
    common = _inputs(args)
    (path,) = pack_paths([args.pack])
    doc, label = read_pack_document(path)
    pools = load_pack(doc, file=label, idea=common["idea"])
    report = fit(
        policy,
        pools,
        usage=common["usage"],
        request=common["request"],
        idea=common["idea"],
        knowledge=common["knowledge"],
    )
    if args.format == "json":
        sys.stdout.write(
            json.dumps({"file": label, **report.to_json()}, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        )
    else:
        sys.stdout.write(fit_text(report, label))
    return ExitCode.OK


def _result(c: Any) -> str:
    sizes = ", ".join(f"{k} {v}" for k, v in c.sizes.items())
    rungs = f", {c.fallback_count} rung{'s' if c.fallback_count != 1 else ''}" if c.fallback_count else ""
    return f"{c.outcome} at {c.prompt_tokens:,} tokens{rungs} ({sizes})"


def fit_text(report: Any, label: str) -> str:
    d = report.decision
    limits = d.limits
    out = []
    if d.outcome == "blocked":
        overs = "; ".join(
            f"{m} by {report.over[m]:,} ({limits[m]['actual']:,} > {limits[m]['effective']:,})" for m in report.over
        )
        out.append(f"{label}: BLOCKED by {overs} after {d.fallback_count} rung{'s' if d.fallback_count != 1 else ''}")
    elif d.outcome == "trimmed":
        out.append(
            f"{label}: TRIMMED to {d.metrics['prompt_tokens']:,} tokens in {d.fallback_count} rung{'s' if d.fallback_count != 1 else ''}"
        )
    else:
        out.append(f"{label}: ALLOWED untrimmed at {d.metrics['prompt_tokens']:,} tokens")
    out.append(f"untrimmed prompt: {report.untrimmed_tokens:,} tokens")
    if report.untrimmed_fit:
        out.append("smallest limits under which the untrimmed pack fits (checked):")
        for c in report.untrimmed_fit:
            where = f"  [{c.where}]" if c.where else ""
            mark = "" if c.minimal else "  (not verified minimal)"
            out.append(f"  {c.change} (now {c.value - c.delta:,}, +{c.delta:,}){where}{mark}")
        if report.untrimmed_fit_checked is not None:
            out.append(f"  -> {_result(report.untrimmed_fit_checked)}")
    if d.outcome == "blocked":
        out.append("cheapest changes that would allow it (each checked by evaluating the changed policy):")
        if not report.changes:
            out.append("  none of the single changes tried allows it")
        for c in report.changes:
            where = f"  [{c.where}]" if c.where else ""
            out.append(f"  {c.change}{where}")
            out.append(f"    -> {_result(c)}")
        for note in report.not_enough:
            out.append(f"  not enough: {note}")
    if report.remaining:
        out.append("batch and day budgets (from the usage before this call, this call included):")
        for r in report.remaining:
            unit = "tokens" if r.metric.endswith("_total") else "micro-USD"
            if r.calls is None:
                out.append(f"  {r.metric}: calls of this size cost 0 {unit}: no limit on their number")
            else:
                left = (
                    f"{r.limit - r.used:,} of {r.limit:,} left"
                    if r.used <= r.limit
                    else f"{r.used:,} already used of {r.limit:,}"
                )
                out.append(
                    f"  {r.metric}: {r.calls:,} call{'s' if r.calls != 1 else ''} of {r.per_call:,} {unit} ({left})"
                )
    return "\n".join(out) + "\n"
