"""No command line is a bug: hypothesis builds argument lists from the real commands, flags
and a mix of good, missing, wrong-kind and odd values, runs `main()` in-process, and asserts
the exit code is never 70 (internal error) and nothing prints a traceback. The two crashes
a new user met (`explain DIR`, `--output` into a missing directory) are pinned here too."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policy_engine.cli.exit_codes import ExitCode
from policy_engine.cli.main import main
from tests.conftest import ROOT

EX = ROOT / "examples"
SMALL = str(EX / "packs" / "small_2x4x10x8.json")
PACKS = str(EX / "packs")

VALUES = st.sampled_from(
    [
        SMALL,
        PACKS,
        str(EX / "knowledge"),
        str(EX / "usage.json"),
        str(EX / "ideaspec.json"),
        str(ROOT / "rules" / "default.policy"),
        str(ROOT / "rules"),
        str(EX / "tests" / "cases.yaml"),
        str(EX / "llm_budget.json"),
        "-",
        "",
        "nope.json",
        "/missing/dir/x.out",
        "0",
        "-1",
        "3",
        "99999999999999999999",
        "1e3",
        "text",
        "json",
        "junit",
        "sarif",
        "github",
        "bash",
        "zsh",
        "fish",
        "decision",
        "o200k_base",
        "gpt-4o",
        "full",
        "off",
        "rules",
        "\u00e9\u00e8",
        "a\x00b",
        "--",
        "-x",
    ]
)
COMMANDS = {
    "eval": [
        "--rules",
        "--usage",
        "--knowledge-pack-dir",
        "--idea",
        "--seen",
        "--expansion",
        "--completion-tokens",
        "--format",
        "--explain",
        "--output",
        "--trimmed-pack",
        "--fail-on-warn",
    ],
    "explain": ["--rules", "--usage", "--knowledge-pack-dir", "--idea", "--completion-tokens"],
    "check": ["--format"],
    "fmt": ["--check", "--diff"],
    "test": ["--rules"],
    "tokens": ["--file", "--encoding", "--model", "--rough"],
    "import-config": ["--tokenizer", "--output"],
    "schema": [],
    "completion": [],
    "frobnicate": [],
}


@st.composite
def command_lines(draw: st.DrawFn) -> list[str]:
    command = draw(st.sampled_from(sorted(COMMANDS)))
    argv = [command]
    for _ in range(draw(st.integers(0, 5))):
        if COMMANDS[command] and draw(st.booleans()):
            argv.append(draw(st.sampled_from(COMMANDS[command])))
        argv.append(draw(VALUES))
    return argv


@settings(
    max_examples=100,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(argv=command_lines())
def test_no_command_line_is_an_internal_error(
    argv: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path_factory
) -> None:
    workdir = tmp_path_factory.mktemp("fuzz")
    monkeypatch.chdir(workdir)  # fmt writes files, --output writes here: never into the checkout
    argv = [a for a in argv if not (a.endswith(".policy") and "fmt" in argv)]  # fmt would rewrite the shipped rules
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO(""))
    code = main(argv)
    out = capsys.readouterr()
    assert code != ExitCode.INTERNAL, (argv, out.err[-800:])
    assert "Traceback" not in out.out + out.err


def test_explain_on_a_directory_is_a_usage_error(capsys) -> None:
    code = main(["explain", PACKS])
    err = capsys.readouterr().err
    assert code == ExitCode.USAGE and "C121" in err and "holds 3" in err


def test_explain_on_a_directory_with_one_pack_explains_it(capsys, tmp_path: Path) -> None:
    (tmp_path / "one.json").write_text(Path(SMALL).read_text())
    assert main(["explain", str(tmp_path)]) == ExitCode.OK
    assert "ALLOWED" in capsys.readouterr().out


@pytest.mark.parametrize("flag", ["--output", "--trimmed-pack"])
def test_an_unwritable_output_is_refused_before_any_work(capsys, flag: str, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    import policy_engine.cli.commands as commands

    real = commands.load_rules
    monkeypatch.setattr(commands, "load_rules", lambda args: calls.append("rules") or real(args))
    started = time.perf_counter()
    code = main(["eval", SMALL, flag, "/missing/dir/x.sarif", "--format", "sarif"])
    err = capsys.readouterr().err
    assert code == ExitCode.USAGE and "C120" in err and "/missing/dir" in err
    assert calls == [] and time.perf_counter() - started < 5  # nothing was loaded or evaluated


def test_output_into_a_directory_is_refused(capsys, tmp_path: Path) -> None:
    assert main(["eval", SMALL, "--output", str(tmp_path)]) == ExitCode.USAGE
    assert "is a directory" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [["tokens", "--file", "a\x00b"], ["eval", SMALL, "--output", "a\x00b"], ["check", "a\x00b"], ["eval", "a\x00b"]],
)
def test_a_nul_byte_in_any_argument_is_a_usage_error(capsys, argv: list[str]) -> None:
    assert main(argv) == ExitCode.USAGE
    assert "C123" in capsys.readouterr().err
