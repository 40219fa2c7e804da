"""What would make a pack fit: the smallest limits under which the untrimmed pack fits, and
for a blocked pack the cheapest changes that would allow it (raise the limit that blocked;
add a rung on one pool; lower a floor). Every answer is *checked*: the changed policy is
evaluated and the answer reported is what that evaluation decided, never arithmetic alone.

A changed policy is the pack's resolved settings (its `when` blocks already applied) with
one change, so a suggestion names the rule that really applies to this pack. Searches are
binary searches over one number: limits and keep-counts act monotonically on the ladder
(`policy verify` checks that invariant); the reported value and its neighbour are both
evaluated, so a non-monotone case would show as an unverified minimum, not as a wrong claim.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from policy_engine.decision import Decision
from policy_engine.evaluator import evaluate
from policy_engine.evaluator.limits import effective_limit, measure_state
from policy_engine.policy import METRICS, POOLS, Policy, Settings, Stage, Step, StepKind
from policy_engine.pools import Pools
from policy_engine.usage import Request, UsageSnapshot


@dataclass(frozen=True, slots=True)
class Checked:
    """A change and what evaluating the changed policy decided."""

    kind: str  # "limit" | "rung" | "floor" | "minimum"
    change: str  # what to write in the rules, in words
    rule: str | None
    where: str | None  # file:line of the rule to edit
    metric: str | None
    value: int | None  # the new limit / keep count / floor / minimum
    delta: int | None  # how far the value moves from today's
    outcome: str
    prompt_tokens: int
    fallback_count: int
    sizes: dict[str, int]
    minimal: bool  # the next smaller change was evaluated and does not suffice

    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


@dataclass(frozen=True, slots=True)
class Remaining:
    metric: str
    limit: int  # effective limit (the batch one net of the expansion reserve)
    used: int
    per_call: int
    calls: int | None  # None: calls of this size cost nothing under this metric

    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


@dataclass(frozen=True, slots=True)
class FitReport:
    decision: Decision
    untrimmed_tokens: int
    over: dict[str, int]  # blocking metric -> amount over its effective limit (final state)
    untrimmed_fit: tuple[Checked, ...]  # the smallest limits under which the untrimmed pack fits
    untrimmed_fit_checked: Checked | None  # all of them together, evaluated
    changes: tuple[Checked, ...]  # for a blocked pack: what would allow it
    remaining: tuple[Remaining, ...]
    not_enough: tuple[str, ...] = ()  # changes tried that do not allow the call, in words

    def to_json(self) -> dict[str, Any]:
        d = self.decision
        return {
            "outcome": d.outcome,
            "reason": d.reason,
            "reasons": list(d.reasons),
            "prompt_tokens": d.metrics["prompt_tokens"],
            "untrimmed_prompt_tokens": self.untrimmed_tokens,
            "over": dict(self.over),
            "untrimmed_fit": [c.to_json() for c in self.untrimmed_fit],
            "untrimmed_fit_checked": None
            if self.untrimmed_fit_checked is None
            else self.untrimmed_fit_checked.to_json(),
            "changes": [c.to_json() for c in self.changes],
            "not_enough": list(self.not_enough),
            "remaining_calls": [r.to_json() for r in self.remaining],
        }


def _where(span: Any) -> str | None:
    return f"{span.file}:{span.line}" if span is not None and span.line else None


class _Fitter:
    def __init__(
        self, policy: Policy, pools: Pools, usage: UsageSnapshot, request: Request, idea: Any, knowledge: Any
    ) -> None:
        self.policy, self.pools, self.usage, self.request, self.idea, self.knowledge = (
            policy,
            pools,
            usage,
            request,
            idea,
            knowledge,
        )
        self.settings, _ = policy.resolve(pools.attributes)
        self.evaluations = 0

    def run(self, settings: Settings) -> Decision:
        """Evaluate the pack under ``settings`` (conditions already resolved, so dropped)."""
        self.evaluations += 1
        changed = dataclasses.replace(self.policy, settings=settings, conditionals=())
        return evaluate(
            changed,
            self.pools,
            usage=self.usage,
            request=self.request,
            idea=self.idea,
            knowledge=self.knowledge,
            explain="off",
        )

    # ---- limits ---------------------------------------------------------------------

    def with_limits(self, values: dict[str, int]) -> Settings:
        limits = tuple(
            dataclasses.replace(lim, value=values[lim.metric]) if lim.metric in values else lim
            for lim in self.settings.limits
        )
        return dataclasses.replace(self.settings, limits=limits)

    def needed(self, metric: str, prompt_tokens: int, completion: int) -> int:
        """The smallest value of ``metric``'s limit that a prompt of ``prompt_tokens`` passes."""
        measured = measure_state(prompt_tokens, completion, self.usage, self.policy.price)
        value = measured.value(metric)
        limit = self.settings.limit(metric)
        assert limit is not None and value is not None
        return max(0, value + (limit.value - effective_limit(limit, self.settings, self.request)))

    def checked(
        self,
        kind: str,
        change: str,
        decision: Decision,
        *,
        rule: str | None = None,
        where: str | None = None,
        metric: str | None = None,
        value: int | None = None,
        delta: int | None = None,
        minimal: bool = False,
    ) -> Checked:
        return Checked(
            kind,
            change,
            rule,
            where,
            metric,
            value,
            delta,
            decision.outcome,
            decision.metrics["prompt_tokens"],
            decision.fallback_count,
            dict(decision.selected_topk),
            minimal,
        )

    def untrimmed_fit(self, base: Decision, untrimmed: int) -> tuple[tuple[Checked, ...], Checked | None]:
        """Raise every blocking limit the untrimmed prompt fails to exactly what it needs;
        the prompt echoes some limits, so repeat until the evaluated prompt needs no more."""
        completion = base.metrics["completion_tokens"]
        start = next(s for s in base.trace if s.kind == "start")
        failing = [m for m in start.failing]
        if not failing:
            return (), None
        values: dict[str, int] = {}
        decision = base
        for _ in range(4):
            for metric in failing:
                values[metric] = max(values.get(metric, 0), self.needed(metric, untrimmed, completion))
            decision = self.run(self.with_limits(values))
            start = next(s for s in decision.trace if s.kind == "start")
            if not start.failing:
                break
            untrimmed = start.prompt_tokens_after or untrimmed
            failing = sorted(set(failing) | set(start.failing), key=list(METRICS).index)
        fits = decision.outcome == "allowed"
        out = []
        for metric in failing:
            limit = self.settings.limit(metric)
            assert limit is not None
            smaller = self.run(self.with_limits({**values, metric: values[metric] - 1}))
            out.append(
                Checked(
                    "limit",
                    f"{metric} <= {values[metric]:,}",
                    limit.rule,
                    _where(limit.span),
                    metric,
                    values[metric],
                    values[metric] - limit.value,
                    decision.outcome,
                    decision.metrics["prompt_tokens"],
                    decision.fallback_count,
                    dict(decision.selected_topk),
                    fits and smaller.outcome != "allowed",
                )
            )
        together = self.checked(
            "limit", ", ".join(f"{m} <= {values[m]:,}" for m in failing), decision, minimal=all(c.minimal for c in out)
        )
        return tuple(out), together

    def raise_limit(self, metric: str, untrimmed: int, completion: int) -> Checked | str:
        limit = self.settings.limit(metric)
        assert limit is not None
        low = limit.value  # blocked here
        high = max(low + 1, self.needed(metric, untrimmed, completion))
        top = self.run(self.with_limits({metric: high}))
        if not top.allowed:
            return f"raising {metric} alone does not allow it (still blocked by {top.reason} with {metric} at {high:,})"
        best = self._smallest(low, high, lambda v: self.run(self.with_limits({metric: v})).allowed)
        decision = self.run(self.with_limits({metric: best}))
        return self.checked(
            "limit",
            f"raise {metric} to {best:,} (+{best - limit.value:,})",
            decision,
            rule=limit.rule,
            where=_where(limit.span),
            metric=metric,
            value=best,
            delta=best - limit.value,
            minimal=True,
        )

    @staticmethod
    def _smallest(low: int, high: int, ok: Callable[[int], bool]) -> int:
        """Smallest v in (low, high] with ok(v), given not ok(low) and ok(high)."""
        while high - low > 1:
            mid = (low + high) // 2
            if ok(mid):
                high = mid
            else:
                low = mid
        return high

    # ---- the ladder -----------------------------------------------------------------

    def add_rung(self, pool: str, kept: int) -> Checked | str:
        """A last stage keeping K of ``pool``: the largest K that allows the call."""
        name = f"fit_{pool}"

        def settings_for(k: int) -> Settings:
            stage = Stage(name, pool, (Step(StepKind.COUNT, Decimal(k)),), minimum=1)
            ladder = dataclasses.replace(self.settings.ladder, stages=self.settings.ladder.stages + (stage,))
            return dataclasses.replace(self.settings, ladder=ladder)

        if kept <= 1:
            return f"{pool}: already at {kept}, a rung cannot cut it further"
        if not self.run(settings_for(1)).allowed:
            return f"{pool}: still blocked keeping 1"
        # largest k in [1, kept-1] that allows: smallest "not allowed" above it, minus one
        low, high = 1, kept
        while high - low > 1:
            mid = (low + high) // 2
            if self.run(settings_for(mid)).allowed:
                low = mid
            else:
                high = mid
        decision = self.run(settings_for(low))
        bigger = low + 1 < kept and self.run(settings_for(low + 1)).allowed
        return self.checked(
            "rung",
            f"append `stage {name}: {pool} keep {low}` to the ladder (removes {kept - low} {pool})",
            decision,
            value=low,
            delta=low - kept,
            minimal=not bigger,
        )

    def lower_floor(self) -> Checked | str:
        floor = self.settings.lanes.explore_floor
        if floor <= 0:
            return "explore floor is already 0"
        for value in range(floor - 1, -1, -1):
            settings = dataclasses.replace(
                self.settings, lanes=dataclasses.replace(self.settings.lanes, explore_floor=value)
            )
            decision = self.run(settings)
            if decision.allowed:
                return self.checked(
                    "floor",
                    f"lower the explore floor to {value} (from {floor})",
                    decision,
                    value=value,
                    delta=value - floor,
                    where=_where(self.settings.lanes.span),
                    minimal=True,
                )
        return "lowering the explore floor (even to 0) does not allow it"

    def lower_minimum(self, stage: Stage) -> Checked | str:
        def settings_for(m: int) -> Settings:
            stages = tuple(dataclasses.replace(s, minimum=m) if s is stage else s for s in self.settings.ladder.stages)
            return dataclasses.replace(self.settings, ladder=dataclasses.replace(self.settings.ladder, stages=stages))

        if not self.run(settings_for(1)).allowed:
            return f"stage {stage.rule}: still blocked with min 1"
        low, high = 1, stage.minimum  # allowed at low, blocked at high
        while high - low > 1:
            mid = (low + high) // 2
            if self.run(settings_for(mid)).allowed:
                low = mid
            else:
                high = mid
        decision = self.run(settings_for(low))
        return self.checked(
            "minimum",
            f"lower stage {stage.rule}'s min to {low} (from {stage.minimum})",
            decision,
            rule=stage.rule,
            where=_where(stage.span),
            value=low,
            delta=low - stage.minimum,
            minimal=True,
        )


