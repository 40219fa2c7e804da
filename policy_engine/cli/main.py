"""The `policy` command: argument parsing, one error boundary, stable exit codes.

Every command is a few lines over the core API; no policy logic lives here. Results go to
stdout, diagnostics to stderr; colour only on a terminal, never with NO_COLOR.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import policy_engine
from policy_engine.cli.exit_codes import ExitCode, table_text
from policy_engine.diagnostics import render_text
from policy_engine.errors import (
    CommandLineError,
    Diagnostic,
    LedgerError,
    PackError,
    PolicyError,
    RuleCheckError,
    RuleSyntaxError,
    TokenizerError,
    UsageInputError,
)


class UsageProblem(Exception):
    """Bad command-line usage: reported in one paragraph, exit code 64."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # argparse would exit 2, our BLOCKED code
        raise UsageProblem(f"{self.prog}: {message}. Run `{self.prog} --help` for usage.")


def _code_for(exc: PolicyError) -> ExitCode:
    if isinstance(exc, (RuleSyntaxError, RuleCheckError)):
        return ExitCode.INVALID_RULES
    if isinstance(exc, CommandLineError):
        return ExitCode.USAGE
    if isinstance(exc, TokenizerError):
        return ExitCode.TOKENIZER
    if isinstance(exc, (PackError, UsageInputError, LedgerError)):
        return ExitCode.INVALID_INPUT
    return ExitCode.INVALID_INPUT


class _OneCommand:
    """The subcommands as `build_parser`'s registrations see them when a run needs one
    command's parser: argparse looks every help string up through gettext (a search of the
    locale folders each time) as it builds a parser, about 1 ms per command on a cold start,
    and a run parses its arguments with one command. The others are recorded by name only;
    what they would add is dropped."""

    def __init__(self, sub: argparse._SubParsersAction, wanted: str) -> None:  # type: ignore[type-arg]
        self._sub = sub
        self._wanted = wanted
        self.names: list[str] = []

    def add_parser(self, name: str, **kwargs: Any) -> Any:
        self.names.append(name)
        return self._sub.add_parser(name, **kwargs) if name == self._wanted else _Dropped()


class _Dropped:
    """A parser that was not built: takes its options and groups, and keeps nothing."""

    def __getattr__(self, name: str) -> Callable[..., _Dropped]:
        return self._take

    def _take(self, *args: Any, **kwargs: Any) -> _Dropped:
        return self


@functools.cache
def _parser() -> argparse.ArgumentParser:
    """Built once per process: argparse translates every help string through gettext as it
    builds (about 17 ms for this many commands), and a parser is reusable across calls
    (in-process callers such as tests and the fuzzing harness call `main` thousands of times)."""
    return build_parser()


@functools.lru_cache(maxsize=32)
def _one_command(command: str) -> tuple[argparse.ArgumentParser, frozenset[str]]:
    """The parser with `command`'s options only, and every command's name (from the same
    registrations). Bounded: a fuzzer's first words are not all command names."""
    names: list[str] = []
    parser = build_parser(only=command, names=names)
    return parser, frozenset(names)


def _parser_for(argv: Sequence[str]) -> argparse.ArgumentParser:
    """The parser for this command line. When it starts with a command's name (after
    ``--debug`` only), the top-level parser does nothing but hand every later argument to
    that command's parser, so a parser with that one command parses it exactly as the full
    one: same results, same errors and help (the command's own, or "unrecognized arguments"
    under the `policy` name). Anything else (``--help``, ``--version``, no command, an
    unknown word) gets the parser with every command."""
    first = next((a for a in argv if a != "--debug"), None)  # after --debug only, by construction
    if first is not None:
        parser, names = _one_command(first)
        if first in names:
            return parser
    return _parser()


