"""The package type-checks under `mypy --strict` (configured in pyproject.toml).

Strict typing found real bugs here (a counter used through a Protocol that lacks the
attribute read, an optional position passed to `Span`); this keeps the count at zero.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_mypy_strict_reports_no_error() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "policy_engine"], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("Success: no issues found"), proc.stdout
