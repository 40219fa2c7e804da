"""`policy serve` as a real process on a loopback port, after a real demo run: payloads
that answer questions (and match their JSON Schemas), pages that agree with the API
number for number, status codes and HEAD, metrics, a server that cannot write, and one
that survives 1,000 concurrent requests and slow clients."""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
import sqlite3
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
from prometheus_client.parser import text_string_to_metric_families

from policy_engine.cli.exit_codes import ExitCode
from policy_engine.cli.main import main
from tests.adapters.serving import cells, demo_ledger, get, get_json, served


def _schema(name: str) -> dict[str, Any]:
    return json.loads(resources.files("policy_engine.schemas").joinpath(f"{name}.schema.json").read_text())


def _validate(payload: Any, name: str) -> None:
    jsonschema.Draft202012Validator(_schema(name), format_checker=jsonschema.FormatChecker()).validate(payload)


@pytest.fixture(scope="module")
def ledger_db(tmp_path_factory: pytest.TempPathFactory) -> str:
    return demo_ledger(str(tmp_path_factory.mktemp("srv") / "ledger.db"))


@pytest.fixture(scope="module")
def base(ledger_db: str) -> Any:
    with served(ledger_db) as url:
        yield url


def _digest(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_demo_run_gets_blocked_once_the_day_is_spent(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = demo_ledger(str(tmp_path / "l.db"))
    capsys.readouterr()
    code = main(
        [
            "demo-run",
            "--run-id",
            "R2",
            "--packs",
            str(Path(__file__).resolve().parents[2] / "examples" / "packs"),
            "--db",
            db,
            "--mock-llm",
            "--rules",
            str(Path(__file__).resolve().parents[2] / "examples" / "policies" / "demo.policy"),
            "--calls",
            "6",
        ]
    )
    summary = json.loads(capsys.readouterr().out)
    assert code == ExitCode.OK
    assert summary["allowed"] == 0 and summary["block_reasons"].get("day_total", 0) >= 1  # R1 spent the day


def test_every_call_says_its_outcome_reason_and_the_limits_it_was_gated_with(base: str) -> None:
    status, budget = get_json(f"{base}/api/runs/R1/budget")  # the server was started without --rules
    assert status == 200
    _validate(budget, "budget")
    calls = budget["calls"]
    assert len(calls) == 12 and [c["seq"] for c in calls] == list(range(1, 13))
    assert len({c["call_id"] for c in calls}) == 12
    blocked = [c for c in calls if c["outcome"] == "blocked"]
    assert len(blocked) == 6 and all(c["reason"] and c["reason"] in c["reasons"] for c in blocked)
    assert all(c["reason"] is None and c["reasons"] == [] for c in calls if c["outcome"] != "blocked")
    assert budget["limits"]["day_total"]["value"] == 40_000 and budget["limits"]["request_prompt"]["value"] == 12_000
    assert all(c["prompt_limit"] == 12_000 and c["day_limit"] == 40_000 for c in calls)
    assert len(budget["gated_with"]) == 1 and budget["gated_with"][0]["calls"] == 12
    assert all(c["rules_digest"].startswith("sha256:") for c in calls)
    # a day_total block is explained: the projected day total was over the cap
    for c in blocked:
        if c["reason"] == "day_total":
            assert c["projected_day_tokens"] > c["day_limit"]
        if c["reason"] == "request_prompt":
            assert c["prompt_tokens"] > c["prompt_limit"] and c["rungs"], "a prompt block walked the ladder first"
    assert budget["totals"]["blocked_by"] == {
        r: sum(c["reason"] == r for c in blocked) for r in {c["reason"] for c in blocked}
    }
    assert budget["flags"]["budget_blocked"] is True and budget["flags"]["blocked_by"] == sorted(
        budget["totals"]["blocked_by"]
    )
    # settled usage joins its call; the run's settled tokens are the sum of its calls'
    assert sum(c["settled"]["total_tokens"] for c in calls if c["settled"]) == budget["totals"]["settled_tokens"]
    assert all((c["settled"] is None) == (c["outcome"] == "blocked") for c in calls)
    # the rung timeline names its call and rung; no call shares an id
    timeline = budget["series"]["fallback_timeline"]
    assert timeline and {t["call_id"] for t in timeline} == {c["call_id"] for c in calls if c["rungs"]}
    for c in calls:
        assert [t["rung"] for t in timeline if t["call_id"] == c["call_id"]] == [r["rung"] for r in c["rungs"]]


def test_runs_list_and_kpi_payloads(base: str) -> None:
    status, runs = get_json(f"{base}/api/runs")
    assert status == 200
    _validate(runs, "runs")
    (r1,) = [r for r in runs["runs"] if r["run_id"] == "R1"]
    assert (r1["calls"], r1["allowed"] + r1["trimmed"], r1["blocked"]) == (12, 6, 6)
    assert (
        r1["first_call"] <= r1["last_call"]
        and r1["tokens"] > 0
        and r1["usd"] == f"{r1['micro_usd'] // 1_000_000}.{r1['micro_usd'] % 1_000_000:06d}"
    )
    status, kpi = get_json(f"{base}/api/runs/R1/kpi")
    assert status == 200
    _validate(kpi, "kpi")
    assert len(kpi["series"]["novelty"]) == 6  # the calls that went ahead
    for name, gauge in kpi["gauges"].items():
        assert gauge["meaning"], name
    assert kpi["gauges"]["novelty"]["threshold"] == 0.15 and kpi["gauges"]["explore_ratio"]["limit"] == 0.3
    assert kpi["flags"]["low_novelty"] == (kpi["gauges"]["novelty"]["value"] < 0.15)


def test_status_codes_head_and_errors_as_json(base: str) -> None:
    for path, status in (
        ("/api/runs/nope/budget", 404),
        ("/api/runs/R1/other", 404),
        ("/api/nope", 404),
        ("/nope.json", 404),
    ):
        code, headers, body = get(base + path)
        assert code == status, path
    code, headers, body = get(f"{base}/api/runs/nope/budget")
    assert headers["content-type"].startswith("application/json") and json.loads(body)["error"] == "unknown_run"
    _validate(json.loads(body), "error")
    code, headers, body = get(f"{base}/nope")  # a page path: an HTML 404
    assert code == 404 and headers["content-type"].startswith("text/html")
    code, headers, body = get(f"{base}/runs/nope")
    assert code == 404 and b"Unknown run" in body
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        code, headers, body = get(
            f"{base}/api/runs/R1/budget", method=method, data=b"{}" if method != "DELETE" else None
        )
        assert (
            code == 405
            and set(headers["allow"].split(", ")) == {"GET", "HEAD"}
            and json.loads(body)["error"] == "method_not_allowed"
        )
    _, g_headers, g_body = get(f"{base}/api/runs")
    h_code, h_headers, h_body = get(f"{base}/api/runs", method="HEAD")
    assert (h_code, h_body) == (200, b"") and h_headers["content-length"] == g_headers["content-length"] == str(
        len(g_body)
    )
    assert h_headers["content-type"] == g_headers["content-type"]
    assert get(f"{base}/runs/R1", method="HEAD")[0] == 200
    assert get(f"{base}/", method="HEAD")[0] == 200
    status, health = get_json(f"{base}/healthz")
    assert status == 200 and health == {"status": "ok", "ledger_file": True}


def test_metrics_agree_with_the_api(base: str) -> None:
    status, headers, body = get(f"{base}/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    _, budget = get_json(f"{base}/api/runs/R1/budget")
    calls = {
        (s.labels["run_id"], s.labels["outcome"]): s.value
        for s in families["policy_gated_calls"].samples
        if s.name.endswith("_total")
    }
    assert (
        calls[("R1", "blocked")] == budget["totals"]["blocked"]
        and calls[("R1", "allowed")] == budget["totals"]["allowed"]
    )
    blocks = {
        s.labels["reason"]: s.value for s in families["policy_blocked_calls"].samples if s.name.endswith("_total")
    }
    assert blocks == budget["totals"]["blocked_by"]
    tokens = {
        s.labels["run_id"]: s.value for s in families["policy_settled_tokens"].samples if s.name.endswith("_total")
    }
    assert tokens["R1"] == budget["totals"]["settled_tokens"]
    usd = {s.labels["run_id"]: s.value for s in families["policy_settled_usd"].samples if s.name.endswith("_total")}
    assert usd["R1"] == pytest.approx(budget["totals"]["settled_micro_usd"] / 1e6)
    count = [s.value for s in families["policy_decision_seconds"].samples if s.name.endswith("_count")]
    assert count == [12]


def test_pages_show_the_api_numbers(base: str) -> None:
    _, budget = get_json(f"{base}/api/runs/R1/budget")
    _, kpi = get_json(f"{base}/api/runs/R1/kpi")
    status, headers, body = get(f"{base}/runs/R1")
    assert status == 200 and headers["content-type"].startswith("text/html")
    page = cells(body.decode(), "data-call-id")
    assert json.loads(page.payload) == {"budget": budget, "kpi": kpi}  # the page's data is the API's
    assert list(page.rows) == [c["call_id"] for c in budget["calls"]]
    for c in budget["calls"]:
        row = page.rows[c["call_id"]]
        assert row["outcome"] == c["outcome"]
        assert row["reason"] == ", ".join(c["reasons"])
        assert int(row["prompt_tokens"]) == c["prompt_tokens"] and int(row["prompt_limit"]) == c["prompt_limit"]
        assert int(row["projected_day_tokens"]) == c["projected_day_tokens"] and int(row["day_limit"]) == c["day_limit"]
        assert int(row["fallback_count"]) == len(c["rungs"])
        assert row["settled_tokens"] == (str(c["settled"]["total_tokens"]) if c["settled"] else "")
        assert row["settled_usd"] == (c["settled"]["usd"] if c["settled"] else "")
    t = budget["totals"]
    assert {k: page.cards[k] for k in ("calls", "allowed", "trimmed", "blocked", "settled_tokens", "settled_usd")} == {
        "calls": str(t["calls"]),
        "allowed": str(t["allowed"]),
        "trimmed": str(t["trimmed"]),
        "blocked": str(t["blocked"]),
        "settled_tokens": str(t["settled_tokens"]),
        "settled_usd": t["settled_usd"],
    }
    _, runs = get_json(f"{base}/api/runs")
    status, _, body = get(f"{base}/")
    listing = cells(body.decode(), "data-run-id")
    for r in runs["runs"]:
        row = listing.rows[r["run_id"]]
        assert {k: row[k] for k in ("calls", "allowed", "trimmed", "blocked", "tokens", "usd")} == {
            k: str(r[k]) for k in ("calls", "allowed", "trimmed", "blocked", "tokens", "usd")
        }


def test_pages_load_plotly_from_the_server_not_a_cdn(base: str) -> None:
    _, _, body = get(f"{base}/runs/R1")
    html = body.decode()
    assert '<script src="/static/plotly.min.js"></script>' in html
    assert "cdn" not in html.lower() and "https://" not in html.split('<script type="application/json" id="payload">')[
        0
    ].replace("https://json-schema", "")
    status, headers, js = get(f"{base}/static/plotly.min.js")
    assert status == 200 and headers["content-type"].startswith("text/javascript") and len(js) > 1_000_000


def test_openapi_lists_every_api_path_and_its_schemas_are_served(base: str) -> None:
    status, doc = get_json(f"{base}/api/openapi.json")
    assert status == 200 and doc["openapi"].startswith("3.1")
    assert {
        "/api/runs",
        "/api/runs/{run_id}/budget",
        "/api/runs/{run_id}/kpi",
        "/healthz",
        "/metrics",
        "/",
        "/runs/{run_id}",
    } <= set(doc["paths"])
    refs = {
        json.dumps(doc).split('"$ref": "')[i].split('"')[0] for i in range(1, json.dumps(doc).count('"$ref": "') + 1)
    }
    assert refs == {f"schemas/{n}.schema.json" for n in ("runs", "budget", "kpi", "error")}
    for ref in refs:
        name = ref.split("/")[1].removesuffix(".schema.json")
        status, served_schema = get_json(f"{base}/api/schemas/{name}.json")
        assert status == 200 and served_schema == _schema(name)
        jsonschema.Draft202012Validator.check_schema(served_schema)


def test_serving_never_writes_the_ledger(ledger_db: str, base: str) -> None:
    before = _digest(ledger_db)
    for path in ("/", "/runs/R1", "/api/runs", "/api/runs/R1/budget", "/metrics"):
        get(base + path)
        get(base + path, method="POST", data=b"x")
    assert _digest(ledger_db) == before


def test_a_sqlite_file_that_is_not_a_ledger_is_refused_untouched(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "other.db"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE notes (x TEXT)")
    con.commit()
    con.close()
    before = _digest(str(other))
    assert main(["serve", "--db", str(other), "--port", "0"]) == ExitCode.INVALID_INPUT
    assert "L116" in capsys.readouterr().err
    assert _digest(str(other)) == before
    con = sqlite3.connect(other)
    assert [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")] == ["notes"]
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # not switched to WAL
    con.close()
    text = tmp_path / "notes.txt"
    text.write_text("hello, not a database\n" * 100)
    assert main(["serve", "--db", str(text), "--port", "0"]) == ExitCode.INVALID_INPUT
    assert "L116" in capsys.readouterr().err


def test_serve_without_a_ledger_is_a_usage_error_and_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", "--db", str(tmp_path / "missing.db")]) == ExitCode.USAGE
    assert "C109" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_a_ledger_deleted_while_serving_is_not_recreated(tmp_path: Path) -> None:
    db = demo_ledger(str(tmp_path / "gone.db"), calls=2)
    with served(db) as url:
        assert get_json(f"{url}/api/runs")[0] == 200
        for suffix in ("", "-wal", "-shm"):
            Path(db + suffix).unlink(missing_ok=True)
        status, body = get_json(f"{url}/api/runs")
        assert status == 503 and body["code"] == "L115"
        assert get(f"{url}/runs/R1")[0] == 503
        assert get_json(f"{url}/healthz") == (200, {"status": "ok", "ledger_file": False})
    assert not Path(db).exists()


async def _request(host: str, port: int, path: str) -> int:
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    data = await reader.read()
    writer.close()
    return int(data.split(b" ", 2)[1])


async def _many(host: str, port: int, n: int) -> list[int]:
    paths = ["/healthz", "/api/runs", "/api/runs/R1/kpi", "/api/nope"]
    return await asyncio.gather(*(_request(host, port, paths[i % len(paths)]) for i in range(n)))


def test_a_thousand_concurrent_requests_are_all_answered(base: str) -> None:
    parts = urlsplit(base)
    statuses = asyncio.run(_many(parts.hostname or "", parts.port or 0, 1000))
    assert len(statuses) == 1000
    assert statuses.count(200) == 750 and statuses.count(404) == 250


def test_slow_clients_time_out_and_the_health_probe_keeps_answering(ledger_db: str) -> None:
    with served(ledger_db, "--header-timeout", "1") as base:
        parts = urlsplit(base)
        silent = []
        try:
            for _ in range(300):
                s = socket.create_connection((parts.hostname, parts.port), timeout=30)
                s.sendall(b"GET /api/runs HTTP/1.1\r\nHost: x\r\n")  # a head that never ends
                silent.append(s)
            assert get_json(f"{base}/healthz")[0] == 200
            assert get_json(f"{base}/api/runs")[0] == 200
            for s in silent:  # the server closes each after 1 s: recv sees EOF, no response
                assert s.recv(1024) == b""
        finally:
            for s in silent:
                s.close()
