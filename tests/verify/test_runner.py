"""`policy verify`: passes on the shipped policies, and when an invariant fails it prints a
shrunk counterexample that loads as a pack and replays with `policy eval`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from policy_engine.cli.exit_codes import ExitCode
from policy_engine.cli.main import main
from policy_engine.dsl import default_rules_path, load_policy
from policy_engine.packs import load_pack, load_usage
from policy_engine.verify import invariants as inv
from policy_engine.verify.invariants import Violation
from policy_engine.verify.runner import verify_policy
from tests.conftest import ROOT


def _no_explore_fields(c: inv.Checked) -> None:
    """A deliberately false 'invariant', to exercise the failure path: it fails as soon as
    a decision sends an explore field."""
    if c.decision.selection["fields"]["explore"]:
        raise Violation("no_explore_fields", "an explore field was kept")


def test_the_shipped_policies_verify_clean() -> None:
    for path in (default_rules_path(), ROOT / "rules" / "tight.policy"):
        report = verify_policy(load_policy(path), examples=25)
        assert report.ok, report.failure
        assert sum(report.outcomes.values()) >= 25
        assert report.rungs_applied > 0, "generated cases never ran the ladder"


def test_a_failure_is_shrunk_to_a_minimal_replayable_pack() -> None:
    report = verify_policy(
        load_policy(default_rules_path()), examples=200, invariants={"no_explore_fields": _no_explore_fields}
    )
    assert not report.ok and report.failure is not None and report.counterexample is not None
    assert report.failure.invariant == "no_explore_fields"
    pack = report.counterexample.pack
    # shrunk: the explore field the failure needs (at most one other: hypothesis bounds its
    # shrinking by time, so a heavily loaded machine stops a step or two short), no operators;
    # owners shrink less well (a field's dataset is drawn from the list), so only bound them
    # (generated packs hold up to dozens of each)
    fields = pack["candidate_fields"]
    assert len(fields) <= 2 and any(f["lane"] == "explore" for f in fields)
    assert pack["candidate_operators"] == []
    assert len(pack["candidate_datasets"]) <= 5 and len(pack["selected_subcategories"]) <= 5
    load_pack(pack)  # it is a valid pack


def test_cli_prints_and_saves_the_counterexample(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(inv.INVARIANTS, "no_explore_fields", _no_explore_fields)
    out_dir = tmp_path / "cex"
    code = main(["verify", "--examples", "100", "--out", str(out_dir)])
    text = capsys.readouterr().out
    assert code == ExitCode.FAILED
    assert "FAILED no_explore_fields: an explore field was kept" in text
    assert "policy eval pack.json --usage usage.json" in text
    saved = json.loads((out_dir / "pack.json").read_text())
    assert json.loads(text.split("pack.json:\n", 1)[1].split("\nsaved ", 1)[0]) == saved
    load_usage(out_dir / "usage.json")
    # the replay: the saved files evaluate without error
    assert main(["eval", str(out_dir / "pack.json"), "--usage", str(out_dir / "usage.json"), "--format", "json"]) in (
        ExitCode.OK,
        ExitCode.BLOCKED,
    )


def test_cli_json_report_and_clean_exit(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["verify", "--examples", "10", "--format", "json", "--seed", "7"])
    report = json.loads(capsys.readouterr().out)
    assert code == ExitCode.OK
    assert report["ok"] is True and report["seed"] == 7 and report["failure"] is None
    assert report["invariants"] == list(inv.INVARIANTS)


def test_an_engine_crash_is_reported_as_a_counterexample(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(c: inv.Checked) -> None:
        if c.decision.selection["operators"]["exploit"]:
            raise ZeroDivisionError("simulated engine bug")

    monkeypatch.setitem(inv.INVARIANTS, "crash", crash)
    code = main(["verify", "--examples", "50"])
    text = capsys.readouterr().out
    assert code == ExitCode.FAILED
    assert "FAILED no_crash: ZeroDivisionError: simulated engine bug" in text


@pytest.mark.parametrize("n", ["0", "-3", "100001"])
def test_bad_example_counts_are_usage_errors(n: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", "--examples", n]) == ExitCode.USAGE
    assert "C107" in capsys.readouterr().err
