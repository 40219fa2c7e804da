"""The pages in a real browser: Debian's headless Chromium driven by selenium through
chromedriver, against a real `policy serve` and against the static reports opened as
files. Checks that every chart rendered (plotly's SVG is there, with one bar per call), that
the browser logged no error, and takes a screenshot. Marked `browser`: CI runs them
(`.ci/run` installs chromium and chromium-driver); `-m 'not browser'` skips them locally."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from policy_engine.cli.main import main
from tests.adapters.serving import demo_ledger, get_json, served
from tests.conftest import ROOT

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
SCREENSHOTS = (
    Path(__import__("os").environ.get("POLICY_SCREENSHOT_DIR", ""))
    if __import__("os").environ.get("POLICY_SCREENSHOT_DIR")
    else None
)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.fail(
            "chromium and chromedriver are required for the browser tests: apt-get install -y chromium chromium-driver (or run with -m 'not browser')"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1400,1900",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def ledger_db(tmp_path_factory: pytest.TempPathFactory) -> str:
    return demo_ledger(str(tmp_path_factory.mktemp("browser") / "ledger.db"))


def _open(driver: Any, url: str) -> list[dict[str, Any]]:
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get_log("browser")  # drop what an earlier page logged
    driver.get(url)
    WebDriverWait(driver, 60).until(lambda d: d.execute_script("return document.readyState") == "complete")
    WebDriverWait(driver, 60).until(
        lambda d: d.execute_script(
            "return Array.from(document.querySelectorAll('.plotly-graph-div')).every(g => g.querySelector('svg.main-svg'))"
        )
    )
    return [entry for entry in driver.get_log("browser") if entry["level"] in ("SEVERE", "ERROR")]


def _charts(driver: Any) -> dict[str, dict[str, int]]:
    return driver.execute_script("""
        const out = {};
        document.querySelectorAll('.plotly-graph-div').forEach(g => {
          out[g.id] = {svg: g.querySelectorAll('svg.main-svg').length, bars: g.querySelectorAll('g.trace.bars path').length,
                       lines: g.querySelectorAll('g.scatterlayer g.trace path.js-line').length,
                       width: Math.round(g.getBoundingClientRect().width)};
        });
        return out;""")


def _shot(driver: Any, tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    height = driver.execute_script("return document.body.scrollHeight")
    driver.set_window_size(1400, min(max(900, height), 4000))
    assert driver.save_screenshot(str(path))
    assert path.stat().st_size > 10_000  # a picture, not a blank
    if SCREENSHOTS is not None:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, SCREENSHOTS / name)
    return path


def test_run_and_runs_pages_render_their_charts_in_chromium(browser: Any, ledger_db: str, tmp_path: Path) -> None:
    with served(ledger_db) as base:
        _, budget = get_json(f"{base}/api/runs/R1/budget")
        errors = _open(browser, f"{base}/runs/R1")
        assert errors == []
        charts = _charts(browser)
        assert set(charts) == {"chart-prompt", "chart-ladder", "chart-day", "chart-kpi"}
        assert all(c["svg"] >= 1 and c["width"] > 200 for c in charts.values()), charts
        nonzero = [c for c in budget["calls"] if c["prompt_tokens"] > 0]
        assert charts["chart-prompt"]["bars"] == len(nonzero)  # one bar per gated call
        assert charts["chart-ladder"]["lines"] == sum(1 for c in budget["calls"] if c["rungs"])
        blocked_labels = browser.execute_script(
            "return Array.from(document.querySelectorAll('#chart-prompt g.trace.bars text')).map(t => t.textContent).filter(t => t)"
        )
        assert sorted(blocked_labels) == sorted(c["reason"] for c in budget["calls"] if c["outcome"] == "blocked")
        # the tables are in the HTML itself, readable without JavaScript
        rows = browser.execute_script("return document.querySelectorAll('#calls-table > tbody > tr').length")
        assert rows == len(budget["calls"])
        _shot(browser, tmp_path, "run-page.png")

        errors = _open(browser, f"{base}/")
        assert errors == []
        charts = _charts(browser)
        assert charts["chart-runs"]["bars"] == 1 and charts["chart-runs"]["svg"] >= 1
        _shot(browser, tmp_path, "runs-page.png")


def test_static_run_report_renders_from_a_file(browser: Any, ledger_db: str, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    assert main(["report", "--db", ledger_db, "--run-id", "R1", "--output", str(out)]) == 0
    errors = _open(browser, out.as_uri())
    assert errors == []
    charts = _charts(browser)
    assert len(charts) == 4 and all(c["svg"] >= 1 for c in charts.values())
    _shot(browser, tmp_path, "run-report.png")


def test_corpus_report_draws_a_ladder_when_a_row_is_opened(browser: Any, tmp_path: Path) -> None:
    out = tmp_path / "corpus.html"
    packs = [
        str(ROOT / "examples" / "packs"),
        str(ROOT / "tests" / "fixtures" / "shared" / "packs" / "large_8x30x400x120.json"),
    ]
    main(
        [
            "eval",
            *packs,
            "--rules",
            str(ROOT / "examples" / "policies" / "demo.policy"),
            "--format",
            "html",
            "--output",
            str(out),
        ]
    )
    errors = _open(browser, out.as_uri())
    assert errors == []
    payload = json.loads(browser.execute_script("return document.getElementById('payload').textContent"))
    charts = _charts(browser)
    assert charts["chart-corpus"]["bars"] == sum(1 for p in payload["packs"] if p["prompt_tokens"])
    laddered = [p for p in payload["packs"] if p["rungs"]]
    assert laddered, "the corpus has a pack that walks the ladder"
    browser.execute_script("document.querySelector('details.ladder summary').click()")
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, 30).until(
        lambda d: d.execute_script("return !!document.querySelector('details.ladder[open] .ladder-chart svg.main-svg')")
    )
    points = browser.execute_script(
        "return document.querySelectorAll('details.ladder[open] .ladder-chart g.points path').length"
    )
    assert points == len(laddered[0]["rungs"]) + 1  # the start and one point per rung
    assert [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "ERROR")] == []
    _shot(browser, tmp_path, "corpus-report.png")
