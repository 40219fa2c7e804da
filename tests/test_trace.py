"""TraceStep's hand-written ``__init__`` (a speed-up, see its comment) must stay what the
dataclass would generate: every field, in order, with its default, and still frozen."""

from __future__ import annotations

import dataclasses
import inspect

import pytest
from hypothesis import given
from hypothesis import strategies as st

from policy_engine.errors import Span
from policy_engine.trace import TraceStep


def test_init_takes_every_field_in_order_with_its_default() -> None:
    params = list(inspect.signature(TraceStep.__init__).parameters.values())[1:]
    fields = dataclasses.fields(TraceStep)
    assert [p.name for p in params] == [f.name for f in fields]
    for param, field in zip(params, fields, strict=True):
        expected = inspect.Parameter.empty if field.default is dataclasses.MISSING else field.default
        assert param.default == expected, field.name


names = [f.name for f in dataclasses.fields(TraceStep)]
values = st.one_of(st.none(), st.integers(), st.text(max_size=5), st.just(Span("f.policy", 3, 4)))


@given(st.lists(values, min_size=len(names), max_size=len(names)), st.booleans())
def test_every_argument_lands_in_its_field(args: list[object], by_keyword: bool) -> None:
    step = TraceStep(**dict(zip(names, args, strict=True))) if by_keyword else TraceStep(*args)  # type: ignore[arg-type]
    assert [getattr(step, n) for n in names] == args
    assert step == TraceStep(*args)  # type: ignore[arg-type]
    assert hash(step) == hash(TraceStep(*args))  # type: ignore[arg-type]


def test_still_frozen() -> None:
    step = TraceStep("check", "r", "pass")
    with pytest.raises(dataclasses.FrozenInstanceError):
        step.verdict = "fail"  # type: ignore[misc]
    assert step.failing == () and step.message == "" and step.span is None


def test_a_step_survives_pickling_and_replace() -> None:
    """`--jobs` workers send decisions back pickled; `dataclasses.replace` builds through
    the hand-written ``__init__``."""
    import pickle

    step = TraceStep("rung", "trim_fields", "fail", rung=2, removed={"fields": ("a",)}, failing=("x",))
    back = pickle.loads(pickle.dumps(step))
    assert back == step and back.removed == {"fields": ("a",)}
    changed = dataclasses.replace(step, verdict="pass")
    assert changed.verdict == "pass" and changed.rung == 2 and step.verdict == "fail"
