"""Each construct parses to the expected AST; no Lark object leaks; spans are right."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from policy_engine.dsl import ast as A
from policy_engine.dsl import parse, parser
from policy_engine.errors import RuleSyntaxError


def one(text: str) -> object:
    tree = parse(text, "t.policy")
    stmts = [s for s in tree.statements if not isinstance(s, A.Comment)]
    assert len(stmts) == 1
    return stmts[0]


@pytest.mark.parametrize(
    "text, expected",
    [
        ('policy "x"', A.PolicyName(A.Str("x"))),
        ('include "a/b.policy"', A.Include(A.Str("a/b.policy"))),
        ('tokenizer tiktoken "cl100k_base"', A.TokenizerDecl("tiktoken", name=A.Str("cl100k_base"))),
        ('tokenizer model "gpt-4o"', A.TokenizerDecl("model", name=A.Str("gpt-4o"))),
        ("tokenizer rough 4 chars per token", A.TokenizerDecl("rough", ratio=A.Num("4"))),
        ('template "agent_envelope"', A.TemplateDecl(A.Str("agent_envelope"))),
        (
            'price "m": prompt $0.15 per 1M, completion $0.60 per 1M',
            A.PriceDecl(A.Str("m"), A.Money("$0.15"), "1M", A.Money("$0.60"), "1M"),
        ),
        ('pricing model "m"', A.PricingDecl(A.Str("m"))),
        ("limit p: request_prompt <= 12_000 tokens", A.LimitDecl("p", "request_prompt", A.Num("12_000"))),
        ("limit d: day_usd <= $5 warn", A.LimitDecl("d", "day_usd", A.Money("$5"), "warn")),
        ("completion budget 1_600 tokens", A.CompletionDecl(A.Num("1_600"))),
        ("expansion reserve 2.5k tokens", A.ReserveDecl(A.Num("2.5k"))),
        ("lanes exploit 70% explore 30%", A.LanesDecl(A.Num("70%"), A.Num("30%"))),
        ("explore floor 1", A.FloorDecl(A.Num("1"))),
        ("topk fields exploit 60 explore 12", A.TopKDecl("fields", A.Num("60"), A.Num("12"))),
    ],
)
def test_statement_parses_to_ast(text: str, expected: object) -> None:
    assert one(text) == expected


def test_ladder_with_step_kinds_minimum_and_exhausted_reason() -> None:
    node = one(
        'ladder {\n  stage s: fields factor 0.85 0.7 then share 30% then keep 5 min 2\n  on exhausted block "too_big"\n}'
    )
    assert node == A.LadderDecl(
        (
            A.StageDecl(
                "s",
                "fields",
                (
                    A.StepGroup("factor", (A.Num("0.85"), A.Num("0.7"))),
                    A.StepGroup("share", (A.Num("30%"),)),
                    A.StepGroup("keep", (A.Num("5"),)),
                ),
                A.Num("2"),
            ),
            A.ExhaustedDecl(A.Str("too_big")),
        )
    )


def test_when_guard_precedence_and_or_not() -> None:
    node = one('when w: region == "USA" or universe in ["A", "B"] and not delay > 0 { explore floor 2 }')
    assert isinstance(node, A.WhenDecl)
    assert node.guard == A.AnyOfNode(
        (
            A.CompareNode("region", "==", (A.Str("USA"),)),
            A.AllOfNode(
                (
                    A.CompareNode("universe", "in", (A.Str("A"), A.Str("B"))),
                    A.NotNode(A.CompareNode("delay", ">", (A.Num("0"),))),
                )
            ),
        )
    )
    assert node.body == (A.FloorDecl(A.Num("2")),)


def test_numbers_read_exactly() -> None:
    assert A.Num("12_000").value == 12000
    assert A.Num("1.5M").value == 1_500_000
    assert A.Num("12k").value == 12000
    assert str(A.Num("30%").value) == "0.30"
    assert A.Money("$0.000_25").value.as_tuple().exponent == -5


def test_file_without_trailing_newline_parses() -> None:
    assert parse('policy "x"\ntokenizer tiktoken "o200k_base"', "t.policy").statements[-1] == A.TokenizerDecl(
        "tiktoken", name=A.Str("o200k_base")
    )


def test_comments_are_nodes_inline_and_in_blocks() -> None:
    tree = parse('# head\npolicy "x"  # trailing\nladder {\n  # inside\n  on exhausted block\n}\n', "t.policy")
    assert tree.statements[0] == A.Comment("# head")
    assert tree.statements[2] == A.Comment("# trailing", inline=True)
    assert tree.statements[3].items[0] == A.Comment("# inside")


def test_spans_point_at_source() -> None:
    tree = parse('policy "x"\n\nlimit p: request_prompt <= 5 tokens\n', "t.policy")
    limit = tree.statements[1]
    assert (limit.span.file, limit.span.line, limit.span.column) == ("t.policy", 3, 1)
    assert (limit.metric_span.line, limit.metric_span.column) == (3, 10)


def _walk(node: object) -> list[object]:
    out = [node]
    if dataclasses.is_dataclass(node):
        for f in dataclasses.fields(node):
            value = getattr(node, f.name)
            values = value if isinstance(value, tuple) else (value,)
            for v in values:
                out.extend(_walk(v))
    return out


def test_no_lark_tree_or_token_leaks_into_the_ast(root) -> None:
    from lark import Token, Tree

    tree = parse((root / "examples/policies/team/main.policy").read_text(), "main.policy")
    nodes = _walk(tree)
    assert len(nodes) > 20
    assert not any(isinstance(n, (Tree, Token)) for n in nodes)
    assert all(type(n) is str or not isinstance(n, str) for n in nodes)  # plain str, not Token subclass


def test_syntax_errors_speak_plainly_and_several_are_reported() -> None:
    with pytest.raises(RuleSyntaxError) as err:
        parse("limit p: request_prompt <= 12 tokns\npolicy x\n", "t.policy")
    messages = [(d.code, d.span.line, d.message, d.hint) for d in err.value.diagnostics]
    assert messages[0][:3] == ("E103", 1, "unexpected name `tokns`")
    assert "did you mean `tokens`?" in messages[0][3]
    assert any(m[1] == 2 for m in messages)
    for d in err.value.diagnostics:
        for jargon in ("$END", "__ANON", "LBRACE", "Expected one of"):
            assert jargon not in d.message + d.hint


def test_end_of_file_in_a_block() -> None:
    with pytest.raises(RuleSyntaxError) as err:
        parse("ladder {\n", "t.policy")
    (d,) = err.value.diagnostics
    assert d.code == "E107" and "`}`" in d.hint
    assert d.span is not None and (d.span.line, d.span.column) == (1, 8)  # at the unclosed `{`


def _grammar_words() -> set[str]:
    """Every quoted lower-case word in grammar.lark, read from the file's text (not through
    Lark), so the test does not share the parser's way of finding them."""
    text = (Path(parser.__file__).parent / "grammar.lark").read_text(encoding="utf-8")
    return set(re.findall(r'"([a-z]+)"', text))


def test_every_keyword_of_the_grammar_is_a_keyword() -> None:
    words = _grammar_words()
    assert {"limit", "warn", "tiktoken", "tokens", "per"} <= words  # string, alternation and UNIT terminals
    assert parser.keywords() == words


@pytest.mark.parametrize(
    ("text", "hint"),
    [
        ('tokenizer TIKTOKEN "o200k_base"\n', "keywords are lower case: write `tiktoken`"),
        ("limit p: request_prompt <= 5 tokens WARN\n", "keywords are lower case: write `warn`"),
        ("limit Cap: request_prompt <= 5 tokens\n", "names are lower case: write `cap`"),
        ("limit p: Request_prompt <= 5 tokens\n", "names are lower case: write `request_prompt`"),
    ],
)
def test_an_upper_case_word_is_named_keyword_or_name(text: str, hint: str) -> None:
    with pytest.raises(RuleSyntaxError) as err:
        parse(text, "t.policy")
    assert err.value.diagnostics[0].code == "E101"
    assert err.value.diagnostics[0].hint == hint
