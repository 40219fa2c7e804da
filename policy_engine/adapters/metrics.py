"""Prometheus metrics of a ledger, read at scrape time.

The gate runs in the orchestrator's processes, not in the server, so the server cannot
count calls as they happen; it exports what the ledger holds, as a custom collector (the
prometheus_client pattern for exporters): every scrape reads the ledger read-only and
reports counters, which only grow as the ledger does.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CollectorRegistry, CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from policy_engine.adapters.ledger_reader import LedgerReader

# decision latency buckets, in seconds (a seed-size decision takes a few milliseconds)
LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class LedgerCollector(Collector):
    def __init__(self, reader: LedgerReader) -> None:
        self.reader = reader

    def collect(self) -> Iterator[Metric]:
        calls = CounterMetricFamily(
            "policy_gated_calls",
            "Gated LLM calls by run and outcome (allowed, trimmed, blocked).",
            labels=["run_id", "outcome"],
        )
        for run_id, outcome, n in self.reader.outcome_counts():
            calls.add_metric([run_id, outcome], n)
        yield calls
        blocks = CounterMetricFamily(
            "policy_blocked_calls",
            "Blocked calls by the decision's reason (the first failing limit).",
            labels=["reason"],
        )
        for reason, n in self.reader.block_reasons():
            blocks.add_metric([reason], n)
        yield blocks
        tokens = CounterMetricFamily(
            "policy_settled_tokens", "Settled (provider-reported) prompt + completion tokens by run.", labels=["run_id"]
        )
        usd = CounterMetricFamily(
            "policy_settled_usd", "Settled cost in USD by run (priced by the policy's price table).", labels=["run_id"]
        )
        for run_id, n_tokens, micro_usd in self.reader.usage_by_run():
            tokens.add_metric([run_id], n_tokens)
            usd.add_metric([run_id], micro_usd / 1_000_000)
        yield tokens
        yield usd
        cumulative, count, total_ms = self.reader.decision_latency_ms([b * 1000 for b in LATENCY_BUCKETS_S])
        buckets = [(repr(b), n) for b, n in zip(LATENCY_BUCKETS_S, cumulative, strict=True)] + [("+Inf", count)]
        yield HistogramMetricFamily(
            "policy_decision_seconds",
            "Time the gate spent deciding a call (evaluate, inside the ledger transaction).",
            buckets=buckets,
            sum_value=total_ms / 1000,
        )


def ledger_registry(reader: LedgerReader) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(LedgerCollector(reader))
    return registry
