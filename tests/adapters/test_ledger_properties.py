"""Property (issue 17): over any sequence of gate calls with valid inputs, lease renewals,
clock advances, settlements (inside, above or after their reservation), repeated and
conflicting settlements, on the ledger's injected clock (no sleeps):

* while callers renew their leases and settle within them, the settled total never
  exceeds the day cap; in general, the settled total minus the reported overspend never
  exceeds it;
* every settlement of an expired reservation is reported as exactly one
  `budget.overspend` event carrying its amount, and nothing else is;
* a reservation is settled at most once: repeats change nothing, conflicts are L106.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from policy_engine.adapters.gate import BudgetBlocked, BudgetGate
from policy_engine.adapters.ledger import Ledger, utc_day
from policy_engine.dsl import load_policy_text
from policy_engine.errors import LedgerError
from policy_engine.usage import Request
from tests.adapters.test_leases import DAY, SMALL, Clock, rules

TTL = 60.0
CAP = 6_000

ops = st.lists(
    st.one_of(
        st.tuples(st.just("check"), st.integers(1, 2_500), st.booleans()),  # completion budget, does the caller renew?
        st.tuples(
            st.just("advance"), st.floats(0, 2 * TTL), st.booleans()
        ),  # seconds; do renewing callers beat meanwhile?
        st.tuples(st.just("settle"), st.integers(0, 50), st.sampled_from(["under", "exact", "over"])),
        st.tuples(st.just("repeat"), st.integers(0, 50), st.booleans()),  # same numbers, or different ones
    ),
    max_size=40,
)


@given(ops)
def test_settled_total_stays_under_the_cap_and_every_late_settlement_is_reported(steps) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        clock = Clock(DAY)
        ledger = Ledger(Path(tmp) / "l.db", clock=clock)
        gate = BudgetGate(load_policy_text(rules(CAP), "p.policy"), ledger, reservation_ttl_s=TTL)
        live: list[dict] = []  # reservations the model knows about
        expected_overspend: dict[str, tuple[str, int]] = {}  # reservation -> (reason, tokens)
        clean_settled = 0  # settled inside a live reservation, up to what it reserved
        try:
            for step in steps:
                kind = step[0]
                if kind == "check":
                    try:
                        res = gate.check(SMALL, "run", request=Request(completion_tokens=step[1]))
                    except BudgetBlocked:
                        continue
                    live.append(
                        {
                            "id": res.reservation_id,
                            "reserved": res.decision.metrics["request_tokens"],
                            "expires": res.expires_at,
                            "renews": step[2],
                            "settled": None,
                        }
                    )
                elif kind == "advance":
                    remaining = step[1]
                    while remaining > 0:  # renewing callers beat every TTL/3
                        dt = min(remaining, TTL / 3)
                        clock.t += dt
                        remaining -= dt
                        for r in live:
                            if step[2] and r["renews"] and r["settled"] is None and r["expires"] > clock.t:
                                r["expires"] = gate.renew("run", r["id"])
                elif live and kind == "settle":
                    r = live[step[1] % len(live)]
                    if r["settled"] is not None:
                        continue
                    total = {"under": r["reserved"] // 2, "exact": r["reserved"], "over": r["reserved"] + 17}[step[2]]
                    gate.record_usage(
                        "run", prompt_tokens=total // 3, completion_tokens=total - total // 3, reservation_id=r["id"]
                    )
                    r["settled"] = (total // 3, total - total // 3)
                    if r["expires"] <= clock.t:
                        expected_overspend[r["id"]] = ("settled_after_expiry", total)
                    else:
                        clean_settled += min(total, r["reserved"])
                        if total > r["reserved"]:
                            expected_overspend[r["id"]] = ("settled_over_reservation", total - r["reserved"])
                elif live and kind == "repeat":
                    r = live[step[1] % len(live)]
                    if r["settled"] is None:
                        continue
                    prompt, completion = r["settled"]
                    before = ledger.settled_totals(run_id="run")
                    if step[2]:
                        gate.record_usage(
                            "run", prompt_tokens=prompt, completion_tokens=completion, reservation_id=r["id"]
                        )
                    else:
                        try:
                            gate.record_usage(
                                "run", prompt_tokens=prompt, completion_tokens=completion + 1, reservation_id=r["id"]
                            )
                            raise AssertionError("a conflicting settlement was accepted")
                        except LedgerError as exc:
                            assert exc.diagnostics[0].code == "L106"
                    assert ledger.settled_totals(run_id="run") == before
                # the invariant holds after every step, not only at the end
                settled = ledger.settled_totals(day=utc_day(DAY))[0]
                reported = {p["reservation_id"]: p for t, p, _ in ledger.events("run") if t == "budget.overspend"}
                assert clean_settled <= CAP
                assert settled - sum(p["tokens"] for p in reported.values()) <= CAP
                assert {k: (p["reason"], p["tokens"]) for k, p in reported.items()} == expected_overspend
                if not reported:
                    assert settled <= CAP, "live, renewed, in-budget settlements never exceed the cap"
            points = ledger.settled_totals(run_id="run")[2]
            assert points == sum(1 for r in live if r["settled"] is not None), "one usage point per settled reservation"
            assert [t for t, _, _ in ledger.events("run")].count("budget.overspend") == len(expected_overspend)
        finally:
            ledger.close()
