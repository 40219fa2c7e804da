"""The budget gate: pass, trim and block paths with the agent's exact events and payload
keys; usage settlement in OpenAI and Anthropic shapes; aggregation per run and per UTC day
with rollover; the dashboards' payloads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from policy_engine.adapters.dashboard import budget_payload, kpi_payload
from policy_engine.adapters.events import JsonlSink
from policy_engine.adapters.gate import BudgetBlocked, BudgetGate, parse_provider_usage
from policy_engine.adapters.ledger import Ledger
from policy_engine.adapters.ledger_reader import LedgerReader
from policy_engine.dsl import load_policy, load_policy_text
from policy_engine.errors import LedgerError
from tests.conftest import ROOT

DEMO = ROOT / "examples" / "policies" / "demo.policy"
SMALL = json.loads((ROOT / "examples" / "packs" / "small_2x4x10x8.json").read_text())
SEED = json.loads((ROOT / "examples" / "packs" / "seed_5x15x72x60.json").read_text())
STATE_KEYS = {
    "step_name",
    "prompt_tokens",
    "completion_tokens",
    "selected_topk",
    "lane_ratio",
    "budget_exceeded",
    "fallback_count",
    "coverage_kpi",
    "novelty_kpi",
    "combo_sample",
    "projected_batch_tokens",
    "projected_day_tokens",
    "batch_tokens_used_before",
    "day_tokens_used_before",
    "estimated_request_cost_usd",
    "explore_floor_preserved",
    "limits",
}
DAY1 = 1_790_000_000.0  # 2026-09-21T...Z


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def setup(tmp_path: Path):
    clock = Clock(DAY1)
    ledger = Ledger(tmp_path / "ledger.db", clock=clock)
    sink_path = tmp_path / "events.jsonl"
    gate = BudgetGate(load_policy(DEMO), ledger, sinks=[JsonlSink(sink_path)])
    return gate, ledger, clock, sink_path


def test_pass_path_reserves_and_emits_passed_events(setup) -> None:
    gate, ledger, _clock, sink = setup
    result = gate.check(SMALL, "run-a")
    assert result.decision.outcome == "allowed"
    events = ledger.events("run-a")
    assert [t for t, _, _ in events] == ["budget.check_passed", "budget.explore_floor_preserved"]
    payload = events[0][1]
    assert STATE_KEYS | {"fallback_applied"} <= set(payload)
    assert payload["fallback_applied"] is False
    assert set(payload["selected_topk"]) == {"subcategories", "datasets", "fields", "operators"}
    assert set(payload["budget_exceeded"]) == {
        "request_prompt",
        "request_completion",
        "batch_total",
        "day_total",
        "explore_floor",
    }
    assert set(payload["limits"]) == {
        "max_prompt_tokens",
        "max_completion_tokens",
        "max_tokens_per_batch",
        "max_tokens_per_day",
        "min_explore_candidates_per_batch",
    }
    assert set(payload["lane_ratio"]) == {
        "exploit_ratio",
        "explore_ratio",
        "exploit_count",
        "explore_count",
        "fields",
        "operators",
    }
    # the reservation (exact prompt + completion budget) counts until settled
    worst = result.decision.metrics["request_tokens"]
    assert ledger.snapshot("run-a").batch_tokens == worst
    gate.record_usage(
        "run-a",
        {"prompt_tokens": 100, "completion_tokens": 50, "total_tokens": 150},
        reservation_id=result.reservation_id,
        model="mock-1",
    )
    assert ledger.snapshot("run-a").batch_tokens == 150
    lines = [json.loads(line) for line in sink.read_text().splitlines()]
    assert [e["event_type"] for e in lines] == [
        "budget.check_passed",
        "budget.explore_floor_preserved",
        "llm.usage_point",
    ]
    assert {"event_type", "run_id", "idea_id", "stage", "message", "severity", "payload", "created_at"} == set(lines[0])
    usage = lines[2]["payload"]
    assert {
        "prompt_chars",
        "completion_chars",
        "prompt_tokens_rough",
        "completion_tokens_rough",
        "prompt_tokens",
        "completion_tokens",
        "total_tokens",
        "estimated_cost_usd",
    } <= set(usage)
    assert usage["total_tokens"] == 150 and usage["estimated_cost_usd"] == pytest.approx(
        (100 * 0.15 + 50 * 0.60) / 1e6, abs=1e-6
    )


def test_trim_path_emits_one_fallback_event_per_rung(setup) -> None:
    _, ledger, *_ = setup
    gate = BudgetGate(
        load_policy(DEMO), ledger, knowledge_dir=ROOT / "examples" / "knowledge"
    )  # the knowledge pack pushes it over
    result = gate.check(SEED, "run-t")
    assert result.decision.outcome == "trimmed"
    events = ledger.events("run-t")
    fallbacks = [p for t, p, _ in events if t == "budget.fallback_applied"]
    assert len(fallbacks) == result.decision.fallback_count >= 1
    assert all(STATE_KEYS | {"fallback_phase", "fallback_factor"} <= set(p) for p in fallbacks)
    assert fallbacks[0]["fallback_phase"] == "fields" and fallbacks[0]["fallback_factor"] == 0.85
    assert [t for t, _, _ in events][-2:] == ["budget.check_passed", "budget.explore_floor_preserved"]
    assert (
        len(result.pack["candidate_fields"]) == result.decision.selected_topk["fields"] < len(SEED["candidate_fields"])
    )


def test_block_path_raises_with_reason_and_emits_failed_and_blocked(setup) -> None:
    gate, ledger, _clock, _ = setup
    blocked = json.loads((ROOT / "examples" / "packs" / "blocked_oversized_guard.json").read_text())
    with pytest.raises(BudgetBlocked) as info:
        gate.check(blocked, "run-b")
    assert info.value.reason == "request_prompt"
    assert info.value.to_json() == {
        "error": "budget_blocked",
        "message": "alpha generation blocked by budget policy: request_prompt",
    }
    types = [t for t, _, _ in ledger.events("run-b")]
    assert types[-2:] == ["budget.check_failed", "budget.blocked"]
    assert ledger.snapshot("run-b").batch_tokens == 0  # nothing reserved


def test_day_cap_blocks_and_rolls_over_at_utc_midnight(setup) -> None:
    gate, ledger, clock, _ = setup
    clock.t = DAY1 - (DAY1 % 86400) + 86400 - 5  # 5 s before UTC midnight
    spent = 0
    while True:
        try:
            res = gate.check(SMALL, "run-d")
        except BudgetBlocked as exc:
            assert exc.reason == "day_total"
            break
        gate.record_usage(
            "run-d",
            prompt_tokens=res.decision.metrics["prompt_tokens"],
            completion_tokens=800,
            reservation_id=res.reservation_id,
            model="mock-1",
        )
        spent += res.decision.metrics["prompt_tokens"] + 800
    day = ledger.snapshot("run-d").day_tokens
    assert day == spent <= 40_000
    clock.t += 10  # a new UTC day: the day's usage starts again, the run's does not
    after = ledger.snapshot("run-d")
    assert after.day_tokens == 0 and after.batch_tokens == spent
    assert gate.check(SMALL, "run-e").decision.allowed


def test_settlement_after_midnight_counts_on_the_reservation_day(setup) -> None:
    gate, ledger, clock, _ = setup
    clock.t = DAY1 - (DAY1 % 86400) + 86400 - 1
    res = gate.check(SMALL, "run-m")
    clock.t += 2  # settled on the next UTC day
    gate.record_usage("run-m", prompt_tokens=10, completion_tokens=5, reservation_id=res.reservation_id, model="mock-1")
    assert ledger.snapshot("run-m").day_tokens == 0
    assert ledger.snapshot("run-m", now=clock.t - 2).day_tokens == 15


@pytest.mark.parametrize(
    "usage,expected",
    [
        ({"prompt_tokens": 10, "completion_tokens": 4, "total_tokens": 14}, (10, 4)),
        ({"input_tokens": 10, "output_tokens": 4}, (10, 4)),
        (
            {"input_tokens": 10, "output_tokens": 4, "cache_read_input_tokens": 3, "cache_creation_input_tokens": 2},
            (15, 4),
        ),
    ],
)
def test_provider_usage_shapes(usage, expected) -> None:
    assert parse_provider_usage(usage) == expected

    class Obj:  # SDK objects carry attributes, not keys
        pass

    obj = Obj()
    obj.__dict__.update(usage)
    assert parse_provider_usage(obj) == expected


@pytest.mark.parametrize(
    "usage",
    [
        {},
        {"prompt_tokens": -1, "completion_tokens": 2},
        {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 4},
        {"input_tokens": "10", "output_tokens": 1},
        {"prompt_tokens": 1.5, "completion_tokens": 1},
    ],
)
def test_bad_usage_is_refused(usage) -> None:
    with pytest.raises(LedgerError) as info:
        parse_provider_usage(usage)
    assert info.value.diagnostics[0].code == "L104"


def test_unknown_reservation_and_unpriced_model_are_refused(setup) -> None:
    gate, *_ = setup
    with pytest.raises(LedgerError, match=r"L103|no reservation"):
        gate.record_usage("run-x", prompt_tokens=1, completion_tokens=1, reservation_id="nope", model="mock-1")
    usd = load_policy_text(
        'tokenizer rough 4 chars per token\nprice "m": prompt $1 per 1M, completion $1 per 1M\npricing model "m"\nlimit d: day_usd <= $5\n',
        "u.policy",
    )
    with pytest.raises(LedgerError) as info:
        BudgetGate(usd, gate.ledger).record_usage("run-x", prompt_tokens=1, completion_tokens=1, model="other")
    assert info.value.diagnostics[0].code == "L105"


def test_dashboard_payloads_follow_the_contract_and_are_null_safe(setup) -> None:
    _, ledger, _clock, _ = setup
    gate = BudgetGate(load_policy(DEMO), ledger, knowledge_dir=ROOT / "examples" / "knowledge")
    res = gate.check(SEED, "run-k")
    gate.record_usage(
        "run-k",
        prompt_tokens=res.decision.metrics["prompt_tokens"],
        completion_tokens=300,
        reservation_id=res.reservation_id,
        model="mock-1",
    )
    reader = LedgerReader(ledger.path)  # the dashboards read the ledger read-only
    budget = budget_payload(reader, "run-k")
    assert {"run_id", "series", "gauges", "flags"} <= set(budget)  # the agent's contract, extended
    assert {"prompt_tokens", "completion_tokens", "fallback_timeline"} <= set(budget["series"])
    assert budget["overspend"] == {"events": 0, "tokens": 0, "micro_usd": 0}
    assert set(budget["gauges"]) == {"prompt_tokens", "completion_tokens", "batch_tokens", "day_tokens"}
    assert {
        "budget_blocked",
        "over_prompt_budget",
        "over_completion_budget",
        "over_batch_budget",
        "over_day_budget",
        "explore_floor_breached",
    } <= set(budget["flags"])
    assert len(budget["series"]["fallback_timeline"]) == res.decision.fallback_count
    assert {k: budget["gauges"]["batch_tokens"][k] for k in ("value", "limit")} == {
        "value": res.decision.metrics["prompt_tokens"] + 300,
        "limit": 52_000,
    }
    assert budget["flags"]["budget_blocked"] is False
    kpi = kpi_payload(reader, "run-k")
    assert set(kpi["series"]) == {"coverage", "novelty", "explore_ratio"}
    assert kpi["gauges"]["novelty"]["limit"] == 1.0 and kpi["gauges"]["explore_ratio"]["limit"] == 0.3
    assert set(kpi["flags"]) == {"low_novelty", "low_coverage", "explore_floor_breached"}
    empty = kpi_payload(reader, "run-none")
    assert empty["gauges"]["coverage"]["value"] is None and empty["flags"]["low_novelty"] is None
    assert budget_payload(reader, "run-none")["flags"]["over_prompt_budget"] is None
    reader.close()


def test_novelty_uses_the_runs_earlier_combo_samples(setup) -> None:
    gate, _ledger, *_ = setup
    first = gate.check(SMALL, "run-n").decision
    second = gate.check(SMALL, "run-n").decision
    other_run = gate.check(SMALL, "run-o").decision
    assert first.kpis["novelty"] == 1.0
    assert second.kpis["novelty"] < 1.0  # the first call's combo sample is now seen
    assert other_run.kpis["novelty"] == 1.0  # seen sets are per run


def test_ledger_refuses_a_missing_directory_and_a_non_sqlite_file(tmp_path: Path) -> None:
    with pytest.raises(LedgerError) as info:
        Ledger(tmp_path / "nope" / "ledger.db")
    assert info.value.diagnostics[0].code == "L101"
    junk = tmp_path / "junk.db"
    junk.write_text("this is not a database, just text that is long enough to be read as a header " * 20)
    with pytest.raises(LedgerError) as info:
        Ledger(junk)
    assert info.value.diagnostics[0].code == "L102"


def test_demo_run_cli_on_a_bad_db_path_is_an_input_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from policy_engine.cli.exit_codes import ExitCode
    from policy_engine.cli.main import main

    code = main(
        [
            "demo-run",
            "--run-id",
            "R",
            "--packs",
            str(ROOT / "examples" / "packs"),
            "--db",
            str(tmp_path / "missing" / "x.db"),
            "--mock-llm",
        ]
    )
    assert code == ExitCode.INVALID_INPUT
    assert "L101" in capsys.readouterr().err
