"""The `policy` command end to end: the real console script (subprocess) for each command,
in-process `main()` for the many variations, every format validated, every exit code."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from policy_engine.cli.exit_codes import ExitCode, table_markdown
from policy_engine.cli.main import main
from tests.conftest import ROOT

EX = ROOT / "examples"
SEED = str(EX / "packs" / "seed_5x15x72x60.json")
SMALL = str(EX / "packs" / "small_2x4x10x8.json")
BLOCKED = str(EX / "packs" / "blocked_oversized_guard.json")
KNOW = ["--knowledge-pack-dir", str(EX / "knowledge")]
POLICY = shutil.which("policy", path=str(Path(sys.executable).parent)) or "policy"
GITHUB_LINE = re.compile(r"^::(error|warning|notice)( [a-z]+=[^,:]*(,[a-z]+=[^,:]*)*)?::.*$")


def run(*args: str, stdin: str | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [POLICY, *args],
        capture_output=True,
        text=True,
        input=stdin,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        timeout=120,
    )


def only_decision(stdout: str) -> dict:
    (result,) = json.loads(stdout)["results"]
    return result["decision"]


def call(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


# ---- through the console script ------------------------------------------------------


def test_console_script_eval_examples_with_expected_outcomes() -> None:
    for pack, expected, code in ((SMALL, "allowed", 0), (SEED, "trimmed", 0), (BLOCKED, "blocked", 2)):
        proc = run("eval", pack, *KNOW, "--format", "json")
        assert proc.returncode == code, proc.stderr
        assert only_decision(proc.stdout)["outcome"] == expected
    proc = run("eval", BLOCKED, *KNOW)  # the contract line whatever the format (text by default)
    assert json.loads(proc.stderr.strip().splitlines()[-1]) == {
        "error": "budget_blocked",
        "message": "alpha generation blocked by budget policy: request_prompt",
        "pack": BLOCKED,
    }


def test_console_script_other_commands() -> None:
    assert run("--version").stdout.startswith("policy_engine ")
    assert run("check", "rules").returncode == 0
    assert run("fmt", "--check", "rules", "examples").returncode == 0
    proc = run("tokens", "hello world", "--encoding", "cl100k_base")
    assert proc.returncode == 0 and proc.stdout.startswith("2\t")
    assert json.loads(run("schema", "decision").stdout)["title"] == "policy_engine decision"
    proc = run("import-config", str(EX / "llm_budget.json"), str(EX / "retrieval_budget.json"))
    assert proc.returncode == 0 and "limit request_prompt: request_prompt <= 12_000 tokens" in proc.stdout
    proc = run("test", str(EX / "tests" / "cases.yaml"))
    assert proc.returncode == 0 and "5 passed, 0 failed" in proc.stdout
    proc = run("explain", SEED, *KNOW)
    assert proc.returncode == 0 and "rung 1 trim_fields" in proc.stdout and "stop" in proc.stdout
    proc = run("eval", "-", "--format", "json", stdin=Path(SMALL).read_text())
    assert proc.returncode == 0 and only_decision(proc.stdout)["outcome"] == "allowed"


def test_python_dash_m_entry_point() -> None:
    proc = subprocess.run([sys.executable, "-m", "policy_engine.cli", "--version"], capture_output=True, text=True)
    assert proc.returncode == 0 and "policy_engine" in proc.stdout


# ---- formats -------------------------------------------------------------------------


def test_many_packs_one_json_document_and_summary(capsys) -> None:
    code, out, err = call(capsys, "eval", str(EX / "packs"), *KNOW, "--format", "json")
    assert code == ExitCode.BLOCKED
    doc = json.loads(out)
    assert [Path(r["file"]).name for r in doc["results"]] == [
        "blocked_oversized_guard.json",
        "seed_5x15x72x60.json",
        "small_2x4x10x8.json",
    ]
    assert (
        [r["outcome"] for r in doc["results"]]
        == [r["decision"]["outcome"] for r in doc["results"]]
        == ["blocked", "trimmed", "allowed"]
    )
    assert doc["summary"] == {"packs": 3, "allowed": 1, "trimmed": 1, "blocked": 1, "invalid": 0, "warnings": 0}
    assert err.count("budget_blocked") == 1
    code, out, _ = call(capsys, "eval", str(EX / "packs"), *KNOW, "--format", "text")
    assert out.strip().splitlines()[-1] == "3 packs: 1 allowed, 1 trimmed, 1 blocked"


def test_check_json_and_junit(capsys) -> None:
    code, out, _ = call(capsys, "check", str(_bad_rules()), "--format", "json")
    assert code == ExitCode.INVALID_RULES
    assert json.loads(out)["problems"][0]["code"] == "E201"
    code, out, _ = call(capsys, "check", str(_bad_rules()), "--format", "junit")
    assert ET.fromstring(out.split("?>", 1)[1]).get("failures") == "1"


_TMP: list[Path] = []


def _bad_rules() -> Path:
    if not _TMP:
        import tempfile

        d = Path(tempfile.mkdtemp())
        (d / "bad.policy").write_text('tokenizer tiktoken "o200k_base"\nlimit p: request_promt <= 5 tokens\n')
        _TMP.append(d / "bad.policy")
    return _TMP[0]


# ---- exit codes and bad inputs ---------------------------------------------------------


def test_check_text_has_caret_and_hint(capsys) -> None:
    code, out, _ = call(capsys, "check", str(_bad_rules()))
    assert code == ExitCode.INVALID_RULES
    assert "bad.policy:2:10: E201 unknown metric `request_promt`" in out
    assert "^^^^^^^^^^^^^" in out and "hint: did you mean `request_prompt`?" in out


def test_eval_with_a_broken_rules_file_exits_3(capsys) -> None:
    code, _, err = call(capsys, "eval", SMALL, "--rules", str(_bad_rules()))
    assert code == ExitCode.INVALID_RULES and "E201" in err and "Traceback" not in err


@pytest.mark.parametrize(
    "args, code, needle",
    [
        (["eval", "missing.json"], ExitCode.INVALID_INPUT, "no such file"),
        (["eval", "--bogus", SMALL], ExitCode.USAGE, "unrecognized arguments: --bogus"),
        (["eval"], ExitCode.USAGE, "the following arguments are required"),
        (["frobnicate"], ExitCode.USAGE, "invalid choice"),
        (["eval", SMALL, "--rules", "nope.policy"], ExitCode.INVALID_RULES, "no such rule file"),
        (["eval", SMALL, "--rules", "examples"], ExitCode.INVALID_RULES, "E306"),
        (["tokens", "x", "--encoding", "nope"], ExitCode.TOKENIZER, "T101"),
        (["tokens"], ExitCode.USAGE, "C104"),
        (["schema", "decison"], ExitCode.USAGE, "did you mean 'decision'"),
        (["eval", SMALL, "--completion-tokens", "-3"], ExitCode.USAGE, "C101"),
        (["eval", SMALL, "--knowledge-pack-dir", "nowhere"], ExitCode.INVALID_INPUT, "R101"),
        (["test", "nowhere.yaml"], ExitCode.INVALID_INPUT, "no such file"),
    ],
)
def test_bad_invocations_give_one_paragraph_and_the_right_code(capsys, args, code, needle) -> None:
    got, out, err = call(capsys, *args)
    assert got == code, (out, err)
    assert needle in out + err
    assert "Traceback" not in out + err


def test_bad_pack_files(capsys, tmp_path: Path) -> None:
    (tmp_path / "notjson.json").write_text("{nope")
    (tmp_path / "shape.json").write_text('{"candidate_fields": 3}')
    empty = tmp_path / "empty_dir"
    empty.mkdir()
    code, _, err = call(capsys, "eval", str(tmp_path / "notjson.json"), "--format", "text")
    assert code == ExitCode.INVALID_INPUT and "P103" in _ + err
    code, out, err = call(capsys, "eval", str(tmp_path / "shape.json"), "--format", "json")
    assert code == ExitCode.INVALID_INPUT and "/candidate_fields: expected array" in out + err
    (result,) = json.loads(out)["results"]
    assert result["outcome"] == "invalid" and "/candidate_fields" in [e["pointer"] for e in result["errors"]]
    code, out, err = call(capsys, "eval", str(empty))
    assert code == ExitCode.INVALID_INPUT and "holds no *.json packs" in err


def test_fail_on_warn(capsys, tmp_path: Path) -> None:
    rules = tmp_path / "w.policy"
    rules.write_text('tokenizer tiktoken "o200k_base"\nlimit p: request_prompt <= 10 tokens warn\n')
    assert call(capsys, "eval", SMALL, "--rules", str(rules))[0] == ExitCode.OK
    assert call(capsys, "eval", SMALL, "--rules", str(rules), "--fail-on-warn")[0] == ExitCode.FAILED


def test_fmt_check_diff_and_write(capsys, tmp_path: Path) -> None:
    f = tmp_path / "x.policy"
    f.write_text('tokenizer   tiktoken "o200k_base"\n')
    code, out, _ = call(capsys, "fmt", "--check", str(f))
    assert code == ExitCode.FAILED and "would reformat" in out
    code, out, _ = call(capsys, "fmt", "--diff", str(f))
    assert code == ExitCode.FAILED and "+tokenizer tiktoken" in out
    assert call(capsys, "fmt", str(f))[0] == ExitCode.OK
    assert f.read_text() == 'tokenizer tiktoken "o200k_base"\n'
    assert call(capsys, "fmt", "--check", str(f))[0] == ExitCode.OK


def test_policy_test_reports_a_failing_case_with_a_diff(capsys, tmp_path: Path) -> None:
    cases = tmp_path / "c.yaml"
    cases.write_text(
        f"cases:\n  - name: wrong\n    pack: {SEED}\n    knowledge: {EX / 'knowledge'}\n    expect: {{outcome: allowed, topk: {{fields: 72}}}}\n"
    )
    code, out, _ = call(capsys, "test", str(cases))
    assert code == ExitCode.FAILED
    assert "outcome: expected allowed, got trimmed" in out and "topk.fields: expected 72" in out
    assert "not exercised by any case:" in out and "0 passed, 1 failed" in out


def test_trimmed_pack_output(capsys, tmp_path: Path) -> None:
    out_pack = tmp_path / "trimmed.json"
    code, _, _ = call(capsys, "eval", SEED, *KNOW, "--trimmed-pack", str(out_pack), "--format", "json")
    assert code == 0
    trimmed = json.loads(out_pack.read_text())
    assert len(trimmed["candidate_fields"]) < 72
    assert sorted(trimmed["lanes"]["exploit"]["field_ids"] + trimmed["lanes"]["explore"]["field_ids"]) == sorted(
        f["id"] for f in trimmed["candidate_fields"]
    )
    from policy_engine.packs import load_pack

    load_pack(trimmed)  # still a valid pack


def test_output_file_and_no_colour_when_piped(capsys, tmp_path: Path) -> None:
    target = tmp_path / "d.json"
    code, out, _err = call(capsys, "eval", SMALL, "--format", "json", "--output", str(target))
    assert code == 0 and out == "" and only_decision(target.read_text())["outcome"] == "allowed"
    proc = run("explain", SEED, *KNOW, env={"NO_COLOR": "1"})
    assert "\x1b[" not in proc.stdout


def test_exit_code_table_matches_help_and_readme() -> None:
    help_text = run("--help").stdout
    for code in ExitCode:
        assert re.search(rf"^\s+{int(code)}\s", help_text, flags=re.M), code
    readme = (ROOT / "README.md").read_text()
    block = readme.split("<!-- exit-codes -->")[1].split("<!-- /exit-codes -->")[0].strip()
    assert block == table_markdown()


def test_check_walks_subdirectories_of_a_directory_without_main_policy(capsys, tmp_path) -> None:
    code, out, err = call(capsys, "check", str(EX))
    assert code == ExitCode.OK and "3 rule files checked: no problems" in out, (out, err)
    nested = tmp_path / "team" / "inner"
    nested.mkdir(parents=True)
    (nested / "bad.policy").write_text(
        'tokenizer tiktoken "o200k_base"\nlimit x: request_prompt <= -5 tokens\n', encoding="utf-8"
    )
    code, out, err = call(capsys, "check", str(tmp_path))
    assert code == ExitCode.INVALID_RULES
    assert "bad.policy:2:" in out + err


def test_python_dash_m_policy_engine() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "policy_engine", "eval", SMALL], capture_output=True, text=True, cwd=ROOT
    )
    assert proc.returncode == 0 and proc.stdout.startswith("ALLOWED  ")


@pytest.mark.parametrize(
    "shell, marker", [("bash", "complete"), ("zsh", "#compdef policy"), ("fish", "complete -c policy")]
)
def test_completion_scripts_know_the_commands(capsys, shell: str, marker: str) -> None:
    code, out, _ = call(capsys, "completion", shell)
    assert code == 0 and marker in out
    for command in ("eval", "explain", "check", "completion"):
        assert command in out
    if shell == "bash" and shutil.which("bash"):
        assert subprocess.run(["bash", "-n"], input=out, text=True).returncode == 0


def test_colour_follows_rich_env_and_explain_wraps() -> None:
    forced = run("explain", SEED, *KNOW, env={"FORCE_COLOR": "1", "NO_COLOR": "", "COLUMNS": "60"})
    assert "\x1b[" in forced.stdout
    plain = run("explain", SEED, *KNOW, env={"COLUMNS": "60", "NO_COLOR": "1"})
    assert "\x1b[" not in plain.stdout
    lines = plain.stdout.splitlines()
    assert max(len(line) for line in lines) <= 60, max(lines, key=len)
    assert (
        "fits after rung 2 (trim_fields)" in " ".join(line.strip("│├└─ ") for line in lines) or "stop" in plain.stdout
    )
    assert f"{SEED}" in plain.stdout.replace("\n", "") or "seed_5x15x72x60.json" in plain.stdout


def test_paths_print_as_given(capsys, monkeypatch) -> None:
    monkeypatch.chdir(ROOT)
    _code, out, _ = call(capsys, "eval", "examples/packs", "--knowledge-pack-dir", "examples/knowledge")
    files = [line.split()[1].rstrip(":") for line in out.splitlines()[:3]]
    assert files == [
        "examples/packs/blocked_oversized_guard.json",
        "examples/packs/seed_5x15x72x60.json",
        "examples/packs/small_2x4x10x8.json",
    ]
