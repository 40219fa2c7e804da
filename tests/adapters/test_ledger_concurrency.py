"""The ledger under real concurrency: worker processes sharing one daily cap never
together exceed it and lose no usage point; a SIGKILLed worker's reservation expires."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import random
import signal
import time
from pathlib import Path

from policy_engine.adapters.gate import BudgetBlocked, BudgetGate
from policy_engine.adapters.ledger import Ledger
from policy_engine.dsl import load_policy_text
from tests.conftest import ROOT

SMALL = json.loads((ROOT / "examples" / "packs" / "small_2x4x10x8.json").read_text())
PROCESSES, CALLS_EACH, DAY_CAP = 4, 75, 100_000
CRASH_TTL_S = 3.0  # long enough that a slow CI machine still sees the reservation live
RULES = f"""tokenizer rough 4 chars per token
limit day_total: day_total <= {DAY_CAP} tokens
completion budget 600 tokens
ladder {{
  stage trim_fields: fields factor 0.5 min 1
  on exhausted block
}}
"""


def _worker(db: str, seed: int, out: "mp.Queue[tuple[int, int, int]]") -> None:
    rng = random.Random(seed)
    gate = BudgetGate(load_policy_text(RULES, "w.policy"), Ledger(db), reservation_ttl_s=60)
    allowed = blocked = settled = 0
    for _ in range(CALLS_EACH):
        try:
            res = gate.check(SMALL, f"run-{seed}")
        except BudgetBlocked:
            blocked += 1
            continue
        allowed += 1
        m = res.decision.metrics
        # the provider reports at most the reserved worst case
        actual_prompt = m["prompt_tokens"] - rng.randrange(0, 50)
        actual_completion = rng.randrange(0, m["completion_tokens"] + 1)
        gate.record_usage(f"run-{seed}", {"prompt_tokens": actual_prompt, "completion_tokens": actual_completion}, reservation_id=res.reservation_id)
        settled += actual_prompt + actual_completion
    out.put((allowed, blocked, settled))


def test_workers_sharing_a_daily_cap_never_exceed_it(tmp_path: Path) -> None:
    db = str(tmp_path / "ledger.db")
    Ledger(db).close()
    ctx = mp.get_context("fork")
    out: "mp.Queue[tuple[int, int, int]]" = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(db, i, out)) for i in range(PROCESSES)]
    for p in procs:
        p.start()
    results = [out.get(timeout=300) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    ledger = Ledger(db)
    # per UTC day (a run that crosses midnight has two days, each under the cap)
    per_day = ledger._db.execute("SELECT day, SUM(total_tokens), COUNT(*) FROM usage_points GROUP BY day").fetchall()
    day_tokens = sum(row[1] for row in per_day)
    points = sum(row[2] for row in per_day)
    allowed = sum(r[0] for r in results)
    assert sum(r[0] + r[1] for r in results) == PROCESSES * CALLS_EACH
    assert all(row[1] <= DAY_CAP for row in per_day), per_day
    assert points == allowed, "a usage point was lost"
    assert day_tokens == sum(r[2] for r in results)
    assert ledger.held() == 0
    assert allowed > 10 and sum(r[1] for r in results) > 10, "the cap should have let some calls through and blocked others"
    print(f"\nconcurrency: {PROCESSES} processes x {CALLS_EACH} calls, cap {DAY_CAP}: {allowed} allowed, settled {day_tokens} tokens")


def _hold_and_wait(db: str, ready: "mp.Queue[str]") -> None:
    gate = BudgetGate(load_policy_text(RULES, "w.policy"), Ledger(db), reservation_ttl_s=CRASH_TTL_S)
    res = gate.check(SMALL, "run-crash")
    ready.put(res.reservation_id)
    time.sleep(60)  # killed long before this ends


def test_a_killed_workers_reservation_expires(tmp_path: Path) -> None:
    db = str(tmp_path / "ledger.db")
    Ledger(db).close()
    ctx = mp.get_context("fork")
    ready: "mp.Queue[str]" = ctx.Queue()
    proc = ctx.Process(target=_hold_and_wait, args=(db, ready))
    proc.start()
    ready.get(timeout=60)
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(timeout=30)
    assert proc.exitcode == -signal.SIGKILL
    ledger = Ledger(db)
    held = ledger.snapshot("run-crash").day_tokens
    assert held > 0, "the reservation counts while it is live"
    time.sleep(CRASH_TTL_S + 0.3)
    assert ledger.snapshot("run-crash").day_tokens == 0, "the reservation expired"
    assert ledger.settled_totals(run_id="run-crash")[2] == 0
