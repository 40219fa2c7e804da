"""Every rule-file error code has a golden message: location, code, message, the source
line with a caret, and a hint — compared byte for byte. Regenerate only on purpose:
POLICY_ENGINE_REGEN_GOLDEN=1 pytest tests/dsl/test_checker_golden.py (then review the diff)."""

from __future__ import annotations

from pathlib import Path

import pytest

from policy_engine.diagnostics import render_text
from policy_engine.dsl import load_policy_text
from policy_engine.dsl.codes import CODES
from policy_engine.errors import PolicyError
from tests.conftest import REGEN

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "dsl"
CASES = sorted(GOLDEN.glob("*.policy"))


def rendered(case: Path) -> str:
    text = case.read_text(encoding="utf-8")
    label = case.name
    with pytest.raises(PolicyError) as err:
        load_policy_text(text, label)
    return render_text(err.value.diagnostics, {label: text})


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.stem)
def test_golden_message(case: Path) -> None:
    actual = rendered(case)
    expected_file = case.with_suffix(".expected")
    if REGEN or not expected_file.exists():
        expected_file.write_text(actual, encoding="utf-8")
        if not REGEN:
            pytest.fail(f"wrote missing golden {expected_file.name}: review and commit it")
    assert actual == expected_file.read_text(encoding="utf-8")


def test_each_case_reports_its_code_once() -> None:
    for case in CASES:
        code = case.stem.split("_")[0]
        if not code.startswith("E"):
            continue
        text = case.read_text(encoding="utf-8")
        with pytest.raises(PolicyError) as err:
            load_policy_text(text, case.name)
        codes = [d.code for d in err.value.diagnostics]
        assert codes.count(code) == 1, (case.name, codes)


def test_several_independent_mistakes_are_all_reported() -> None:
    with pytest.raises(PolicyError) as err:
        load_policy_text((GOLDEN / "several_independent_mistakes.policy").read_text(), "x.policy")
    assert sorted(d.code for d in err.value.diagnostics) == ["E201", "E202", "E206", "E207", "E210"]


def test_every_checker_and_syntax_code_has_a_golden_case() -> None:
    covered = {c.stem.split("_")[0] for c in CASES}
    expected = {c for c in CODES if c[:2] in ("E1", "E2") and c not in ("E104", "E105", "E106", "E219")}
    assert expected - covered == set()
