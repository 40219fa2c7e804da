"""The benchmark command runs and prints every number it promises (no timing is asserted:
performance is measured by benchmarks/run.py, never by unit tests)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT


def test_benchmark_smoke_run_reports_every_section(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick", "--packs", "4", "--json", str(out)],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    for needle in ("baseline: one tiktoken encode", "decision, exact, warm", "decision, rough", "whole ladder", "gate:", "packs/s", "memory: peak traced"):
        assert needle in proc.stdout, needle
    numbers = json.loads(out.read_text())
    assert set(numbers) >= {"seed", "whole_ladder", "gate", "corpus", "memory"}
    assert numbers["corpus"]["packs"] == 4 and numbers["seed"]["rungs"] == 3
