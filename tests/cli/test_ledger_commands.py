"""`demo-run`, `report` and `serve` take a ledger URL: the same run on SQLite and on a real
PostgreSQL server gives the same accounts."""

from __future__ import annotations

import json
import threading
import urllib.request

import pytest

from policy_engine.cli.exit_codes import ExitCode
from policy_engine.cli.main import main
from tests.conftest import ROOT

DEMO = ["--packs", str(ROOT / "examples" / "packs"), "--mock-llm", "--rules", str(ROOT / "examples" / "policies" / "demo.policy")]


def test_demo_run_then_report_on_either_backend(ledger_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo-run", "--run-id", "R1", "--ledger", ledger_url, *DEMO]) == ExitCode.OK
    summary = json.loads(capsys.readouterr().out)
    assert summary["allowed"] == 6 and summary["blocked"] == 6  # the README's numbers, on both backends
    assert main(["report", "--ledger", ledger_url, "--run-id", "R1", "--rules", str(ROOT / "examples" / "policies" / "demo.policy")]) == ExitCode.OK
    report = json.loads(capsys.readouterr().out)
    assert report["settled"] == {"tokens": summary["settled_tokens"], "micro_usd": report["settled"]["micro_usd"], "usage_points": 6}
    assert report["schema_version"] == 1 and report["live_reservations"] == 0
    assert report["overspend"] == {"events": 0, "tokens": 0, "micro_usd": 0}
    assert main(["report", "--ledger", ledger_url, "--run-id", "nope"]) == ExitCode.INVALID_INPUT
    assert "L114" in capsys.readouterr().err


def test_serve_reads_a_postgres_ledger(pg_cluster, capsys: pytest.CaptureFixture[str]) -> None:
    from policy_engine.adapters.server import make_server
    from policy_engine.dsl import load_policy

    url = pg_cluster.create_database("serve_cli")
    assert main(["demo-run", "--run-id", "S", "--ledger", url, *DEMO, "--calls", "3"]) == ExitCode.OK
    server = make_server(url, load_policy(ROOT / "examples" / "policies" / "demo.policy"), port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        body = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{server.server_address[1]}/api/runs/S/budget", timeout=10).read())
    finally:
        server.shutdown()
        server.server_close()
    assert body["run_id"] == "S" and body["gauges"]["batch_tokens"]["value"] > 0


def test_an_unknown_ledger_scheme_is_a_coded_input_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "--ledger", "mysql://x@y/z", "--run-id", "R"]) == ExitCode.INVALID_INPUT
    assert "L113" in capsys.readouterr().err
