"""`policy verify`: the ladder invariants run against a user's own policy on generated
packs, ending with a shrunk counterexample a user can save and replay with `policy eval`.

Hypothesis does the generating and the shrinking. The property records every case that
fails; hypothesis replays the minimal failing case last, so the last record is the shrunk
one. An engine crash on a case counts as a failure too (invariant ``no_crash``): a policy
and pack that crash the engine are exactly what a user needs to report.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, Phase, given
from hypothesis import seed as hypothesis_seed
from hypothesis import settings as hypothesis_settings

from policy_engine.decision import usd_text
from policy_engine.errors import PolicyError
from policy_engine.policy import Policy
from policy_engine.verify.invariants import INVARIANTS, Case, Checked, Violation, run_case
from policy_engine.verify.strategies import PackSizes, cases

#: bigger than the unit tests' packs: a user's limits are sized for real prompts
VERIFY_SIZES = PackSizes(subcategories=8, datasets=20, fields=120, operators=80)


@dataclass
class VerifyReport:
    policy: str
    examples: int
    seed: int
    outcomes: Counter[str] = field(default_factory=Counter)
    rungs_applied: int = 0
    invariants: tuple[str, ...] = ()
    failure: Violation | None = None
    counterexample: Case | None = None

    @property
    def ok(self) -> bool:
        return self.failure is None

    def usage_json(self) -> dict[str, Any] | None:
        if self.counterexample is None:
            return None
        u = self.counterexample.usage
        return {
            "batch": {"tokens": u.batch_tokens, "usd": usd_text(u.batch_micro_usd)},
            "day": {"tokens": u.day_tokens, "usd": usd_text(u.day_micro_usd)},
        }

    def replay_args(self) -> list[str]:
        """`policy eval` flags that reproduce the counterexample's request."""
        if self.counterexample is None:
            return []
        req = self.counterexample.request
        out = ["--usage", "usage.json"]
        if req.expansion:
            out.append("--expansion")
        if req.completion_tokens is not None:
            out += ["--completion-tokens", str(req.completion_tokens)]
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "ok": self.ok,
            "examples": self.examples,
            "seed": self.seed,
            "invariants": list(self.invariants),
            "outcomes": dict(sorted(self.outcomes.items())),
            "rungs_applied": self.rungs_applied,
            "failure": None
            if self.failure is None
            else {"invariant": self.failure.invariant, "message": self.failure.detail},
            "counterexample": None
            if self.counterexample is None
            else {
                "pack": self.counterexample.pack,
                "usage": self.usage_json(),
                "request": dataclasses.asdict(self.counterexample.request),
                "replay": ["policy", "eval", "pack.json", *self.replay_args()],
            },
        }


def verify_policy(
    policy: Policy,
    *,
    examples: int = 200,
    seed: int = 0,
    sizes: PackSizes = VERIFY_SIZES,
    invariants: Mapping[str, Callable[[Checked], None]] = INVARIANTS,
) -> VerifyReport:
    from policy_engine.tokens import get_counter

    get_counter(policy.tokenizer)  # an unusable tokenizer fails here, once, not per case
    report = VerifyReport(policy.name, examples, seed, invariants=tuple(invariants))
    failures: list[tuple[Case, Violation]] = []

    @hypothesis_seed(seed)
    @hypothesis_settings(
        max_examples=examples,
        database=None,
        deadline=None,
        derandomize=False,
        print_blob=False,
        suppress_health_check=list(HealthCheck),
        report_multiple_bugs=False,
        phases=(Phase.generate, Phase.target, Phase.shrink),
    )
    @given(cases(policy, sizes))
    def prop(case: Case) -> None:
        try:
            checked = run_case(policy, case)
            report.outcomes[checked.decision.outcome] += 1
            report.rungs_applied += checked.decision.fallback_count
            for check in invariants.values():
                check(checked)
        except Violation as violation:
            failures.append((case, violation))
            raise
        except PolicyError:
            raise  # the policy itself is unusable (e.g. its tokenizer): not a counterexample
        except Exception as exc:  # an engine crash on this case is a finding
            crash = Violation("no_crash", f"{type(exc).__name__}: {exc}")
            failures.append((case, crash))
            raise crash from exc

    try:
        prop()
    except Violation:
        case, violation = failures[-1]
        report.failure, report.counterexample = violation, case
    return report


def report_text(report: VerifyReport) -> str:
    """Plain text: the verdict, what ran, and for a failure the pack to save and the exact
    command that replays it."""
    outcomes = ", ".join(f"{n} {k}" for k, n in sorted(report.outcomes.items())) or "none"
    lines = [
        f"policy verify: {report.policy!r}, {len(report.invariants)} invariants, up to {report.examples} generated packs (seed {report.seed})",
        f"  evaluations: {sum(report.outcomes.values())} ({outcomes}); ladder rungs applied: {report.rungs_applied}",
    ]
    if report.ok:
        lines.append("  every invariant held: " + ", ".join(report.invariants))
        return "\n".join(lines) + "\n"
    assert report.failure is not None and report.counterexample is not None
    lines += [
        f"FAILED {report.failure.invariant}: {report.failure.detail}",
        "",
        "Shrunk counterexample. Save the pack below as pack.json and the usage as usage.json, then replay with:",
        "  policy eval pack.json " + " ".join(report.replay_args()) + "  (add --rules with your rules)",
        "",
        "usage.json:",
        json.dumps(report.usage_json(), indent=2),
        "",
        "pack.json:",
        json.dumps(report.counterexample.pack, indent=2, ensure_ascii=False),
    ]
    return "\n".join(lines) + "\n"
