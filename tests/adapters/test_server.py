"""The dashboards over a real loopback socket, after a real demo run: status codes for
known runs, unknown runs, bad paths and writes; `policy demo-run` and `policy serve`."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from policy_engine.adapters.server import make_server
from policy_engine.cli.exit_codes import ExitCode
from policy_engine.cli.main import main
from policy_engine.dsl import load_policy
from tests.conftest import ROOT

DEMO = str(ROOT / "examples" / "policies" / "demo.policy")


@pytest.fixture(scope="module")
def ledger_db(tmp_path_factory: pytest.TempPathFactory) -> str:
    db = str(tmp_path_factory.mktemp("srv") / "ledger.db")
    code = main(["demo-run", "--run-id", "R1", "--packs", str(ROOT / "examples" / "packs"), "--db", db, "--mock-llm", "--rules", DEMO, "--calls", "12"])
    assert code == ExitCode.OK
    return db


def _get(url: str, method: str = "GET") -> tuple[int, dict]:
    req = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_demo_run_gets_blocked_once_the_day_is_spent(ledger_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["demo-run", "--run-id", "R2", "--packs", str(ROOT / "examples" / "packs"), "--db", ledger_db, "--mock-llm", "--rules", DEMO, "--calls", "6"])
    summary = json.loads(capsys.readouterr().out)
    assert code == ExitCode.OK
    assert summary["allowed"] == 0 and summary["block_reasons"].get("day_total", 0) >= 1  # R1 spent the day


def test_dashboards_over_loopback(ledger_db: str) -> None:
    server = make_server(ledger_db, load_policy(DEMO), "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        status, budget = _get(f"{base}/api/runs/R1/budget")
        assert status == 200 and budget["run_id"] == "R1"
        assert budget["flags"]["budget_blocked"] is True
        assert budget["gauges"]["day_tokens"]["limit"] == 40_000 and budget["gauges"]["day_tokens"]["value"] <= 40_000
        assert len(budget["series"]["prompt_tokens"]) >= 6
        status, kpi = _get(f"{base}/api/runs/R1/kpi")
        assert status == 200 and set(kpi) == {"run_id", "series", "gauges", "flags"}
        assert _get(f"{base}/api/runs/nope/budget")[0] == 404
        assert _get(f"{base}/api/runs/R1/other")[0] == 404
        assert _get(f"{base}/")[0] == 404
        assert _get(f"{base}/api/runs/R1/budget", method="POST")[0] == 405
    finally:
        server.shutdown()
        server.server_close()


def test_policy_serve_console_script(ledger_db: str) -> None:
    exe = str(Path(sys.executable).parent / "policy")
    proc = subprocess.Popen([exe, "serve", "--db", ledger_db, "--rules", DEMO, "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()  # "serving ... on http://127.0.0.1:PORT/..."
        url = line.split("http://", 1)[1].split("/", 1)[0]
        status, body = _get(f"http://{url}/api/runs/R1/kpi")
        assert status == 200 and body["run_id"] == "R1"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_serve_without_a_ledger_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--db", str(tmp_path / "missing.db")]) == ExitCode.USAGE
    assert "C109" in capsys.readouterr().err
