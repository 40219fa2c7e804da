"""`policy replay DECISION.json --pack PACK` or `policy replay --db LEDGER --call ID`:
re-evaluate a recorded call and say whether the decision is byte-identical, and if not,
which manifest entry differs and what changed. The gate records each call's inputs in the
ledger (event `budget.call_input`: pack, idea, seen combos, decision), so any gated call
replays with only the rules and the knowledge pack named again."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from policy_engine.cli.exit_codes import ExitCode
from policy_engine.errors import CommandLineError, Diagnostic, UsageInputError

_SHOWN_POINTERS = 12


def register(sub: Any, rules_opt: Any) -> None:
    p = sub.add_parser(
        "replay",
        help="re-evaluate a recorded decision and say whether it is byte-identical, and if not why",
        description="Re-evaluate the call a decision JSON records (its usage, completion budget and expansion flag "
        "come from the decision) and compare: byte-identical (exit 0), or which manifest entry differs "
        "(rules, tokenizer, engine version, prices) and what changed in the decision (exit 1).",
    )
    p.add_argument(
        "decision",
        nargs="?",
        metavar="DECISION_JSON",
        help="a decision as `policy eval --format json` writes it (its `results` entry for --pack, or a bare decision object)",
    )
    p.add_argument("--pack", metavar="PACK", help="the retrieval pack the decision was made for (with DECISION_JSON)")
    p.add_argument(
        "--db", "--ledger", dest="db", metavar="URL", help="replay a gated call from this ledger instead (with --call)"
    )
    p.add_argument(
        "--call", metavar="CALL_ID", help="the gated call's id (GateResult.call_id, the dashboard's call id)"
    )
    rules_opt(p)
    p.add_argument(
        "--knowledge-pack-dir", metavar="DIR", help="the knowledge pack the call used (not recorded in the decision)"
    )
    p.add_argument("--idea", metavar="FILE", help="the idea spec the call used")
    p.add_argument("--seen", metavar="FILE", help="the seen field::operator combos the call used (novelty KPI)")
    p.add_argument(
        "--usage", metavar="FILE", help="replay with this usage snapshot instead of the one the decision records"
    )
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.set_defaults(run=cmd_replay)


def _bad(code: str, message: str, hint: str, file: str, pointer: str = "") -> UsageInputError:
    return UsageInputError([Diagnostic(code, message, hint=hint, file=file, pointer=pointer)])


def read_decision(path: str, pack: str) -> tuple[dict[str, Any], str]:
    """The recorded decision as a dict, and its canonical text. Accepts what `policy eval
    --format json` writes (``{"results": [{"file", "decision"}, ...], "summary"}``: the
    record whose ``file`` is ``pack``, or the only one), or a bare decision object (the
    API's ``Decision.to_json()``)."""
    from policy_engine.packs.document import read_json_file

    doc, label = read_json_file(path, error=UsageInputError)
    if isinstance(doc, dict) and isinstance(doc.get("results"), list):
        records = [r for r in doc["results"] if isinstance(r, dict)]
        matching = [r for r in records if r.get("file") == pack] or (records if len(records) == 1 else [])
        if len(matching) != 1:
            files = ", ".join(str(r.get("file")) for r in records)
            raise _bad(
                "V151",
                f"{len(records)} results and {len(matching)} for --pack {pack}",
                f"pass --pack exactly as the result's file names it (results: {files})",
                path,
                "/results",
            )
        index = records.index(matching[0])
        if "decision" not in matching[0]:
            raise _bad(
                "V150",
                "this result holds errors, not a decision",
                "replay a pack that was evaluated",
                label,
                f"/results/{index}",
            )
        doc = matching[0]["decision"]
    from importlib import resources  # only here: its import costs other commands' cold start ~9 ms

    schema = json.loads(
        resources.files("policy_engine.schemas").joinpath("decision.schema.json").read_text(encoding="utf-8")
    )
    import jsonschema

    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(doc))
    if error is not None:
        pointer = "".join(f"/{p}" for p in error.absolute_path)
        raise _bad(
            "V150",
            f"not a decision: {error.message}",
            "pass the JSON `policy eval --format json` wrote for one pack",
            label,
            pointer,
        )
    return doc, json.dumps(doc, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def read_call(url: str, call_id: str) -> dict[str, Any]:
    """The inputs the gate recorded for a call (reader opened read-only: replay never writes)."""
    from policy_engine.adapters.ledger_reader import open_reader

    reader = open_reader(url)
    try:
        found = reader.call_input(call_id)
    finally:
        reader.close()
    if found is None:
        raise _bad(
            "V152",
            f"the ledger holds no gated call {call_id!r}",
            "take the id from GateResult.call_id, BudgetBlocked.call_id or the run page",
            url,
        )
    return found


def cmd_replay(args: argparse.Namespace) -> int:
    from policy_engine.cli.commands import _evaluate_one, load_rules, pack_paths
    from policy_engine.packs import load_seen_combos, load_usage
    from policy_engine.render import load_idea, load_knowledge
    from policy_engine.replay import compare, request_of, usage_of

    from_ledger = args.db is not None or args.call is not None
    if from_ledger == (args.decision is not None or args.pack is not None) or (
        (from_ledger and not (args.db and args.call)) or (not from_ledger and not (args.decision and args.pack))
    ):
        raise CommandLineError(
            [
                Diagnostic(
                    "C125",
                    "replay takes DECISION_JSON with --pack, or --db with --call",
                    hint="policy replay decision.json --pack pack.json   or   policy replay --db budget.db --call CALL_ID",
                )
            ]
        )
    recorded_input = read_call(args.db, args.call) if from_ledger else None
    if recorded_input is not None:
        recorded = recorded_input["decision"]
        recorded_text = json.dumps(recorded, sort_keys=True, indent=2, ensure_ascii=False) + "\n"
        args.decision, label = f"{args.db}#call={args.call}", f"call {args.call}"
    else:
        recorded, recorded_text = read_decision(args.decision, args.pack)
    policy = load_rules(args)
    common: dict[str, Any] = {
        "usage": load_usage(args.usage) if args.usage else usage_of(recorded),
        "knowledge": load_knowledge(args.knowledge_pack_dir) if args.knowledge_pack_dir else None,
        "idea": load_idea(args.idea) if args.idea else (recorded_input or {}).get("idea"),
        "seen_combos": load_seen_combos(args.seen)
        if args.seen
        else frozenset((recorded_input or {}).get("seen_combos") or ()),
        "request": request_of(recorded),
    }
    if recorded_input is not None:
        from policy_engine.cli.corpus import evaluate_document
        from policy_engine.evaluator import Engine

        engine = Engine.build(policy, knowledge=common["knowledge"])
        result = evaluate_document(engine, recorded_input["pack"], label, common, recorded["explain"])
    else:
        (path,) = pack_paths([args.pack])
        result, _ = _evaluate_one(policy, path, common, recorded["explain"])
    if result.decision is None:
        from policy_engine.errors import PackError

        raise PackError(result.problems)
    replayed_text = result.decision.to_json()
    report = compare(recorded, json.loads(replayed_text))
    identical = replayed_text == recorded_text
    if identical != report.identical:  # the canonical text and the value comparison must agree
        raise AssertionError("replay: byte comparison and value comparison disagree")
    if args.format == "json":
        sys.stdout.write(
            json.dumps(
                {"decision_file": args.decision, "pack": result.file, **report.to_json()},
                indent=2,
                sort_keys=True,
                ensure_ascii=False,
            )
            + "\n"
        )
    else:
        sys.stdout.write(report_text(report, args.decision, result.file))
    return ExitCode.OK if identical else ExitCode.FAILED


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, ensure_ascii=False)
    return text if len(text) <= 90 else text[:87] + "..."


def report_text(report: Any, decision_file: str, pack: str) -> str:
    if report.identical:
        return f"{pack}: replay of {decision_file} is BYTE-IDENTICAL\n"
    out = [f"{pack}: replay of {decision_file} DIFFERS"]
    if report.manifest:
        out.append("manifest (why):")
        for key, old, new, meaning in report.manifest:
            out.append(f"  {key}: {_short(old)} -> {_short(new)}  ({meaning})")
    else:
        out.append("manifest: identical, so the inputs differ (pack, knowledge pack, idea spec, seen combos or usage)")
    if report.decision:
        out.append("decision (what):")
        for c in report.decision:
            if c.one_sided:
                ids = c.before if c.after is None else c.after
                out.append(f"  {c.what} ({len(ids)}): {_short(', '.join(ids))}")
            else:
                out.append(f"  {c.what}: {_short(c.before)} -> {_short(c.after)}")
    if report.other:
        shown = ", ".join(report.other[:_SHOWN_POINTERS])
        more = (
            f" (+{len(report.other) - _SHOWN_POINTERS} more; --format json lists all)"
            if len(report.other) > _SHOWN_POINTERS
            else ""
        )
        out.append(f"other differences: {shown}{more}")
    return "\n".join(out) + "\n"
