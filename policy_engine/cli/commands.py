"""The commands: each parses nothing and decides nothing, it calls the API and renders."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from policy_engine.cli.exit_codes import ExitCode
from policy_engine.cli.formats import (
    DECISION_FORMATS,
    PackResult,
    Report,
    blocked_line,
    check_output,
    summary_line,
    with_json_item,
)
from policy_engine.errors import (
    CommandLineError,
    Diagnostic,
    PackError,
    PolicyError,
    RuleCheckError,
    Severity,
    UsageInputError,
)

RULES_ENV = "POLICY_RULES"


def _err(code: str, message: str, hint: str, file: str | None = None) -> PolicyError:
    """C1xx codes are command-line usage problems (exit 64); others are bad inputs."""
    diag = Diagnostic(code, message, hint=hint, file=file, pointer="" if file else None)
    return CommandLineError([diag]) if code.startswith("C") else UsageInputError([diag])


def _console(stderr: bool = False) -> Any:
    from policy_engine.cli.console import console

    return console(stderr)


def writable_target(path: str | None, flag: str) -> None:
    """Refuse an output path that cannot be written before any evaluation starts."""
    if not path or path == "-":
        return
    target = Path(path)
    parent = target.parent if str(target.parent) else Path(".")
    if target.is_dir():
        raise _err("C120", f"{flag} {path} is a directory", "give a file path to write")
    if not parent.is_dir():
        raise _err(
            "C120",
            f"{flag} {path}: directory {parent} does not exist",
            "create the directory first, or write somewhere else",
        )
    if not os.access(parent, os.W_OK) or (target.exists() and not os.access(target, os.W_OK)):
        raise _err("C120", f"{flag} {path} is not writable", "write somewhere else")


def _chosen_rules(args: argparse.Namespace) -> str | None:
    chosen: str | None = getattr(args, "rules", None) or os.environ.get(RULES_ENV)
    return chosen


def rules_path(args: argparse.Namespace) -> Path:
    chosen = _chosen_rules(args)
    if chosen:
        return Path(chosen)
    from policy_engine.rules.prebuilt import DEFAULT

    return DEFAULT


def load_rules(args: argparse.Namespace) -> Any:
    """The policy the command runs with. The shipped default rules come compiled ahead of
    time (rules/prebuilt.py) when the compiled file is current: no rule language loaded."""
    if not _chosen_rules(args):
        from policy_engine.rules.prebuilt import load_default

        policy = load_default()
        if policy is not None:
            return policy
    from policy_engine.dsl import load_policy

    return load_policy(rules_path(args))


def pack_paths(items: list[str]) -> list[str]:
    out: list[str] = []
    for item in items:
        if item == "-":
            out.append(item)
            continue
        p = Path(item)
        if p.is_dir():
            found = sorted(str(x) for x in p.rglob("*.json") if x.is_file())
            if not found:
                raise _err(
                    "P117",
                    "directory holds no *.json packs",
                    "pass pack files, or a directory containing them",
                    file=item,
                )
            out.extend(found)
        elif not p.exists():
            raise PackError(
                [
                    Diagnostic(
                        "P101",
                        "no such file",
                        hint="check the path; pass a pack file, a directory of packs, or - for stdin",
                        file=item,
                        pointer="",
                    )
                ]
            )
        else:
            out.append(item)
    return out


def _inputs(args: argparse.Namespace) -> dict[str, Any]:
    from policy_engine.packs import load_seen_combos, load_usage
    from policy_engine.render import load_idea, load_knowledge
    from policy_engine.usage import Request, UsageSnapshot

    if args.completion_tokens is not None and args.completion_tokens <= 0:
        raise _err(
            "C101",
            f"--completion-tokens must be positive, got {args.completion_tokens}",
            "give a positive number of tokens",
        )
    return {
        "usage": load_usage(args.usage) if args.usage else UsageSnapshot(),
        "knowledge": load_knowledge(args.knowledge_pack_dir) if args.knowledge_pack_dir else None,
        "idea": load_idea(args.idea) if args.idea else None,
        "seen_combos": load_seen_combos(args.seen) if args.seen else frozenset(),
        "request": Request(completion_tokens=args.completion_tokens, expansion=args.expansion),
    }


def _evaluate_one(policy: Any, path: str, common: dict[str, Any], explain: str) -> tuple[PackResult, Any]:
    from policy_engine.cli.corpus import evaluate_one
    from policy_engine.evaluator import Engine

    return evaluate_one(Engine.build(policy, knowledge=common["knowledge"]), path, common, explain)


def _eval_state(args: argparse.Namespace) -> tuple[Any, dict[str, Any], str]:
    """(engine, shared inputs, explain level) of an eval run: built once per process."""
    from policy_engine.evaluator import Engine

    common = _inputs(args)
    engine = Engine.build(load_rules(args), knowledge=common["knowledge"], verify_counts=args.verify_counts)
    return engine, common, args.explain


def _evaluate_all(
    args: argparse.Namespace, engine: Any, paths: list[str], common: dict[str, Any], explain: str, jobs: int
) -> tuple[list[Any], list[Any]]:
    """Each pack's result, in input order (and the one document `--trimmed-pack` needs)."""
    if args.trimmed_pack:
        from policy_engine.cli.corpus import evaluate_one

        result, doc = evaluate_one(engine, paths[0], common, explain)
        return [result], [doc]
    import functools

    from policy_engine.cli.corpus import evaluate_many

    rebuild = functools.partial(_eval_state, args)
    # workers write their own results' JSON entries (the report joins them)
    finish = with_json_item if (args.format or "text") == "json" else None
    if len(paths) > 1 and sys.stderr.isatty():
        from rich.progress import Progress

        with Progress(console=_console(stderr=True), transient=True) as progress:
            task = progress.add_task("evaluating", total=len(paths))
            return evaluate_many(
                engine, paths, common, explain, jobs, rebuild, lambda n: progress.advance(task, n), finish
            ), []
    return evaluate_many(engine, paths, common, explain, jobs, rebuild, lambda n: None, finish), []


