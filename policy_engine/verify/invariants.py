"""The ladder's invariants, each a plain function that raises `Violation` with a message a
user can act on. The test suite runs them as hypothesis properties; `policy verify` runs
them against a user's own policy.

Every invariant takes a `Checked` case: the policy, the pack (as the agent wrote it), the
usage snapshot and request, and the engine's decision on them.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from policy_engine.decision import Decision
from policy_engine.evaluator import evaluate
from policy_engine.packs import load_pack
from policy_engine.policy import Enforcement, Limit, Policy
from policy_engine.pools import Pools
from policy_engine.usage import Request, UsageSnapshot
from policy_engine.verify.reference import reference_evaluate, reference_for

POOLS = ("subcategories", "datasets", "fields", "operators")


class Violation(AssertionError):
    """An invariant failed on a case: ``invariant`` names it, the message says how."""

    def __init__(self, invariant: str, message: str) -> None:
        super().__init__(f"{invariant}: {message}")
        self.invariant = invariant
        self.detail = message


@dataclass(frozen=True)
class Case:
    pack: Mapping[str, Any]
    usage: UsageSnapshot = UsageSnapshot()
    request: Request = Request()

    def to_json(self) -> dict[str, Any]:
        return {"pack": self.pack, "usage": dataclasses.asdict(self.usage), "request": dataclasses.asdict(self.request)}


@dataclass(frozen=True)
class Checked:
    policy: Policy
    case: Case
    pools: Pools
    decision: Decision


def run_case(policy: Policy, case: Case) -> Checked:
    pools = load_pack(case.pack)
    return Checked(policy, case, pools, evaluate(policy, pools, usage=case.usage, request=case.request))


def _sent(decision: Decision) -> set[tuple[str, str]]:
    """What the call actually sends: nothing when blocked."""
    if not decision.allowed:
        return set()
    return {(pool, ident) for pool, lanes in decision.selection.items() for ids in lanes.values() for ident in ids}


def _settings(c: Checked) -> Any:
    return c.policy.resolve(c.pools.attributes)[0]


# ---- the invariants ----------------------------------------------------------------------


def differential(c: Checked) -> None:
    """The engine agrees with the naive reference on selection, outcome, reason, exact
    prompt tokens and the number of rungs applied."""
    render, count = reference_for(c.policy, c.pools)
    ref = reference_evaluate(c.policy, c.pools, c.case.usage, c.case.request, render, count)
    d = c.decision
    got = {
        "allowed": d.allowed,
        "reason": d.reason,
        "reasons": tuple(d.reasons),
        "prompt_tokens": d.metrics["prompt_tokens"],
        "rungs": d.fallback_count,
        "selection": {pool: {lane: tuple(ids) for lane, ids in lanes.items()} for pool, lanes in d.selection.items()},
    }
    want = {
        "allowed": ref.allowed,
        "reason": ref.reason,
        "reasons": ref.reasons,
        "prompt_tokens": ref.prompt_tokens,
        "rungs": ref.rungs_applied,
        "selection": ref.selection,
    }
    for key in want:
        if got[key] != want[key]:
            raise Violation("differential", f"{key}: engine {got[key]!r}, reference {want[key]!r}")


def order(c: Checked) -> None:
    """Rungs are tried in ladder order, stage by stage; a stage's rungs come only after every
    earlier stage's rungs; rung numbers count 1, 2, 3 ... without gaps."""
    ladder = [(stage.rule, i) for stage in _settings(c).ladder.stages for i, _ in enumerate(stage.steps)]
    rungs = [step for step in c.decision.trace if step.kind == "rung"]
    if [step.rung for step in rungs] != list(range(1, len(rungs) + 1)):
        raise Violation("order", f"rung numbers are {[s.rung for s in rungs]}")
    seen = [step.stage for step in rungs]
    expected = [stage for stage, _ in ladder[: len(rungs)]]
    if seen != expected:
        raise Violation("order", f"trace lists stages {seen}, ladder order is {expected}")
    if not c.decision.allowed and rungs and len(rungs) != len(ladder):
        raise Violation("order", f"blocked after {len(rungs)} of {len(ladder)} rungs")


def minimality(c: Checked) -> None:
    """The walk stops at the first state that fits: every earlier state failed a blocking
    limit, and only the last applied rung (if any) passed."""
    tried = [s for s in c.decision.trace if s.kind == "start" or (s.kind == "rung" and s.verdict != "skipped")]
    for step in tried[:-1]:
        if step.verdict != "fail" or not step.failing:
            raise Violation(
                "minimality", f"{step.kind} {step.rule} (rung {step.rung}) already fit, yet the ladder went on"
            )
    if c.decision.allowed and tried and tried[-1].verdict != "pass":
        raise Violation("minimality", "allowed, but the last state tried did not pass")


