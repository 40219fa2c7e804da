"""Stable exit codes. The README and `policy --help` repeat this table; a test checks they
agree. 2 matches the agent's existing contract for a call blocked by its budget."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0  # every pack allowed (possibly after trimming); files clean
    FAILED = 1  # --fail-on-warn with warnings, fmt --check found changes, a policy test or verify failed
    BLOCKED = 2  # at least one pack blocked by policy
    INVALID_RULES = 3  # a rule file has syntax or check errors (or cannot be read)
    INVALID_INPUT = 4  # a pack, usage snapshot, knowledge pack, idea spec or case file is invalid or missing
    TOKENIZER = 5  # the tokenizer cannot be resolved (unknown, or BPE file unavailable offline)
    USAGE = 64  # bad command-line usage (unknown flag, missing argument)
    INTERNAL = 70  # a bug in policy_engine (run with --debug for the traceback)


TABLE = [
    (ExitCode.OK, "every pack allowed (possibly after trimming); files clean"),
    (
        ExitCode.FAILED,
        "--fail-on-warn with warnings, `fmt --check` would reformat, a policy test or `verify` failed, `diff --fail-on-change` found changes, `replay` differs",
    ),
    (ExitCode.BLOCKED, "at least one pack blocked by policy (the agent's contract)"),
    (ExitCode.INVALID_RULES, "a rule file has syntax or check errors, or cannot be read"),
    (
        ExitCode.INVALID_INPUT,
        "a pack, usage snapshot, knowledge pack, idea spec or test-case file is invalid or missing",
    ),
    (ExitCode.TOKENIZER, "the tokenizer cannot be resolved (unknown, or its BPE file is unavailable offline)"),
    (ExitCode.USAGE, "bad command-line usage"),
    (ExitCode.INTERNAL, "internal error (a bug; --debug shows the traceback)"),
]


def table_markdown() -> str:
    lines = ["| code | meaning |", "|---|---|"]
    lines += [f"| {int(code)} | {text} |" for code, text in TABLE]
    return "\n".join(lines)


def table_text() -> str:
    return "\n".join(f"  {int(code):>3}  {text}" for code, text in TABLE)
