"""`policy serve`: the dashboards over HTTP, read-only, on Starlette and uvicorn.

Pages (``/``, ``/runs/{run_id}``), the JSON API (``/api/runs``, ``/api/runs/{id}/budget``,
``/api/runs/{id}/kpi``, ``/api/openapi.json``, ``/api/schemas/{name}``), ``/healthz`` and
``/metrics`` (Prometheus text). Every request opens the ledger read-only (SQLite
``mode=ro``; on PostgreSQL a read-only transaction, ledger_pg_reader.py), so the server can
neither create, migrate nor write a ledger, and a ledger deleted (or a server stopped)
while serving answers 503 instead of being recreated.

Why an asyncio server: the old threading server held a thread per connection, and ~1,000
slow clients exhausted it. Here an idle connection is a socket, not a thread; a client that
has not sent its request head within ``header_timeout`` seconds is disconnected (uvicorn
only times out idle keep-alive connections, so its HTTP/1.1 protocol is extended by one
timer), and ``/healthz`` is answered on the event loop, never queued behind ledger reads.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
from collections.abc import Callable
from importlib import resources
from typing import Any

import h11
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route
from uvicorn.protocols.http.h11_impl import H11Protocol

from policy_engine.adapters.dashboard import budget_payload, kpi_payload, runs_payload
from policy_engine.adapters.ledger_reader import LedgerReader, open_reader
from policy_engine.adapters.ledger_url import sqlite_path
from policy_engine.adapters.metrics import ledger_registry
from policy_engine.adapters.pages import plotly_js, run_page, runs_page
from policy_engine.errors import LedgerError

JSON_PREFIXES = ("/api/", "/healthz", "/metrics")
SCHEMA_NAMES = ("runs", "budget", "kpi", "corpus_report", "error")
HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}


class _Json(JSONResponse):
    def render(self, content: Any) -> bytes:
        return (json.dumps(content, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


def _error(
    status: int, error: str, message: str, code: str | None = None, headers: dict[str, str] | None = None
) -> Response:
    body = {"error": error, "message": message} | ({"code": code} if code else {})
    return _Json(body, status_code=status, headers={**HEADERS, **(headers or {})})


def _html_error(status: int, title: str, message: str, headers: dict[str, str] | None = None) -> Response:
    from markupsafe import escape

    body = f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title></head><body><h1>{escape(title)}</h1><p>{escape(message)}</p><p><a href="/">all runs</a></p></body></html>'
    return HTMLResponse(body, status_code=status, headers={**HEADERS, **(headers or {})})


def _is_json_path(path: str) -> bool:
    return path.startswith(JSON_PREFIXES)


def _schema_text(filename: str) -> str:
    return resources.files("policy_engine.schemas").joinpath(filename).read_text(encoding="utf-8")


def create_app(ledger_url: str) -> Starlette:
    file = sqlite_path(ledger_url)  # None for a PostgreSQL URL

    def with_reader(request: Request, build: Callable[[LedgerReader], Response]) -> Response:
        try:
            reader = open_reader(ledger_url)
        except LedgerError as exc:
            return unavailable(request, exc)
        try:
            return build(reader)
        except LedgerError as exc:  # the server went away mid-request
            return unavailable(request, exc)
        finally:
            reader.close()

    def unavailable(request: Request, exc: LedgerError) -> Response:
        d = exc.diagnostics[0]
        if _is_json_path(request.url.path):
            return _error(503, "ledger_unavailable", d.message, d.code)
        return _html_error(503, "Ledger unavailable", f"{d.code} {d.message}")

    def unknown_run(request: Request, run_id: str) -> Response:
        if _is_json_path(request.url.path):
            return _error(404, "unknown_run", f"no gated calls, events or usage for run {run_id!r}")
        return _html_error(404, "Unknown run", f"no gated calls, events or usage for run {run_id!r}")

    def api_runs(request: Request) -> Response:
        return with_reader(request, lambda r: _Json(runs_payload(r), headers=HEADERS))

    def api_run_view(request: Request) -> Response:
        run_id, view = request.path_params["run_id"], request.path_params["view"]
        if view not in ("budget", "kpi"):
            return _error(404, "not_found", f"no view {view!r}: use /api/runs/{{run_id}}/budget or /kpi")

        def build(reader: LedgerReader) -> Response:
            if not reader.run_exists(run_id):
                return unknown_run(request, run_id)
            payload = budget_payload(reader, run_id) if view == "budget" else kpi_payload(reader, run_id)
            return _Json(payload, headers=HEADERS)

        return with_reader(request, build)

    def page_runs(request: Request) -> Response:
        return with_reader(
            request,
            lambda r: HTMLResponse(runs_page(runs_payload(r), db_label=r.label, root=_root(request)), headers=HEADERS),
        )

    def page_run(request: Request) -> Response:
        run_id = request.path_params["run_id"]

        def build(reader: LedgerReader) -> Response:
            if not reader.run_exists(run_id):
                return unknown_run(request, run_id)
            html = run_page(
                budget_payload(reader, run_id), kpi_payload(reader, run_id), db_label=reader.label, root=_root(request)
            )
            return HTMLResponse(html, headers=HEADERS)

        return with_reader(request, build)

    async def healthz(request: Request) -> Response:
        # answered on the event loop: never queued behind ledger reads in the thread pool
        # a server ledger is not probed here (that would queue liveness behind the network)
        return _Json(
            {"status": "ok", "ledger_file": os.path.isfile(file) if file is not None else None}, headers=HEADERS
        )

    def metrics(request: Request) -> Response:
        def build(reader: LedgerReader) -> Response:
            return Response(generate_latest(ledger_registry(reader)), media_type=CONTENT_TYPE_LATEST, headers=HEADERS)

        return with_reader(request, build)

    def openapi(request: Request) -> Response:
        return Response(_schema_text("openapi.json"), media_type="application/json", headers=HEADERS)

    def schema(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in SCHEMA_NAMES:
            return _error(404, "not_found", f"no schema {name!r}: one of {', '.join(SCHEMA_NAMES)}")
        return Response(_schema_text(f"{name}.schema.json"), media_type="application/schema+json", headers=HEADERS)

    async def static_plotly(request: Request) -> Response:
        return Response(
            plotly_js(),
            media_type="text/javascript",
            headers={"Cache-Control": "public, max-age=86400", "X-Content-Type-Options": "nosniff"},
        )

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            message = "this server is read-only: GET and HEAD only"
            return (
                _error(405, "method_not_allowed", message, headers=headers)
                if _is_json_path(request.url.path)
                else _html_error(405, "Method not allowed", message, headers)
            )
        if exc.status_code == 404:
            message = "see /api/openapi.json for the API; / lists the runs"
            return (
                _error(404, "not_found", message, headers=headers)
                if _is_json_path(request.url.path)
                else _html_error(404, "Not found", message, headers)
            )
        return _error(exc.status_code, "http_error", str(exc.detail), headers=headers)

    routes = [
        Route("/", page_runs, methods=["GET"]),
        Route("/runs/{run_id}", page_run, methods=["GET"]),
        Route("/api/runs", api_runs, methods=["GET"]),
        Route("/api/runs/{run_id}/{view}", api_run_view, methods=["GET"]),
        Route("/api/openapi.json", openapi, methods=["GET"]),
        Route("/api/schemas/{name}.json", schema, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/static/plotly.min.js", static_plotly, methods=["GET"]),
    ]
    return Starlette(routes=routes, exception_handlers={HTTPException: http_error})


def _root(request: Request) -> str:
    return str(request.scope.get("root_path", "")) + "/"


class HeadTimeoutH11Protocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol plus one timer: a connection that has not sent a
    complete request head within ``header_timeout`` seconds of connecting (or of its last
    response) is closed. Slow or stalled clients cost a socket for that long, no more."""

    header_timeout: float = 10.0
    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def handle_events(self) -> None:
        super().handle_events()
        if self.conn.their_state is not h11.IDLE:  # the head arrived (or the connection is done)
            self._disarm()

    def on_response_complete(self) -> None:
        self._arm()  # before the base class, which may start a pipelined request at once
        super().on_response_complete()

    def _arm(self) -> None:
        self._disarm()
        self._head_timer = self.loop.call_later(self.header_timeout, self._head_timed_out)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            self.transport.close()


def bind(host: str, port: int, backlog: int = 2048) -> socket.socket:
    """The listening socket, bound and listening before the server starts, so port 0 can
    be reported and a client that connects at once waits in the backlog, not refused."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(backlog)
    return sock


def serve(ledger_url: str, sock: socket.socket, *, header_timeout: float = 10.0, backlog: int = 2048) -> None:
    """Run until SIGINT/SIGTERM."""
    import uvicorn

    protocol = type("HeadTimeoutH11", (HeadTimeoutH11Protocol,), {"header_timeout": header_timeout})
    config = uvicorn.Config(
        create_app(ledger_url),
        http=protocol,
        log_level="warning",
        access_log=False,
        backlog=backlog,
        timeout_keep_alive=5,
        lifespan="off",
        server_header=False,
    )
    uvicorn.Server(config).run(sockets=[sock])
