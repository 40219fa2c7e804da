"""The dashboard commands: `policy serve` (pages, JSON API, health and metrics over HTTP)
and `policy report` (a run's page as one self-contained HTML file for a CI artifact, or
its accounts as JSON), on either ledger backend.

The pages need the ``dashboard`` extra (Starlette, uvicorn, prometheus_client, plotly,
Jinja2): the engine and the gate run without them, so they are imported here, on demand,
and a missing extra is a usage error with the install command, not a traceback. The JSON
report needs none of them.
"""

from __future__ import annotations

import argparse
import ipaddress
import sys
from pathlib import Path

from policy_engine.cli.exit_codes import ExitCode
from policy_engine.errors import CommandLineError, Diagnostic, LedgerError

DASHBOARD_MODULES = ("starlette", "uvicorn", "prometheus_client", "plotly", "jinja2")


def _usage(code: str, message: str, hint: str) -> CommandLineError:
    return CommandLineError([Diagnostic(code, message, hint=hint)])


def require_dashboard_extra() -> None:
    import importlib.util

    missing = [m for m in DASHBOARD_MODULES if importlib.util.find_spec(m) is None]
    if missing:
        raise _usage(
            "C112",
            f"the dashboard extra is not installed (missing {', '.join(missing)})",
            "pip install 'policy-engine[dashboard]'",
        )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def cmd_serve(args: argparse.Namespace) -> int:
    from policy_engine.adapters.ledger_url import sqlite_path

    path = sqlite_path(args.db)  # None for a PostgreSQL URL; L113 for an unknown scheme
    if path is not None and not Path(path).is_file():
        raise _usage(
            "C109", f"no ledger at {args.db}", "run `policy demo-run` or the gate first, or pass the right --ledger"
        )
    if not 0 <= args.port <= 65535:
        raise _usage("C110", f"--port must be 0-65535, got {args.port}", "e.g. --port 8765")
    if not args.header_timeout > 0:
        raise _usage(
            "C110", f"--header-timeout must be > 0 seconds, got {args.header_timeout}", "e.g. --header-timeout 10"
        )
    require_dashboard_extra()
    from policy_engine.adapters.ledger_reader import open_reader
    from policy_engine.adapters.server import bind, serve

    with open_reader(args.db) as reader:  # refuses what is not a ledger now, with its code
        shown_ledger = reader.path  # a server URL without its password
    try:
        sock = bind(args.host, args.port)
    except OSError as exc:
        raise _usage(
            "C110", f"cannot listen on {args.host}:{args.port}: {exc.strerror}", "pick another --port"
        ) from None
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    if not _is_loopback(args.host):
        print(
            f"warning: serving on {args.host}, not loopback: anyone who can reach this address can read the ledger's runs",
            file=sys.stderr,
        )
    print(
        f"serving {shown_ledger} read-only on http://{shown}:{port}/ (runs page; API at /api/runs, /healthz, /metrics; Ctrl-C stops)",
        flush=True,
    )
    try:
        serve(args.db, sock, header_timeout=args.header_timeout)
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
    return ExitCode.OK


def report_format(args: argparse.Namespace) -> str:
    """--format, or by default html when --output names an .html file, json otherwise."""
    if args.format:
        return str(args.format)
    return "html" if args.output and args.output.lower().endswith((".html", ".htm")) else "json"


def cmd_report(args: argparse.Namespace) -> int:
    """A run's page as one self-contained HTML file (a CI artifact), or its accounts as
    JSON (settled usage, live reservations, overspend and the dashboard payloads), from
    either ledger backend, read-only."""
    import json
    import time

    from policy_engine.adapters.dashboard import budget_payload, kpi_payload
    from policy_engine.adapters.ledger_reader import open_reader

    fmt = report_format(args)
    if fmt == "html":
        require_dashboard_extra()
    with open_reader(args.db) as reader:
        if not reader.run_exists(args.run_id):
            runs = [r["run_id"] for r in reader.runs()]
            raise LedgerError(
                [
                    Diagnostic(
                        "L114",
                        f"no run {args.run_id!r} in the ledger",
                        hint="check --run-id; runs here: " + (", ".join(runs[:10]) or "none"),
                        file=reader.path,
                    )
                ]
            )
        budget, kpi = budget_payload(reader, args.run_id), kpi_payload(reader, args.run_id)
        if fmt == "html":
            from policy_engine.adapters.pages import run_page

            text = run_page(budget, kpi, db_label=reader.label, root=None)
        else:
            tokens, micro_usd, points = reader.run_usage(args.run_id)
            report = {
                "run_id": args.run_id,
                "ledger": reader.path,
                "schema_version": reader.schema_version,
                "settled": {"tokens": tokens, "micro_usd": micro_usd, "usage_points": points},
                "live_reservations": reader.live_reserved(args.run_id, time.time()),
                "overspend": budget["overspend"],
                "budget": budget,
                "kpi": kpi,
            }
            text = json.dumps(report, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    if not args.output:
        sys.stdout.write(text)
        return ExitCode.OK
    try:
        Path(args.output).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise _usage("C113", f"cannot write {args.output}: {exc.strerror}", "give a writable --output path") from None
    print(f"wrote {args.output} ({fmt}, run {args.run_id})", file=sys.stderr)
    return ExitCode.OK


LEDGER_HELP = "the ledger: a path or sqlite:///path (SQLite), or postgresql://user@host:port/db; opened read-only, never created or migrated"


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "serve",
        help="serve the runs and run pages, the JSON API, /healthz and /metrics of a ledger, read-only",
        description="Serve a ledger's dashboards read-only (needs the dashboard extra). Bound to loopback unless --host says otherwise.",
    )
    p.add_argument("--ledger", "--db", dest="db", required=True, metavar="URL", help=LEDGER_HELP)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 picks a free one)")
    p.add_argument(
        "--header-timeout",
        type=float,
        default=10.0,
        metavar="S",
        help="close connections that send no complete request head within S seconds (default 10)",
    )
    p.set_defaults(run=cmd_serve)

    p = sub.add_parser(
        "report",
        help="a run's page as one self-contained HTML file (a CI artifact), or its accounts as JSON",
        description="Report one run of a ledger, read-only: --format html writes the run page (needs the dashboard extra); "
        "--format json prints settled usage, live reservations, overspend and the budget and KPI payloads.",
    )
    p.add_argument("--ledger", "--db", dest="db", required=True, metavar="URL", help=LEDGER_HELP)
    p.add_argument("--run-id", required=True, metavar="R")
    p.add_argument("--output", metavar="FILE", help="write here instead of stdout")
    p.add_argument(
        "--format", choices=("html", "json"), help="default: html when --output ends in .html, json otherwise"
    )
    p.set_defaults(run=cmd_report)
