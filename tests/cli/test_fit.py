"""`policy fit` and `policy explain --breakdown` through the command line: text and JSON
agree with the core, exit codes are the documented ones."""

from __future__ import annotations

import json

from policy_engine.cli.exit_codes import ExitCode
from policy_engine.cli.main import main
from tests.conftest import ROOT

EX = ROOT / "examples"
KNOW = ["--knowledge-pack-dir", str(EX / "knowledge")]
SEED = str(EX / "packs" / "seed_5x15x72x60.json")
BLOCKED = str(EX / "packs" / "blocked_oversized_guard.json")


def call(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_fit_text_and_json_agree(capsys) -> None:
    code, out, _ = call(capsys, "fit", BLOCKED, *KNOW, "--format", "json")
    data = json.loads(out)
    assert code == ExitCode.OK and data["outcome"] == "blocked" and data["reason"] == "request_prompt"
    over = data["over"]["request_prompt"]
    raise_it = data["changes"][0]
    assert raise_it["kind"] == "limit" and raise_it["delta"] == over and raise_it["outcome"] != "blocked"
    code, text, _ = call(capsys, "fit", BLOCKED, *KNOW)
    assert code == ExitCode.OK
    assert f"BLOCKED by request_prompt by {over:,} ({data['prompt_tokens']:,} > 12,000)" in text
    assert f"raise request_prompt to {raise_it['value']:,} (+{over:,})" in text
    assert f"request_prompt <= {data['untrimmed_prompt_tokens']:,}" in text
    assert "batch_total: 2 calls of" in text


def test_fit_trimmed_pack(capsys) -> None:
    code, text, _ = call(capsys, "fit", SEED, *KNOW)
    assert (
        code == ExitCode.OK
        and "TRIMMED to 11,953 tokens in 2 rungs" in text
        and "request_prompt <= 13,780 (now 12,000, +1,780)" in text
    )
    assert "cheapest changes" not in text


def test_fit_bad_pack(capsys, tmp_path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("[]")
    assert call(capsys, "fit", str(bad))[0] == ExitCode.INVALID_INPUT


def test_explain_breakdown_prints_sections_that_add_up(capsys) -> None:
    code, out, _ = call(capsys, "explain", SEED, *KNOW, "--breakdown")
    assert code == ExitCode.OK and "tokens by section" in out and "most expensive items (final prompt)" in out
    rows = {}
    for line in out.splitlines():
        cells = [c.strip() for c in line.split("│")]
        if len(cells) == 5 and cells[1].replace(",", "").isdigit():
            rows[cells[0]] = (int(cells[1].replace(",", "")), int(cells[3].replace(",", "")))
    total = rows.pop("total")
    assert total == (11_953, 13_780)
    assert sum(v[0] for v in rows.values()) == total[0] and sum(v[1] for v in rows.values()) == total[1]
    assert rows["pool:fields"][0] < rows["pool:fields"][1]
    code, plain, _ = call(capsys, "explain", SEED, *KNOW)
    assert "tokens by section" not in plain
