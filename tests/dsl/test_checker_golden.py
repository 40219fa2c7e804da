"""Every rule-file error code has a golden message: location, code, message, the source
line with a caret, and a hint — compared byte for byte. Regenerate only on purpose:
POLICY_ENGINE_REGEN_GOLDEN=1 pytest tests/dsl/test_checker_golden.py (then review the diff)."""

from __future__ import annotations

from pathlib import Path

import pytest

from policy_engine.diagnostics import render_text
from policy_engine.dsl import load_policy_text, parse
from policy_engine.dsl.checker import build_policy
from policy_engine.dsl.codes import CODES
from policy_engine.errors import Diagnostic, PolicyError, Severity
from tests.conftest import REGEN

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "dsl"
CASES = sorted(GOLDEN.glob("*.policy"))


def diagnostics(case: Path) -> tuple[Diagnostic, ...]:
    """Errors raise; a W-case's policy loads and its warnings come from the checker."""
    text = case.read_text(encoding="utf-8")
    if case.stem.startswith("W"):
        load_policy_text(text, case.name)  # warnings never stop loading
        _, found = build_policy([(parse(text, case.name), text)], "sha256:test")
        return tuple(found)
    with pytest.raises(PolicyError) as err:
        load_policy_text(text, case.name)
    return err.value.diagnostics


def rendered(case: Path) -> str:
    return render_text(diagnostics(case), {case.name: case.read_text(encoding="utf-8")})


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
        if code[:1] not in ("E", "W"):
            continue
        codes = [d.code for d in diagnostics(case)]
        assert codes.count(code) == 1, (case.name, codes)


@pytest.mark.parametrize(
    "case",
    [c for c in CASES if c.stem[:2] in ("E1", "W2")] + [GOLDEN / "E205_duplicate_limit_name.policy"],
    ids=lambda p: p.stem,
)
def test_one_mistake_gives_one_diagnostic(case: Path) -> None:
    """Error recovery resynchronises at the next statement: the valid lines after a
    mistake are never reported as echoes of it."""
    assert len(diagnostics(case)) == 1, [(d.code, str(d.span), d.message) for d in diagnostics(case)]


def test_duplicate_limit_name_points_at_both_places() -> None:
    (diag,) = diagnostics(GOLDEN / "E205_duplicate_limit_name.policy")
    assert diag.span is not None and diag.span.line == 4
    assert [(span.line, span.column) for span, _ in diag.related] == [(3, 1)]


def test_warnings_are_warnings() -> None:
    (diag,) = diagnostics(GOLDEN / "W201_explore_topk_zero_under_floor.policy")
    assert diag.severity is Severity.WARNING


def test_several_independent_mistakes_are_all_reported() -> None:
    with pytest.raises(PolicyError) as err:
        load_policy_text((GOLDEN / "several_independent_mistakes.policy").read_text(), "x.policy")
    assert sorted(d.code for d in err.value.diagnostics) == ["E201", "E202", "E206", "E207", "E210"]


def test_every_checker_and_syntax_code_has_a_golden_case() -> None:
    covered = {c.stem.split("_")[0] for c in CASES}
    expected = {c for c in CODES if c[:2] in ("E1", "E2", "W2") and c not in ("E104", "E105", "E106", "E219")}
    assert expected - covered == set()
