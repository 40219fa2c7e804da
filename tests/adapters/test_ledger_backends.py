"""The same reliability tests on both ledger backends (SQLite file, real PostgreSQL):
worker processes sharing one daily cap (0 overspend, 0 usage lost, retries counted),
workers SIGKILLed in the middle of reserve and settle, the PostgreSQL server restarted
mid-run, two process groups with separate pools; plus URLs, migrations and schema
versions."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import random
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from policy_engine.adapters.gate import BudgetBlocked, BudgetGate
from policy_engine.adapters.ledger import LedgerUnavailable
from policy_engine.adapters.ledger_url import open_ledger, sqlite_path
from policy_engine.dsl import load_policy_text
from policy_engine.errors import LedgerError
from tests.conftest import ROOT

SMALL = json.loads((ROOT / "examples" / "packs" / "small_2x4x10x8.json").read_text())
DAY_CAP = 60_000
RULES = f"""tokenizer rough 4 chars per token
limit day_total: day_total <= {DAY_CAP} tokens
completion budget 600 tokens
ladder {{
  stage trim_fields: fields factor 0.5 min 1
  on exhausted block
}}
"""
CTX = mp.get_context("fork")  # the parent holds no ledger connection when it forks


def gated_calls(
    url: str, run_id: str, calls: int, seed: int, log: str, ttl_s: float = 60.0, ledger=None, rules: str = RULES
) -> dict[str, int]:
    """``calls`` gated LLM calls with a mock provider; retries a call whose ledger is
    unavailable (L111). Appends each settled reservation id to ``log`` once
    record_usage has returned (one write, O_APPEND)."""
    rng = random.Random(seed)
    own = ledger is None
    ledger = ledger or open_ledger(url, pool_size=1)
    gate = BudgetGate(load_policy_text(rules, "w.policy"), ledger, reservation_ttl_s=ttl_s)
    stats = {"allowed": 0, "blocked": 0, "settled_tokens": 0, "retries": 0}
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def retrying(fn):
        while True:
            try:
                return fn()
            except LedgerUnavailable as exc:
                assert exc.diagnostics[0].code == "L111"
                stats["retries"] += 1
                time.sleep(0.05)

    try:
        for _ in range(calls):
            try:
                res = retrying(lambda: gate.check(SMALL, run_id))
            except BudgetBlocked:
                stats["blocked"] += 1
                continue
            stats["allowed"] += 1
            m = res.decision.metrics
            prompt, completion = m["prompt_tokens"] - rng.randrange(0, 50), rng.randrange(0, m["completion_tokens"] + 1)
            retrying(
                lambda prompt=prompt, completion=completion, res=res: gate.record_usage(
                    run_id,
                    {"prompt_tokens": prompt, "completion_tokens": completion},
                    reservation_id=res.reservation_id,
                )
            )
            os.write(fd, f"{res.reservation_id} {prompt + completion}\n".encode())
            stats["settled_tokens"] += prompt + completion
    finally:
        os.close(fd)
        if own:
            ledger.close()
    return stats | {"conflicts": gate.conflicts, "locked": gate.locked_checks}


def _worker(url: str, seed: int, calls: int, log: str, out, rules: str = RULES) -> None:
    out.put(gated_calls(url, f"run-{seed}", calls, seed, log, rules=rules))


def _group(url: str, group: int, threads: int, calls: int, log: str, out) -> None:
    """One 'machine': its own process group and one pool shared by its threads."""
    os.setsid()
    ledger = open_ledger(url, pool_size=threads)
    results: list[dict[str, int]] = []
    workers = [
        threading.Thread(
            target=lambda i=i: results.append(
                gated_calls(url, f"run-g{group}-{i}", calls, group * 100 + i, log, ledger=ledger)
            )
        )
        for i in range(threads)
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    ledger.close()
    out.put({k: sum(r[k] for r in results) for k in results[0]} | {"pgid": os.getpgid(0)})


def collect(procs: list, out, timeout_s: float = 240) -> list[dict[str, int]]:
    """Each process's result; fails at once (not after the timeout) if one dies."""
    results: list[dict[str, int]] = []
    deadline = time.monotonic() + timeout_s
    while len(results) < len(procs):
        try:
            results.append(out.get(timeout=0.2))
        except Exception:  # queue.Empty
            dead = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
            assert not dead, f"a worker died: exit codes {dead}"
            assert time.monotonic() < deadline, "workers timed out"
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    return results


