"""A cold `policy eval` imports only what evaluating needs (issue 10's cold-start row): rich
only to draw on a terminal, jsonschema only when a pack fails the fast check, yaml only for
YAML, hypothesis only for `policy verify`; nor the entry-point scan, multiprocessing (one
process) or the XML writer (JUnit, HTML); nor `regex`, which Lark would import for nothing;
nor, with the default rules (compiled ahead of time), the rule language or Lark at all.
Checked in a fresh process's sys.modules."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

PROBE = """
import json, sys
import policy_engine
policy_engine.OWN_PROCESS = True  # the `policy` command's process, as its entry point sets
from policy_engine.cli.main import main
code = main(sys.argv[1:])
print(json.dumps([code, sorted(sys.modules)]), file=sys.stderr)
"""
NOT_ON_EVAL = (
    "rich",
    "jsonschema",
    "yaml",
    "hypothesis",
    "importlib.metadata",
    "multiprocessing",
    "xml.etree",
    "regex",  # Lark imports it when installed, for grammars that need it; ours does not (dsl/lark_import.py)
    "importlib.resources",  # the package's data is read from beside its modules; only `policy schema` needs it
    "policy_engine.dsl",  # the default rules come compiled (rules/prebuilt.py): no rule language,
    "lark",  # no parser
    "difflib",  # suggestions and `fmt --diff` only
    "policy_engine.conditions",  # `when` blocks: the default rules have none
)


def modules_after(args: list[str], cwd: Path) -> tuple[int, set[str]]:
    run = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=120,
    )
    code, modules = json.loads(run.stderr.strip().splitlines()[-1])
    return code, set(modules)


@pytest.mark.parametrize("fmt", ["json", "text", "sarif", "github"])
def test_eval_imports_nothing_it_does_not_use(fmt: str, tmp_path: Path) -> None:
    pack = ROOT / "examples" / "packs" / "seed_5x15x72x60.json"
    code, modules = modules_after(["eval", str(pack), "--format", fmt, "--output", str(tmp_path / "out")], tmp_path)
    assert code == 0
    assert "policy_engine.evaluator" in modules and "tiktoken" in modules  # it did evaluate, exactly
    loaded = sorted(m for m in modules if any(m == name or m.startswith(name + ".") for name in NOT_ON_EVAL))
    assert loaded == []


def test_named_rules_are_compiled(tmp_path: Path) -> None:
    """--rules (even naming the default file) takes the rule language: the compiled file is
    for the default rules only."""
    pack = ROOT / "examples" / "packs" / "seed_5x15x72x60.json"
    rules = ROOT / "rules" / "default.policy"
    args = ["eval", str(pack), "--rules", str(rules), "--format", "json", "--output", str(tmp_path / "out")]
    code, modules = modules_after(args, tmp_path)
    assert code == 0 and "policy_engine.dsl" in modules and "lark" in modules
    assert "regex" not in modules  # Lark without it (dsl/lark_import.py)


def test_the_probe_sees_a_lazy_import_when_it_is_used(tmp_path: Path) -> None:
    """The check above can fail: an invalid pack goes through jsonschema, and it shows."""
    bad = tmp_path / "bad.json"
    bad.write_text('{"candidate_fields": 3}', encoding="utf-8")
    code, modules = modules_after(["eval", str(bad), "--format", "json", "--output", str(tmp_path / "out")], tmp_path)
    assert code != 0 and "jsonschema" in modules
