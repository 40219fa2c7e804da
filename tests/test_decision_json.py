"""A decision's JSON carries one float at most, ``kpis.novelty``: the report's writer relies on
it (`formats.result_json_text` lets msgspec write an entry when that float is plain, see
`pretty_json.plain_float`). Held on generated packs and policies at every explain level, and
each entry written that way equals the standard library's."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policy_engine import msgspec_rent
from policy_engine.cli.formats import PackResult, _result_item, result_json_text
from policy_engine.dsl import load_policy_text
from policy_engine.evaluator import Engine
from policy_engine.evaluator.engine import evaluate
from policy_engine.packs import load_pack
from policy_engine.usage import UsageSnapshot
from policy_engine.verify.strategies import packs, policy_specs


def _floats(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(value, float):
        return [path]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _floats(v, (*path, k))]
    if isinstance(value, (list, tuple)):
        return [p for i, v in enumerate(value) for p in _floats(v, (*path, i))]
    return []


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=packs(), data=st.data(), explain=st.sampled_from(["off", "rules", "full"]), spent=st.integers(0, 2_000_000))
def test_novelty_is_the_only_float_and_entries_equal_json(
    doc: dict[str, Any], data: Any, explain: str, spent: int
) -> None:
    spec = data.draw(policy_specs(scale=700 + len(json.dumps(doc)) // 3))
    policy = load_policy_text(spec.text(), "generated.policy")
    seen = frozenset(data.draw(st.lists(st.sampled_from(["f::o", "x::y"]), max_size=2)))
    decision = evaluate(
        Engine.build(policy), load_pack(doc), usage=UsageSnapshot(day_tokens=spent), seen_combos=seen, explain=explain
    )
    result = PackResult("p.json", decision)
    item = _result_item(result)
    assert set(_floats(item)) <= {("decision", "kpis", "novelty")}
    before = msgspec_rent._Rent.spent
    msgspec_rent._Rent.spent = msgspec_rent.RENT_LIMIT  # msgspec writes
    try:
        expected = json.dumps(item, indent=2, sort_keys=True, ensure_ascii=False)
        assert result_json_text(result) == "    " + expected.replace("\n", "\n    ")
        assert decision.to_json() == json.dumps(decision.to_dict(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    finally:
        msgspec_rent._Rent.spent = before