def settled_log(log: Path) -> dict[str, int]:
    if not log.exists():
        return {}
    return {rid: int(tokens) for rid, tokens in (line.split() for line in log.read_text().splitlines() if line.strip())}


def audit(url: str, *, now: float | None = None) -> dict[str, object]:
    """Consistency of a ledger after the workers: per-day totals, usage points per
    reservation, counters against the points (PostgreSQL), live reservations."""
    ledger = open_ledger(url, clock=(lambda: now) if now is not None else time.time)
    try:
        with ledger.transaction() as db:

            def q(sql: str) -> list[Any]:
                return db.execute(sql).fetchall()

            per_day = q("SELECT day, SUM(total_tokens), COUNT(*) FROM usage_points GROUP BY day")
            dup = q(
                "SELECT reservation_id FROM usage_points WHERE reservation_id IS NOT NULL GROUP BY reservation_id HAVING COUNT(*) > 1"
            )
            orphans = q(
                "SELECT r.id FROM reservations r WHERE r.state = 'settled' AND NOT EXISTS (SELECT 1 FROM usage_points u WHERE u.reservation_id = r.id)"
            )
            unsettled = q(
                "SELECT u.id FROM usage_points u JOIN reservations r ON r.id = u.reservation_id WHERE r.state <> 'settled'"
            )
            points = dict(q("SELECT reservation_id, total_tokens FROM usage_points WHERE reservation_id IS NOT NULL"))
            counters_ok = True
            if sqlite_path(url) is None:
                counters_ok = (
                    q(
                        "SELECT d.day FROM day_totals d LEFT JOIN (SELECT day, SUM(total_tokens) t, COUNT(*) n FROM usage_points GROUP BY day) u "
                        "ON u.day = d.day WHERE d.tokens <> COALESCE(u.t, 0) OR d.points <> COALESCE(u.n, 0)"
                    )
                    == []
                    and q(
                        "SELECT r.run_id FROM run_totals r LEFT JOIN (SELECT run_id, SUM(total_tokens) t FROM usage_points GROUP BY run_id) u "
                        "ON u.run_id = r.run_id WHERE r.tokens <> COALESCE(u.t, 0)"
                    )
                    == []
                )
        return {
            "per_day": per_day,
            "dup": dup,
            "orphans": orphans,
            "unsettled": unsettled,
            "points": points,
            "counters_ok": counters_ok,
            "held": ledger.held(),
        }
    finally:
        ledger.close()


def test_workers_sharing_a_daily_cap_never_exceed_it(ledger_url: str, tmp_path: Path) -> None:
    processes, calls = 4, 60
    open_ledger(ledger_url).close()  # migrate once, before forking
    out = CTX.Queue()
    log = str(tmp_path / "settled.log")
    procs = [CTX.Process(target=_worker, args=(ledger_url, i, calls, log, out)) for i in range(processes)]
    for p in procs:
        p.start()
    results = collect(procs, out)
    a = audit(ledger_url)
    allowed = sum(r["allowed"] for r in results)
    assert sum(r["allowed"] + r["blocked"] for r in results) == processes * calls
    assert all(tokens <= DAY_CAP for _, tokens, _ in a["per_day"]), a["per_day"]
    assert sum(n for _, _, n in a["per_day"]) == allowed, "a usage point was lost"
    assert sum(t for _, t, _ in a["per_day"]) == sum(r["settled_tokens"] for r in results)
    assert settled_log(Path(log)).items() <= a["points"].items()
    assert not a["dup"] and not a["orphans"] and not a["unsettled"] and a["counters_ok"] and a["held"] == 0
    assert allowed > 10 and sum(r["blocked"] for r in results) > 10, (
        "the cap should have let some calls through and blocked others"
    )
    print(
        f"\n{'sqlite' if sqlite_path(ledger_url) else 'postgresql'}: {processes} processes x {calls} calls, cap {DAY_CAP}: {allowed} allowed, "
        f"{sum(t for _, t, _ in a['per_day'])} tokens settled, {sum(r['retries'] for r in results)} retries, "
        f"{sum(r['conflicts'] for r in results)} admissions re-evaluated after a conflict, "
        f"{sum(r['locked'] for r in results)} evaluated under the locks"
    )


