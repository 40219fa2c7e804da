"""Read-only HTTP for the dashboards: ``GET /api/runs/{run_id}/budget`` and
``GET /api/runs/{run_id}/kpi``. The standard library's threading server is enough for a
read-only JSON endpoint; each request opens its own ledger connection (SQLite WAL lets
readers run beside the gate's writers)."""

from __future__ import annotations

import json
import re
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

from policy_engine.adapters.dashboard import budget_payload, kpi_payload
from policy_engine.adapters.ledger_url import open_ledger
from policy_engine.policy import Policy

ROUTE = re.compile(r"^/api/runs/([^/]{1,200})/(budget|kpi)$")


def make_server(db_path: str, policy: Policy, host: str = "127.0.0.1", port: int = 8765) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        server_version = "policy-engine"

        def log_message(self, format: str, *args: Any) -> None:  # quiet by default
            pass

        def _send(self, status: HTTPStatus, body: dict[str, Any]) -> None:
            data = (json.dumps(body, sort_keys=True) + "\n").encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            match = ROUTE.match(urlsplit(self.path).path)
            if match is None:
                self._send(HTTPStatus.NOT_FOUND, {"error": "not_found", "message": "use GET /api/runs/{run_id}/budget or /api/runs/{run_id}/kpi"})
                return
            run_id, view = unquote(match.group(1)), match.group(2)
            ledger = open_ledger(db_path)  # a path or any ledger URL
            try:
                if not ledger.run_exists(run_id):
                    self._send(HTTPStatus.NOT_FOUND, {"error": "unknown_run", "message": f"no events or usage for run {run_id!r}"})
                    return
                payload = budget_payload(ledger, run_id, policy) if view == "budget" else kpi_payload(ledger, run_id, policy)
            finally:
                ledger.close()
            self._send(HTTPStatus.OK, payload)

        def _read_only(self) -> None:
            self._send(HTTPStatus.METHOD_NOT_ALLOWED, {"error": "method_not_allowed", "message": "this API is read-only: GET only"})

        do_POST = do_PUT = do_DELETE = do_PATCH = _read_only

    return ThreadingHTTPServer((host, port), Handler)