def cmd_eval(args: argparse.Namespace) -> int:
    writable_target(args.output, "--output")
    writable_target(args.trimmed_pack, "--trimmed-pack")
    started = time.perf_counter()
    jobs = getattr(args, "jobs", 1)
    if jobs is None or jobs < 1:
        raise _err("C124", f"--jobs must be at least 1, got {jobs}", "give a whole number of processes, at least 1")
    from policy_engine.evaluator import Engine

    policy = load_rules(args)
    paths = pack_paths(args.packs)
    if args.trimmed_pack and len(paths) != 1:
        raise _err("C102", f"--trimmed-pack needs exactly one pack, got {len(paths)}", "evaluate one pack at a time")
    common = _inputs(args)
    engine = Engine.build(policy, knowledge=common["knowledge"], verify_counts=args.verify_counts)
    explain = args.explain
    fmt = args.format or "text"
    from policy_engine.cli.corpus import batch_collection

    with batch_collection():
        results, docs = _evaluate_all(args, engine, paths, common, explain, jobs)
        report = Report(tuple(results), fail_on_warn=args.fail_on_warn, seconds=time.perf_counter() - started)
        text = DECISION_FORMATS[fmt](report, sources=None)
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
        if len(results) > 1 or fmt != "text":
            print(summary_line(results), file=sys.stderr)
    else:
        sys.stdout.write(text)
    if args.trimmed_pack and len(results) != 1:
        raise _err("C102", "--trimmed-pack needs exactly one pack", "evaluate one pack at a time")
    if args.trimmed_pack and results[0].decision is not None:
        from policy_engine.api import trimmed_pack

        Path(args.trimmed_pack).write_text(
            json.dumps(trimmed_pack(docs[0], results[0].decision), indent=2, ensure_ascii=False) + "\n",
            encoding="utf-8",
        )
    briefs = [r.brief() for r in results]  # a --jobs worker's JSON results carry only these
    for r, brief in zip(results, briefs, strict=True):
        if brief is not None and brief.outcome == "blocked":
            print(blocked_line(brief.reason, r.file), file=sys.stderr)
    if None in briefs:
        if fmt not in ("text", "github") or args.output:
            for r, brief in zip(results, briefs, strict=True):
                if brief is None:
                    from policy_engine.diagnostics import render_text

                    sys.stderr.write(render_text(r.problems))
        return ExitCode.INVALID_INPUT
    if any(brief is not None and brief.outcome == "blocked" for brief in briefs):
        return ExitCode.BLOCKED
    if any(report.failure(r) for r in results):
        return ExitCode.FAILED
    return ExitCode.OK


