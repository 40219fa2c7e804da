"""One catalogue of diagnostic codes: every code the sources raise is catalogued, and every
catalogued code is documented in docs/rules-reference.md with its fix."""

from __future__ import annotations

import re

from policy_engine.adapters.codes import CODES as ADAPTERS
from policy_engine.cli.codes import CODES as CLI
from policy_engine.dsl.codes import CODES as DSL
from policy_engine.packs.codes import CODES as PACKS
from policy_engine.render.codes import CODES as RENDER
from policy_engine.tokens.codes import CODES as TOKENS
from tests.conftest import ROOT

CATALOGUE = {**DSL, **PACKS, **RENDER, **TOKENS, **CLI, **ADAPTERS}


def test_every_raised_code_is_catalogued() -> None:
    used: set[str] = set()
    for path in (ROOT / "policy_engine").rglob("*.py"):
        if path.name == "codes.py":
            continue
        used |= set(re.findall(r'"([EPRTCVL]\d{3})"', path.read_text()))
        used |= {f"P{m}" for m in re.findall(r'f"\{code_prefix\}(\d{3})"', path.read_text())}
    assert used, "no codes found"
    assert used - set(CATALOGUE) == set()


def test_every_catalogued_code_is_documented_with_its_fix() -> None:
    doc = (ROOT / "docs" / "rules-reference.md").read_text()
    for code, (title, fix) in CATALOGUE.items():
        assert f"| {code} | {title} | {fix} |" in doc, code
