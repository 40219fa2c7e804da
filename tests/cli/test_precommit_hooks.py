"""The shipped `.pre-commit-hooks.yaml`, driven through pre-commit itself (`try-repo`) on a
scratch repository that looks like a user's: rule files with an included fragment, packs
under `packs/`, and other JSON (package.json, editor settings) the eval hook must leave
alone. pre-commit installs the hook's environment from this checkout, as it would from a
tag; the environment is built once per session."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

PRE_COMMIT = [sys.executable, "-m", "pre_commit"]
EX = ROOT / "examples"


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True,
                   env={**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"})


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One directory for the hooks repository, pre-commit's store and the users'
    repositories: try-repo names the hooks repository by its path relative to the user's,
    and pre-commit keys its environments on that name, so every user repository sits at
    the same depth and the hook environment is installed once."""
    return tmp_path_factory.mktemp("pre-commit")


@pytest.fixture(scope="module")
def hook_home(base: Path) -> Path:
    return base / "home"


@pytest.fixture(scope="module")
def hooks_repo(base: Path) -> Path:
    """This checkout as a clean git repository (try-repo installs from a commit)."""
    repo = base / "hooks" / "policy_engine"
    ignore = shutil.ignore_patterns(".venv", ".git", "__pycache__", "*.egg-info", "build", ".pytest_cache", ".hypothesis", ".mypy_cache", "tests", "benchmarks")
    shutil.copytree(ROOT, repo, ignore=ignore)
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "hooks")
    return repo


@pytest.fixture()
def user_repo(base: Path, request: pytest.FixtureRequest) -> Path:
    repo = base / "users" / request.node.name
    (repo / "rules").mkdir(parents=True)
    (repo / "packs").mkdir()
    (repo / ".vscode").mkdir()
    (repo / "rules" / "main.policy").write_text('policy "team"\ninclude "common.policy"\n\nlimit request_prompt: request_prompt <= 12_000 tokens\n')
    (repo / "rules" / "common.policy").write_text('tokenizer tiktoken "o200k_base"\n\ncompletion budget 1_600 tokens\n')
    shutil.copy(EX / "packs" / "small_2x4x10x8.json", repo / "packs" / "small.json")
    (repo / "package.json").write_text('{"name": "ui", "version": "1.0.0"}\n')
    (repo / ".vscode" / "settings.json").write_text('{"editor.tabSize": 2}\n')
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    return repo


def try_repo(hooks: Path, user: Path, home: Path, hook: str, *files: str) -> subprocess.CompletedProcess[str]:
    args = ["--files", *files] if files else ["--all-files"]
    return subprocess.run([*PRE_COMMIT, "try-repo", str(hooks), hook, "--verbose", *args], cwd=user, capture_output=True, text=True,
                          env={**os.environ, "PRE_COMMIT_HOME": str(home), "NO_COLOR": "1"}, timeout=900)


def test_hooks_manifest_is_valid() -> None:
    proc = subprocess.run([*PRE_COMMIT, "validate-manifest", str(ROOT / ".pre-commit-hooks.yaml")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_eval_hook_runs_on_packs_only(hooks_repo: Path, user_repo: Path, hook_home: Path) -> None:
    proc = try_repo(hooks_repo, user_repo, hook_home, "policy-eval")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ALLOWED  packs/small.json" in proc.stdout
    assert "package.json" not in proc.stdout and "settings.json" not in proc.stdout and "P107" not in proc.stdout


def test_eval_hook_fails_on_a_blocked_pack(hooks_repo: Path, user_repo: Path, hook_home: Path) -> None:
    shutil.copy(EX / "packs" / "blocked_oversized_guard.json", user_repo / "packs" / "big.json")
    git(user_repo, "add", "-A")
    proc = try_repo(hooks_repo, user_repo, hook_home, "policy-eval")
    assert proc.returncode == 1 and "BLOCKED  packs/big.json" in proc.stdout, proc.stdout + proc.stderr


def test_check_hook_passes_a_fragment_given_alone(hooks_repo: Path, user_repo: Path, hook_home: Path) -> None:
    proc = try_repo(hooks_repo, user_repo, hook_home, "policy-check", "rules/common.policy")
    assert proc.returncode == 0 and "E216" not in proc.stdout, proc.stdout + proc.stderr
    (user_repo / "rules" / "common.policy").write_text('tokenizer tiktoken "o200k_base"\ncompletion budget 1_600 tokns\n')
    git(user_repo, "add", "-A")
    proc = try_repo(hooks_repo, user_repo, hook_home, "policy-check", "rules/common.policy")
    assert proc.returncode == 1 and "rules/common.policy:2:" in proc.stdout and "did you mean `tokens`?" in proc.stdout, proc.stdout


def test_fmt_hook_passes_formatted_files(hooks_repo: Path, user_repo: Path, hook_home: Path) -> None:
    proc = try_repo(hooks_repo, user_repo, hook_home, "policy-fmt")
    assert proc.returncode == 0, proc.stdout + proc.stderr
