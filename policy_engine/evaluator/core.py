"""The evaluator's entry: a pure function of (engine, pools, usage, request, seen combos)
that walks the fallback ladder (`ladder.py`) and assembles the `Decision` with its trace.

No I/O, no clock, no globals: the adapters pass usage in. Prompt tokens per rung come from
the prompt model's arithmetic (each candidate counted once). The final prompt is then
rendered and counted once as the proof: by the counter's composed exact count (pieces cut
where tiktoken's pre-tokeniser cannot merge, `tokens/compose.py`), and in the engine's
verification mode also by one whole-text encode. Should the proof disagree with the
arithmetic, the ladder is walked again counting every rung exactly, and the trace says so.
The rough estimator needs no proof: its arithmetic is the character count itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from policy_engine.decision import Decision
from policy_engine.errors import Diagnostic, RuleCheckError, UsageInputError
from policy_engine.evaluator.engine import Engine
from policy_engine.evaluator.engine import evaluate as evaluate_with_engine
from policy_engine.evaluator.floors import floor_statuses, floor_warnings
from policy_engine.evaluator.kpis import compute_kpis
from policy_engine.evaluator.ladder import LadderInputs, LadderWalk, walk_ladder
from policy_engine.evaluator.report import decision_metrics, limit_reports, limit_warnings, manifest
from policy_engine.evaluator.state import selection_of
from policy_engine.policy import METRICS, Policy, Settings
from policy_engine.pools import Pools
from policy_engine.trace import TraceStep
from policy_engine.usage import Request, UsageSnapshot

EXPLAIN_LEVELS = ("off", "rules", "full")


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
    if engine is None:
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
    else:
        engine = _engine_for(policy, counter)
    return evaluate_with_engine(
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
    _check_explain(explain)
    settings, matched = policy.resolve(pools.attributes)
    _check_priced(policy, settings)
    model = prompt_model or engine.prompt_model(pools, idea=idea, knowledge=knowledge, limits=limits_view(settings))
    completion = request.completion_tokens if request.completion_tokens is not None else settings.completion_budget
    table = engine.limit_table(settings, request)
    inputs = LadderInputs(settings, usage, request, completion, policy.price, explain, table, engine.cuts)

    walk = walk_ladder(inputs, model.tokens, model, start=engine.start_state(pools, settings.topk))
    exact, prompt_chars, notes = _prove(engine, model, walk)
    if exact != walk.now.prompt_tokens:
        # Arithmetic and proof disagree: walk again counting every rung exactly.
        notes.append(
            TraceStep(
                "stop",
                "accounting",
                "info",
                message=f"arithmetic gave {walk.now.prompt_tokens}, exact count {exact}: re-walked counting each rung exactly",
            )
        )
        walk = walk_ladder(inputs, lambda sel: counter.count_whole(model.render(sel)), model, start=walk.start)
        final_text = model.render(selection_of(walk.state))
        exact, prompt_chars = counter.count_whole(final_text), len(final_text)

    trace: list[TraceStep] = [
        TraceStep("condition", cond.rule, "applied", span=cond.span, message="condition matched: its settings override the base policy")
        for cond in matched
    ]  # fmt: skip
    trace.extend(walk.trace)
    trace.extend(notes)
    limits_json, checks = limit_reports(table, walk.now)
    trace.extend(checks)
    floors = floor_statuses(settings.lanes.explore_floor, walk.start, walk.state)
    warnings = limit_warnings(table, walk.now)
    warnings.extend(floor_warnings(floors, pools))

    blocked = bool(walk.fails)
    trace.append(TraceStep("stop", "stop", "fail" if blocked else "pass", failing=walk.fails, message=walk.why))
    breakdown = None
    if explain == "full":
        from policy_engine.breakdown import prompt_breakdown

        breakdown = prompt_breakdown(
            model, counter, selection_of(walk.state), exact, selection_of(walk.start), walk.start_tokens
        )
    return Decision(
        allowed=not blocked,
        outcome="blocked" if blocked else ("trimmed" if walk.fallback_count else "allowed"),
        reason=(settings.ladder.exhausted_reason or walk.fails[0]) if blocked else None,
        reasons=tuple(walk.fails),
        warnings=tuple(warnings),
        selection=walk.state.lane_ids(),
        metrics=decision_metrics(exact, prompt_chars, completion, usage, walk.now, request, settings),
        limits=limits_json,
        kpis=compute_kpis(walk.state, seen_combos),
        explore_floor=tuple(floors),
        fallback_count=walk.fallback_count,
        trace=tuple(trace),
        manifest=manifest(policy, counter, pools),
        explain=explain,
        breakdown=breakdown,
    )


def _prove(engine: Engine, model: Any, walk: LadderWalk) -> tuple[int, int, list[TraceStep]]:
    """(exact prompt tokens, prompt characters, trace notes) of the walk's final selection.

    An exact counter renders the final prompt and counts it (composed from cached
    pieces); the verification mode also encodes it whole and, should the two ever differ,
    trusts the whole count and says so. The rough estimator's arithmetic is the character
    count itself, so nothing is rendered unless verification asks for it."""
    counter = engine.counter
    selection = selection_of(walk.state)
    notes: list[TraceStep] = []
    if not counter.exact and not engine.verify_counts:
        chars = model.measure(selection)
        return counter.finish(chars), chars, notes
    render_parts = getattr(model, "render_parts", None)
    count_parts = getattr(counter, "count_parts", None)
    if render_parts is not None and count_parts is not None and not engine.verify_counts:
        # the pieces most packs of a run share are counted already (`count_parts`)
        parts = render_parts(selection)
        return count_parts(parts), sum(map(len, parts)), notes
    text = model.render(selection)
    exact = counter.count(text)
    if engine.verify_counts:
        whole = counter.count_whole(text)
        if whole != exact:
            notes.append(
                TraceStep(
                    "stop",
                    "accounting",
                    "info",
                    message=f"composed count {exact} differs from the whole-text count {whole}: the whole count is used",
                )
            )
            exact = whole
    return exact, len(text), notes


def _check_explain(explain: str) -> None:
    if explain in EXPLAIN_LEVELS:
        return
    close = [lvl for lvl in EXPLAIN_LEVELS if lvl[:3] == str(explain)[:3]]
    raise UsageInputError(
        [
            Diagnostic(
                "V102",
                f"unknown explain level {explain!r}",
                hint=(f"did you mean {close[0]!r}? " if close else "") + "use " + ", ".join(map(repr, EXPLAIN_LEVELS)),
            )
        ]
    )


def _check_priced(policy: Policy, settings: Settings) -> None:
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
