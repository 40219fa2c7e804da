"""The floor under the PostgreSQL ledger's throughput: the least work per gated call that its
guarantees require, with no gate around it, from a C client (pgbench) and from Python
(psycopg), at 1, 4 and 16 clients, on a throwaway cluster with fsync on.

The minimal durable protocol per call, on the ledger's own tables and indexes:

* admit: lock the day's counter row (FOR UPDATE), read the day's settled total plus its live
  reservations, insert the reservation if it fits the cap, commit; durable before the caller
  may spend (the caller is answered only once the commit is flushed);
* settle: lock the reservation, mark it settled (idempotent: a settled one is a no-op),
  insert the usage point, add it to the day's counter, commit; durable before record_usage
  returns.

No run counter, no events, no call log, no replay material, no evaluation: whatever the real
gate does on top of this costs more. Each step is one plpgsql function (one statement, its
statements' plans cached), committed one of three ways:

* ``sync``: the step commits synchronously, so the day's row stays locked across the WAL
  flush (callers of one day serialise on the disk);
* ``async, 4 trips``: the step commits asynchronously (its locks go as soon as the commit
  record is in the WAL buffers), then a second statement waits for the flush (a
  transactional WAL message committed synchronously): the ledger's design since schema 3;
* ``async, 2 trips``: the same two transactions sent in one simple-protocol message
  (``BEGIN; SELECT step(...); COMMIT; SELECT pg_logical_emit_message(...)``), one round
  trip per step.

The Python clients are processes (fork) with one psycopg connection each; ``4 trips`` sends
bound parameters (extended protocol, prepared after a few calls, as the ledger does), ``2
trips`` the compound message with its literals formatted in (the values are numbers and hex
ids here).
"""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing as mp
import os
import re
import resource
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

CAP = 10**12  # never binds: the floor measures the path of an admitted call
DAY = "floor-day"

FLOOR_SQL = """
CREATE OR REPLACE FUNCTION floor_admit(p_run TEXT, p_day TEXT, p_res TEXT, p_tokens BIGINT, p_now DOUBLE PRECISION,
                                       p_cap BIGINT, p_async BOOLEAN) RETURNS BOOLEAN LANGUAGE plpgsql AS $$
DECLARE used BIGINT;
BEGIN
    IF p_async THEN PERFORM set_config('synchronous_commit', 'off', true); END IF;
    SELECT tokens INTO used FROM day_totals WHERE day = p_day FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO day_totals (day) VALUES (p_day) ON CONFLICT DO NOTHING;
        SELECT tokens INTO used FROM day_totals WHERE day = p_day FOR UPDATE;
    END IF;
    used := used + (SELECT COALESCE(SUM(tokens), 0) FROM reservations
                    WHERE day = p_day AND state = 'held' AND expires_at > p_now);
    IF used + p_tokens > p_cap THEN RETURN false; END IF;
    INSERT INTO reservations VALUES (p_res, p_run, p_day, p_tokens, 0, p_now, p_now + 600, 'held');
    RETURN true;
END $$;
CREATE OR REPLACE FUNCTION floor_settle(p_run TEXT, p_res TEXT, p_tokens BIGINT, p_now DOUBLE PRECISION,
                                        p_async BOOLEAN) RETURNS TEXT LANGUAGE plpgsql AS $$
DECLARE v_day TEXT; v_state TEXT;
BEGIN
    IF p_async THEN PERFORM set_config('synchronous_commit', 'off', true); END IF;
    SELECT day, state INTO v_day, v_state FROM reservations WHERE id = p_res AND run_id = p_run FOR UPDATE;
    IF NOT FOUND THEN RETURN 'unknown'; END IF;
    IF v_state = 'settled' THEN RETURN 'repeat'; END IF;
    UPDATE reservations SET state = 'settled' WHERE id = p_res;
    INSERT INTO usage_points (run_id, day, prompt_tokens, completion_tokens, total_tokens, micro_usd, model,
                              reservation_id, created_at)
        VALUES (p_run, v_day, p_tokens, 0, p_tokens, 0, NULL, p_res, p_now);
    UPDATE day_totals SET tokens = tokens + p_tokens, points = points + 1 WHERE day = v_day;
    RETURN 'settled';
END $$;
"""

