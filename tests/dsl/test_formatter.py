"""The formatter prints the canonical form: idempotent, comments kept, same AST."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from policy_engine.dsl import format_text, parse

ROOT = Path(__file__).resolve().parents[2]
POLICY_FILES = sorted(ROOT.glob("rules/**/*.policy")) + sorted(ROOT.glob("examples/**/*.policy"))


@pytest.mark.parametrize("path", POLICY_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_shipped_rule_files_are_canonical_and_round_trip(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    out = format_text(text, str(path))
    assert out == text, f"{path} is not in canonical form: run `policy fmt {path}`"
    assert parse(out, "a") == parse(text, "b")


def test_there_are_shipped_policies_to_check() -> None:
    assert len(POLICY_FILES) >= 4


def _snippets() -> list[str]:
    doc = (ROOT / "docs" / "rules-reference.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```\n(.*?)```", doc, flags=re.S)
    return [b for b in blocks if not b.startswith("|")]


@pytest.mark.parametrize("snippet", _snippets())
def test_every_docs_snippet_is_canonical(snippet: str) -> None:
    assert format_text(snippet, "doc") == snippet


MESSY = """# head comment
policy   "x"   # inline
tokenizer   tiktoken "o200k_base"
limit a:request_prompt<=12_000 tokens
limit b: day_total <= 1.5M tokens warn
lanes exploit 70% explore 30%


ladder{stage f:fields factor 0.85 0.7 then keep 5 min 2
# before exhausted
on exhausted block}
when w: not (region == "USA" or delay > 1) and tags contains "x" { explore floor 2 # two
}
"""


def test_messy_input_is_normalised_idempotently_with_comments_kept() -> None:
    once = format_text(MESSY, "m.policy")
    assert format_text(once, "m.policy") == once
    assert parse(once, "m") == parse(MESSY, "m")
    for comment in ("# head comment", "# inline", "# before exhausted", "# two"):
        assert comment in once
    assert 'policy "x"  # inline' in once
    assert "limit a: request_prompt <= 12_000 tokens" in once
    assert "  stage f: fields factor 0.85 0.7 then keep 5 min 2" in once
    assert 'when w: not (region == "USA" or delay > 1) and tags contains "x" {' in once


# ---- regressions found by the fuzzing harness (bad-input issue) ------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "ladder {\n  stage t: operators factor 0.85 min 1 #\n}\nladder {\n}\n#\r",  # a comment ending in CR
        "explore floor 1 # c\r\nexplore floor 2\r\n",  # CRLF line endings
    ],
)
def test_carriage_returns_do_not_break_the_round_trip(text: str) -> None:
    out = format_text(text, "x.policy")
    assert format_text(out, "x.policy") == out
    assert "\r" not in out


def test_identical_comments_inside_and_after_a_block_are_both_kept() -> None:
    """Comments are tokens that compare as strings: placing the inner `#` also dropped the
    outer one with the same text."""
    out = format_text("ladder {\n#\n}\n#\nladder {\n}\n", "x.policy")
    assert out.count("#") == 2
