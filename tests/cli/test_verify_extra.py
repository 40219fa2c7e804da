"""`policy verify` without the `verify` extra: a clear C140 with the install command, exit 64."""

from __future__ import annotations

import sys

import pytest

from policy_engine.cli.exit_codes import ExitCode
from policy_engine.cli.main import main


def test_verify_without_hypothesis_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in [m for m in sys.modules if m == "hypothesis" or m.startswith(("hypothesis.", "policy_engine.verify."))]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "hypothesis", None)  # `import hypothesis` now fails as if not installed
    code = main(["verify", "--examples", "1"])
    err = capsys.readouterr().err
    assert code == ExitCode.USAGE
    assert "C140" in err
    assert "pip install 'policy-engine[verify]'" in err


def test_the_evaluation_path_never_imports_hypothesis() -> None:
    import subprocess

    probe = (
        "import sys, policy_engine.api, policy_engine.adapters.gate, policy_engine.cli.commands;"
        "sys.exit(1 if any(m == 'hypothesis' or m.startswith('hypothesis.') for m in sys.modules) else 0)"
    )
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True).returncode == 0