_FLUSH = "SELECT pg_logical_emit_message(true, 'policy_engine.flush', '')"
_ADMIT = "SELECT floor_admit('{run}', '{day}', '{res}', 700, {now}, {cap}, {asy})"
_SETTLE = "SELECT floor_settle('{run}', '{res}', 700, {now}, {asy})"


def _pgbench_script(variant: str) -> str:
    """A pgbench script for one call (pgbench substitutes :variables in simple mode; ``\\;``
    joins statements into one message)."""
    values = {
        "run": "run:client_id",
        "day": DAY,
        "res": "r:client_id-:rid",
        "now": "extract(epoch from now())",
        "cap": CAP,
        "asy": "false" if variant == "sync" else "true",
    }
    admit, settle = _ADMIT.format(**values), _SETTLE.format(**values)
    lines = ["\\set rid random(1, 1000000000000000)"]
    if variant == "sync":
        lines += [admit + ";", settle + ";"]
    elif variant == "async, 4 trips":
        lines += [admit + ";", _FLUSH + ";", settle + ";", _FLUSH + ";"]
    else:
        lines += [f"BEGIN \\; {step} \\; COMMIT \\; {_FLUSH};" for step in (admit, settle)]
    return "\n".join(lines) + "\n"


VARIANTS = ("sync", "async, 4 trips", "async, 2 trips")


@dataclasses.dataclass(frozen=True)
class FloorCell:
    rate: float  # calls/s
    client_ms: float  # client CPU per call
    server_ms: float  # PostgreSQL CPU per call (all its processes, exited backends included)


def server_cpu_s(data_dir: Path | None) -> float:
    """CPU seconds used so far by a PostgreSQL cluster's processes, from /proc: the postmaster
    and its live children (backends, WAL writer, checkpointer...), plus the children it has
    reaped (a backend whose client disconnected), which the kernel adds to its parent's
    cutime/cstime; 0 for SQLite."""
    if data_dir is None:
        return 0.0
    postmaster = int((data_dir / "postmaster.pid").read_text().split()[0])
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            pid = int(stat.parent.name)
            if pid == postmaster:
                total += sum(int(f) for f in fields[11:15])  # utime, stime, cutime, cstime
            elif int(fields[1]) == postmaster:  # fields[1]: ppid
                total += int(fields[11]) + int(fields[12])
    return total / tick


