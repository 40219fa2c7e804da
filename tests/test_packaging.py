"""The installed package, not only the checkout, carries rules, schemas and the grammar.

Builds a real wheel, installs it into a scratch directory and imports it from there with
the checkout out of reach, as a user's `pip install` would.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        text=True,
    )
    (built,) = out.glob("policy_engine-*.whl")
    return built


def test_wheel_ships_rules_schemas_grammar_and_marker(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in (
        "policy_engine/rules/default.policy",
        "policy_engine/rules/default.policy.pickle",
        "policy_engine/schemas/retrieval_pack.schema.json",
        "policy_engine/schemas/decision.schema.json",
        "policy_engine/dsl/grammar.lark",
        "policy_engine/dsl/grammar.lalr",
        "policy_engine/py.typed",
        "policy_engine/adapters/templates/run.html",
        "policy_engine/schemas/budget.schema.json",
        "policy_engine/schemas/openapi.json",
    ):
        assert required in names, f"{required} missing from the wheel"


def test_installed_wheel_finds_its_data_outside_the_checkout(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
        text=True,
    )
    probe = (
        "import json, policy_engine, importlib.resources as r;"
        "from policy_engine.dsl import default_rules_path, load_policy;"
        f"assert policy_engine.__file__.startswith({str(target)!r}), policy_engine.__file__;"
        "p = load_policy(default_rules_path());"
        "json.loads(r.files('policy_engine.schemas').joinpath('decision.schema.json').read_text());"
        "from policy_engine.dsl.parser import grammar;"
        "assert grammar().source_path == '<deserialized>', 'the shipped parser table was not used';"
        "from policy_engine.rules.prebuilt import load_default;"
        "assert load_default() == p, 'the compiled default rules were not used';"
        "print(p.name)"
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    run = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip()
