"""The budget gate the orchestrator calls before every LLM call, and `record_usage` after.

`check()` validates the pack (outside the lock), then in one ledger write transaction reads
the run's and day's usage (settled + live reservations), evaluates the policy, reserves the
request's worst case when allowed and writes the telemetry events. The evaluation is pure;
all I/O is here.

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

from policy_engine.adapters.call_log import gated_call
from policy_engine.adapters.events import Event, EventSink, budget_events, overspend_event, usage_event
from policy_engine.adapters.ledger import Ledger, Settlement, check_quantity, check_run_id, utc_iso
from policy_engine.api import trimmed_pack
from policy_engine.decision import Decision
from policy_engine.errors import Diagnostic, LedgerError
from policy_engine.evaluator import evaluate
from policy_engine.packs import load_pack
from policy_engine.policy import METRICS, Policy
from policy_engine.render import load_knowledge
from policy_engine.usage import Request

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


class BudgetGate:
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

    def check(
        self,
        pack: Mapping[str, Any],
        run_id: str,
        *,
        request: Request = Request(),
        idea: Mapping[str, Any] | None = None,
    ) -> GateResult:
        check_run_id(run_id)
        pools = load_pack(pack, idea=idea)  # validation errors raise PackError before any lock
        now = self.ledger.clock()
        created = utc_iso(now)
        with self.ledger.transaction() as db:
            usage = self.ledger.snapshot(run_id, now=now, db=db)
            seen = self.ledger.seen_combos(run_id, db=db)
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
            reservation = None
            if decision.allowed:
                reservation = self.ledger.reserve(
                    db,
                    run_id,
                    decision.metrics["request_tokens"],
                    decision.metrics["request_micro_usd"] or 0,
                    now=now,
                    ttl_s=self.ttl,
                )
            settings = self.policy.resolve(pools.attributes)[0]
            events = budget_events(decision, settings, run_id=run_id, idea_id=pack.get("idea_id"), created_at=created)
            for event in events:
                self.ledger.add_event(
                    run_id, event.event_type, json.dumps(event.payload, sort_keys=True), created, db=db
                )
            call = gated_call(
                decision,
                settings,
                run_id=run_id,
                created_at=now,
                decision_ms=(time.perf_counter() - started) * 1000,
                reservation_id=None if reservation is None else reservation.id,
            )
            self.ledger.record_call(call, db=db)
            # what a replay needs besides the rules and the knowledge pack (recorded by digest
            # in the decision's manifest): the pack, the idea, the seen combos and the decision
            replay_input = {
                "call_id": call.call_id,
                "pack": dict(pack),
                "idea": None if idea is None else dict(idea),
                "seen_combos": sorted(seen),
                "decision": json.loads(decision.to_json()),
            }
            # key order kept (no sort_keys): the pack's order shapes the prompt a replay renders
            self.ledger.add_event(run_id, CALL_INPUT_EVENT, json.dumps(replay_input), created, db=db)
            if decision.allowed:
                self.ledger.add_seen(run_id, list(decision.kpis.get("combo_sample") or ()), db=db)
        self._publish(events)
        if reservation is None:
            raise BudgetBlocked(decision.reason or "blocked", decision, call.call_id)
        return GateResult(decision, trimmed_pack(pack, decision), reservation.id, reservation.expires_at, call.call_id)

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

        def rows(done: Settlement) -> list[tuple[str, str, str]]:
            del published[1:]  # called once per transaction attempt
            if done.overspend is not None:
                published.append(overspend_event(run_id, idea_id, event.created_at, done.overspend))
            return [(e.event_type, json.dumps(e.payload, sort_keys=True), e.created_at) for e in published]

        # the usage point and its events land together or not at all
        done = self.ledger.settle(
            run_id, prompt, completion, micro_usd or 0, model=model, reservation_id=reservation_id, events=rows
        )
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
