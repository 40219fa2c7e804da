"""`policy diff` on the shared corpus (small, seed, large; with the knowledge pack and idea
spec). The expected diffs are computed by hand from the rules and the per-rung prompt sizes
recorded in the reviewed golden decisions (tests/golden/decisions/*.default.json):

    small  allowed at 3,797 tokens, no rung
    seed   start 13,848; rung 1 (fields 72 -> 61) 13,172; rung 2 (-> 42) 12,021; rung 3 (-> 23) 10,897
    large  start 39,014; ... rung 6 (operators) 14,178; rung 7 (operators 120 -> 39) 10,983

The limits echo costs the prompt the same for 12000 and 13500 (two digit groups each), one
token less for 1000 than for 1500000 (two groups instead of three).
"""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import pytest

from policy_engine.cli.exit_codes import ExitCode
from policy_engine.cli.main import main
from policy_engine.rule_diff import distribution, nearest_rank
from tests.conftest import ROOT, SHARED

DEFAULT = str(ROOT / "rules" / "default.policy")
#: the three packs whose changes were computed by hand (the edge packs without operators or
#: fields are not part of this corpus)
CORPUS = [
    str(SHARED / "packs" / f"{name}.json") for name in ("large_8x30x400x120", "seed_5x15x72x60", "small_2x4x10x8")
]
INPUTS = ["--knowledge-pack-dir", str(SHARED / "knowledge"), "--idea", str(SHARED / "ideaspec.example.json")]


