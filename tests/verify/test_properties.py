"""The ladder's invariants as properties over generated policies, packs and usage.

Each invariant is its own property (so a failure names it); the cases come from
`policy_engine.verify.strategies`, the same generators `policy verify` uses.
Run the thorough profile with POLICY_ENGINE_HYPOTHESIS_PROFILE=thorough.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from policy_engine.dsl import load_policy_text
from policy_engine.verify.invariants import INVARIANTS, run_case
from policy_engine.verify.strategies import cases, packs, policy_specs


@st.composite
def checked_cases(draw: Any) -> Any:
    pack = draw(packs())
    # limits drawn around the pack's rough prompt size, so the ladder has work to do
    spec = draw(policy_specs(scale=700 + len(json.dumps(pack, ensure_ascii=False)) // 3))
    policy = load_policy_text(spec.text(), "generated.policy")
    return run_case(policy, draw(cases(policy, pack=pack)))


@pytest.mark.parametrize("name", list(INVARIANTS))
def test_invariant(name: str) -> None:
    check = INVARIANTS[name]

    @given(checked_cases())
    def prop(c: Any) -> None:
        check(c)

    prop()
