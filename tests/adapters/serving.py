"""Helpers for the server tests: a demo ledger, a real `policy serve` process on a free
loopback port, plain HTTP requests, and a reader for the numbers in a page's tables."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from policy_engine.cli.exit_codes import ExitCode
from policy_engine.cli.main import main
from tests.conftest import ROOT

DEMO = str(ROOT / "examples" / "policies" / "demo.policy")
POLICY = str(Path(sys.executable).parent / "policy")


def demo_ledger(db: str, run_id: str = "R1", calls: int = 12) -> str:
    code = main(
        [
            "demo-run",
            "--run-id",
            run_id,
            "--packs",
            str(ROOT / "examples" / "packs"),
            "--db",
            db,
            "--mock-llm",
            "--rules",
            DEMO,
            "--calls",
            str(calls),
        ]
    )
    assert code == ExitCode.OK
    return db


@contextmanager
def served(db: str, *extra: str) -> Iterator[str]:
    """`policy serve` as users start it; yields the base URL it printed."""
    proc = subprocess.Popen(
        [POLICY, "serve", "--db", db, "--port", "0", *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        assert line.startswith("serving "), (line, proc.stderr.read() if proc.stderr else "")
        yield "http://" + line.split("http://", 1)[1].split("/", 1)[0]
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def get(url: str, method: str = "GET", data: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, method=method, data=data)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, {k.lower(): v for k, v in err.headers.items()}, err.read()


def get_json(url: str, method: str = "GET") -> tuple[int, Any]:
    status, _, body = get(url, method)
    return status, json.loads(body)


class TableCells(HTMLParser):
    """Collects ``data-field`` cells per row keyed by the row's ``data-*`` id attribute
    (``data-call-id``, ``data-run-id``, ``data-pack``), the embedded payload, and the
    ``data-field`` values outside rows (the total cards)."""

    def __init__(self, row_key: str) -> None:
        super().__init__()
        self.row_key = row_key
        self.rows: dict[str, dict[str, str]] = {}
        self.cards: dict[str, str] = {}
        self.payload = ""
        self._row: str | None = None
        self._field: str | None = None
        self._depth = 0
        self._text: list[str] = []
        self._in_payload = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "tr" and a.get(self.row_key) is not None:
            self._row = a[self.row_key]
            self.rows[self._row] = {}
        if tag == "script" and a.get("id") == "payload":
            self._in_payload = True
        if self._field is not None:
            self._depth += 1
        elif a.get("data-field") is not None:
            self._field, self._depth, self._text = a["data-field"], 0, []

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_payload = False
        if self._field is not None:
            if self._depth == 0:
                text = "".join(self._text).split("\n")[0].strip()
                (self.rows[self._row] if self._row is not None else self.cards)[self._field] = text
                self._field = None
            else:
                self._depth -= 1
        if tag == "tr" and self._field is None:
            self._row = None

    def handle_data(self, data: str) -> None:
        if self._in_payload:
            self.payload += data
        if self._field is not None:
            self._text.append(data)


def cells(html: str, row_key: str) -> TableCells:
    parser = TableCells(row_key)
    parser.feed(html)
    return parser