def _with_limit(policy: Policy, metric: str, value: int) -> Policy:
    def swap(limits: tuple[Limit, ...]) -> tuple[Limit, ...]:
        return tuple(dataclasses.replace(lim, value=value) if lim.metric == metric else lim for lim in limits)

    settings = dataclasses.replace(policy.settings, limits=swap(policy.settings.limits))
    conditionals = tuple(dataclasses.replace(cond, limits=swap(cond.limits)) for cond in policy.conditionals)
    return dataclasses.replace(policy, settings=settings, conditionals=conditionals)


def monotonicity(c: Checked) -> None:
    """Raising a blocking limit never removes a candidate from what is sent and never turns
    allowed into blocked; lowering it never adds one and never turns blocked into allowed.
    (A blocked call sends nothing.)

    The prompt text is held fixed: the agent's envelope echoes the policy's limits into the
    prompt (budget_policy.llm_budget), so a limit with more digits can add a token to the
    prompt itself, which is what the agent really sends. `policy verify` found that on
    rules/tight.policy (tests/verify/test_properties.py keeps the case)."""
    from policy_engine.verify.reference import prompt_model_for

    model, counter = prompt_model_for(c.policy, c.pools)
    base = _sent(c.decision)
    for limit in _settings(c).limits:
        if limit.severity is not Enforcement.BLOCK:
            continue
        for value, direction in ((limit.value * 2 + 1, "raised"), (max(1, limit.value // 2), "lowered")):
            if value == limit.value:
                continue
            other = evaluate(
                _with_limit(c.policy, limit.metric, value),
                c.pools,
                usage=c.case.usage,
                request=c.case.request,
                prompt_model=model,
                counter=counter,
            )
            sent = _sent(other)
            small, large = (base, sent) if direction == "raised" else (sent, base)
            if not small <= large:
                lost = sorted(small - large)[:5]
                raise Violation(
                    "monotonicity",
                    f"{limit.metric} {direction} {limit.value} -> {value}: sent selection changed the wrong way (e.g. {lost})",
                )
            if direction == "raised" and c.decision.allowed and not other.allowed:
                raise Violation(
                    "monotonicity", f"{limit.metric} raised {limit.value} -> {value} turned allowed into blocked"
                )
            if direction == "lowered" and not c.decision.allowed and other.allowed:
                raise Violation(
                    "monotonicity", f"{limit.metric} lowered {limit.value} -> {value} turned blocked into allowed"
                )


def prefix(c: Checked) -> None:
    """The kept candidates of each pool and lane are a top-ranked prefix (pack order) of that
    lane's candidates whose owner (dataset, subcategory) is still kept."""
    kept = {pool: {ident for ids in lanes.values() for ident in ids} for pool, lanes in c.decision.selection.items()}
    owner_pool = {"datasets": "subcategories", "fields": "datasets"}
    for pool in POOLS:
        for lane in ("exploit", "explore"):
            eligible = [
                cand.id
                for cand in c.pools.pool(pool)
                if cand.lane == lane and (pool not in owner_pool or cand.parent in kept[owner_pool[pool]])
            ]
            got = list(c.decision.selection[pool][lane])
            if got != eligible[: len(got)]:
                raise Violation("prefix", f"{pool}/{lane} kept {got[:6]}..., not a prefix of {eligible[:6]}...")


def floors(c: Checked) -> None:
    """Each rung keeps its stage's `min` and the explore floor (when the pool had that many
    before the rung); the decision's explore-floor report is true; and only the cascade
    (a dropped owner) can take a pool below the floor."""
    settings = _settings(c)
    minimum = {stage.rule: stage.minimum for stage in settings.ladder.stages}
    floor = settings.lanes.explore_floor
    for step in c.decision.trace:
        if step.kind != "rung" or step.verdict == "skipped":
            continue
        assert step.pool and step.counts_before and step.counts_after and step.stage
        before, after = step.counts_before[step.pool], step.counts_after[step.pool]
        total_before, total_after = sum(before.values()), sum(after.values())
        if total_after < min(minimum[step.stage], total_before):
            raise Violation(
                "floors",
                f"rung {step.rung} took {step.pool} from {total_before} to {total_after}, below its min {minimum[step.stage]}",
            )
        if after["explore"] < min(floor, before["explore"]):
            raise Violation(
                "floors",
                f"rung {step.rung} kept {after['explore']} explore {step.pool} of {before['explore']}, below the floor {floor}",
            )
    for status in c.decision.explore_floor:
        kept = len(c.decision.selection[status.pool]["explore"])
        if status.kept != kept:
            raise Violation("floors", f"{status.pool}: report says {status.kept} explore kept, selection has {kept}")
        truly_short = kept < min(status.required, status.available)
        if truly_short != (status.status == "not_preserved"):
            raise Violation(
                "floors",
                f"{status.pool}: status {status.status!r} with {kept} kept, {status.available} available, floor {status.required}",
            )
        if status.status == "not_preserved" and status.pool in ("subcategories", "operators"):
            raise Violation("floors", f"{status.pool} went below the explore floor without a cascade")


def accounting(c: Checked) -> None:
    """The reported prompt tokens are the tokenizer's count of the final prompt, rendered
    from the decision's selection and counted afresh by tiktoken itself (none of the
    engine's count caches), and the trimmed pack the caller sends on is itself valid."""
    from policy_engine.api import trimmed_pack
    from policy_engine.tokens import get_counter
    from policy_engine.tokens.counter import TiktokenCounter
    from policy_engine.tokens.resolve import resolve_encoding

    render, _count = reference_for(c.policy, c.pools)
    # the selection in rank order within each pool, across lanes
    ranked = {
        pool: tuple(cand.id for cand in c.pools.pool(pool) if any(cand.id in ids for ids in lanes.values()))
        for pool, lanes in c.decision.selection.items()
    }
    text = render(ranked)
    counter = get_counter(c.policy.tokenizer)
    if isinstance(counter, TiktokenCounter):
        expected = len(resolve_encoding(counter.encoding_name).encoding.encode_ordinary(text))
    else:
        expected = counter.count(text)
    if c.decision.metrics["prompt_tokens"] != expected:
        raise Violation(
            "accounting",
            f"decision reports {c.decision.metrics['prompt_tokens']} prompt tokens, the final prompt has {expected}",
        )
    if c.decision.metrics["prompt_chars"] != len(text):
        raise Violation(
            "accounting",
            f"decision reports {c.decision.metrics['prompt_chars']} chars, the final prompt has {len(text)}",
        )
    load_pack(trimmed_pack(c.case.pack, c.decision))


def limits_hold(c: Checked) -> None:
    """Allowed means every blocking limit holds at the final state; blocked means the
    reason names a blocking limit that still fails (or the ladder's own reason)."""
    d = c.decision
    settings = _settings(c)
    blocking = {lim.metric for lim in settings.limits if lim.severity is Enforcement.BLOCK}
    for metric, row in d.limits.items():
        if row["actual"] is None:
            continue
        fails = row["actual"] > row["effective"]
        if metric in blocking and d.allowed and fails:
            raise Violation("limits", f"allowed, but {metric} is {row['actual']} > {row['effective']}")
        if (row["verdict"] == "fail") != fails:
            raise Violation("limits", f"{metric}: verdict {row['verdict']} for {row['actual']} vs {row['effective']}")
    if not d.allowed:
        if not d.reasons:
            raise Violation("limits", "blocked with no failing limit")
        for metric in d.reasons:
            if metric not in blocking or d.limits[metric]["verdict"] != "fail":
                raise Violation("limits", f"blocked for {metric}, which does not fail")
        if d.reason != (settings.ladder.exhausted_reason or d.reasons[0]):
            raise Violation("limits", f"reason {d.reason!r} does not name the first failing limit {d.reasons[0]!r}")


def purity(c: Checked) -> None:
    """Evaluation leaves the pack unchanged, and the same inputs give byte-identical JSON,
    also when the pack went through a JSON round trip."""
    pack = copy.deepcopy(c.case.pack)
    first = evaluate(c.policy, load_pack(pack), usage=c.case.usage, request=c.case.request)
    if pack != c.case.pack:
        raise Violation("purity", "evaluation modified the input pack")
    again = json.loads(json.dumps(pack))
    second = evaluate(c.policy, load_pack(again), usage=c.case.usage, request=c.case.request)
    if first.to_json() != c.decision.to_json() or second.to_json() != first.to_json():
        raise Violation("purity", "two evaluations of the same inputs gave different decision JSON")


#: name -> check, in the order `policy verify` runs them
INVARIANTS: dict[str, Callable[[Checked], None]] = {
    "differential": differential,
    "order": order,
    "minimality": minimality,
    "monotonicity": monotonicity,
    "prefix": prefix,
    "floors": floors,
    "accounting": accounting,
    "limits": limits_hold,
    "purity": purity,
}
