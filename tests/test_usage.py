"""Quantities are validated where the core receives them (security issue, item 1): a
negative completion budget reserved negative tokens and switched the day's cap off."""

from __future__ import annotations

import dataclasses

import pytest

from policy_engine.errors import UsageInputError
from policy_engine.usage import Request, UsageSnapshot


@pytest.mark.parametrize("value", [-1_000_000, -1, 0, 10**15 + 1, 2**63, 1.5, 5.0, "5", True])
def test_request_refuses_a_bad_completion_budget(value: object) -> None:
    with pytest.raises(UsageInputError) as err:
        Request(completion_tokens=value)  # type: ignore[arg-type]
    assert err.value.diagnostics[0].code == "P120"
    assert err.value.diagnostics[0].pointer == "/completion_tokens"


@pytest.mark.parametrize("field", ["batch_tokens", "day_tokens", "batch_micro_usd", "day_micro_usd"])
@pytest.mark.parametrize("value", [-1, 10**15 + 1, float("nan"), None, False])
def test_usage_snapshot_refuses_bad_quantities(field: str, value: object) -> None:
    with pytest.raises(UsageInputError) as err:
        UsageSnapshot(**{field: value})  # type: ignore[arg-type]
    assert err.value.diagnostics[0].code == "P120"


def test_bounds_are_inclusive_and_replace_is_checked_too() -> None:
    assert Request(completion_tokens=10**15).completion_tokens == 10**15
    assert UsageSnapshot(day_tokens=10**15).day_tokens == 10**15
    with pytest.raises(UsageInputError):
        dataclasses.replace(Request(completion_tokens=5), completion_tokens=-5)


def test_expansion_must_be_a_bool() -> None:
    with pytest.raises(UsageInputError):
        Request(expansion="yes")  # type: ignore[arg-type]


def test_gate_cannot_be_handed_a_negative_budget(tmp_path) -> None:
    """The attack of the issue: the request never exists, so nothing is reserved."""
    from policy_engine.adapters.gate import BudgetGate
    from policy_engine.adapters.ledger import Ledger
    from policy_engine.dsl import default_rules_path, load_policy

    ledger = Ledger(tmp_path / "l.db")
    BudgetGate(load_policy(default_rules_path()), ledger)
    with pytest.raises(UsageInputError):
        Request(completion_tokens=-1_000_000)
    ledger.close()
