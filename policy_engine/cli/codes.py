"""Command-line usage codes (C1xx) and evaluation-input codes (V1xx)."""

from __future__ import annotations

CODES: dict[str, tuple[str, str]] = {
    "C101": ("invalid --completion-tokens", "give a positive number of tokens"),
    "C102": ("--trimmed-pack needs one valid pack", "evaluate one pack at a time"),
    "C103": ("no rule files given", "pass rule files or directories, or run where rules/ exists"),
    "C104": ("policy tokens needs text", "give TEXT or --file"),
    "C105": ("invalid --rough ratio", "give a number, e.g. --rough 4"),
    "C106": ("unknown schema name", "use retrieval_pack, decision, usage or template"),
    "C107": ("invalid --examples", "give a whole number from 1 to 100000"),
    "C108": ("--out is not a usable directory", "give a directory path (created if missing)"),
    "C109": ("no ledger at --db", "run `policy demo-run` or the gate first, or pass the right --db"),
    "C110": ("cannot serve on that port", "pick another --port (0-65535)"),
    "C111": ("demo-run has nothing to run", "give a directory of packs and --calls of at least 1"),
    "C112": ("the dashboard extra is not installed", "pip install 'policy-engine[dashboard]'"),
    "C113": ("cannot write the report", "give a writable --output path"),
    "C131": ("render and conform take one pack", "pass one pack file, not a directory of several"),
    "C132": ("render --output is not writable", "give a writable file path"),
    "C140": ("policy verify needs the verify extra", "pip install 'policy-engine[verify]' (it brings hypothesis)"),
    "V101": ("USD limit without a price", "add a price table and `pricing model`"),
    "V150": ("not a decision", "pass the JSON `policy eval --format json` wrote for one pack"),
    "V152": (
        "no such gated call in the ledger",
        "take the id from GateResult.call_id, BudgetBlocked.call_id or the run page",
    ),
    "V151": ("no single result for --pack", "pass --pack exactly as the result's `file` names it"),
    "C120": ("output path not writable", "create its directory first, or write somewhere else"),
    "C121": ("explain takes one pack", "pass one pack file; `policy eval` takes directories"),
    "C122": ("unknown shell for completion", "use bash, zsh or fish"),
    "C123": ("NUL byte in an argument", "remove it; no file name or value can hold one"),
    "C125": ("replay needs one recorded call", "give DECISION_JSON with --pack, or --db with --call"),
    "C124": ("invalid --jobs", "give a whole number of processes, at least 1"),
    "V102": ("unknown explain level", "use off, rules or full"),
}
