"""A run that starts with a command's name parses with a parser built for that command only
(policy_engine/cli/main.py `_parser_for`, a cold-start saving): it must accept, reject and
explain exactly what the parser with every command does."""

from __future__ import annotations

import argparse
import contextlib
import io

import pytest

from policy_engine.cli.main import UsageProblem, _one_command, _parser, _parser_for, build_parser

FULL = build_parser()
SUB = next(a for a in FULL._actions if isinstance(a, argparse._SubParsersAction))


def test_the_names_are_every_registered_command() -> None:
    names = _one_command("")[1]
    assert names == frozenset(SUB.choices) == _one_command("eval")[1]
    assert {"eval", "explain", "check", "serve", "replay", "diff", "fit", "completion", "schema"} <= names


@pytest.mark.parametrize("command", sorted(SUB.choices))
def test_each_command_alone_has_the_full_parsers_options_and_help(command: str) -> None:
    one = build_parser(only=command)
    one_sub = next(a for a in one._actions if isinstance(a, argparse._SubParsersAction))
    assert list(one_sub.choices) == [command]
    alone, full = one_sub.choices[command], SUB.choices[command]
    assert alone.format_help() == full.format_help()
    assert [(a.option_strings, a.dest, a.default, a.choices, a.nargs, a.required) for a in alone._actions] == [
        (a.option_strings, a.dest, a.default, a.choices, a.nargs, a.required) for a in full._actions
    ]
    assert alone._defaults == full._defaults


def _outcome(parser: argparse.ArgumentParser, argv: list[str]) -> tuple[str, object]:
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            return "parsed", vars(parser.parse_args(argv))
    except UsageProblem as exc:
        return "usage", str(exc)
    except SystemExit as exc:  # --help / --version
        return f"exit {exc.code}", out.getvalue()


ARGVS = [
    ["eval", "a.json", "--format", "json", "--output", "o.json"],
    ["--debug", "eval", "a.json", "b.json", "--jobs", "2"],
    ["eval"],  # missing PACK
    ["eval", "a.json", "--format", "yaml"],  # bad choice
    ["eval", "a.json", "--nope"],  # unrecognized, reported by the top-level parser
    ["eval", "a.json", "--debug"],  # --debug after the command is not the top-level option
    ["eval", "--help"],
    ["check", "--format", "junit", "rules/"],
    ["tokens", "--encoding", "o200k_base", "--rough", "4", "hi"],  # mutually exclusive
    ["fmt", "--check", "x.policy"],
    ["schema", "decision"],
    ["serve", "--help"],
    ["completion"],
]
FULL_ONLY = [[], ["--help"], ["--version"], ["--help", "eval"], ["nope"], ["--debug"], ["--rules", "eval"]]


@pytest.mark.parametrize("argv", ARGVS, ids=" ".join)
def test_a_command_line_parses_as_with_every_command(argv: list[str]) -> None:
    chosen = _parser_for(argv)
    assert chosen is not _parser()  # the one-command parser was used
    assert _outcome(chosen, argv) == _outcome(FULL, argv)


@pytest.mark.parametrize("argv", FULL_ONLY, ids=" ".join)
def test_anything_but_a_leading_command_gets_every_command(argv: list[str]) -> None:
    assert _parser_for(argv) is _parser()
