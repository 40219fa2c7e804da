"""`policy replay`: a recorded decision replays byte-identically with the same inputs (at
every explain level, with usage and prices), and each kind of drift is named: rules,
tokenizer, engine version, inputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import policy_engine
from policy_engine.cli.exit_codes import ExitCode
from policy_engine.cli.main import main
from tests.conftest import ROOT, SHARED

SHARED_KNOW = ["--knowledge-pack-dir", str(SHARED / "knowledge"), "--idea", str(SHARED / "ideaspec.example.json")]
SEED = str(SHARED / "packs" / "seed_5x15x72x60.json")
EX = ROOT / "examples"


def call(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def record(capsys, tmp_path: Path, pack: str, *extra: str, name: str = "decision.json") -> Path:
    code, out, err = call(capsys, "eval", pack, *extra, "--format", "json")
    assert code in (ExitCode.OK, ExitCode.BLOCKED), err
    path = tmp_path / name
    path.write_text(out, encoding="utf-8")
    return path


@pytest.mark.parametrize("rules", ["default", "tight"])
@pytest.mark.parametrize("pack", ["small_2x4x10x8", "seed_5x15x72x60", "large_8x30x400x120"])
def test_shared_packs_replay_byte_identical(capsys, tmp_path: Path, pack: str, rules: str) -> None:
    path = str(SHARED / "packs" / f"{pack}.json")
    rules_args = ["--rules", str(ROOT / "rules" / f"{rules}.policy")]
    decision = record(capsys, tmp_path, path, *rules_args, *SHARED_KNOW)
    code, out, _ = call(capsys, "replay", str(decision), "--pack", path, *rules_args, *SHARED_KNOW)
    assert code == ExitCode.OK and out.endswith("is BYTE-IDENTICAL\n")


@pytest.mark.parametrize("explain", ["off", "full"])
def test_explain_level_is_replayed(capsys, tmp_path: Path, explain: str) -> None:
    decision = record(capsys, tmp_path, SEED, *SHARED_KNOW, "--explain", explain)
    assert call(capsys, "replay", str(decision), "--pack", SEED, *SHARED_KNOW)[0] == ExitCode.OK


def test_usage_and_spend_are_read_back_from_the_decision(capsys, tmp_path: Path) -> None:
    """Recorded with a usage snapshot (tokens and USD) under a priced policy whose day cap
    (40,000 tokens) that usage (1,200,000) already exceeds: the replay needs no --usage to be
    identical; with an empty usage the same call is no longer blocked."""
    rules = ["--rules", str(EX / "policies" / "demo.policy")]
    decision = record(
        capsys, tmp_path, SEED, *rules, *SHARED_KNOW, "--usage", str(EX / "usage.json"), "--completion-tokens", "700"
    )
    (result,) = json.loads(decision.read_text())["results"]
    recorded = result["decision"]
    assert recorded["metrics"]["projected_day_micro_usd"] > recorded["metrics"]["request_micro_usd"] > 0
    assert call(capsys, "replay", str(decision), "--pack", SEED, *rules, *SHARED_KNOW)[0] == ExitCode.OK
    empty = tmp_path / "empty_usage.json"
    empty.write_text('{"batch": {"tokens": 0}, "day": {"tokens": 0}}')
    code, out, _ = call(
        capsys, "replay", str(decision), "--pack", SEED, *rules, *SHARED_KNOW, "--usage", str(empty), "--format", "json"
    )
    report = json.loads(out)
    assert code == ExitCode.FAILED and report["manifest"] == []
    assert recorded["outcome"] == "blocked" and "day_total" in recorded["reasons"]
    changes = {c["what"]: (c["recorded"], c["replayed"]) for c in report["decision"]}
    assert changes["outcome"] == ("blocked", "trimmed") and changes["reason"] == (recorded["reason"], None)
    assert "/metrics/projected_day_tokens" in report["other_differences"]


def test_rules_change_is_named_and_its_effect_shown(capsys, tmp_path: Path) -> None:
    """Raising request_prompt 12,000 -> 13,500: the seed pack (13,172 tokens after rung 1, see
    tests/golden/decisions/seed_5x15x72x60.default.json; "13500" costs the prompt as many
    tokens as "12000") stops after one rung, keeping 61 fields instead of 23."""
    decision = record(capsys, tmp_path, SEED, *SHARED_KNOW)
    new = tmp_path / "new.policy"
    new.write_text(
        (ROOT / "rules" / "default.policy").read_text().replace("request_prompt <= 12_000", "request_prompt <= 13_500")
    )
    code, out, _ = call(
        capsys, "replay", str(decision), "--pack", SEED, *SHARED_KNOW, "--rules", str(new), "--format", "json"
    )
    report = json.loads(out)
    assert code == ExitCode.FAILED and not report["identical"]
    entries = {m["entry"]: m["meaning"] for m in report["manifest"]}
    assert (
        entries["rules_digest"] == "the rules changed"
        and "tokenizer" not in entries
        and "engine_version" not in entries
    )
    changes = {c["what"]: (c["recorded"], c["replayed"]) for c in report["decision"]}
    assert changes["fields kept"] == (23, 61)
    assert changes["fallback_count"] == (3, 1)
    assert changes["prompt_tokens"] == (10897, 13172)
    assert changes["rungs"] == (
        ["trim_fields factor 0.85", "trim_fields factor 0.70", "trim_fields factor 0.55"],
        ["trim_fields factor 0.85"],
    )
    assert "outcome" not in changes and "/limits/request_prompt/value" in report["other_differences"]
    code, text, _ = call(capsys, "replay", str(decision), "--pack", SEED, *SHARED_KNOW, "--rules", str(new))
    assert "rules_digest:" in text and "(the rules changed)" in text and "fields kept: 23 -> 61" in text


def test_other_tokenizer_is_named(capsys, tmp_path: Path) -> None:
    decision = record(capsys, tmp_path, SEED, *SHARED_KNOW)
    new = tmp_path / "cl100k.policy"
    new.write_text((ROOT / "rules" / "default.policy").read_text().replace('"o200k_base"', '"cl100k_base"'))
    code, out, _ = call(
        capsys, "replay", str(decision), "--pack", SEED, *SHARED_KNOW, "--rules", str(new), "--format", "json"
    )
    entries = {m["entry"]: m for m in json.loads(out)["manifest"]}
    assert code == ExitCode.FAILED
    assert entries["tokenizer"]["recorded"] == "o200k_base" and entries["tokenizer"]["replayed"] == "cl100k_base"
    assert entries["vocab_hash"]["meaning"] == "another tokenizer vocabulary"


def test_other_engine_version_is_named(capsys, tmp_path: Path, monkeypatch) -> None:
    decision = record(capsys, tmp_path, SEED, *SHARED_KNOW)
    monkeypatch.setattr(policy_engine, "__version__", "9.9.9")
    code, out, _ = call(capsys, "replay", str(decision), "--pack", SEED, *SHARED_KNOW)
    assert code == ExitCode.FAILED
    assert (
        f"engine_version: {json.loads(decision.read_text())['results'][0]['decision']['manifest']['engine_version']} -> 9.9.9  (another engine version)"
        in out
    )
    assert "decision (what)" not in out  # nothing else changed


def test_changed_inputs_with_same_manifest_are_said_to_be_inputs(capsys, tmp_path: Path) -> None:
    decision = record(capsys, tmp_path, SEED, *SHARED_KNOW)
    code, out, _ = call(capsys, "replay", str(decision), "--pack", SEED)  # no knowledge pack, no idea
    assert (
        code == ExitCode.FAILED
        and "manifest: identical, so the inputs differ" in out
        and "outcome: trimmed -> allowed" in out
    )


def test_the_result_for_the_pack_is_picked_from_many(capsys, tmp_path: Path) -> None:
    code, out, _ = call(
        capsys, "eval", str(EX / "packs"), "--knowledge-pack-dir", str(EX / "knowledge"), "--format", "json"
    )
    lines = tmp_path / "all.json"
    lines.write_text(out)
    pack = str(EX / "packs" / "blocked_oversized_guard.json")
    code, out, _ = call(capsys, "replay", str(lines), "--pack", pack, "--knowledge-pack-dir", str(EX / "knowledge"))
    assert code == ExitCode.OK and "BYTE-IDENTICAL" in out
    code, _, err = call(capsys, "replay", str(lines), "--pack", SEED)
    assert code == ExitCode.INVALID_INPUT and "V151" in err


def test_not_a_decision_is_a_clear_error(capsys, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"outcome": "maybe"}')
    code, _, err = call(capsys, "replay", str(bad), "--pack", SEED)
    assert code == ExitCode.INVALID_INPUT and "V150" in err and "not a decision" in err
    code, _, err = call(capsys, "replay", str(tmp_path / "missing.json"), "--pack", SEED)
    assert code == ExitCode.INVALID_INPUT and "P101" in err
    decision = record(capsys, tmp_path, SEED)
    assert call(capsys, "replay", str(decision))[0] == ExitCode.USAGE  # --pack is required


# ---- gated calls replayed from the ledger ---------------------------------------------------


def _gate_calls(tmp_path: Path) -> tuple[str, str, str]:
    """One allowed and one blocked call through the real gate into a SQLite ledger."""
    from policy_engine.adapters.gate import BudgetBlocked, BudgetGate
    from policy_engine.adapters.ledger import Ledger
    from policy_engine.api import load_policy

    db = str(tmp_path / "budget.db")
    ledger = Ledger(db)
    gate = BudgetGate(load_policy(ROOT / "rules" / "default.policy"), ledger, knowledge_dir=str(SHARED / "knowledge"))
    seed = json.loads(Path(SEED).read_text())
    allowed = gate.check(seed, "run-r").call_id
    blocked_pack = json.loads((EX / "packs" / "blocked_oversized_guard.json").read_text())
    with pytest.raises(BudgetBlocked) as info:
        gate.check(blocked_pack, "run-r")
    ledger.close()
    return db, allowed, info.value.call_id


def test_gated_calls_replay_from_the_ledger(capsys, tmp_path: Path) -> None:
    db, allowed, blocked = _gate_calls(tmp_path)
    assert allowed and blocked and allowed != blocked
    # the same rule file, named the same way (spans in the decision carry the path as given)
    know = ["--knowledge-pack-dir", str(SHARED / "knowledge"), "--rules", str(ROOT / "rules" / "default.policy")]
    for call_id in (allowed, blocked):
        code, out, _ = call(capsys, "replay", "--db", db, "--call", call_id, *know)
        assert code == ExitCode.OK and "BYTE-IDENTICAL" in out, out
    tight = ["--rules", str(ROOT / "rules" / "tight.policy")]
    code, out, _ = call(capsys, "replay", "--db", db, "--call", allowed, *know[:2], *tight)
    assert code == ExitCode.FAILED and "rules_digest" in out


def test_the_ledger_keeps_the_pack_as_given(tmp_path: Path) -> None:
    """Key order included: the pack's order shapes the prompt the replay renders."""
    from policy_engine.adapters.ledger_reader import open_reader

    db, allowed, _ = _gate_calls(tmp_path)
    reader = open_reader(db)
    recorded = reader.call_input(allowed)
    reader.close()
    seed = json.loads(Path(SEED).read_text())
    assert recorded is not None and recorded["pack"] == seed and list(recorded["pack"]) == list(seed)
    assert list(recorded["pack"]["target"]) == list(seed["target"])


def test_ledger_replay_refusals(capsys, tmp_path: Path) -> None:
    db, allowed, _ = _gate_calls(tmp_path)
    code, _, err = call(capsys, "replay", "--db", db, "--call", "no-such-call")
    assert code == ExitCode.INVALID_INPUT and "V152" in err
    for args in (
        ["--db", db],
        ["--call", allowed],
        [str(tmp_path / "d.json")],
        [str(tmp_path / "d.json"), "--pack", SEED, "--call", allowed],
    ):
        code, _, err = call(capsys, "replay", *args)
        assert code == ExitCode.USAGE and "C125" in err, args
