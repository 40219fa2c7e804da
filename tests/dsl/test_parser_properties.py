"""Parser and formatter properties: parse(format(ast)) == ast on generated policies,
formatting is idempotent, and random or mutated rule text fails only with the engine's
own syntax or check errors, each placed inside the file."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from policy_engine.dsl import format_text, load_policy_text, parse
from policy_engine.dsl.formatter import format_ast
from policy_engine.errors import RuleCheckError, RuleSyntaxError
from tests.strategies import policy_specs

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = [
    p.read_text(encoding="utf-8")
    for p in sorted(ROOT.glob("rules/**/*.policy")) + sorted(ROOT.glob("examples/**/*.policy"))
]
# files that include others cannot load from a string: keep the self-contained ones
SHIPPED = [t for t in SHIPPED if "include" not in t]


@given(policy_specs())
def test_format_then_parse_gives_the_same_ast(spec: Any) -> None:
    tree = parse(spec.text(), "gen.policy")
    printed = format_ast(tree)
    assert parse(printed, "again.policy") == tree
    assert format_ast(parse(printed, "x")) == printed  # idempotent


@given(policy_specs())
def test_generated_policies_load_and_their_canonical_form_loads_the_same(spec: Any) -> None:
    text = spec.text()
    assert load_policy_text(format_text(text, "a"), "a").settings == load_policy_text(text, "b").settings


def _tokens(text: str) -> list[str]:
    return re.findall(r'"[^"\n]*"|#[^\n]*|\s+|[^\s"#]+', text)


@st.composite
def mutated_rules(draw: Any) -> str:
    text = draw(st.one_of(st.sampled_from(SHIPPED), policy_specs().map(lambda s: s.text())))
    tokens = _tokens(text)
    assert "".join(tokens) == text
    for _ in range(draw(st.integers(1, 4))):
        words = [i for i, t in enumerate(tokens) if not t.isspace()]
        if not words:
            break
        i = draw(st.sampled_from(words))
        action = draw(st.sampled_from(["delete", "duplicate", "swap", "garble"]))
        if action == "delete":
            del tokens[i]
        elif action == "duplicate":
            tokens.insert(i, tokens[i] + " ")
        elif action == "swap":
            j = draw(st.sampled_from(words))
            tokens[i], tokens[j] = tokens[j], tokens[i]
        else:
            tokens[i] = draw(
                st.sampled_from(["{", "}", ":", "<=", "%", "$", "1e9", "-5", "0", "ladder", "when", '"', "\\", "é"])
            )
    return "".join(tokens)


def _assert_placed(exc: RuleSyntaxError | RuleCheckError, text: str) -> None:
    lines = text.split("\n")
    assert exc.diagnostics
    for diag in exc.diagnostics:
        assert diag.code.startswith("E") or diag.code.startswith("T"), diag
        span = diag.span
        assert span is not None, diag
        assert 1 <= span.line <= len(lines), (diag, len(lines))
        assert 1 <= span.column <= len(lines[span.line - 1]) + 1, (diag, lines[span.line - 1])


@given(mutated_rules())
def test_mutated_rule_text_fails_only_with_placed_rule_errors(text: str) -> None:
    try:
        load_policy_text(text, "mutant.policy")
    except (RuleSyntaxError, RuleCheckError) as exc:
        _assert_placed(exc, text)


@given(st.text(max_size=200))
def test_random_text_fails_only_with_placed_rule_errors(text: str) -> None:
    try:
        load_policy_text(text, "random.policy")
    except (RuleSyntaxError, RuleCheckError) as exc:
        _assert_placed(exc, text)
