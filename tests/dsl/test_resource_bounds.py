"""Oversized files and deep nesting are refused with an error, never a RecursionError."""

from __future__ import annotations

import pytest

from policy_engine.dsl import parse
from policy_engine.dsl.parser import MAX_FILE_BYTES
from policy_engine.errors import RuleSyntaxError


def test_oversized_file_is_refused() -> None:
    text = "# " + "x" * MAX_FILE_BYTES + "\n"
    with pytest.raises(RuleSyntaxError) as err:
        parse(text, "big.policy")
    assert err.value.diagnostics[0].code == "E104"


@pytest.mark.parametrize("depth", [60, 5000])
def test_deep_parentheses_are_refused(depth: int) -> None:
    text = "when w: " + "(" * depth + 'region == "USA"' + ")" * depth + " { explore floor 1 }"
    with pytest.raises(RuleSyntaxError) as err:
        parse(text, "deep.policy")
    assert err.value.diagnostics[0].code == "E105"


def test_deep_when_nesting_is_refused() -> None:
    text = 'when w: region == "USA" { ' * 60 + "explore floor 1" + " }" * 60
    with pytest.raises(RuleSyntaxError) as err:
        parse(text, "deep.policy")
    assert err.value.diagnostics[0].code == "E105"


def test_moderate_nesting_is_fine() -> None:
    text = "when w: " + "(" * 10 + 'region == "USA"' + ")" * 10 + " { explore floor 1 }"
    assert parse(text, "ok.policy").statements