def call(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def variant(tmp_path: Path, name: str, old: str, new: str) -> str:
    text = Path(DEFAULT).read_text()
    assert old in text
    path = tmp_path / f"{name}.policy"
    path.write_text(text.replace(old, new))
    return str(path)


def by_pack(report: dict) -> dict[str, dict]:
    return {Path(p["file"]).stem: p for p in report["pack_diffs"]}


def test_raising_the_prompt_limit_changes_only_the_seed_pack(capsys, tmp_path: Path) -> None:
    """request_prompt 12,000 -> 13,500: the seed pack fits after rung 1 (13,172 <= 13,500);
    the large pack still needs rung 7 (rung 6 leaves 14,178 > 13,500); small is untouched."""
    new = variant(tmp_path, "roomier", "request_prompt <= 12_000", "request_prompt <= 13_500")
    code, out, _ = call(capsys, "diff", DEFAULT, new, *CORPUS, *INPUTS, "--format", "json")
    report = json.loads(out)
    assert code == ExitCode.OK and (report["packs"], report["changed"]) == (3, 1)
    packs = by_pack(report)
    assert packs["small_2x4x10x8"]["changes"] == [] and packs["large_8x30x400x120"]["changes"] == []
    seed = packs["seed_5x15x72x60"]
    assert seed["changes"] == ["rungs", "sizes", "prompt_tokens"]
    assert (seed["before"]["outcome"], seed["after"]["outcome"]) == ("trimmed", "trimmed")
    assert (len(seed["before"]["rungs"]), len(seed["after"]["rungs"])) == (3, 1)
    assert (seed["before"]["sizes"]["fields"], seed["after"]["sizes"]["fields"]) == (23, 61)
    assert (seed["before"]["prompt_tokens"], seed["after"]["prompt_tokens"]) == (10_897, 13_172)
    before, after = report["before"], report["after"]
    assert before["prompt_tokens"] == 3_797 + 10_897 + 10_983 == 25_677
    assert after["prompt_tokens"] == 3_797 + 13_172 + 10_983 == 27_952
    assert before["prompt_tokens_distribution"] == {"min": 3_797, "median": 10_897, "p95": 10_983, "max": 10_983}
    assert after["prompt_tokens_distribution"] == {"min": 3_797, "median": 10_983, "p95": 13_172, "max": 13_172}
    assert before["outcomes"] == after["outcomes"] == {"allowed": 1, "trimmed": 2, "blocked": 0}
    assert before["request_usd"] == after["request_usd"] == "0.000000"  # the default policy prices tokens at $0
    # --fail-on-change turns the one change into exit 1; the text names it
    code, text, _ = call(capsys, "diff", DEFAULT, new, *CORPUS, *INPUTS, "--fail-on-change")
    assert code == ExitCode.FAILED
    assert text.splitlines()[0].endswith("1 of 3 packs change")
    assert "seed_5x15x72x60.json: trimmed; rungs 3 -> 1; fields 23 -> 61; prompt 10,897 -> 13,172 (+2,275)" in text
    assert any(
        line.split() == ["prompt", "tokens", "(sent)", "25,677", "27,952", "+2,275"] for line in text.splitlines()
    )


def test_a_day_cap_below_the_completion_budget_blocks_everything(capsys, tmp_path: Path) -> None:
    """day_total 1,000 < the 1,600-token completion budget: no prompt can fit, so every pack
    is blocked at the start with no rung and nothing trimmed. The reason is the first
    failing limit in rule order: request_prompt for the two packs over 12,000 tokens,
    day_total for the small one. Nothing is sent afterwards."""
    new = variant(tmp_path, "daycap", "day_total <= 1_500_000", "day_total <= 1_000")
    code, out, _ = call(capsys, "diff", DEFAULT, new, *CORPUS, *INPUTS, "--format", "json", "--fail-on-change")
    report = json.loads(out)
    assert code == ExitCode.FAILED and report["changed"] == 3
    packs = by_pack(report)
    expected = {  # (reason, untrimmed sizes, untrimmed prompt - 1)
        "small_2x4x10x8": ("day_total", {"subcategories": 2, "datasets": 4, "fields": 10, "operators": 8}, 3_796),
        "seed_5x15x72x60": (
            "request_prompt",
            {"subcategories": 5, "datasets": 15, "fields": 72, "operators": 60},
            13_847,
        ),
        "large_8x30x400x120": (
            "request_prompt",
            {"subcategories": 8, "datasets": 30, "fields": 400, "operators": 120},
            39_013,
        ),
    }
    for name, (reason, sizes, tokens) in expected.items():
        after = packs[name]["after"]
        assert (after["outcome"], after["reason"], after["rungs"], after["sizes"], after["prompt_tokens"]) == (
            "blocked",
            reason,
            [],
            sizes,
            tokens,
        )
    assert packs["small_2x4x10x8"]["changes"] == ["outcome", "reason", "prompt_tokens"]
    assert packs["seed_5x15x72x60"]["changes"] == ["outcome", "reason", "rungs", "sizes", "prompt_tokens"]
    assert report["after"]["sent_calls"] == 0 and report["after"]["prompt_tokens"] == 0
    assert report["after"]["prompt_tokens_distribution"] is None
    assert report["after"]["outcomes"] == {"allowed": 0, "trimmed": 0, "blocked": 3}


def test_identical_rules_change_nothing(capsys) -> None:
    code, out, _ = call(capsys, "diff", DEFAULT, DEFAULT, *CORPUS, *INPUTS, "--fail-on-change")
    assert code == ExitCode.OK and out.startswith(f"policy diff {DEFAULT} -> {DEFAULT}: 0 of 3 packs change\n")


def test_usd_totals_under_a_priced_policy(capsys) -> None:
    """demo.policy prices $0.15 / $0.60 per 1M with an 800-token completion budget: a sent
    call costs ceil(0.15 * prompt + 0.60 * 800) micro-USD; the default prices $0."""
    small = str(SHARED / "packs" / "small_2x4x10x8.json")
    _code, out, _ = call(
        capsys, "diff", DEFAULT, str(ROOT / "examples" / "policies" / "demo.policy"), small, "--format", "json"
    )
    report = json.loads(out)
    after = report["pack_diffs"][0]["after"]
    assert after["outcome"] == "allowed" and report["pack_diffs"][0]["before"]["request_micro_usd"] == 0
    assert after["request_micro_usd"] == -(-(15 * after["prompt_tokens"]) // 100) + 480
    assert (
        report["after"]["request_micro_usd"] == after["request_micro_usd"]
        and report["before"]["request_usd"] == "0.000000"
    )


class _Cells(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self._in = False

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag == "tr":
            self.rows.append([])
        self._in = tag in ("td", "th")
        if self._in:
            self.rows[-1].append("")

    def handle_endtag(self, tag: str) -> None:
        self._in = False

    def handle_data(self, data: str) -> None:
        if self._in:
            self.rows[-1][-1] += data


def test_html_report_carries_the_same_numbers(capsys, tmp_path: Path) -> None:
    new = variant(tmp_path, "roomier", "request_prompt <= 12_000", "request_prompt <= 13_500")
    out_file = tmp_path / "diff.html"
    code, out, err = call(capsys, "diff", DEFAULT, new, *CORPUS, *INPUTS, "--format", "html", "--output", str(out_file))
    assert code == ExitCode.OK and out == "" and "1 of 3 packs change" in err
    page = out_file.read_text()
    assert page.startswith("<!DOCTYPE html>") and "<script" not in page
    parser = _Cells()
    parser.feed(page)
    assert ["prompt tokens (sent)", "25,677", "27,952", "+2,275"] in parser.rows
    seed = next(r for r in parser.rows if r[0].endswith("seed_5x15x72x60.json"))
    assert seed[1:] == [
        "rungs, sizes, prompt_tokens",
        "trimmed",
        "trimmed",
        "3",
        "1",
        "subcategories 5 datasets 15 fields 23 operators 60",
        "subcategories 5 datasets 15 fields 61 operators 60",
        "10,897",
        "13,172",
    ]


def test_bad_inputs(capsys, tmp_path: Path) -> None:
    bad_rules = tmp_path / "bad.policy"
    bad_rules.write_text("limit x: request_promt <= 5 tokens\n")
    assert call(capsys, "diff", DEFAULT, str(bad_rules), *CORPUS)[0] == ExitCode.INVALID_RULES
    broken = tmp_path / "packs"
    broken.mkdir()
    (broken / "a.json").write_text((SHARED / "packs" / "small_2x4x10x8.json").read_text())
    (broken / "b.json").write_text("{not json")
    code, out, err = call(capsys, "diff", DEFAULT, DEFAULT, str(broken), "--format", "json")
    assert code == ExitCode.INVALID_INPUT and json.loads(out)["packs"] == 1 and "P103" in err
    assert call(capsys, "diff", DEFAULT, DEFAULT)[0] == ExitCode.USAGE


@pytest.mark.parametrize(
    "values, expected",
    [
        ([5], {"min": 5, "median": 5, "p95": 5, "max": 5}),
        ([4, 1], {"min": 1, "median": 1, "p95": 4, "max": 4}),
        (list(range(1, 21)), {"min": 1, "median": 10, "p95": 19, "max": 20}),
        (list(range(1, 22)), {"min": 1, "median": 11, "p95": 20, "max": 21}),
    ],
)
def test_nearest_rank_distribution(values: list[int], expected: dict) -> None:
    assert distribution(values) == expected
    assert distribution([]) is None and nearest_rank([7, 8, 9], 100) == 9