def cmd_explain(args: argparse.Namespace) -> int:
    from policy_engine.cli.explain import decision_tree

    policy = load_rules(args)
    common = _inputs(args)
    paths = pack_paths([args.pack])
    if len(paths) != 1:
        raise _err(
            "C121",
            f"explain shows one pack; {args.pack} holds {len(paths)}",
            f"pass one of them, e.g. `policy explain {paths[0]}`, or use `policy eval {args.pack}`",
        )
    (path,) = paths
    result, _ = _evaluate_one(policy, path, common, "full" if getattr(args, "breakdown", False) else "rules")
    if result.decision is None:
        raise PackError(result.problems)
    console = _console()
    console.print(decision_tree(result.decision, result.file))
    if result.decision.breakdown is not None:
        from policy_engine.cli.breakdown_view import breakdown_view

        console.print()
        console.print(breakdown_view(result.decision.breakdown, bars=console.is_terminal))
    return ExitCode.BLOCKED if result.decision.outcome == "blocked" else ExitCode.OK


def _rule_targets(paths: list[str]) -> list[str]:
    if paths:
        return paths
    if Path("rules").is_dir():
        return ["rules"]
    raise _err("C103", "no rule files given and no rules/ directory here", "pass rule files or directories")


def cmd_check(args: argparse.Namespace) -> int:
    from policy_engine.dsl import check_paths

    targets = _rule_targets(args.paths)
    started = time.perf_counter()
    problems, sources, _checked = check_paths(targets)
    names = sorted({str(p) for p in _policy_files(targets)})
    sys.stdout.write(check_output(args.format, problems, sources, names or targets, time.perf_counter() - started))
    return ExitCode.INVALID_RULES if any(d.severity is not Severity.WARNING for d in problems) else ExitCode.OK


def _policy_files(targets: list[str]) -> list[Path]:
    out: list[Path] = []
    for t in targets:
        p = Path(t)
        if p.is_dir():
            out.extend(sorted(x for x in p.rglob("*.policy") if x.is_file()))
        elif p.is_file():
            out.append(p)
    return out


def cmd_fmt(args: argparse.Namespace) -> int:
    from policy_engine.dsl import format_text
    from policy_engine.dsl.includes import read_text
    from policy_engine.errors import RuleSyntaxError

    targets = _rule_targets(args.paths)
    files = _policy_files(targets)
    missing = [t for t in targets if not Path(t).exists()]
    if missing:
        raise RuleCheckError(
            [
                Diagnostic(
                    "E307", f"{missing[0]}: no such rule file or directory", hint="check the path", file=missing[0]
                )
            ]
        )
    changed = 0
    problems: list[Diagnostic] = []
    sources: dict[str, str] = {}
    for path in files:
        text, unreadable = read_text(path, str(path))
        if unreadable is not None or text is None:
            problems.append(unreadable)  # type: ignore[arg-type]
            continue
        try:
            out = format_text(text, str(path))
        except RuleSyntaxError as exc:
            problems.extend(exc.diagnostics)
            sources[str(path)] = text
            continue
        if out == text:
            continue
        changed += 1
        if args.diff:
            import difflib  # only for `fmt --diff`

            sys.stdout.writelines(
                difflib.unified_diff(text.splitlines(True), out.splitlines(True), f"{path}", f"{path} (formatted)")
            )
        elif args.check:
            print(f"would reformat {path}")
        else:
            path.write_text(out, encoding="utf-8")
            print(f"reformatted {path}")
    if problems:
        raise RuleSyntaxError(problems)
    if (args.check or args.diff) and changed:
        print(
            f"{changed} file{'s' if changed != 1 else ''} would be reformatted, {len(files) - changed} already formatted",
            file=sys.stderr,
        )
        return ExitCode.FAILED
    return ExitCode.OK