def prepare(cluster: Any) -> str:
    """A database with the ledger's schema and the floor's two functions; returns its URL."""
    import psycopg

    from policy_engine.adapters.ledger_url import open_ledger

    url = cluster.create_database("floor")
    open_ledger(url).close()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(FLOOR_SQL)
    return url


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def pgbench(cluster: Any, variant: str, clients: int, seconds: float) -> FloorCell:
    """pgbench (C, libpq) running the variant's script from ``clients`` connections."""
    with tempfile.NamedTemporaryFile("w", suffix=".pgb", delete=False) as script:
        script.write(_pgbench_script(variant))
    try:
        server, client = server_cpu_s(cluster.data), _children_cpu_s()
        done = subprocess.run(
            [
                str(cluster.bindir / "pgbench"),
                "-n",
                "-M",
                "simple",
                "-h",
                "127.0.0.1",
                "-p",
                str(cluster.port),
                "-U",
                "policy",
                "-f",
                script.name,
                "-c",
                str(clients),
                "-j",
                str(min(clients, os.cpu_count() or 1)),
                "-T",
                str(max(1, round(seconds))),
                "floor",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        server, client = server_cpu_s(cluster.data) - server, _children_cpu_s() - client
    finally:
        os.unlink(script.name)
    found = re.search(r"number of transactions actually processed: (\d+)", done.stdout)
    tps = re.search(r"tps = ([0-9.]+)", done.stdout)
    if found is None or tps is None or "failed transactions: 0 " not in done.stdout:
        raise RuntimeError(f"pgbench output not understood:\n{done.stdout}\n{done.stderr}")
    calls = max(1, int(found.group(1)))
    # client CPU includes pgbench's connection setup; server CPU its backends' start and exit
    return FloorCell(float(tps.group(1)), client / calls * 1e3, server / calls * 1e3)


def _python_worker(url: str, variant: str, wid: int, seconds: float, start: Any, out: Any, finish: Any) -> None:
    import psycopg

    conn = psycopg.connect(url, autocommit=True)
    run, asy = f"py{wid}", "false" if variant == "sync" else "true"

    def call() -> None:
        res, now = uuid.uuid4().hex, time.time()
        values = {"run": run, "day": DAY, "res": res, "now": repr(now), "cap": CAP, "asy": asy}
        if variant == "async, 2 trips":
            for step in (_ADMIT, _SETTLE):
                cur = conn.execute(f"BEGIN; {step.format(**values)}; COMMIT; {_FLUSH}")
                cur.nextset()  # BEGIN's result, then the step's
                if cur.fetchone() is None:
                    raise RuntimeError("the step returned no row")
            return
        admitted = conn.execute(
            "SELECT floor_admit(%s, %s, %s, 700, %s, %s, %s)", (run, DAY, res, now, CAP, variant != "sync")
        ).fetchone()
        if admitted is None or not admitted[0]:
            raise RuntimeError("the floor's admission was refused")
        if variant != "sync":
            conn.execute(_FLUSH)
        conn.execute("SELECT floor_settle(%s, %s, 700, %s, %s)", (run, res, now, variant != "sync")).fetchone()
        if variant != "sync":
            conn.execute(_FLUSH)

    for _ in range(10):
        call()  # warm: prepared statements
    start.wait()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu, n, deadline = usage.ru_utime + usage.ru_stime, 0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        call()
        n += 1
    usage = resource.getrusage(resource.RUSAGE_SELF)
    out.put((n, usage.ru_utime + usage.ru_stime - cpu))
    finish.wait()
    conn.close()


def python(cluster: Any, url: str, variant: str, clients: int, seconds: float) -> FloorCell:
    """The same protocol from ``clients`` Python processes (psycopg, one connection each)."""
    ctx = mp.get_context("fork")
    start, out, finish = ctx.Event(), ctx.Queue(), ctx.Event()
    procs = [
        ctx.Process(target=_python_worker, args=(url, variant, i, seconds, start, out, finish)) for i in range(clients)
    ]
    for p in procs:
        p.start()
    time.sleep(0.5 + 0.05 * clients)
    server = server_cpu_s(cluster.data)
    start.set()
    counts = [out.get(timeout=300) for _ in procs]
    server = server_cpu_s(cluster.data) - server
    finish.set()
    for p in procs:
        p.join()
    calls = max(1, sum(c[0] for c in counts))
    return FloorCell(calls / seconds, sum(c[1] for c in counts) / calls * 1e3, server / calls * 1e3)


def audit(url: str) -> tuple[int, int]:
    """(tokens over the cap, settled reservations without their usage point) in the floor's day."""
    import psycopg

    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT (SELECT COALESCE(SUM(total_tokens), 0) FROM usage_points WHERE day = %s),"
            " (SELECT COUNT(*) FROM reservations r WHERE r.state = 'settled' AND NOT EXISTS"
            "  (SELECT 1 FROM usage_points u WHERE u.reservation_id = r.id))",
            (DAY,),
        ).fetchone()
    assert row is not None
    return max(0, int(row[0]) - CAP), int(row[1])


def run(cluster: Any, workers: list[int], seconds: float) -> None:
    """Print the floor: every variant from pgbench, then from Python, at each client count."""
    url = prepare(cluster)
    print(
        "floor: the minimal durable protocol per call (admit under the day's row lock + settle), no gate;"
        " calls/s, CPU per call client + server"
    )
    for client in ("pgbench", "python"):
        for variant in VARIANTS:
            cells = []
            for n in workers:
                if client == "pgbench":
                    cell = pgbench(cluster, variant, n, seconds)
                else:
                    cell = python(cluster, url, variant, n, seconds)
                cells.append(f"{n:>2}: {cell.rate:6.0f}/s ({cell.client_ms:.2f} + {cell.server_ms:.2f} ms)")
            print(f"  {client:<8} {variant:<15} " + "   ".join(cells), flush=True)
    over, lost = audit(url)
    print(f"  floor audit: overspend {over} tokens, settled without usage point {lost}; load {os.getloadavg()[0]:.1f}")
