"""`Measured`, the metrics of one ladder state: a hand-written ``__init__`` (a speed-up,
see its comment) that must stay what the dataclass would generate."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from policy_engine.evaluator.limits import Measured


def test_measured_keeps_its_dataclass_shape() -> None:
    """`Measured` has the same hand-written ``__init__`` as TraceStep: every field, in
    order, lands where it belongs, and the record stays frozen."""
    params = list(inspect.signature(Measured.__init__).parameters)[1:]
    assert params == [f.name for f in dataclasses.fields(Measured)]
    values = list(range(1, len(params) + 1))
    m = Measured(*values)
    assert [getattr(m, n) for n in params] == values
    assert m == Measured(*values) and hash(m) == hash(Measured(*values))
    assert m.value("request_prompt") == 1 and m.value("day_usd") == 7
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.prompt_tokens = 0  # type: ignore[misc]
