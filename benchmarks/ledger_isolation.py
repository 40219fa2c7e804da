"""How to serialise admissions against one day's cap on PostgreSQL, measured: reservations
per second from 1 and 16 connections (threads of one process: the client is the same for
every variant) admitting against one day, and serialisation failures per second.

    .venv/bin/python benchmarks/ledger_isolation.py [--seconds 4]

Variants, each admitting one reservation after reading the day's usage (ledger_usage):

* serializable: SERIALIZABLE transaction, read then insert, retried on serialization failure;
* row lock, sync: the day's counter row locked (upsert, as FOR UPDATE), synchronous commit;
* ledger_admit, sync: the ledger's admission function (counter-row locks taken inside it,
  one round trip) in a synchronously committed transaction;
* ledger_admit, async + flush wait: the same committed asynchronously, then a separate
  transaction that waits for the WAL flush (what the ledger does: the locks are released
  before the fsync, the flush waits of many callers share one fsync).

A real throwaway cluster (tests/pgcluster.py) with fsync on. Results are in
docs/postgresql-ledger.md.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from policy_engine.adapters.ledger import utc_day  # noqa: E402
from policy_engine.adapters.ledger_url import open_ledger  # noqa: E402

CAP = 10**12
ADMIT = (
    "SELECT ledger_admit(%s, %s, %s, 'x', %s, 700, 0, %s, NULL, %s, NULL, NULL, %b, %b,"
    " NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, %b)"
)


def main() -> None:
    import psycopg

    from tests.pgcluster import PgCluster, find_bindir

    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=4.0)
    args = parser.parse_args()
    bindir = find_bindir()
    if bindir is None:
        sys.exit("no PostgreSQL binaries (apt-get install postgresql)")
    cluster = PgCluster(bindir, fsync=True)
    aborts = [0]

    def serializable(conn: Any, run: str) -> None:
        now = time.time()
        day = utc_day(now)
        while True:
            try:
                with conn.transaction():
                    conn.execute("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE")
                    usage = conn.execute("SELECT * FROM ledger_usage(%s, %s, %s)", (run, day, now)).fetchone()
                    if usage[1] + 700 <= CAP:
                        conn.execute(
                            "INSERT INTO reservations VALUES (%s, %s, %s, 700, 0, %s, %s, 'held')",
                            (uuid.uuid4().hex, run, day, now, now + 600),
                        )
                return
            except psycopg.errors.SerializationFailure:
                aborts[0] += 1

    def row_lock(conn: Any, run: str) -> None:
        now = time.time()
        day = utc_day(now)
        with conn.transaction():
            conn.execute(
                "INSERT INTO day_totals (day) VALUES (%s) ON CONFLICT (day) DO UPDATE SET tokens = day_totals.tokens",
                (day,),
            )
            usage = conn.execute("SELECT * FROM ledger_usage(%s, %s, %s)", (run, day, now)).fetchone()
            if usage[1] + 700 <= CAP:
                conn.execute(
                    "INSERT INTO reservations VALUES (%s, %s, %s, 700, 0, %s, %s, 'held')",
                    (uuid.uuid4().hex, run, day, now, now + 600),
                )

    def admit_args(run: str) -> tuple[Any, ...]:
        now = time.time()
        return (run, utc_day(now), now, uuid.uuid4().hex, now + 600, CAP, [], [], [])

    def admit_sync(conn: Any, run: str) -> None:
        with conn.transaction():
            conn.execute(ADMIT, admit_args(run))
            conn.execute("SELECT set_config('synchronous_commit', 'on', true)")

    def admit_async(conn: Any, run: str) -> None:
        conn.execute(ADMIT, admit_args(run))
        conn.execute("SELECT pg_logical_emit_message(true, 'policy_engine.flush', '')")

    variants: list[tuple[str, Callable[[Any, str], None]]] = [
        ("serializable, retried", serializable),
        ("row lock (FOR UPDATE), sync", row_lock),
        ("ledger_admit, sync", admit_sync),
        ("ledger_admit, async + flush wait", admit_async),
    ]
    try:
        url = cluster.create_database("isolation")
        open_ledger(url).close()
        print("| variant | 1 connection | 16 connections | serialization failures/s at 16 |\n|---|---|---|---|")
        for name, admit in variants:
            cells = []
            for threads in (1, 16):
                aborts[0] = 0
                counts = [0] * threads
                stop = time.perf_counter() + args.seconds

                def work(
                    i: int,
                    admit: Callable[[Any, str], None] = admit,
                    stop: float = stop,
                    counts: list[int] = counts,
                ) -> None:
                    with psycopg.connect(url, autocommit=True) as conn:
                        conn.execute("SET plan_cache_mode = force_generic_plan")
                        while time.perf_counter() < stop:
                            admit(conn, f"run-{i}")
                            counts[i] += 1

                workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
                for w in workers:
                    w.start()
                for w in workers:
                    w.join()
                cells.append(f"{sum(counts) / args.seconds:,.0f}/s")
            print(f"| {name} | {cells[0]} | {cells[1]} | {aborts[0] / args.seconds:,.0f} |", flush=True)
    finally:
        cluster.destroy()


if __name__ == "__main__":
    main()
