"""The ladder's invariants as properties over generated policies, packs and usage.

Each invariant is its own property (so a failure names it); the cases come from
`policy_engine.verify.strategies`, the same generators `policy verify` uses.
Run the thorough profile with POLICY_ENGINE_HYPOTHESIS_PROFILE=thorough.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from hypothesis import event, given
from hypothesis import strategies as st

from policy_engine.dsl import load_policy_text
from policy_engine.packs import load_pack
from policy_engine.usage import Request, UsageSnapshot
from policy_engine.verify.invariants import INVARIANTS, Case, run_case
from policy_engine.verify.reference import reference_for
from policy_engine.verify.strategies import POOL_ORDER as POOLS
from policy_engine.verify.strategies import cases, packs, policy_specs, requests, stage_specs, usage_snapshots


@st.composite
def checked_cases(draw: Any) -> Any:
    pack = draw(packs())
    # limits drawn around the pack's rough prompt size, so the ladder has work to do
    spec = draw(policy_specs(scale=700 + len(json.dumps(pack, ensure_ascii=False)) // 3))
    policy = load_policy_text(spec.text(), "generated.policy")
    return run_case(policy, draw(cases(policy, pack=pack)))


@st.composite
def ladder_cases(draw: Any) -> Any:
    """Cases that must trim: a non-empty pack, a ladder over every pool, and a prompt limit
    set between the fixed part and the full prompt (counted exactly), nothing else binding."""
    pack = draw(packs().filter(lambda p: len(p["candidate_fields"]) + len(p["candidate_operators"]) >= 4))
    spec = draw(policy_specs(with_conditions=False))
    stages = tuple(
        draw(stage_specs(pool, f"trim_{pool}")) for pool in ("fields", "operators", "subcategories", "datasets")
    )
    base = dataclasses.replace(spec, limits=(), stages=stages, exhausted_reason=None)
    probe = load_policy_text(base.text(), "probe.policy")
    pools = load_pack(pack)
    render, count = reference_for(probe, pools)
    fixed = count(render({pool: () for pool in POOLS}))
    full = count(render({pool: tuple(c.id for c in pools.pool(pool)) for pool in POOLS}))
    # the limit is echoed into the prompt only when the pack carries budget_policy; a few
    # tokens of slack either way keeps the case honest
    limit = fixed + 5 + (full - fixed) * draw(st.integers(0, 100)) // 100
    policy = load_policy_text(
        dataclasses.replace(base, limits=(("lim_prompt", "request_prompt", str(limit), "block"),)).text(),
        "ladder.policy",
    )
    return run_case(policy, Case(pack, UsageSnapshot(), Request()))


@st.composite
def any_usage_cases(draw: Any) -> Any:
    """Arbitrary usage snapshots and requests (not placed near the limits): the ladder rarely
    runs, but unfixable limits, expansion requests and USD metrics are exercised."""
    pack = draw(packs())
    spec = draw(policy_specs(scale=700 + len(json.dumps(pack, ensure_ascii=False)) // 3))
    policy = load_policy_text(spec.text(), "generated.policy")
    return run_case(policy, Case(pack, draw(usage_snapshots(max_tokens=50_000, max_micro_usd=50_000)), draw(requests)))


def _property(name: str, source: Any) -> Any:
    check = INVARIANTS[name]

    @given(source)
    def prop(c: Any) -> None:
        event(f"outcome: {c.decision.outcome}")
        event(f"rungs applied: {min(c.decision.fallback_count, 5)}{'+' if c.decision.fallback_count >= 5 else ''}")
        check(c)

    prop.__name__ = f"test_{name}"
    prop.__doc__ = check.__doc__
    return prop


# one test per invariant and case source, so a failure (and hypothesis's statistics) names it
for _name in INVARIANTS:
    globals()[f"test_{_name}"] = _property(_name, checked_cases())
    globals()[f"test_{_name}_when_trimming"] = _property(_name, ladder_cases())
del _name
for _name in ("differential", "limits", "minimality"):
    globals()[f"test_{_name}_with_any_usage"] = _property(_name, any_usage_cases())
del _name


def test_kept_case_limits_echoed_in_the_prompt() -> None:
    """Found by `policy verify --rules rules/tight.policy`: the agent's envelope echoes the
    limits into the prompt, so raising `request_completion` from 800 to 1601 added a token
    to the (empty) pack's prompt and a case that fit the day exactly became blocked. That is
    the prompt really sent, so the engine is right to count it; the monotonicity property
    therefore holds the prompt text fixed, and with it fixed the raise keeps the call allowed."""
    from policy_engine.dsl import load_policy
    from policy_engine.evaluator import evaluate
    from policy_engine.packs import load_pack
    from policy_engine.usage import UsageSnapshot
    from policy_engine.verify.invariants import _with_limit
    from policy_engine.verify.reference import prompt_model_for
    from tests.conftest import ROOT

    tight = load_policy(ROOT / "rules" / "tight.policy")
    pack = json.loads((ROOT / "tests" / "fixtures" / "verify" / "echoed_limits_pack.json").read_text(encoding="utf-8"))
    pools = load_pack(pack)
    fixed = prompt_model_for(tight, pools)[0].tokens(
        {p: () for p in ("subcategories", "datasets", "fields", "operators")}
    )
    usage = UsageSnapshot(day_tokens=1_500_000 - fixed - 800)  # the day has room for exactly this call
    base = evaluate(tight, pools, usage=usage)
    assert base.allowed and base.metrics["projected_day_tokens"] == 1_500_000
    raised = _with_limit(tight, "request_completion", 1601)
    echoed = evaluate(raised, pools, usage=usage)
    assert echoed.metrics["prompt_tokens"] == base.metrics["prompt_tokens"] + 1 and not echoed.allowed
    model, counter = prompt_model_for(tight, pools)
    assert evaluate(raised, pools, usage=usage, prompt_model=model, counter=counter).allowed