def build_parser(only: str | None = None, names: list[str] | None = None) -> argparse.ArgumentParser:
    """The `policy` parser; with `only`, that one command's options only (the other commands
    known by name; `names`, if given, receives every command's name)."""
    from policy_engine.cli import commands, dashboard_commands
    from policy_engine.cli.formats import FORMATS

    parser = _Parser(
        prog="policy",
        description="Keep an LLM agent's prompts inside their token and cost budget, by rules.",
        epilog="exit codes:\n"
        + table_text()
        + "\n\nDefault rules: --rules, else $POLICY_RULES, else the shipped rules/default.policy.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"policy_engine {policy_engine.__version__}")
    parser.add_argument("--debug", action="store_true", help="show a traceback for unexpected errors")
    sub: Any = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    one = None if only is None else _OneCommand(sub, only)
    if one is not None:
        sub = one

    def rules_opt(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--rules",
            metavar="PATH",
            help="rule file or policy directory (default: $POLICY_RULES or the shipped default)",
        )

    def inputs(p: argparse.ArgumentParser) -> None:
        rules_opt(p)
        p.add_argument(
            "--usage", metavar="FILE", help="usage snapshot JSON (tokens/USD already spent in the batch and day)"
        )
        p.add_argument(
            "--knowledge-pack-dir", metavar="DIR", help="the agent's knowledge pack directory (fixed prompt part)"
        )
        p.add_argument("--idea", metavar="FILE", help="the idea spec JSON the prompt carries")
        p.add_argument("--seen", metavar="FILE", help="JSON list of already-seen field::operator combos (novelty KPI)")
        p.add_argument(
            "--expansion",
            action="store_true",
            help="mark the request as a repair-loop expansion (may spend the reserve)",
        )
        p.add_argument(
            "--completion-tokens", type=int, metavar="N", help="completion budget asked for (default: the policy's)"
        )

    p = sub.add_parser(
        "eval",
        help="evaluate packs against the rules",
        description="Evaluate retrieval packs (files, directories of *.json, or - for stdin).",
    )
    p.add_argument("packs", nargs="+", metavar="PACK")
    inputs(p)
    p.add_argument(
        "--format",
        choices=(*FORMATS, "html"),
        default="text",
        help="output format (default: text; json, junit, sarif and github for tools; html: a corpus report)",
    )
    p.add_argument(
        "--explain", choices=("off", "rules", "full"), default="rules", help="trace detail in JSON (default: rules)"
    )
    p.add_argument("--output", metavar="FILE", help="write the result here instead of stdout")
    p.add_argument("--trimmed-pack", metavar="FILE", help="also write the trimmed pack (single pack only)")
    p.add_argument("--fail-on-warn", action="store_true", help="exit 1 when a decision has warnings")
    p.add_argument(
        "--verify-counts",
        action="store_true",
        help="also count each final prompt with one whole-text encode and check the composed count against it",
    )
    p.add_argument(
        "--jobs", type=int, default=1, metavar="N", help="evaluate packs in N processes (default 1; output identical)"
    )
    p.set_defaults(run=commands.cmd_eval)

    p = sub.add_parser("explain", help="show a decision as a readable tree")
    p.add_argument("pack", metavar="PACK")
    inputs(p)
    p.add_argument(
        "--breakdown",
        action="store_true",
        help="also show where the tokens go: tokens by prompt section and the most expensive items",
    )
    p.set_defaults(run=commands.cmd_explain)

    p = sub.add_parser("check", help="parse and check rule files")
    p.add_argument("paths", nargs="*", metavar="PATH", help="files or directories (default: rules/ if present)")
    p.add_argument("--format", choices=FORMATS, default="text")
    p.set_defaults(run=commands.cmd_check)

    p = sub.add_parser("fmt", help="format rule files canonically")
    p.add_argument("paths", nargs="*", metavar="PATH")
    p.add_argument("--check", action="store_true", help="exit 1 if a file would change; change nothing")
    p.add_argument("--diff", action="store_true", help="print the changes as a unified diff; change nothing")
    p.set_defaults(run=commands.cmd_fmt)

    p = sub.add_parser("test", help="run policy test cases (YAML or JSON)")
    p.add_argument(
        "paths", nargs="+", metavar="PATH", help="case files or directories of *.yaml/*.yml/*.json case files"
    )
    rules_opt(p)
    p.set_defaults(run=commands.cmd_test)

    p = sub.add_parser("tokens", help="count tokens as the engine counts them")
    p.add_argument("text", nargs="?", help="text to count (or use --file)")
    p.add_argument("--file", metavar="F", help="count this file's text (- for stdin)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--encoding", metavar="E", help="tiktoken encoding (default o200k_base)")
    g.add_argument("--model", metavar="M", help="a model name tiktoken maps to an encoding")
    g.add_argument("--rough", metavar="RATIO", help="the rough chars-per-token estimate")
    p.set_defaults(run=commands.cmd_tokens)

    p = sub.add_parser(
        "import-config", help="convert the agent's llm_budget.json (+ retrieval_budget.json) to a rule file"
    )
    p.add_argument("llm_budget", metavar="LLM_BUDGET_JSON")
    p.add_argument("retrieval_budget", nargs="?", metavar="RETRIEVAL_BUDGET_JSON")
    p.add_argument("--tokenizer", metavar="ENCODING", help="use this exact encoding instead of upstream's chars/4")
    p.add_argument("--output", metavar="FILE")
    p.set_defaults(run=commands.cmd_import)

    p = sub.add_parser(
        "verify",
        help="check the ladder's invariants on generated packs against your rules",
        description="Generate packs and usage near your limits, evaluate them, and check every ladder invariant; "
        "on a failure print the shrunk counterexample pack, ready to save and replay with `policy eval`.",
    )
    rules_opt(p)
    p.add_argument("--examples", type=int, default=200, metavar="N", help="generated cases to try (default 200)")
    p.add_argument(
        "--seed", type=int, default=0, metavar="S", help="random seed; the same seed tries the same cases (default 0)"
    )
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.add_argument("--out", metavar="DIR", help="on a failure, also save pack.json and usage.json here")
    p.set_defaults(run=commands.cmd_verify)

    dashboard_commands.add_parsers(sub)  # serve, report

    p = sub.add_parser(
        "demo-run", help="walk packs through the budget gate with a mock LLM, recording usage and events in a ledger"
    )
    p.add_argument("--run-id", required=True, metavar="R")
    p.add_argument("--packs", required=True, metavar="DIR", help="directory of pack JSON files (cycled through)")
    p.add_argument(
        "--ledger",
        "--db",
        dest="db",
        required=True,
        metavar="URL",
        help="the ledger (created if missing): a path or sqlite:///path, or postgresql://user@host:port/db",
    )
    p.add_argument(
        "--mock-llm",
        action="store_true",
        required=True,
        help="use the built-in mock provider (the only provider in the demo)",
    )
    p.add_argument("--calls", type=int, default=12, metavar="N", help="LLM calls to gate (default 12)")
    p.add_argument("--events-jsonl", metavar="FILE", help="also append every event here as JSON lines")
    p.add_argument("--knowledge-pack-dir", metavar="DIR")
    rules_opt(p)
    p.set_defaults(run=commands.cmd_demo_run)

    from policy_engine.cli import diff as diff_cmd
    from policy_engine.cli import fit as fit_cmd
    from policy_engine.cli import replay as replay_cmd

    replay_cmd.register(sub, rules_opt)
    diff_cmd.register(sub)
    fit_cmd.register(sub, inputs)

    from policy_engine.cli import render_commands

    render_commands.add_commands(sub, inputs)
    p = sub.add_parser(
        "completion",
        help="print a shell completion script (bash, zsh or fish)",
        description="Print the completion script for your shell, e.g. `policy completion bash > ~/.local/share/bash-completion/completions/policy`.",
    )
    p.add_argument("shell", metavar="SHELL", help="bash, zsh or fish")
    p.set_defaults(run=_completion)

    p = sub.add_parser("schema", help="print a shipped JSON Schema")
    p.add_argument("name", metavar="NAME", help="retrieval_pack, decision, usage or template")
    p.set_defaults(run=commands.cmd_schema)

    if one is not None and names is not None:
        names.extend(one.names)
    return parser


def _completion(args: argparse.Namespace) -> int:
    """shtab writes the script from the same parser the command uses, so completions never
    drift from the real options."""
    import shtab

    shells = ("bash", "zsh", "fish")
    if args.shell not in shells:
        raise CommandLineError(
            [Diagnostic("C122", f"no completion for shell {args.shell!r}", hint="use bash, zsh or fish")]
        )
    if args.shell == "fish":
        sys.stdout.write(_fish(build_parser()))
    else:
        sys.stdout.write(shtab.complete(build_parser(), shell=args.shell) + "\n")
    return int(ExitCode.OK)


def _fish(parser: argparse.ArgumentParser) -> str:
    """shtab covers bash and zsh; fish's `complete` lines are simple enough to derive from
    the parser directly: subcommands, then each subcommand's long options."""
    lines = ["# fish completion for policy (generated by `policy completion fish`)", "complete -c policy -f"]
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    names = " ".join(sub.choices)
    helps = {c.dest: c.help or "" for c in sub._choices_actions}
    for name, sp in sub.choices.items():
        lines.append(
            f"complete -c policy -n 'not __fish_seen_subcommand_from {names}' -a {name} -d {_fish_quote(helps.get(name, ''))}"
        )
        for action in sp._actions:
            for opt in action.option_strings:
                if opt.startswith("--"):
                    lines.append(
                        f"complete -c policy -n '__fish_seen_subcommand_from {name}' -l {opt[2:]} -d {_fish_quote(action.help or '')}"
                    )
    return "\n".join(lines) + "\n"


def _fish_quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        bad = next((a for a in argv if "\x00" in a), None)
        if bad is not None:  # no path or value can hold one; the OS would refuse it later, mid-work
            raise CommandLineError(
                [
                    Diagnostic(
                        "C123",
                        f"argument {bad!r} contains a NUL byte",
                        hint="remove it; no file name or value can hold one",
                    )
                ]
            )
        parser = _parser_for(argv)
        args = parser.parse_args(argv)
        if not getattr(args, "command", None):
            parser.print_help(sys.stderr)
            return int(ExitCode.USAGE)
        return int(args.run(args))
    except UsageProblem as exc:
        print(str(exc), file=sys.stderr)
        return int(ExitCode.USAGE)
    except PolicyError as exc:
        sources = getattr(exc, "sources", None)
        sys.stderr.write(render_text(exc.diagnostics, sources or _sources_for(exc.diagnostics)))
        return int(_code_for(exc))
    except OSError as exc:
        # A path the user named cannot be probed or read (too long, permissions, a loop of
        # symlinks, a full disk on output): bad input from the environment, not a bug.
        if isinstance(exc, BrokenPipeError):
            return int(ExitCode.OK)
        target = exc.filename if isinstance(exc.filename, str) else None
        shown = target if target is None or len(target) <= 120 else target[:100] + f"... ({len(target)} characters)"
        diag = Diagnostic(
            "P102",
            f"cannot access {shown or 'a file'}: {exc.strerror or type(exc).__name__}",
            hint="check the path, its length and its permissions",
            file=shown,
            pointer="" if shown else None,
        )
        sys.stderr.write(render_text([diag], {}))
        return int(ExitCode.INVALID_INPUT)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return int(ExitCode.OK)
    except Exception as exc:  # the single place an unexpected error is turned into a message
        if debug:
            import traceback  # only on this path: its import costs every run a few ms

            traceback.print_exc()
        else:
            print(
                f"policy: internal error: {type(exc).__name__}: {exc}. This is a bug; rerun with --debug for the traceback.",
                file=sys.stderr,
            )
        return int(ExitCode.INTERNAL)


def _sources_for(diagnostics: Sequence[Diagnostic]) -> dict[str, str]:
    out: dict[str, str] = {}
    for d in diagnostics:
        if d.span is not None and d.span.file not in out and os.path.isfile(d.span.file):
            with contextlib.suppress(OSError, UnicodeDecodeError):
                out[d.span.file] = Path(d.span.file).read_text(encoding="utf-8")
    return out


def entry() -> None:
    policy_engine.OWN_PROCESS = True  # the process is the command's: see policy_engine.OWN_PROCESS
    sys.exit(main())
