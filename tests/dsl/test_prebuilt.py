"""The compiled default rules (rules/default.policy.pickle, rules/prebuilt.py) are what
compiling rules/default.policy gives, to the last span; a stale or foreign file is ignored.

If the first test fails after a change to the rules, the rule language or the policy
model: `python -m policy_engine.rules.prebuilt`."""

from __future__ import annotations

import dataclasses
import io
import json
import os
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Any

import pytest

from policy_engine.cli.main import main
from policy_engine.dsl import default_rules_path, load_policy
from policy_engine.rules import prebuilt
from tests.conftest import ROOT


def deep(value: Any) -> Any:
    """Every field of every dataclass, spans and the template's digest included (``==``
    on a policy skips spans and the template document)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
        if "template_spec" in fields and fields["template_spec"] is not None:
            spec = fields["template_spec"]
            fields["template_spec"] = (spec.name, spec.file, spec.digest)
        return (type(value).__qualname__, {k: deep(v) for k, v in fields.items()})
    if isinstance(value, (tuple, list)):
        return tuple(deep(v) for v in value)
    if isinstance(value, dict):
        return {k: deep(v) for k, v in value.items()}
    assert isinstance(value, (str, int, Decimal, Enum, type(None))), type(value)
    return value


def test_the_shipped_file_is_current() -> None:
    first = prebuilt.FILE.read_bytes().partition(b"\n")[0]
    # built on the Python the project is developed with; on another one the loader compiles
    # the rules instead (the pickle is not trusted across versions), so only the sources count
    shipped, here = json.loads(first), prebuilt.header()
    shipped.pop("python"), here.pop("python")
    assert shipped == here, (
        "rules/default.policy.pickle is stale (the rules, dsl/, policy.py or errors.py changed): "
        "run `python -m policy_engine.rules.prebuilt` and commit the file"
    )


def test_loading_gives_what_compiling_gives() -> None:
    loaded = prebuilt.load_default()
    compiled = load_policy(default_rules_path())
    assert loaded is not None
    assert loaded == compiled
    assert deep(loaded) == deep(compiled)
    assert default_rules_path() == prebuilt.DEFAULT


def test_the_file_holds_no_path_of_the_machine_that_built_it(monkeypatch: pytest.MonkeyPatch) -> None:
    saved = prebuilt.FILE.read_bytes()
    assert str(ROOT).encode() not in saved
    moved = "/elsewhere/policy_engine/rules/default.policy"
    policy = prebuilt._Unpickler(io.BytesIO(saved.partition(b"\n")[2]), moved).load()
    spans = {s.span.file for s in policy.settings.limits}
    assert spans == {moved}


@pytest.mark.parametrize("damage", ["stale", "missing", "not json", "truncated"])
def test_a_stale_missing_or_damaged_file_is_ignored(
    damage: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "default.policy.pickle"
    if damage == "stale":
        first, _, rest = prebuilt.FILE.read_bytes().partition(b"\n")
        header = {**json.loads(first), "sources_sha256": "0" * 64}
        target.write_bytes(json.dumps(header).encode() + b"\n" + rest)
    elif damage == "not json":
        target.write_bytes(b"{oops\n" + prebuilt.FILE.read_bytes().partition(b"\n")[2])
    elif damage == "truncated":
        target.write_bytes(prebuilt.FILE.read_bytes()[:-40])
    monkeypatch.setattr(prebuilt, "FILE", target)
    assert prebuilt.load_default() is None


def test_eval_with_the_default_rules_decides_as_with_them_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The CLI's default path (compiled file) and --rules naming the same file (compiled
    now) print the same decision, byte for byte."""
    monkeypatch.delenv("POLICY_RULES", raising=False)
    pack = str(ROOT / "examples" / "packs" / "seed_5x15x72x60.json")
    knowledge = str(ROOT / "examples" / "knowledge")
    common = ["eval", pack, "--knowledge-pack-dir", knowledge, "--format", "json", "--explain", "full"]
    outs = []
    for extra in ([], ["--rules", os.fspath(default_rules_path())]):
        out = tmp_path / f"out{len(outs)}.json"
        assert main([*common, *extra, "--output", str(out)]) == 0
        outs.append(json.loads(out.read_text(encoding="utf-8")))
    capsys.readouterr()
    for doc in outs:
        doc.pop("seconds", None)
    assert outs[0] == outs[1]
