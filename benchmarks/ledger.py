"""Ledger throughput: the floor (the minimal durable protocol per call, from pgbench and
from Python: benchmarks/ledger_floor.py), gated calls per second (check + record_usage, one
worker process each) at 1, 4 and 16 workers on each backend, the ledger's own ceiling
(reserve + settle without an evaluation), and the gate's overhead over a bare evaluation.
One command:

    .venv/bin/python benchmarks/ledger.py [--seconds 3] [--sections floor,throughput,overhead]

PostgreSQL is a real throwaway cluster (tests/pgcluster.py) with fsync and synchronous
commit ON (a settled usage point survives a crash), on this machine's cores, shared with
the workers. Every run checks 0 overspend (the day's settled tokens <= its cap) and 0 lost
usage (usage points == settled calls).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import multiprocessing as mp
import os
import resource
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import ledger_floor  # noqa: E402
from benchmarks.ledger_floor import server_cpu_s  # noqa: E402
from policy_engine.adapters.gate import BudgetBlocked, BudgetGate  # noqa: E402
from policy_engine.adapters.ledger_url import open_ledger  # noqa: E402
from policy_engine.dsl import load_policy_text  # noqa: E402
from policy_engine.evaluator import evaluate  # noqa: E402
from policy_engine.packs import load_pack  # noqa: E402

SMALL = json.loads((ROOT / "examples" / "packs" / "small_2x4x10x8.json").read_text(encoding="utf-8"))
CAP = 10**12  # the throughput run is never blocked; overspend is still checked against it
RULES = f"""tokenizer rough 4 chars per token
limit day_total: day_total <= {CAP} tokens
completion budget 600 tokens
ladder {{
  stage trim_fields: fields factor 0.5 min 1
  on exhausted block
}}
"""
CTX = mp.get_context("fork")


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _worker(url: str, mode: str, wid: int, seconds: float, start, out, finish) -> None:
    ledger = open_ledger(url, pool_size=1)
    gate = BudgetGate(load_policy_text(RULES, "bench.policy"), ledger)
    run = f"bench-{mode}-{wid}"

    def gated() -> None:
        res = gate.check(SMALL, run)
        gate.record_usage(
            run,
            prompt_tokens=res.decision.metrics["prompt_tokens"],
            completion_tokens=100,
            reservation_id=res.reservation_id,
        )

    call = gated if mode == "gated" else _ledger_only(ledger, run, gated)
    call()  # warm: connection, prepared statements, token caches
    start.wait()
    cpu, n, deadline = _cpu_s(), 0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        with contextlib.suppress(BudgetBlocked):
            call()
        n += 1
    out.put((n, gate.conflicts, gate.locked_checks, _cpu_s() - cpu, gate.reused_usage))
    finish.wait()  # keep the connection (and its server process's CPU count) until measured
    ledger.close()


def _ledger_only(ledger, run: str, gated):
    """The ledger's part of a gated call without the evaluation: the same read (when the
    gate would read), the same rows admitted (captured from one real check, fresh ids each time) and a settlement
    with one usage event."""
    from policy_engine.adapters.ledger import new_reservation

    captured = []
    real_admit = ledger.admit
    ledger.admit = lambda a, db=None: captured.append(a) or real_admit(a, db)
    gated()
    ledger.admit = real_admit
    template = captured[0]
    usage_row = ("llm.usage_point", json.dumps({"prompt_tokens": 600, "completion_tokens": 100}), template.created_at)

    known = []

    def ledger_only() -> None:
        now = ledger.clock()
        if not known:  # as the gate: read unless the last settlement handed the usage back
            ledger.read_usage(run, now=now)
        res = new_reservation(run, 700, 0, now=now, ttl_s=600)
        assert template.call is not None
        call = dataclasses.replace(template.call, call_id=uuid.uuid4().hex, reservation_id=res.id)
        assert ledger.admit(dataclasses.replace(template, now=now, reservation=res, call=call)) is None
        done = ledger.settle(run, 600, 100, 0, reservation_id=res.id, event=usage_row)
        known[:] = [done.usage] if done.usage is not None else []

    return ledger_only


@dataclasses.dataclass(frozen=True)
class Cell:
    rate: float  # calls/s
    conflicts: int  # admissions refused because the room was taken since the read (re-evaluated)
    locked: int  # checks that fell back to evaluating under the admission locks
    client_ms: float  # worker CPU per call
    server_ms: float  # PostgreSQL CPU per call (all its processes), 0 on SQLite
    reused: int  # checks that evaluated on the usage the run's last settlement handed back (no read)


def measure(url: str, mode: str, workers: int, seconds: float, data_dir: Path | None) -> Cell:
    start, out, finish = CTX.Event(), CTX.Queue(), CTX.Event()
    procs = [CTX.Process(target=_worker, args=(url, mode, i, seconds, start, out, finish)) for i in range(workers)]
    for p in procs:
        p.start()
    time.sleep(0.5 + 0.1 * workers)  # all warmed up
    server = server_cpu_s(data_dir)
    start.set()
    counts = [out.get(timeout=300) for _ in procs]
    server = server_cpu_s(data_dir) - server
    finish.set()
    for p in procs:
        p.join()
    calls = max(1, sum(c[0] for c in counts))
    return Cell(
        sum(c[0] for c in counts) / seconds,
        sum(c[1] for c in counts),
        sum(c[2] for c in counts),
        sum(c[3] for c in counts) / calls * 1e3,
        server / calls * 1e3,
        sum(c[4] for c in counts),
    )


def audit(url: str) -> tuple[int, int]:
    """(tokens over the cap on any day, calls settled without their usage point)."""
    ledger = open_ledger(url)
    with ledger.transaction() as db:
        days = db.execute("SELECT day, SUM(total_tokens) FROM usage_points GROUP BY day").fetchall()
        missing = db.execute(
            "SELECT COUNT(*) FROM reservations r WHERE r.state = 'settled' AND NOT EXISTS "
            "(SELECT 1 FROM usage_points u WHERE u.reservation_id = r.id)"
        ).fetchone()[0]
    ledger.close()
    return max([0] + [int(t) - CAP for _, t in days]), int(missing)


def overhead(url: str, repeats: int = 200) -> tuple[float, float, float, float]:
    """(gated ms, bare evaluation ms) per call, one process: the median wall time, then the
    mean client CPU time (the wall time of a gated call on PostgreSQL is mostly its two
    flush waits; its CPU is what it costs the machine)."""
    policy = load_policy_text(RULES, "bench.policy")
    ledger = open_ledger(url, pool_size=1)
    gate = BudgetGate(policy, ledger)
    pools = load_pack(SMALL)

    def timed(fn) -> tuple[float, float]:
        fn()
        times = []
        cpu = _cpu_s()
        for _ in range(repeats):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return statistics.median(times) * 1e3, (_cpu_s() - cpu) / repeats * 1e3

    def gated() -> None:
        res = gate.check(SMALL, "overhead")
        gate.record_usage("overhead", prompt_tokens=10, completion_tokens=10, reservation_id=res.reservation_id)

    (g, g_cpu), (b, b_cpu) = timed(gated), timed(lambda: evaluate(policy, pools))
    ledger.close()
    return g, b, g_cpu, b_cpu


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--workers", default="1,4,16")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--modes", default="gated,ledger")
    parser.add_argument(
        "--sections",
        default="floor,throughput,overhead",
        help="floor: the minimal durable protocol from pgbench and from Python (PostgreSQL); throughput: the"
        " gate's and the ledger's calls/s per backend; overhead: a gated call against a bare evaluation",
    )
    parser.add_argument(
        "--no-fsync",
        action="store_true",
        help="PostgreSQL with fsync off: the lock-and-CPU ceiling, not a safe setting",
    )
    args = parser.parse_args()
    from tests.pgcluster import PgCluster, find_bindir

    bindir = find_bindir()
    if bindir is None:
        sys.exit("no PostgreSQL binaries (apt-get install postgresql)")
    cluster = PgCluster(bindir, fsync=not args.no_fsync)
    backends = args.backends.split(",")
    tmp = tempfile.mkdtemp(prefix="ledger-bench-")
    print(
        f"{os.cpu_count()} cores; small pack (2x4x10x8), rough tokenizer policy; {args.seconds:.0f} s per cell; PostgreSQL {bindir}, fsync {'off' if args.no_fsync else 'on'}"
    )
    sections = args.sections.split(",")
    workers = [int(x) for x in args.workers.split(",")]
    try:
        if "floor" in sections:
            ledger_floor.run(cluster, workers, args.seconds)
        if "throughput" in sections:
            throughput(cluster, tmp, backends, args.modes.split(","), workers, args.seconds)
        if "overhead" in sections:
            for backend in backends:
                url = str(Path(tmp) / "overhead.db") if backend == "sqlite" else cluster.create_database("overhead")
                g, b, g_cpu, b_cpu = overhead(url)
                print(
                    f"gate overhead ({backend}): gated call {g:.2f} ms vs bare evaluation {b:.2f} ms: {g / b:.1f}x"
                    f" (+{g - b:.2f} ms); client CPU {g_cpu:.2f} ms vs {b_cpu:.2f} ms (+{g_cpu - b_cpu:.2f} ms)"
                )
    finally:
        cluster.destroy()


def throughput(cluster, tmp: str, backends: list[str], modes: list[str], workers: list[int], seconds: float) -> None:
    """Gated and ledger-only calls/s per backend and worker count, each cell audited."""
    rows = []
    for backend in backends:
        for mode in modes:
            for w in workers:
                url = str(Path(tmp) / f"{mode}{w}.db") if backend == "sqlite" else cluster.create_database(f"{mode}{w}")
                open_ledger(url).close()
                cell = measure(url, mode, w, seconds, None if backend == "sqlite" else cluster.data)
                over, lost = audit(url)
                rows.append((backend, mode, w, cell, over, lost))
                print(
                    f"  {backend:<10} {mode:<7} {w:>2} workers: {cell.rate:8.0f} calls/s   overspend {over} tokens,"
                    f" lost usage {lost}, conflicts {cell.conflicts}, locked fallbacks {cell.locked}, usage reused"
                    f" {cell.reused}; CPU per call:"
                    f" client {cell.client_ms:.2f} ms, server {cell.server_ms:.2f} ms; load {os.getloadavg()[0]:.1f}",
                    flush=True,
                )
    print("\n| backend | calls | " + " | ".join(f"{w} workers" for w in workers) + " |")
    print("|---|---|" + "---|" * len(workers))
    for backend in backends:
        for mode in modes:
            cells = [f"{r[3].rate:,.0f}/s" for r in rows if r[0] == backend and r[1] == mode]
            label = "gated (check + record_usage)" if mode == "gated" else "ledger only (reserve + settle)"
            print(f"| {backend} | {label} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