def cmd_test(args: argparse.Namespace) -> int:
    from policy_engine.cli.casefile import CaseResult, compare, load_cases
    from policy_engine.dsl import load_policy
    from policy_engine.evaluator import evaluate
    from policy_engine.packs import load_pack_file, load_usage, usage_from_document
    from policy_engine.render import load_idea, load_knowledge
    from policy_engine.usage import Request, UsageSnapshot

    files: list[Path] = []
    for item in args.paths:
        p = Path(item)
        if p.is_dir():
            found = sorted(x for x in p.rglob("*") if x.suffix in (".yaml", ".yml", ".json") and x.is_file())
            if not found:
                raise _err("P117", "no *.yaml, *.yml or *.json case files", "pass case files", file=item)
            files.extend(found)
        elif p.is_file():
            files.append(p)
        else:
            raise _err("P101", "no such file", "check the path", file=item)
    policies: dict[str, Any] = {}
    results: list[CaseResult] = []
    exercised: set[str] = set()
    universe: dict[str, set[str]] = {}
    input_errors = 0
    for f in files:
        for case in load_cases(f):
            rules = case.rules or rules_path(args)
            key = str(rules)
            if key not in policies:
                policies[key] = load_policy(rules)
                universe[key] = _rule_universe(policies[key])
            res = CaseResult(case)
            try:
                if isinstance(case.usage, Path):
                    usage = load_usage(case.usage)
                elif case.usage is not None:
                    usage = usage_from_document(case.usage, f"{case.file} ({case.name})")
                else:
                    usage = UsageSnapshot()
                idea = load_idea(case.idea) if case.idea else None
                pools = load_pack_file(case.pack, idea=idea)
                knowledge = load_knowledge(case.knowledge) if case.knowledge else None
                decision = evaluate(
                    policies[key],
                    pools,
                    usage=usage,
                    request=Request(case.completion_tokens, case.expansion),
                    idea=idea,
                    knowledge=knowledge,
                )
                res.decision = decision
                res.failures = compare(case.expect, decision)
                exercised |= _exercised(decision)
            except PolicyError as exc:
                res.error = "; ".join(f"{d.location}: {d.code} {d.message}" for d in exc.diagnostics)
                input_errors += 1
            results.append(res)
    out = _console()
    failed = 0
    for r in results:
        if r.error:
            failed += 1
            out.print(f"ERROR {r.case.name} ({r.case.file}): {r.error}")
        elif r.failures:
            failed += 1
            out.print(f"FAIL  {r.case.name} ({r.case.file})")
            for line in r.failures:
                out.print(f"      {line}")
        else:
            out.print(f"ok    {r.case.name}")
    missing = sorted(set().union(*universe.values()) - exercised) if universe else []
    if missing:
        out.print("not exercised by any case: " + ", ".join(missing))
    out.print(
        f"{len(results) - failed} passed, {failed} failed"
        + (f" ({input_errors} with invalid inputs)" if input_errors else "")
    )
    if input_errors:  # a case that could not run is bad input, not a failed expectation
        return ExitCode.INVALID_INPUT
    return ExitCode.FAILED if failed else ExitCode.OK


def _rule_universe(policy: Any) -> set[str]:
    names = {f"limit {lim.rule}" for lim in policy.settings.limits}
    rung = 0
    for stage in policy.settings.ladder.stages:
        for step in stage.steps:
            rung += 1
            names.add(f"rung {rung} ({stage.rule} {step.kind.value} {step.value})")
    names |= {f"condition {c.rule}" for c in policy.conditionals}
    return names


def _exercised(decision: Any) -> set[str]:
    out: set[str] = set()
    failing: set[str] = set()
    for step in decision.trace:
        failing |= set(step.failing)
        if step.kind == "rung" and step.verdict in ("pass", "fail"):
            out.add(f"rung {step.rung} ({step.rule} {step.step_kind} {step.step_value})")
        if step.kind == "condition":
            out.add(f"condition {step.rule}")
    for metric, info in decision.limits.items():
        if metric in failing or info["verdict"] == "fail":
            out.add(f"limit {info['rule']}")
    return out


def cmd_tokens(args: argparse.Namespace) -> int:
    from policy_engine.policy import Tokenizer
    from policy_engine.tokens import get_counter

    if (args.text is None) == (args.file is None):
        raise _err(
            "C104", "give either TEXT or --file", "policy tokens 'some text'  or  policy tokens --file prompt.txt"
        )
    if args.file:
        from policy_engine.reading import decode_utf8, read_bounded
        from policy_engine.reading.bounds import TEXT_BOUNDS

        raw, label = read_bounded(args.file, TEXT_BOUNDS, error=UsageInputError)
        text = decode_utf8(raw, label, error=UsageInputError, code="P103")
    else:
        text = args.text
    if args.rough:
        try:
            ratio = Decimal(args.rough)
        except InvalidOperation:
            raise _err("C105", f"--rough needs a number, got {args.rough!r}", "e.g. --rough 4") from None
        if not ratio.is_finite() or not Decimal("0.1") <= ratio <= 100:
            raise _err(
                "C105",
                f"--rough needs a number of characters per token from 0.1 to 100, got {args.rough!r}",
                "e.g. --rough 4",
            )
        tokenizer = Tokenizer("rough", chars_per_token=ratio)
    elif args.model:
        tokenizer = Tokenizer("model", args.model)
    else:
        tokenizer = Tokenizer("tiktoken", args.encoding or "o200k_base")
    counter = get_counter(tokenizer)
    print(f"{counter.count(text)}\t{counter.name}")
    return ExitCode.OK