def fit(
    policy: Policy,
    pools: Pools,
    *,
    usage: UsageSnapshot = UsageSnapshot(),
    request: Request = Request(),
    idea: Any = None,
    knowledge: Any = None,
) -> FitReport:
    f = _Fitter(policy, pools, usage, request, idea, knowledge)
    base = evaluate(policy, pools, usage=usage, request=request, idea=idea, knowledge=knowledge, explain="rules")
    start = next(s for s in base.trace if s.kind == "start")
    untrimmed = start.prompt_tokens_after or 0
    completion = base.metrics["completion_tokens"]
    over = {m: base.limits[m]["actual"] - base.limits[m]["effective"] for m in base.reasons if m in base.limits}
    fit_limits, together = f.untrimmed_fit(base, untrimmed)
    changes: list[Checked | str] = []
    if not base.allowed:
        for metric in base.reasons:
            changes.append(f.raise_limit(metric, untrimmed, completion))
        for pool in POOLS:
            changes.append(f.add_rung(pool, base.selected_topk.get(pool, 0)))
        changes.append(f.lower_floor())
        for stage in f.settings.ladder.stages:
            if stage.minimum > 1:
                changes.append(f.lower_minimum(stage))
    checked = [c for c in changes if isinstance(c, Checked)]
    # cheapest first: within a kind, the change that keeps the most candidates (a rung on an
    # owner pool cascades), then the most prompt; a limit by how little it moves
    checked.sort(
        key=lambda c: (
            {"limit": 0, "rung": 1, "minimum": 2, "floor": 3}[c.kind],
            abs(c.delta or 0) if c.kind == "limit" else -sum(c.sizes.values()),
            -c.prompt_tokens,
        )
    )
    remaining = _remaining(f.settings, request, usage, base)
    return FitReport(
        base,
        untrimmed,
        over,
        fit_limits,
        together,
        tuple(checked),
        remaining,
        tuple(c for c in changes if isinstance(c, str)),
    )


def _remaining(settings: Settings, request: Request, usage: UsageSnapshot, decision: Decision) -> tuple[Remaining, ...]:
    """Calls of this decision's size (prompt + completion budget; its cost) that the batch
    and day limits still hold, counted from the usage before this call, this call included."""
    size = decision.metrics["request_tokens"]
    cost = decision.metrics["request_micro_usd"]
    used = {
        "batch_total": usage.batch_tokens,
        "day_total": usage.day_tokens,
        "batch_usd": usage.batch_micro_usd,
        "day_usd": usage.day_micro_usd,
    }
    out = []
    for limit in settings.limits:
        if limit.metric not in used:
            continue
        per_call = size if METRICS[limit.metric] == "tokens" else cost
        if per_call is None:
            continue
        effective = effective_limit(limit, settings, request)
        left = max(0, effective - used[limit.metric])
        out.append(
            Remaining(
                limit.metric, effective, used[limit.metric], per_call, None if per_call == 0 else left // per_call
            )
        )
    return tuple(out)
