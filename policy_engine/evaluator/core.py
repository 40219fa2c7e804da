"""The evaluator: a pure function of (policy, pools, usage, request, seen combos) that
walks the fallback ladder and returns a `Decision` with its trace.

No I/O, no clock, no globals: the adapters pass usage in. Prompt tokens per rung come from
the prompt model's arithmetic (each candidate counted once); the final prompt is rendered
and counted once as the proof. Should the proof ever disagree with the arithmetic, the
ladder is walked again counting every rung exactly, and the trace says so.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import policy_engine
from policy_engine.decision import Decision, DecisionWarning, FloorStatus, usd_text
from policy_engine.errors import Diagnostic, RuleCheckError, UsageInputError
from policy_engine.evaluator.engine import Engine
from policy_engine.evaluator.kpis import compute_kpis
from policy_engine.evaluator.limits import effective_limit, failing, measure_state, unfixable
from policy_engine.evaluator.selection import State, as_selection, cascade, initial_state, lane_counts, removed_between
from policy_engine.evaluator.steps import resize, split_lanes
from policy_engine.policy import METRICS, Enforcement, Policy, Settings
from policy_engine.pools import Pools
from policy_engine.trace import TraceStep, span_json
from policy_engine.usage import Request, UsageSnapshot

EXPLAIN_LEVELS = ("off", "rules", "full")


class _Walk:
    """One walk of the ladder with a given token function."""

    def __init__(
        self,
        policy: Policy,
        settings: Settings,
        pools: Pools,
        usage: UsageSnapshot,
        request: Request,
        completion: int,
        tokens: Callable[[Mapping[str, tuple[str, ...]]], int],
        model: Any,
        explain: str,
    ) -> None:
        self.policy, self.settings, self.pools, self.usage, self.request = policy, settings, pools, usage, request
        self.completion, self.tokens, self.model, self.explain = completion, tokens, model, explain
        self.price = policy.price
        self.trace: list[TraceStep] = []
        self.fallback_count = 0
        self.start_tokens = 0

    def measured(self, state: State) -> Any:
        return measure_state(self.tokens(as_selection(state)), self.completion, self.usage, self.price)

    def item_tokens(self, removed: Mapping[str, tuple[str, ...]]) -> dict[str, dict[str, int]] | None:
        if self.explain != "full":
            return None
        return {pool: {ident: self.model.item_tokens(pool, ident) for ident in ids} for pool, ids in removed.items()}

    def run(self) -> tuple[State, Any, tuple[str, ...], str]:
        settings, request = self.settings, self.request
        state = initial_state(self.pools, settings.topk)
        now = self.measured(state)
        self.start_tokens = now.prompt_tokens
        fails = failing(settings, request, now, Enforcement.BLOCK)
        start_items = None
        if self.explain == "full":
            start_items = {
                pool: {c.id: self.model.item_tokens(pool, c.id) for c in items} for pool, items in state.items()
            }
        self.trace.append(
            TraceStep(
                "start",
                "start",
                "fail" if fails else "pass",
                counts_after=lane_counts(state),
                prompt_tokens_after=now.prompt_tokens,
                failing=fails,
                message="initial selection: the pack's top-k"
                + (" exceeds " + ", ".join(fails) if fails else " fits every blocking limit"),
                item_tokens=start_items,
            )
        )
        if not fails:
            return state, now, fails, "fits without trimming"
        hopeless = unfixable(settings, request, self.usage, self.completion, self.price, fails)
        if hopeless:
            return (
                state,
                now,
                fails,
                "trimming cannot fix " + ", ".join(hopeless) + " (it fails even with an empty prompt)",
            )
        original = {pool: len(items) for pool, items in state.items()}
        floor = settings.lanes.explore_floor
        rung = 0
        for stage in settings.ladder.stages:
            for step in stage.steps:
                rung += 1
                current = state[stage.pool]
                exploit_items = [c for c in current if c.lane == "exploit"]
                explore_items = [c for c in current if c.lane == "explore"]
                # A rung never takes the pool below the explore floor's worth of explore
                # candidates: with fewer slots than the floor, the floor could not hold.
                target = max(
                    resize(step, len(current), original[stage.pool], stage.minimum), min(floor, len(explore_items))
                )
                common = dict(
                    rule=stage.rule,
                    span=step.span,
                    stage=stage.rule,
                    pool=stage.pool,
                    step_kind=step.kind.value,
                    step_value=str(step.value),
                    rung=rung,
                    counts_before=lane_counts(state),
                    prompt_tokens_before=now.prompt_tokens,
                )
                if target >= len(current):
                    why = (
                        "pool is empty"
                        if not current
                        else f"{stage.pool} already at {len(current)} (minimum {stage.minimum})"
                    )
                    self.trace.append(
                        TraceStep(
                            "rung",
                            verdict="skipped",
                            counts_after=lane_counts(state),
                            prompt_tokens_after=now.prompt_tokens,
                            failing=fails,
                            message="no change: " + why,
                            **common,
                        )
                    )
                    continue
                n_exploit, n_explore = split_lanes(
                    target, len(exploit_items), len(explore_items), settings.lanes.explore_ratio, floor
                )
                keep = {c.id for c in exploit_items[:n_exploit]} | {c.id for c in explore_items[:n_explore]}
                before = state
                state = cascade({**state, stage.pool: tuple(c for c in current if c.id in keep)})
                now = self.measured(state)
                fails = failing(settings, request, now, Enforcement.BLOCK)
                self.fallback_count += 1
                removed = removed_between(before, state)
                self.trace.append(
                    TraceStep(
                        "rung",
                        verdict="fail" if fails else "pass",
                        counts_after=lane_counts(state),
                        prompt_tokens_after=now.prompt_tokens,
                        removed=removed,
                        failing=fails,
                        item_tokens=self.item_tokens(removed),
                        message=(
                            f"{stage.pool} {len(current)} -> {target} ({n_exploit} exploit + {n_explore} explore); "
                            + ("still exceeds " + ", ".join(fails) if fails else "everything fits")
                        ),
                        **common,
                    )
                )
                if not fails:
                    return state, now, fails, f"fits after rung {rung} ({stage.rule})"
        return state, now, fails, "ladder exhausted" if settings.ladder.stages else "no fallback ladder"


#: engines the compatibility form `evaluate(policy, pools)` built, by (policy, counter)
#: identity: repeated calls with one policy stay warm. Bounded; each entry holds its
#: policy and counter, so an id is never reused while its entry lives.
_COMPAT_ENGINES: dict[tuple[int, int], Engine] = {}
_COMPAT_MAX = 16


def _engine_for(policy: Policy, counter: Any) -> Engine:
    from policy_engine.tokens import get_counter

    counter = counter or get_counter(policy.tokenizer)
    key = (id(policy), id(counter))
    engine = _COMPAT_ENGINES.get(key)
    if engine is None or engine.policy is not policy or engine.counter is not counter:
        if len(_COMPAT_ENGINES) >= _COMPAT_MAX:
            _COMPAT_ENGINES.clear()
        engine = _COMPAT_ENGINES[key] = Engine.build(policy, counter=counter)
    return engine


def evaluate(
    policy: Policy | Engine,
    pools: Pools,
    *,
    usage: UsageSnapshot = UsageSnapshot(),
    request: Request = Request(),
    seen_combos: frozenset[str] = frozenset(),
    prompt_model: Any = None,
    idea: Mapping[str, Any] | None = None,
    knowledge: Any = None,
    explain: str = "rules",
    counter: Any = None,
) -> Decision:
    """The decision for one pack. The first argument is an `Engine` (built once for many
    packs), or a `Policy`: then the engine is the one this process built for that policy
    (and ``counter``) before, so repeated calls share its caches."""
    if isinstance(policy, Engine):
        engine = (
            policy
            if counter is None or counter is policy.counter
            else Engine.build(policy.policy, counter=counter, knowledge=policy.knowledge)
        )
        if knowledge is None:
            knowledge = engine.knowledge
    else:
        engine = _engine_for(policy, counter)
    return decide(
        engine,
        pools,
        usage=usage,
        request=request,
        seen_combos=seen_combos,
        prompt_model=prompt_model,
        idea=idea,
        knowledge=knowledge,
        explain=explain,
    )


def decide(
    engine: Engine,
    pools: Pools,
    *,
    usage: UsageSnapshot,
    request: Request,
    seen_combos: frozenset[str],
    prompt_model: Any,
    idea: Mapping[str, Any] | None,
    knowledge: Any,
    explain: str,
) -> Decision:
    """Walk the ladder for one pack with the engine's policy, counter and caches."""
    from policy_engine.render import limits_view

    policy, counter = engine.policy, engine.counter
    if explain not in EXPLAIN_LEVELS:
        close = [lvl for lvl in EXPLAIN_LEVELS if lvl[:3] == str(explain)[:3]]
        raise UsageInputError(
            [
                Diagnostic(
                    "V102",
                    f"unknown explain level {explain!r}",
                    hint=(f"did you mean {close[0]!r}? " if close else "")
                    + "use "
                    + ", ".join(map(repr, EXPLAIN_LEVELS)),
                )
            ]
        )
    settings, matched = policy.resolve(pools.attributes)
    usd_limits = [lim for lim in settings.limits if METRICS[lim.metric] == "usd"]
    if usd_limits and policy.price is None:
        first = usd_limits[0]
        raise RuleCheckError(
            [
                Diagnostic(
                    "V101",
                    f"limit {first.rule!r} is in USD but the policy prices no model",
                    hint='add a price table and `price model "..."`',
                    span=first.span,
                )
            ]
        )
    model = prompt_model or engine.prompt_model(pools, idea=idea, knowledge=knowledge, limits=limits_view(settings))
    completion = request.completion_tokens if request.completion_tokens is not None else settings.completion_budget

    walk = _Walk(policy, settings, pools, usage, request, completion, model.tokens, model, explain)
    state, now, fails, why = walk.run()
    final_text = model.render(as_selection(state))
    exact = counter.count(final_text)
    notes: list[TraceStep] = []
    if exact != now.prompt_tokens:
        # Arithmetic and proof disagree: walk again counting every rung exactly.
        notes.append(
            TraceStep(
                "stop",
                "accounting",
                "info",
                message=f"arithmetic gave {now.prompt_tokens}, exact count {exact}: re-walked counting each rung exactly",
            )
        )
        walk = _Walk(
            policy,
            settings,
            pools,
            usage,
            request,
            completion,
            lambda sel: counter.count(model.render(sel)),
            model,
            explain,
        )
        state, now, fails, why = walk.run()
        final_text = model.render(as_selection(state))
        exact = counter.count(final_text)

    trace: list[TraceStep] = [
        TraceStep(
            "condition",
            cond.rule,
            "applied",
            span=cond.span,
            message="condition matched: its settings override the base policy",
        )
        for cond in matched
    ]
    trace.extend(walk.trace)
    trace.extend(notes)
    warn_fails = failing(settings, request, now, Enforcement.WARN)
    limits_json: dict[str, Any] = {}
    for limit in settings.limits:
        effective = effective_limit(limit, settings, request)
        value = now.value(limit.metric)
        verdict = "unpriced" if value is None else ("fail" if value > effective else "pass")
        limits_json[limit.metric] = {
            "rule": limit.rule,
            "value": limit.value,
            "effective": effective,
            "severity": limit.severity.value,
            "unit": "micro_usd" if METRICS[limit.metric] == "usd" else METRICS[limit.metric],
            "actual": value,
            "verdict": verdict,
            "span": span_json(limit.span),
        }
        trace.append(
            TraceStep(
                "check",
                limit.rule,
                verdict if limit.severity is Enforcement.BLOCK or verdict != "fail" else "warn",
                span=limit.span,
                message=f"{limit.metric}: {value} vs {effective} ({limit.severity.value})",
            )
        )

    floors: list[FloorStatus] = []
    start = initial_state(pools, settings.topk)
    for pool, items in state.items():
        available = sum(1 for c in start[pool] if c.lane == "explore")
        kept = sum(1 for c in items if c.lane == "explore")
        required = settings.lanes.explore_floor
        if required <= 0:
            continue
        if kept >= min(required, available):
            status = "preserved" if available >= required else "pack_short"
        else:
            status = "not_preserved"
        floors.append(FloorStatus(pool, required, available, kept, status))

    warnings = [
        DecisionWarning(
            metric,
            f"{metric} exceeds its warning limit: {now.value(metric)} > {effective_limit(warn_limit, settings, request)}",
            warn_limit.rule,
        )
        for metric in warn_fails
        if (warn_limit := settings.limit(metric)) is not None
    ]
    for f in floors:
        if f.status == "pack_short":
            offered = sum(1 for c in pools.pool(f.pool) if c.lane == "explore")
            if offered > f.available:  # the policy's top-k (or the cascade) held them back, not the pack
                warnings.append(
                    DecisionWarning(
                        "explore_floor",
                        f"{f.pool}: the pack offered {offered} explore candidate(s) but the policy's top-k and parent pools leave {f.available}, fewer than the floor of {f.required}",
                    )
                )
            else:
                warnings.append(
                    DecisionWarning(
                        "explore_floor",
                        f"{f.pool}: the pack offered {f.available} explore candidate(s), fewer than the floor of {f.required}",
                    )
                )
        elif f.status == "not_preserved":
            warnings.append(
                DecisionWarning(
                    "explore_floor",
                    f"{f.pool}: only {f.kept} explore candidate(s) kept, below the floor of {f.required}: their owners were dropped by the cascade",
                )
            )

    blocked = bool(fails)
    reason = (settings.ladder.exhausted_reason or fails[0]) if blocked else None
    trace.append(TraceStep("stop", "stop", "fail" if blocked else "pass", failing=fails, message=why))
    selection = {
        pool: {lane: tuple(c.id for c in items if c.lane == lane) for lane in ("exploit", "explore")}
        for pool, items in state.items()
    }
    metrics = {
        "prompt_tokens": exact,
        "prompt_chars": len(final_text),
        "completion_tokens": completion,
        "request_tokens": exact + completion,
        "batch_tokens_used_before": usage.batch_tokens,
        "day_tokens_used_before": usage.day_tokens,
        "projected_batch_tokens": now.projected_batch_tokens,
        "projected_day_tokens": now.projected_day_tokens,
        "request_micro_usd": now.request_micro_usd,
        "request_usd": usd_text(now.request_micro_usd),
        "projected_batch_micro_usd": now.projected_batch_micro_usd,
        "projected_day_micro_usd": now.projected_day_micro_usd,
        "expansion": request.expansion,
        "expansion_reserve": settings.expansion_reserve,
    }
    breakdown = None
    if explain == "full":
        from policy_engine.breakdown import prompt_breakdown

        breakdown = prompt_breakdown(model, counter, as_selection(state), exact, as_selection(start), walk.start_tokens)
    price = policy.price
    manifest = {
        "engine_version": policy_engine.__version__,
        "rules_digest": policy.digest,
        "rules_files": list(policy.source_files),
        "policy_name": policy.name,
        "tokenizer": counter.name,
        "tokenizer_exact": counter.exact,
        "vocab_hash": counter.vocab_hash,
        "template": policy.template,
        "template_digest": policy.template_spec.digest if policy.template_spec is not None else None,
        "pack_format": pools.format,
        "price": None
        if price is None
        else {
            "model": price.model,
            "prompt_usd_per_1m": str(price.prompt_per_million),
            "completion_usd_per_1m": str(price.completion_per_million),
        },
    }
    return Decision(
        allowed=not blocked,
        outcome="blocked" if blocked else ("trimmed" if walk.fallback_count else "allowed"),
        reason=reason,
        reasons=tuple(fails),
        warnings=tuple(warnings),
        selection=selection,
        metrics=metrics,
        limits=limits_json,
        kpis=compute_kpis(state, seen_combos),
        explore_floor=tuple(floors),
        fallback_count=walk.fallback_count,
        trace=tuple(trace),
        manifest=manifest,
        explain=explain,
        breakdown=breakdown,
    )
