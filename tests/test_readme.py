"""The README's snippets run as written, from a directory that looks like the checkout
(examples/ and rules/), and a user's script type-checks against the installed package.

Python blocks run whole. Shell blocks made only of `cp` and `.venv/bin/policy` lines run
line by line with this interpreter's `policy`; the quick start (it creates the venv) is
what `.ci/run` runs, and the demo block starts a server in the background, so those two
are left to CI and tests/adapters."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")
PYTHON_BLOCKS = re.findall(r"```python\n(.*?)```", README, re.S)
SHELL_BLOCKS = [
    b
    for b in re.findall(r"```bash\n(.*?)```", README, re.S)
    if all(line.startswith(("cp ", ".venv/bin/policy ")) for line in b.strip().splitlines())
]
POLICY = shutil.which("policy", path=str(Path(sys.executable).parent)) or "policy"


@pytest.fixture()
def workdir(tmp_path: Path) -> Path:
    for name in ("examples", "rules"):
        (tmp_path / name).symlink_to(ROOT / name)
    return tmp_path


def test_readme_has_snippets_to_run() -> None:
    assert len(PYTHON_BLOCKS) >= 2 and len(SHELL_BLOCKS) >= 2


@pytest.mark.parametrize("block", PYTHON_BLOCKS, ids=lambda b: b.strip().splitlines()[-1][:40])
def test_python_snippet_runs(block: str, workdir: Path) -> None:
    proc = subprocess.run([sys.executable, "-c", block], cwd=workdir, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("block", SHELL_BLOCKS, ids=lambda b: b.strip().splitlines()[-1][:40])
def test_shell_snippet_runs(block: str, workdir: Path) -> None:
    for line in block.strip().splitlines():
        command = line.split("  #")[0].strip()
        if command.startswith(".venv/bin/policy "):
            command = f"'{POLICY}' " + command[len(".venv/bin/policy ") :]
        proc = subprocess.run(command, shell=True, cwd=workdir, capture_output=True, text=True, timeout=300)
        # 2 is a blocked pack, shown on purpose; anything else is a broken snippet
        assert proc.returncode in (0, 2), (line, proc.returncode, proc.stdout[-500:], proc.stderr[-500:])
        assert "Traceback" not in proc.stderr


def test_api_error_classes_are_exported_and_explain_is_checked() -> None:
    from policy_engine import api

    for name in (
        "PolicyError",
        "RuleSyntaxError",
        "RuleCheckError",
        "PackError",
        "UsageInputError",
        "TokenizerError",
        "Diagnostic",
    ):
        assert name in api.__all__ and hasattr(api, name)
    policy = api.load_policy(ROOT / "rules" / "default.policy")
    with pytest.raises(api.PolicyError) as err:
        api.evaluate_pack(
            policy, api.read_pack_document(ROOT / "examples" / "packs" / "small_2x4x10x8.json")[0], explain="rulez"
        )
    assert err.value.diagnostics[0].code == "V102" and "'rules'" in err.value.diagnostics[0].hint


def test_mypy_strict_passes_on_a_users_script(tmp_path: Path) -> None:
    """After the README's install (editable, strict mode), mypy finds the package and its
    `py.typed` from outside the checkout."""
    script = tmp_path / "user.py"
    script.write_text(
        "from policy_engine.api import Decision, PolicyError, evaluate_pack, load_policy, read_pack_document\n\n\n"
        "def outcome(rules: str, pack: str) -> str:\n"
        "    try:\n"
        "        decision: Decision = evaluate_pack(load_policy(rules), read_pack_document(pack)[0])\n"
        "    except PolicyError as exc:\n"
        "        return exc.diagnostics[0].code\n"
        "    return decision.outcome\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MYPYPATH")}
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "user.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
