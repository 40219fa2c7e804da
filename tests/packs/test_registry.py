"""Pack formats from entry points: found when no built-in takes the document, and the
distribution scan skipped when a built-in does (it costs a cold start tens of ms)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

PLUGIN = """
from policy_engine.packs.registry import PackFormat
from policy_engine.packs import agent_format

FORMAT = PackFormat(
    "toy-format/v1",
    lambda doc: isinstance(doc, dict) and "toy" in doc,
    agent_format.adapt,
    lambda doc, file: [],
    agent_format.trim,
)
"""

PROBE = """
import json, sys
from policy_engine.packs.registry import find_format
seed = json.load(open(sys.argv[1], encoding="utf-8"))
first = find_format(seed, "seed.json", None).name
scanned_for_builtin = "importlib.metadata" in sys.modules
toy = find_format({"toy": 1}, "toy.json", None).name
named = find_format({}, "x.json", "toy-format/v1").name
print(json.dumps([first, scanned_for_builtin, toy, named]))
"""


def test_plugins_are_found_and_not_scanned_for_a_builtin_pack(tmp_path: Path) -> None:
    (tmp_path / "toy_plugin.py").write_text(PLUGIN, encoding="utf-8")
    info = tmp_path / "toy_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-plugin\nVersion: 0.1\n", encoding="utf-8")
    (info / "entry_points.txt").write_text(
        "[policy_engine.pack_formats]\ntoy-format/v1 = toy_plugin:FORMAT\n", encoding="utf-8"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    run = subprocess.run(
        [sys.executable, "-c", PROBE, str(ROOT / "examples" / "packs" / "seed_5x15x72x60.json")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == ["agent-retrieval-pack/v1", False, "toy-format/v1", "toy-format/v1"]