WIDE = RULES.replace(f"<= {DAY_CAP} tokens", "<= 1000000000 tokens")  # killed workers never fill the day


def _loop_forever(url: str, seed: int, log: str) -> None:
    gated_calls(url, f"run-k{seed}", 10**9, seed, log, ttl_s=5.0, rules=WIDE)


def test_killed_workers_leave_a_consistent_ledger_and_their_holds_expire(ledger_url: str, tmp_path: Path) -> None:
    open_ledger(ledger_url).close()
    log = str(tmp_path / "settled.log")
    rng = random.Random(7)
    kills = 0
    for _round in range(3):
        procs = [CTX.Process(target=_loop_forever, args=(ledger_url, _round * 10 + i, log)) for i in range(3)]
        for p in procs:
            p.start()
        time.sleep(0.6)  # let them get into the loop (process start and pack load)
        for p in procs:  # kill each at a random point of reserve / call / settle
            time.sleep(rng.uniform(0.0, 0.15))
            os.kill(p.pid, signal.SIGKILL)
            kills += 1
        for p in procs:
            p.join(timeout=30)
            assert p.exitcode == -signal.SIGKILL
    settled = settled_log(Path(log))
    later = time.time() + 6.0  # past every TTL, without sleeping for it
    a = audit(ledger_url, now=later)
    assert settled, "the workers settled some calls before being killed"
    assert settled.items() <= a["points"].items(), "a settlement that returned was lost"
    assert not a["dup"] and not a["orphans"] and not a["unsettled"] and a["counters_ok"]
    assert a["held"] == 0, "the killed workers' reservations expired"
    ledger = open_ledger(ledger_url, clock=lambda: later)
    try:
        gate = BudgetGate(load_policy_text(WIDE, "w.policy"), ledger)
        assert ledger.snapshot("run-k0").day_tokens == sum(t for _, t, _ in a["per_day"]), (
            "only settled usage counts once holds expire"
        )
        res = gate.check(SMALL, "run-after")  # the next call works
        gate.record_usage("run-after", prompt_tokens=10, completion_tokens=10, reservation_id=res.reservation_id)
    finally:
        ledger.close()
    print(
        f"\n{'sqlite' if sqlite_path(ledger_url) else 'postgresql'}: {kills} SIGKILLs, {len(settled)} settlements kept"
    )


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_postgres_restart_mid_run_is_a_retryable_error_and_loses_nothing(pg_cluster, tmp_path: Path, mode: str) -> None:
    """``fast``: a clean shutdown. ``immediate``: a crash (the server exits without writing
    its WAL buffers): every step commits asynchronously and is answered only after its
    flush wait, so a settlement whose record_usage returned must survive it too."""
    url = pg_cluster.create_database(f"restart{os.getpid()}_{mode}")
    open_ledger(url).close()
    out = CTX.Queue()
    log = tmp_path / "settled.log"
    processes, calls = 3, 80
    # room for about half the calls: work goes on after the restart, and the cap still binds
    cap = 120 * 2_500
    rules = RULES.replace(f"<= {DAY_CAP} tokens", f"<= {cap} tokens")
    procs = [CTX.Process(target=_worker, args=(url, i, calls, str(log), out, rules)) for i in range(processes)]
    for p in procs:
        p.start()
    deadline = time.monotonic() + 60
    while len(settled_log(log)) < 20 and time.monotonic() < deadline:
        time.sleep(0.05)
    before = len(settled_log(log))
    pg_cluster.stop(mode)  # terminates every session mid-transaction
    time.sleep(0.5)
    pg_cluster.start()
    results = collect(procs, out)
    a = audit(url)
    assert sum(r["allowed"] + r["blocked"] for r in results) == processes * calls, "work resumed after the restart"
    assert sum(r["retries"] for r in results) > 0, "callers saw the outage as a retryable L111"
    assert len(settled_log(log)) > before
    assert settled_log(log).items() <= a["points"].items(), "a settlement that returned was lost"
    assert all(tokens <= cap for _, tokens, _ in a["per_day"])
    assert not a["dup"] and not a["orphans"] and not a["unsettled"] and a["counters_ok"]
    print(f"\npostgresql restart: {sum(r['retries'] for r in results)} retries, {len(a['points'])} usage points")