def cmd_import(args: argparse.Namespace) -> int:
    from policy_engine.dsl import import_config
    from policy_engine.packs.document import read_json_file

    llm, llm_label = read_json_file(args.llm_budget, error=RuleCheckError)
    retrieval, r_label = (
        read_json_file(args.retrieval_budget, error=RuleCheckError) if args.retrieval_budget else (None, None)
    )
    text = import_config(llm, retrieval, llm_file=llm_label, retrieval_file=r_label, tokenizer=args.tokenizer)
    if args.tokenizer:
        from policy_engine.dsl import load_policy_text

        load_policy_text(text, "<imported>")  # an unknown --tokenizer fails here, with a hint
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return ExitCode.OK


def cmd_schema(args: argparse.Namespace) -> int:
    from importlib import resources  # only here: its import costs every other command's cold start ~9 ms

    folder = resources.files("policy_engine.schemas")
    known = sorted(p.name.removesuffix(".schema.json") for p in folder.iterdir() if p.name.endswith(".schema.json"))
    name = args.name.removesuffix(".schema.json").removesuffix(".json")
    if name not in known:
        import difflib  # only for a suggestion: its import costs every cold start ~1 ms

        close = difflib.get_close_matches(name, known, n=1)
        raise _err(
            "C106",
            f"no shipped schema named {args.name!r}",
            (f"did you mean {close[0]!r}? " if close else "") + "known: " + ", ".join(known),
        )
    sys.stdout.write(folder.joinpath(f"{name}.schema.json").read_text(encoding="utf-8"))
    return ExitCode.OK


def cmd_verify(args: argparse.Namespace) -> int:
    """Run the ladder invariants on generated packs against the user's policy; on a failure
    print (and with --out, save) the shrunk counterexample with its replay command."""
    try:
        from policy_engine.verify.runner import report_text, verify_policy
    except ModuleNotFoundError as exc:  # hypothesis lives in the `verify` extra
        if exc.name != "hypothesis":
            raise
        raise _err(
            "C140",
            "policy verify needs hypothesis, which is not installed",
            "install the extra: pip install 'policy-engine[verify]'",
        ) from None

    if not 1 <= args.examples <= 100_000:
        raise _err("C107", f"--examples must be from 1 to 100000, got {args.examples}", "e.g. --examples 200")
    policy = load_rules(args)
    report = verify_policy(policy, examples=args.examples, seed=args.seed)
    if args.out and report.counterexample is not None:
        out = Path(args.out)
        try:
            out.mkdir(parents=True, exist_ok=True)
            (out / "pack.json").write_text(
                json.dumps(report.counterexample.pack, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
            )
            (out / "usage.json").write_text(json.dumps(report.usage_json(), indent=2) + "\n", encoding="utf-8")
        except OSError as exc:
            raise _err(
                "C108", f"cannot write the counterexample to {args.out}: {exc.strerror}", "give a writable directory"
            ) from None
    if args.format == "json":
        sys.stdout.write(json.dumps(report.to_json(), indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    else:
        sys.stdout.write(report_text(report))
        if args.out and report.counterexample is not None:
            sys.stdout.write(f"saved {args.out}/pack.json and {args.out}/usage.json\n")
    return ExitCode.OK if report.ok else ExitCode.FAILED


def cmd_demo_run(args: argparse.Namespace) -> int:
    from policy_engine.adapters.demo import MockLLM, demo_run
    from policy_engine.adapters.events import JsonlSink
    from policy_engine.adapters.gate import BudgetGate
    from policy_engine.adapters.ledger_url import open_ledger

    folder = Path(args.packs)
    packs = sorted(folder.glob("*.json")) if folder.is_dir() else []
    if not packs:
        raise _err(
            "C111", f"no *.json packs in {args.packs}", "give a directory of retrieval packs, e.g. examples/packs"
        )
    if args.calls < 1:
        raise _err("C111", f"--calls must be at least 1, got {args.calls}", "e.g. --calls 12")
    policy = load_rules(args)
    ledger = open_ledger(args.db)
    sinks = [JsonlSink(args.events_jsonl)] if args.events_jsonl else []
    gate = BudgetGate(policy, ledger, sinks=sinks, knowledge_dir=args.knowledge_pack_dir)
    summary = demo_run(gate, args.run_id, packs, args.calls, MockLLM())
    ledger.close()
    print(json.dumps(summary, indent=2, sort_keys=True))
    print(
        f"see it: policy serve --ledger {args.db}  then open http://127.0.0.1:8765/runs/{args.run_id}  (or: policy report --ledger {args.db} --run-id {args.run_id} --output run.html)",
        file=sys.stderr,
    )
    return ExitCode.OK
