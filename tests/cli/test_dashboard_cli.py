"""`policy report` and `policy eval --format html`: self-contained files a CI job uploads,
whose embedded data validates against the shipped schemas and whose tables show it."""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path

import jsonschema
import pytest

from policy_engine.cli.exit_codes import ExitCode
from policy_engine.cli.main import main
from tests.adapters.serving import cells, demo_ledger
from tests.conftest import ROOT

DEMO = str(ROOT / "examples" / "policies" / "demo.policy")


def _schema(name: str) -> dict:
    return json.loads(resources.files("policy_engine.schemas").joinpath(f"{name}.schema.json").read_text())


def _self_contained(html: str) -> None:
    assert not re.search(r"""<(script|link|img)[^>]+(src|href)=["'](https?:)?//""", html), (
        "a resource is fetched from the network"
    )
    assert "Plotly.newPlot" in html and len(html) > 1_000_000  # plotly.js is inlined


@pytest.fixture(scope="module")
def ledger_db(tmp_path_factory: pytest.TempPathFactory) -> str:
    return demo_ledger(str(tmp_path_factory.mktemp("report") / "ledger.db"))


def test_report_writes_the_run_page_as_one_file(ledger_db: str, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    assert main(["report", "--db", ledger_db, "--run-id", "R1", "--output", str(out)]) == ExitCode.OK
    html = out.read_text()
    _self_contained(html)
    page = cells(html, "data-call-id")
    data = json.loads(page.payload)
    jsonschema.Draft202012Validator(_schema("budget")).validate(data["budget"])
    jsonschema.Draft202012Validator(_schema("kpi")).validate(data["kpi"])
    assert len(page.rows) == 12
    for c in data["budget"]["calls"]:
        assert page.rows[c["call_id"]]["outcome"] == c["outcome"] and page.rows[c["call_id"]]["reason"] == ", ".join(
            c["reasons"]
        )


def test_report_refuses_an_unknown_run_and_a_non_ledger(
    ledger_db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(["report", "--db", ledger_db, "--run-id", "nope", "--output", str(tmp_path / "r.html")])
        == ExitCode.INVALID_INPUT
    )
    err = capsys.readouterr().err
    assert "L114" in err and "R1" in err  # the hint lists the runs there are
    assert not (tmp_path / "r.html").exists()
    assert (
        main(["report", "--db", str(tmp_path / "none.db"), "--run-id", "R1", "--output", str(tmp_path / "r.html")])
        == ExitCode.INVALID_INPUT
    )
    assert "L115" in capsys.readouterr().err and not (tmp_path / "none.db").exists()
    assert (
        main(["report", "--db", ledger_db, "--run-id", "R1", "--output", str(tmp_path / "no" / "dir" / "r.html")])
        == ExitCode.USAGE
    )
    assert "C113" in capsys.readouterr().err


def test_eval_html_is_a_corpus_report_one_row_per_pack(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"idea_id": 3}')
    packs = sorted(str(p) for p in (ROOT / "examples" / "packs").glob("*.json"))
    out = tmp_path / "corpus.html"
    code = main(["eval", *packs, str(bad), "--rules", DEMO, "--format", "html", "--output", str(out)])
    assert code == ExitCode.INVALID_INPUT  # an invalid pack still fails the job, and is still a row
    html = out.read_text()
    _self_contained(html)
    page = cells(html, "data-pack")
    corpus = json.loads(page.payload)
    jsonschema.Draft202012Validator(_schema("corpus_report")).validate(corpus)
    assert [p["file"] for p in corpus["packs"]] == [*packs, str(bad)] == list(page.rows)
    assert corpus["totals"]["packs"] == len(packs) + 1 and corpus["totals"]["invalid"] == 1
    for p in corpus["packs"]:
        row = page.rows[p["file"]]
        assert row["outcome"] == p["outcome"]
        if p["outcome"] == "invalid":
            assert row["reason"].startswith(p["problems"][0]["code"])
            continue
        assert (
            int(row["prompt_tokens"]) == p["prompt_tokens"]
            and int(row["prompt_limit"]) == p["prompt_limit"]
            and int(row["fallback_count"]) == len(p["rungs"])
        )
    # the numbers are the decisions' own
    assert main(["eval", packs[0], "--rules", DEMO, "--format", "json"]) in (ExitCode.OK, ExitCode.BLOCKED)
    decision = json.loads(capsys.readouterr().out)["results"][0]["decision"]  # eval's one JSON document
    first = corpus["packs"][0]
    assert (first["outcome"], first["prompt_tokens"], first["fallback_count"]) == (
        decision["outcome"],
        decision["metrics"]["prompt_tokens"],
        decision["fallback_count"],
    )