def test_two_process_groups_with_separate_pools_share_one_cap(ledger_url: str, tmp_path: Path) -> None:
    open_ledger(ledger_url).close()
    out = CTX.Queue()
    log = str(tmp_path / "settled.log")
    groups = [CTX.Process(target=_group, args=(ledger_url, g, 3, 40, log, out)) for g in range(2)]
    for g in groups:
        g.start()
    results = collect(groups, out)
    assert results[0]["pgid"] != results[1]["pgid"] != os.getpgid(0)
    a = audit(ledger_url)
    assert all(tokens <= DAY_CAP for _, tokens, _ in a["per_day"]), a["per_day"]
    assert sum(n for _, _, n in a["per_day"]) == sum(r["allowed"] for r in results)
    assert settled_log(Path(log)).items() <= a["points"].items()
    assert not a["dup"] and not a["orphans"] and a["counters_ok"] and a["held"] == 0
    assert sum(r["blocked"] for r in results) > 0


# ---- URLs, migrations, versions ------------------------------------------------------------


def test_urls_name_the_backend(tmp_path: Path) -> None:
    assert sqlite_path(str(tmp_path / "a.db")) == str(tmp_path / "a.db")
    assert sqlite_path(f"sqlite:///{tmp_path}/a.db") == f"{tmp_path}/a.db"
    assert sqlite_path("sqlite:///rel.db") == "rel.db"
    assert sqlite_path("postgresql://u@h:5432/db") is None
    with pytest.raises(LedgerError) as info:
        open_ledger("mysql://u@h/db")
    assert info.value.diagnostics[0].code == "L113"
    ledger = open_ledger(f"sqlite:///{tmp_path}/b.db")
    assert ledger.schema_version() == 2 and (tmp_path / "b.db").is_file()
    ledger.close()


def test_an_older_engine_refuses_a_newer_schema(ledger_url: str) -> None:
    ledger = open_ledger(ledger_url)
    with ledger.transaction() as db:
        db.execute("INSERT INTO schema_version (version) VALUES (99)")
    ledger.close()
    with pytest.raises(LedgerError) as info:
        open_ledger(ledger_url)
    assert info.value.diagnostics[0].code == "L112" and "version 99" in str(info.value)


def test_migrations_run_once_and_are_recorded(ledger_url: str) -> None:
    # 1 the ledger, 2 the call log; on PostgreSQL 3 the one-round-trip step functions, 4 the
    # flush wait that reads the usage after a settlement
    expected = 2 if sqlite_path(ledger_url) else 4
    for _ in range(3):
        ledger = open_ledger(ledger_url)
        assert ledger.schema_version() == expected
        ledger.close()
    ledger = open_ledger(ledger_url)
    with ledger.transaction() as db:
        assert db.execute("SELECT COUNT(*) FROM schema_version").fetchone()[0] == expected  # one row per migration
    ledger.close()


def test_an_unreachable_server_is_a_retryable_coded_error() -> None:
    from tests.pgcluster import free_port

    pytest.importorskip("psycopg")
    with pytest.raises(LedgerUnavailable) as info:
        open_ledger(f"postgresql://policy@127.0.0.1:{free_port()}/none?timeout_s=1")
    assert info.value.diagnostics[0].code == "L111" and info.value.retryable
