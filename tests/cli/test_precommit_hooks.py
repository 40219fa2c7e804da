"""The shipped `.pre-commit-hooks.yaml`, driven through pre-commit itself (`try-repo`) on a
scratch repository that looks like a user's: two policies whose fragments are included by
a main file (one fragment clean, one with a mistake), packs under `packs/` (one allowed, one
blocked), and other JSON (package.json, editor settings) the eval hook must leave alone.

try-repo installs the hooks' environment from this checkout into a fresh store on every
call (about a minute here), so one run covers every hook, passing the files one batch at a
time as pre-commit does, and each hook's verdict is read from its own section."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

PRE_COMMIT = [sys.executable, "-m", "pre_commit"]
EX = ROOT / "examples"


def git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", *args],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
        env={
            **os.environ,
            "GIT_AUTHOR_NAME": "t",
            "GIT_AUTHOR_EMAIL": "t@example.com",
            "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@example.com",
        },
    )


def hooks_repo(tmp_path: Path) -> Path:
    """This checkout as a clean git repository (try-repo installs from a commit)."""
    repo = tmp_path / "hooks" / "policy_engine"
    ignore = shutil.ignore_patterns(
        ".venv",
        ".git",
        "__pycache__",
        "*.egg-info",
        "build",
        ".pytest_cache",
        ".hypothesis",
        ".mypy_cache",
        "tests",
        "benchmarks",
    )
    shutil.copytree(ROOT, repo, ignore=ignore)
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "hooks")
    return repo


def user_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "user"
    for d in ("rules/good", "rules/bad", "packs", ".vscode"):
        (repo / d).mkdir(parents=True)
    for name, fragment in (("good", "completion budget 1_600 tokens\n"), ("bad", "completion budget 1_600 tokns\n")):
        (repo / "rules" / name / "main.policy").write_text(
            'policy "team"\ninclude "common.policy"\n\nlimit request_prompt: request_prompt <= 12_000 tokens\n'
        )
        (repo / "rules" / name / "common.policy").write_text('tokenizer tiktoken "o200k_base"\n\n' + fragment)
    shutil.copy(EX / "packs" / "small_2x4x10x8.json", repo / "packs" / "small.json")
    shutil.copy(EX / "packs" / "blocked_oversized_guard.json", repo / "packs" / "big.json")
    (repo / "package.json").write_text('{"name": "ui", "version": "1.0.0"}\n')
    (repo / ".vscode" / "settings.json").write_text('{"editor.tabSize": 2}\n')
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    return repo


def sections(output: str) -> dict[str, str]:
    """Each hook's verdict line and its output, keyed by hook id."""
    out: dict[str, str] = {}
    for part in re.split(r"\n(?=policy (?:check|fmt|eval) \()", output):
        found = re.search(r"- hook id: (policy-[a-z]+)", part)
        if found:
            out[found.group(1)] = part
    return out


def test_hooks_manifest_is_valid() -> None:
    proc = subprocess.run(
        [*PRE_COMMIT, "validate-manifest", str(ROOT / ".pre-commit-hooks.yaml")], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_hooks_through_pre_commit_try_repo(tmp_path: Path) -> None:
    hooks, user = hooks_repo(tmp_path), user_repo(tmp_path)
    files = [
        "rules/good/common.policy",
        "rules/bad/common.policy",
        "packs/small.json",
        "packs/big.json",
        "package.json",
        ".vscode/settings.json",
    ]
    proc = subprocess.run(
        [*PRE_COMMIT, "try-repo", str(hooks), "--verbose", "--files", *files],
        cwd=user,
        capture_output=True,
        text=True,
        env={**os.environ, "PRE_COMMIT_HOME": str(tmp_path / "home"), "NO_COLOR": "1"},
        timeout=1200,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    hook = sections(proc.stdout)
    assert set(hook) == {"policy-check", "policy-fmt", "policy-eval"}, proc.stdout

    # fragments passed alone are checked through the file that includes them: the clean one
    # passes (no "no tokenizer"), the broken one fails at its own line
    assert "Failed" in hook["policy-check"] and "E216" not in hook["policy-check"]
    assert re.search(r"rules/bad/common.policy:3:\d+: E103 unexpected name `tokns`", hook["policy-check"]), hook[
        "policy-check"
    ]
    assert "rules/good" not in hook["policy-check"]

    # formatted files stay as they are; the file that does not parse cannot be formatted
    assert "reformatted" not in hook["policy-fmt"] and "rules/good" not in hook["policy-fmt"]
    assert "rules/bad/common.policy:3:" in hook["policy-fmt"]

    # only packs reach policy eval: never package.json nor editor settings
    assert "Failed" in hook["policy-eval"]
    assert "ALLOWED  packs/small.json" in hook["policy-eval"] and "BLOCKED  packs/big.json" in hook["policy-eval"]
    assert (
        "package.json" not in hook["policy-eval"]
        and "settings.json" not in hook["policy-eval"]
        and "P107" not in hook["policy-eval"]
    )
