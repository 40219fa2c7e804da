"""Instructions per cold decision, counted by valgrind: a before/after comparison that the
machine's speed does not move.

    .venv/bin/python benchmarks/instructions.py                     # this checkout
    .venv/bin/python benchmarks/instructions.py --against /tmp/base # and another one
    .venv/bin/python benchmarks/instructions.py --fields 72         # the seed-size pack

Why: this VM alternates between a fast and a slow mode about 1.6x apart, so two timings of
one change taken minutes apart can disagree by more than the change. Instruction counts
(cachegrind without its cache simulation, hash seed fixed) repeat within about 0.5%. They do
not see cache misses, so a change they favour is still timed (`run.py`) before it is
trusted.

Each count is a process that runs N cold decisions (a fresh engine each, as the issue table's
cold row) less the same process running none, divided by N: imports, the tokenizer's load and
the first, warming decision cancel out. valgrind is not a dependency of the project: without
it this prints how to install it and exits with status 2.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: cachegrind's summary line of instructions executed
_TOTAL = re.compile(r"I\s+refs:\s+([\d,]+)")


def _worker(root: Path, decisions: int, fields: int) -> None:
    """Run in the counted process: load ``root``'s engine and run ``decisions`` cold ones."""
    import json

    sys.path.insert(0, str(root / "benchmarks"))
    import run as bench  # inserts ``root`` first on sys.path: that checkout's engine is imported

    from policy_engine.evaluator import Engine
    from policy_engine.evaluator.engine import evaluate

    policy = bench.load_policy(bench.default_rules_path())
    knowledge, idea = bench.load_knowledge(bench.KNOWLEDGE), bench.load_idea(bench.IDEA)
    seed = json.loads(bench.SEED_PACK.read_text(encoding="utf-8"))
    pools = bench.load_pack(bench.scaled_pack(seed, fields), idea=idea)
    evaluate(Engine.build(policy, knowledge=knowledge), pools, idea=idea)  # warms the process
    for _ in range(decisions):
        evaluate(Engine.build(policy, knowledge=knowledge), pools, idea=idea)


def _count(valgrind: str, root: Path, decisions: int, fields: int) -> int:
    command = [
        valgrind,
        "--tool=cachegrind",
        "--cache-sim=no",
        "--cachegrind-out-file=/dev/null",
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        str(root),
        str(decisions),
        str(fields),
    ]
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    proc = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    found = _TOTAL.search(proc.stderr)
    if proc.returncode != 0 or found is None:
        sys.exit(f"instructions: the counted run of {root} failed (status {proc.returncode}):\n{proc.stderr[-2000:]}")
    return int(found.group(1).replace(",", ""))


def per_decision(valgrind: str, root: Path, decisions: int, fields: int) -> float:
    """Instructions of one cold decision of ``root``'s engine."""
    return (_count(valgrind, root, decisions, fields) - _count(valgrind, root, 0, fields)) / decisions


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fields", type=int, default=1000, help="fields of the scaled seed pack (default 1000)")
    parser.add_argument("--decisions", type=int, default=4, help="cold decisions counted (default 4)")
    parser.add_argument("--against", type=Path, help="another checkout, counted the same way (a baseline)")
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        _worker(Path(args.worker[0]), int(args.worker[1]), int(args.worker[2]))
        return 0
    if args.fields < 1 or args.decisions < 1:
        parser.error("--fields and --decisions must be at least 1")
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        print("instructions: valgrind is not installed (hint: apt-get install valgrind)", file=sys.stderr)
        return 2
    if args.against is not None and not (args.against / "policy_engine").is_dir():
        parser.error(f"--against {args.against}: no policy_engine/ there (give a checkout of this project)")
    mine = per_decision(valgrind, ROOT, args.decisions, args.fields)
    print(f"cold decision, {args.fields}-field pack: {mine / 1e6:.2f} M instructions ({ROOT})")
    if args.against is not None:
        other = per_decision(valgrind, args.against.resolve(), args.decisions, args.fields)
        print(f"cold decision, {args.fields}-field pack: {other / 1e6:.2f} M instructions ({args.against})")
        print(f"this checkout / the other: {mine / other:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
