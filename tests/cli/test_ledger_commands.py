"""`demo-run`, `report` and `serve` take a ledger URL: the same run on SQLite and on a real
PostgreSQL server gives the same accounts, the same pages and the same API, and the
dashboards only ever read (the PostgreSQL reader in a read-only transaction, never
migrating)."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from policy_engine.adapters.ledger_url import sqlite_path
from policy_engine.cli.exit_codes import ExitCode
from policy_engine.cli.main import main
from tests.adapters.serving import cells, get, get_json, served
from tests.conftest import ROOT

DEMO = [
    "--packs",
    str(ROOT / "examples" / "packs"),
    "--mock-llm",
    "--rules",
    str(ROOT / "examples" / "policies" / "demo.policy"),
]


def _schema(name: str) -> dict:
    from importlib import resources

    return json.loads(resources.files("policy_engine.schemas").joinpath(f"{name}.schema.json").read_text())


def test_demo_run_then_report_on_either_backend(
    ledger_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo-run", "--run-id", "R1", "--ledger", ledger_url, *DEMO]) == ExitCode.OK
    summary = json.loads(capsys.readouterr().out)
    assert summary["allowed"] == 6 and summary["blocked"] == 6  # the README's numbers, on both backends
    assert main(["report", "--ledger", ledger_url, "--run-id", "R1"]) == ExitCode.OK  # json: no .html output
    report = json.loads(capsys.readouterr().out)
    assert report["settled"] == {
        "tokens": summary["settled_tokens"],
        "micro_usd": report["settled"]["micro_usd"],
        "usage_points": 6,
    }
    # 2 on SQLite; 3 on PostgreSQL (its one-round-trip step functions)
    assert report["schema_version"] == (2 if sqlite_path(ledger_url) else 4) and report["live_reservations"] == 0
    assert report["overspend"] == {"events": 0, "tokens": 0, "micro_usd": 0}
    jsonschema.Draft202012Validator(_schema("budget")).validate(report["budget"])
    assert (
        report["budget"]["totals"]["calls"] == 12 and report["budget"]["totals"]["blocked"] == 6
    )  # the call log, on both backends
    assert report["budget"]["totals"]["settled_tokens"] == summary["settled_tokens"]
    assert main(["report", "--ledger", ledger_url, "--run-id", "nope"]) == ExitCode.INVALID_INPUT
    err = capsys.readouterr().err
    assert "L114" in err and "R1" in err  # the hint lists the runs there are
    # the same run as the HTML page, chosen by the output's suffix; --format overrides it
    page = tmp_path / "run.html"
    assert main(["report", "--db", ledger_url, "--run-id", "R1", "--output", str(page)]) == ExitCode.OK
    html = page.read_text()
    assert html.startswith("<!DOCTYPE html>") and len(cells(html, "data-call-id").rows) == 12
    as_json = tmp_path / "run.html.json"
    assert main(["report", "--ledger", ledger_url, "--run-id", "R1", "--output", str(as_json)]) == ExitCode.OK
    assert json.loads(as_json.read_text())["settled"] == report["settled"]
    assert (
        main(["report", "--ledger", ledger_url, "--run-id", "R1", "--format", "json", "--output", str(page)])
        == ExitCode.OK
    )
    assert json.loads(page.read_text())["budget"]["calls"] == report["budget"]["calls"]


def test_an_unknown_ledger_scheme_is_a_coded_input_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "--ledger", "mysql://x@y/z", "--run-id", "R"]) == ExitCode.INVALID_INPUT
    assert "L113" in capsys.readouterr().err
    assert main(["serve", "--ledger", "mysql://x@y/z", "--port", "0"]) == ExitCode.INVALID_INPUT
    assert "L113" in capsys.readouterr().err


# ---- the dashboards on PostgreSQL ---------------------------------------------------------


def _table_counts(url: str) -> dict[str, int]:
    import psycopg

    with psycopg.connect(url) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY table_name"
            )
        ]
        return {t: conn.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0] for t in tables}


def test_serve_reads_a_postgres_ledger_read_only(pg_cluster, capsys: pytest.CaptureFixture[str]) -> None:
    url = pg_cluster.create_database("serve_cli")
    assert main(["demo-run", "--run-id", "S", "--ledger", url, *DEMO, "--calls", "3"]) == ExitCode.OK
    capsys.readouterr()
    before = _table_counts(url)
    assert before["gated_calls"] == 3  # the gate logged its calls in PostgreSQL
    with served(url) as base:
        status, runs = get_json(f"{base}/api/runs")
        assert status == 200 and [r["run_id"] for r in runs["runs"]] == ["S"] and runs["call_log"] is True
        jsonschema.Draft202012Validator(_schema("runs")).validate(runs)
        status, budget = get_json(f"{base}/api/runs/S/budget")
        assert status == 200 and budget["totals"]["calls"] == 3 and budget["gauges"]["batch_tokens"]["value"] > 0
        jsonschema.Draft202012Validator(_schema("budget")).validate(budget)
        status, kpi = get_json(f"{base}/api/runs/S/kpi")
        assert (
            status == 200 and len(kpi["series"]["coverage"]) == budget["totals"]["calls"] - budget["totals"]["blocked"]
        )
        status, _, body = get(f"{base}/runs/S")
        page = cells(body.decode(), "data-call-id")
        assert status == 200 and set(page.rows) == {c["call_id"] for c in budget["calls"]}
        status, _, metrics = get(f"{base}/metrics")
        assert (
            status == 200
            and f'policy_settled_tokens_total{{run_id="S"}} {float(budget["totals"]["settled_tokens"])}'
            in metrics.decode()
        )
        assert get_json(f"{base}/api/runs/nope/budget")[0] == 404
        assert get_json(f"{base}/healthz") == (200, {"status": "ok", "ledger_file": None})
        for path in ("/api/runs/S/budget", "/runs/S"):
            assert get(base + path, method="POST", data=b"x")[0] == 405
    assert _table_counts(url) == before  # nothing written


def test_the_postgres_reader_refuses_writes_and_never_migrates(pg_cluster, capsys: pytest.CaptureFixture[str]) -> None:
    import psycopg

    from policy_engine.adapters.ledger_reader import open_reader

    empty = pg_cluster.create_database("not_a_ledger")
    assert main(["serve", "--ledger", empty, "--port", "0"]) == ExitCode.INVALID_INPUT
    assert "L116" in capsys.readouterr().err
    assert main(["report", "--ledger", empty, "--run-id", "R"]) == ExitCode.INVALID_INPUT
    assert "L116" in capsys.readouterr().err
    assert _table_counts(empty) == {}  # no schema created, no migration run
    url = pg_cluster.create_database("ro_ledger")
    assert main(["demo-run", "--run-id", "R", "--ledger", url, *DEMO, "--calls", "1"]) == ExitCode.OK
    with open_reader(url) as reader:
        assert reader.schema_version == 4 and reader.has_call_log
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            reader._conn.execute("DELETE FROM usage_points")


def test_a_postgres_server_stopped_while_serving_answers_503_then_recovers(
    pg_cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    url = pg_cluster.create_database("restarts")
    assert main(["demo-run", "--run-id", "R", "--ledger", url, *DEMO, "--calls", "2"]) == ExitCode.OK
    with served(url) as base:
        assert get_json(f"{base}/api/runs")[0] == 200
        pg_cluster.stop("fast")
        try:
            status, body = get_json(f"{base}/api/runs/R/budget")
            assert status == 503 and body["code"] == "L111"
            assert get(f"{base}/runs/R")[0] == 503
            assert get_json(f"{base}/healthz") == (200, {"status": "ok", "ledger_file": None})
        finally:
            pg_cluster.start()
        assert get_json(f"{base}/api/runs/R/budget")[0] == 200  # a reader per request: no stale connection to drop
    assert (
        main(
            [
                "report",
                "--ledger",
                f"postgresql://policy@127.0.0.1:{pg_cluster.port}/none_such?timeout_s=1",
                "--run-id",
                "R",
            ]
        )
        == ExitCode.INVALID_INPUT
    )
    assert "L111" in capsys.readouterr().err
