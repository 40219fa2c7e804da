"""The budget gate the orchestrator calls before every LLM call, and `record_usage` after.

`check()` validates the pack, reads the run's and day's usage (settled + live reservations)
without any lock (or takes the usage its run's last settlement read, when still fit:
`_reusable`), evaluates the policy and serialises everything the call leaves behind
(events, call-log row, replay material), all outside the ledger's locks; then the ledger
admits it in one short transaction that re-checks the decision's caps against the usage
under the day's and run's locks (`admission.Admission`). If another caller took the room in
between, nothing is written and the gate re-evaluates with the fresh usage the ledger
returned; after `optimistic_attempts` such conflicts it evaluates under the locks instead,
so a check always ends. The evaluation is pure; all I/O is here.

The reservation is a lease: hold it across the LLM call with `with gate.lease(run_id,
result.reservation_id):` (renews every TTL/3 from a background thread) or call
`gate.renew()` yourself; docs/reservations.md sizes the TTL against the provider timeout.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from policy_engine.adapters.admission import Admission, Caps, blocks_only, caps_of
from policy_engine.adapters.call_log import GatedCall, gated_call
from policy_engine.adapters.events import Event, EventSink, budget_events, overspend_event, usage_event
from policy_engine.adapters.ledger import (
    KnownUsage,
    Ledger,
    check_quantity,
    check_run_id,
    new_reservation,
    utc_day,
    utc_iso,
)
from policy_engine.adapters.ledger_json import sorted_json
from policy_engine.api import trimmed_pack
from policy_engine.decision import Decision
from policy_engine.errors import Diagnostic, LedgerError
from policy_engine.evaluator import evaluate
from policy_engine.packs import load_pack
from policy_engine.policy import METRICS, Policy, Settings
from policy_engine.pools import Pools
from policy_engine.render import load_knowledge
from policy_engine.usage import Request, UsageSnapshot

#: runs whose seen combos a gate keeps between an admitted check and its settlement
_REMEMBERED_RUNS = 1024

#: the ledger event that keeps a gated call's inputs for `policy replay --db ... --call ID`
CALL_INPUT_EVENT = "budget.call_input"


class BudgetBlocked(Exception):
    """The policy blocked the call. ``reason`` is the decision's reason code (the agent's
    names: request_prompt, request_completion, batch_total, day_total, or a USD metric)."""

    def __init__(self, reason: str, decision: Decision, call_id: str = "") -> None:
        super().__init__(f"alpha generation blocked by budget policy: {reason}")
        self.reason = reason
        self.decision = decision
        self.call_id = call_id  # `policy replay --db LEDGER --call CALL_ID` re-evaluates it

    def to_json(self) -> dict[str, str]:
        return {"error": "budget_blocked", "message": str(self)}


@dataclass(frozen=True)
class GateResult:
    decision: Decision
    pack: dict[str, Any]  # the trimmed pack to send on
    reservation_id: str
    expires_at: float = 0.0  # the lease's expiry (ledger clock); renew before it
    call_id: str = ""  # the call's row in the ledger's call log; `policy replay --db ... --call` replays it


def parse_provider_usage(usage: Any) -> tuple[int, int]:
    """(prompt, completion) tokens from an OpenAI-style (prompt_tokens / completion_tokens /
    total_tokens) or Anthropic-style (input_tokens / output_tokens, plus cache tokens, which
    are prompt tokens too) usage, as a dict or an SDK object."""

    def get(name: str) -> Any:
        return usage.get(name) if isinstance(usage, Mapping) else getattr(usage, name, None)

    def whole(name: str, value: Any) -> int:
        return check_quantity(f"usage {name}", value)

    if get("prompt_tokens") is not None or get("completion_tokens") is not None:
        prompt, completion = (
            whole("prompt_tokens", get("prompt_tokens") or 0),
            whole("completion_tokens", get("completion_tokens") or 0),
        )
        total = get("total_tokens")
        if total is not None and whole("total_tokens", total) != prompt + completion:
            raise LedgerError(
                [
                    Diagnostic(
                        "L104",
                        f"usage total_tokens {total} != prompt_tokens {prompt} + completion_tokens {completion}",
                        hint="pass the provider's usage unchanged",
                    )
                ]
            )
        return prompt, completion
    if get("input_tokens") is not None or get("output_tokens") is not None:
        prompt = whole("input_tokens", get("input_tokens") or 0)
        for extra in ("cache_creation_input_tokens", "cache_read_input_tokens"):
            if get(extra) is not None:
                prompt += whole(extra, get(extra))
        return prompt, whole("output_tokens", get("output_tokens") or 0)
    raise LedgerError(
        [
            Diagnostic(
                "L104",
                "usage has neither prompt_tokens/completion_tokens nor input_tokens/output_tokens",
                hint="pass the provider's usage object (OpenAI or Anthropic shape)",
            )
        ]
    )


@dataclass(frozen=True)
class _Prepared:
    decision: Decision
    events: list[Event]
    call: GatedCall
    admission: Admission


class BudgetGate:
    #: conflicts (the room taken between the read and the admission) re-evaluated with the
    #: fresh usage before the gate evaluates under the admission locks instead
    optimistic_attempts = 3
    #: how old (seconds, ledger clock) the usage a settlement handed back may be for the
    #: run's next check to evaluate on it instead of reading the ledger (0: always read)
    usage_reuse_s = 1.0

    def __init__(
        self,
        policy: Policy,
        ledger: Ledger,
        *,
        sinks: Iterable[EventSink] = (),
        reservation_ttl_s: float = 600.0,
        knowledge_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        if not 0 < reservation_ttl_s <= 86_400:
            raise ValueError("reservation_ttl_s must be > 0 and at most a day (renew a lease instead of a longer TTL)")
        self.policy, self.ledger, self.sinks, self.ttl = policy, ledger, tuple(sinks), reservation_ttl_s
        self.knowledge = load_knowledge(knowledge_dir) if knowledge_dir is not None else None
        self.conflicts = 0  # admissions refused because the room was taken since the read
        self.reused_usage = 0  # checks admitted on the usage their run's last settlement handed back
        # per run: the seen combos after its last admitted check, then (at its settlement) the
        # usage the ledger handed back with them, for the run's next check
        self._seen: dict[str, frozenset[str]] = {}
        self._known: dict[str, tuple[KnownUsage, frozenset[str]]] = {}
        self.locked_checks = 0  # checks that fell back to evaluating under the admission locks

    def check(
        self,
        pack: Mapping[str, Any],
        run_id: str,
        *,
        request: Request = Request(),
        idea: Mapping[str, Any] | None = None,
    ) -> GateResult:
        check_run_id(run_id)
        pools = load_pack(pack, idea=idea)  # validation errors raise PackError before any ledger work
        settings = self.policy.resolve(pools.attributes)[0]
        now = self.ledger.clock()
        # the replay material's inputs, serialised once (key order kept: the pack's order
        # shapes the prompt a replay renders)
        inputs = (json.dumps(dict(pack)), "null" if idea is None else json.dumps(dict(idea)))

        def prepare(usage: UsageSnapshot, seen: frozenset[str]) -> _Prepared:
            return self._prepare(pack, pools, settings, run_id, request, idea, usage, seen, now, inputs)

        # the usage the last settlement of this run handed back, when still fit to evaluate on
        known = self._known.pop(run_id, None)
        reused = known is not None and self._reusable(known[0], settings, now)
        usage, seen = (
            (known[0].usage, known[1]) if known is not None and reused else self.ledger.read_usage(run_id, now=now)
        )
        attempts = 0
        while attempts < self.optimistic_attempts:
            prepared = prepare(usage, seen)
            if reused and prepared.decision.outcome != "allowed":
                # a remembered usage may be higher than today's (holds expired, settlements
                # below their reservation): trim or block only on a fresh read
                reused = False
                usage, seen = self.ledger.read_usage(run_id, now=now)
                continue
            fresh = self.ledger.admit(prepared.admission)
            if fresh is None:
                break
            self.conflicts += 1
            attempts += 1
            usage, reused = fresh, False
        else:
            self.locked_checks += 1
            with self.ledger.admission_lock(run_id, now) as db:
                prepared = prepare(*self.ledger.read_usage(run_id, now=now, db=db))
                if self.ledger.admit(prepared.admission, db=db) is not None:
                    raise RuntimeError("the ledger refused an admission evaluated under its own locks")
        self.reused_usage += reused
        if prepared.admission.reservation is not None:
            if len(self._seen) >= _REMEMBERED_RUNS:
                self._seen.clear()  # runs checked and never settled: forget, read again
            self._seen[run_id] = seen.union(prepared.admission.combos)
        decision, reservation = prepared.decision, prepared.admission.reservation
        self._publish(prepared.events)
        if reservation is None:
            raise BudgetBlocked(decision.reason or "blocked", decision, prepared.call.call_id)
        return GateResult(
            decision, trimmed_pack(pack, decision), reservation.id, reservation.expires_at, prepared.call.call_id
        )

    def _prepare(
        self,
        pack: Mapping[str, Any],
        pools: Pools,
        settings: Settings,
        run_id: str,
        request: Request,
        idea: Mapping[str, Any] | None,
        usage: UsageSnapshot,
        seen: frozenset[str],
        now: float,
        inputs: tuple[str, str],
    ) -> _Prepared:
        """Evaluate against ``usage`` and build every row the call leaves behind, outside
        the ledger's locks."""
        started = time.perf_counter()
        decision = evaluate(
            self.policy,
            pools,
            usage=usage,
            request=request,
            seen_combos=seen,
            idea=idea,
            knowledge=self.knowledge,
        )
        decision_ms = (time.perf_counter() - started) * 1000
        created = utc_iso(now)
        reservation, caps = None, Caps()
        if decision.allowed:
            cost = decision.metrics["request_micro_usd"]
            reservation = new_reservation(
                run_id, decision.metrics["request_tokens"], cost or 0, now=now, ttl_s=self.ttl
            )
            caps = caps_of(settings, request, priced=cost is not None)
        events = budget_events(decision, settings, run_id=run_id, idea_id=pack.get("idea_id"), created_at=created)
        call = gated_call(
            decision,
            settings,
            run_id=run_id,
            created_at=now,
            decision_ms=decision_ms,
            reservation_id=None if reservation is None else reservation.id,
        )
        # what a replay needs besides the rules and the knowledge pack (recorded by digest in
        # the decision's manifest): the pack, the idea, the seen combos and the decision, as
        # the object {"call_id", "pack", "idea", "seen_combos", "decision"} assembled from
        # parts so the pack is dumped once per check, not once per attempt. The text starts
        # as json.dumps writes it (`{"call_id": "...",`): the ledger reader finds a call's
        # material by that text (`LedgerReader.call_input`)
        replay = (
            f'{{"call_id": {json.dumps(call.call_id)}, "pack": {inputs[0]}, "idea": {inputs[1]}, '
            f'"seen_combos": {sorted_json(sorted(seen))}, "decision": {sorted_json(decision.to_dict())}}}'
        )
        rows = tuple((e.event_type, sorted_json(e.payload)) for e in events)
        admission = Admission(
            run_id=run_id,
            now=now,
            created_at=created,
            reservation=reservation,
            caps=caps,
            events=(*rows, (CALL_INPUT_EVENT, replay)),
            call=call,
            # only the combos the run had not seen when read (a race adds one twice: ignored)
            combos=tuple(c for c in decision.kpis.get("combo_sample") or () if c not in seen)
            if decision.allowed
            else (),
        )
        return _Prepared(decision, events, call, admission)

    def _reusable(self, known: KnownUsage, settings: Settings, now: float) -> bool:
        """Whether a check may evaluate on the usage the run's last settlement handed back
        (docs/postgresql-ledger.md): from today, at most `usage_reuse_s` old, and only
        blocking limits on usage metrics (the admission re-checks those caps under its
        locks, so a stale usage costs a conflict, never an overspend; a warn-only limit's
        warning would describe the old usage, so such policies read)."""
        return (
            self.usage_reuse_s > 0
            and known.day == utc_day(now)
            and 0 <= now - known.at <= self.usage_reuse_s
            and blocks_only(settings)
        )

    def renew(self, run_id: str, reservation_id: str, *, ttl_s: float | None = None) -> float:
        """Extend the reservation's lease to now + TTL while its LLM call runs; returns the
        new expiry. An expired or settled reservation raises L107."""
        return self.ledger.renew(check_run_id(run_id), reservation_id, ttl_s=self.ttl if ttl_s is None else ttl_s)

    @contextmanager
    def lease(self, run_id: str, reservation_id: str, *, every_s: float | None = None) -> Iterator[None]:
        """Hold the reservation for the duration of the block: a daemon thread renews it
        every ``every_s`` (default TTL/3, so two missed beats still leave it live). A
        renewal failure (ledger down, lease already lost) is kept and raised when the
        block ends, so the caller learns that its settlement may be reported as overspend."""
        interval = self.ttl / 3 if every_s is None else every_s
        stop, failure = threading.Event(), []

        def beat() -> None:
            while not stop.wait(interval):
                try:
                    self.renew(run_id, reservation_id)
                except Exception as exc:
                    failure.append(exc)
                    return

        thread = threading.Thread(target=beat, name=f"lease-{reservation_id[:8]}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
        if failure:
            raise failure[0]

    def record_usage(
        self,
        run_id: str,
        usage: Any = None,
        *,
        prompt_tokens: int | None = None,
        completion_tokens: int | None = None,
        model: str | None = None,
        reservation_id: str | None = None,
        provider: str | None = None,
        response_id: str | None = None,
        prompt_chars: int | None = None,
        completion_chars: int | None = None,
        idea_id: str | None = None,
    ) -> Event:
        """Settle real usage: either the provider's ``usage`` (OpenAI or Anthropic shape) or
        ``prompt_tokens`` and ``completion_tokens``. Replaces the reservation when given.
        Idempotent per reservation: a retry with the same numbers returns the same event
        and writes and publishes nothing; other numbers raise L106. A settlement after the
        reservation expired (or above it) also writes and publishes `budget.overspend`."""
        check_run_id(run_id)
        for name, chars in (("prompt_chars", prompt_chars), ("completion_chars", completion_chars)):
            if chars is not None:
                check_quantity(name, chars)
        if usage is not None:
            prompt, completion = parse_provider_usage(usage)
        elif prompt_tokens is not None and completion_tokens is not None:
            prompt, completion = parse_provider_usage(
                {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens}
            )
        else:
            raise LedgerError(
                [
                    Diagnostic(
                        "L104",
                        "record_usage needs the provider's usage or both prompt_tokens and completion_tokens",
                        hint="pass usage=response.usage",
                    )
                ]
            )
        micro_usd = self._cost(model, prompt, completion)
        raw = (
            usage
            if isinstance(usage, Mapping)
            else (None if usage is None else {k: getattr(usage, k) for k in dir(usage) if k.endswith("tokens")})
        )
        event = usage_event(
            run_id,
            idea_id,
            utc_iso(self.ledger.clock()),
            prompt_tokens=prompt,
            completion_tokens=completion,
            micro_usd=micro_usd,
            prompt_chars=prompt_chars,
            completion_chars=completion_chars,
            provider=provider,
            model=model,
            response_id=response_id,
            raw_usage=raw,
        )
        published: list[Event] = [event]

        def rows(overspend: dict[str, Any] | None) -> list[tuple[str, str, str]]:
            del published[1:]  # called once per transaction attempt
            if overspend is not None:
                published.append(overspend_event(run_id, idea_id, event.created_at, overspend))
            return [(e.event_type, sorted_json(e.payload), e.created_at) for e in published]

        # the usage point and its events land together or not at all
        done = self.ledger.settle(
            run_id, prompt, completion, micro_usd or 0, model=model, reservation_id=reservation_id, events=rows
        )
        seen = self._seen.pop(run_id, None)
        if done.usage is not None and seen is not None:
            self._known[run_id] = (done.usage, seen)
        if not done.repeated:
            self._publish(published)
        return event

    def _cost(self, model: str | None, prompt: int, completion: int) -> int | None:
        """Price by the reported model when the table has it, else by the policy's pricing
        model when no model is reported. An unpriced model is refused when the policy has
        USD limits (its spend would go uncounted), else its cost is unknown (null)."""
        prices = {p.model: p for p in self.policy.prices}
        price = prices.get(model) if model is not None else self.policy.price
        if price is not None:
            return price.cost_micro_usd(prompt, completion)
        if any(METRICS[lim.metric] == "usd" for lim in self.policy.settings.limits):
            raise LedgerError(
                [
                    Diagnostic(
                        "L105",
                        f"model {model!r} has no price in the policy, which has USD limits",
                        hint=f'add `price "{model}": ...` to the rules',
                    )
                ]
            )
        return None

    def _publish(self, events: list[Event]) -> None:
        for event in events:
            for sink in self.sinks:
                sink.emit(event)
