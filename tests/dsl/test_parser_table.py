"""The LALR parser shipped in the package (dsl/grammar.lalr) is the one grammar.lark gives.

Lark numbers its states in an order that depends on string hashing, so two builds of the same
grammar differ byte for byte; the tables are compared after renumbering the states in the
order a walk from the start state reaches them (tokens in sorted order), which is the same
for any two builds of one grammar and different for any change to its terminals, rules or
actions. If a test here fails after a grammar change: `python -m policy_engine.dsl.parser_table`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import deque
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from lark import Lark

from policy_engine.dsl import parser_table
from policy_engine.dsl.parser import LEXER_CALLBACKS, grammar
from tests.conftest import ROOT

POLICIES = sorted(
    p for p in ROOT.rglob("*.policy") if not {".venv", "build", ".wt", ".git"} & set(p.relative_to(ROOT).parts)
)


def rule_key(rule: Any) -> tuple[Any, ...]:
    """A rule by its names (a built rule holds Tokens where a loaded one holds strings)."""
    o = rule.options
    return (
        str(rule.origin.name),
        tuple((type(s).__name__, str(s.name)) for s in rule.expansion),
        None if rule.alias is None else str(rule.alias),
        rule.order,
        (o.keep_all_tokens, o.expand1, o.priority, o.template_source, tuple(o.empty_indices)),
    )


def canonical(parser: Lark) -> dict[str, Any]:
    """Terminals, ignored terminals, rules and the LALR table with states renumbered by a
    breadth-first walk from the start states."""
    table = parser.parser.parser.parser.parse_table
    number: dict[int, int] = {}
    queue: deque[int] = deque()

    def seen(state: int) -> int:
        if state not in number:
            number[state] = len(number)
            queue.append(state)
        return number[state]

    starts = {name: seen(state) for name, state in sorted(table.start_states.items())}
    rows = []
    while queue:
        state = queue.popleft()
        row = []
        for token, (action, arg) in sorted(table.states[state].items()):
            if action.name == "Shift":
                row.append((token, "shift", seen(arg)))
            else:
                row.append((token, action.name, rule_key(arg)))
        rows.append(row)
    return {
        "terminals": sorted(
            (t.name, t.pattern.type, t.pattern.value, sorted(t.pattern.flags), t.priority) for t in parser.terminals
        ),
        "ignore": sorted(parser.lexer_conf.ignore),
        "rules": sorted(map(rule_key, parser.rules)),
        "start": starts,
        "end": {name: number[state] for name, state in sorted(table.end_states.items())},
        "states": rows,
        "unreached": len(table.states) - len(number),
        "options": {
            k: getattr(parser.options, k) for k in ("parser", "lexer", "propagate_positions", "maybe_placeholders")
        },
        "callbacks": parser.options.lexer_callbacks,
    }


def test_the_shipped_table_was_built_from_this_grammar_options_and_lark() -> None:
    data = resources.files(parser_table.PACKAGE).joinpath(parser_table.TABLE).read_bytes()
    first, _, _ = data.partition(b"\n")
    assert json.loads(first) == parser_table.header(), "stale: run `python -m policy_engine.dsl.parser_table`"


def test_the_shipped_parser_is_the_one_the_grammar_builds() -> None:
    shipped, built = canonical(parser_table.load(LEXER_CALLBACKS)), canonical(parser_table.build(LEXER_CALLBACKS))
    assert shipped["unreached"] == 0 and len(shipped["states"]) > 100
    assert shipped == built


def test_the_canonical_form_tells_grammars_apart() -> None:
    """The comparison above can fail: one changed literal changes the canonical form."""
    text = resources.files(parser_table.PACKAGE).joinpath(parser_table.GRAMMAR).read_text(encoding="utf-8")
    assert '"ladder"' in text
    changed = Lark(text.replace('"ladder"', '"rungs"'), lexer_callbacks=LEXER_CALLBACKS, **parser_table.OPTIONS)
    assert canonical(changed) != canonical(parser_table.build(LEXER_CALLBACKS))


def test_the_engine_uses_the_shipped_table() -> None:
    assert grammar().source_path == "<deserialized>"  # Lark.load's mark: not built from the grammar


@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: str(p.relative_to(ROOT)))
def test_shipped_and_built_parsers_give_the_same_trees(policy: Path) -> None:
    text = policy.read_text(encoding="utf-8")
    built = parser_table.build(LEXER_CALLBACKS)
    try:
        expected: Any = built.parse(text)
    except Exception as exc:  # an invalid example fails the same way in both
        expected = _failure(exc)
    try:
        got: Any = grammar().parse(text)
    except Exception as exc:
        got = _failure(exc)
    assert got == expected


def _failure(exc: Exception) -> tuple[Any, ...]:
    """How a parse failed: Lark lists the expected terminals from a set, in an order that
    changes with the process's string hashing, so they are compared as a set."""
    return (
        type(exc).__name__,
        getattr(exc, "line", None),
        getattr(exc, "column", None),
        str(getattr(exc, "token", "")),
        frozenset(getattr(exc, "expected", None) or getattr(exc, "allowed", None) or ()),
    )


def test_a_table_from_another_grammar_is_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parser_table, "header", lambda: {"grammar_sha256": "0" * 64, "lark": "0"})
    assert parser_table.load(LEXER_CALLBACKS).source_path != "<deserialized>"


def test_parsing_rules_writes_nothing(tmp_path: Path) -> None:
    """Lark's own grammar cache would write into the temp folder; the shipped table does not."""
    script = (
        "from policy_engine.dsl import default_rules_path, load_policy\n"
        "from policy_engine.dsl.parser import grammar\n"
        "print(load_policy(default_rules_path()).name, grammar().source_path)\n"
    )
    env = {**os.environ, "TMPDIR": str(tmp_path), "PYTHONDONTWRITEBYTECODE": "1"}
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split()[-1] == "<deserialized>"
    assert list(tmp_path.iterdir()) == []
