"""`policy eval` over many packs: one engine for the whole run, and ``--jobs N`` worker
processes.

Everything that does not depend on the pack is built once: the policy, the engine (its
tokenizer and render caches: the knowledge pack's blocks are measured for the first pack
and reused for every other), usage, idea and seen combos. With ``--jobs N`` the packs are
cut into contiguous chunks evaluated by N forked workers that inherit that state; the
results come back in input order, so the output is byte for byte what ``--jobs 1``
prints (each pack's decision is a pure function of its inputs).
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from policy_engine.cli.formats import PackResult
from policy_engine.errors import PackError

if TYPE_CHECKING:
    from policy_engine.reading.json_text import SharedValues

#: what a worker evaluates with: set by the parent before forking (inherited), or by the
#: initializer on platforms that spawn
_STATE: dict[str, Any] = {}


def evaluate_one(
    engine: Any, path: str, common: dict[str, Any], explain: str, shared: SharedValues | None = None
) -> tuple[PackResult, Any]:
    """One pack: read, validate, evaluate. A bad pack is a result with its problems, not an
    exception, so one bad file never stops a corpus run. ``shared``: the run's values read
    before (`reading.json_text.SharedValues`); the document returned is then not the
    caller's to change."""
    from policy_engine.packs import read_pack_parts

    started = time.perf_counter()
    try:
        # load_pack bounds the nesting
        doc, label, parts = read_pack_parts(path, check_nesting=False, shared=shared)
    except PackError as exc:
        return PackResult(
            path if path != "-" else "<stdin>", problems=exc.diagnostics, seconds=time.perf_counter() - started
        ), None
    # the document was read here and is never mutated: no defensive copy
    return evaluate_document(engine, doc, label, common, explain, copy=False, started=started, reader_parts=parts), doc


def evaluate_document(
    engine: Any,
    doc: Any,
    label: str,
    common: dict[str, Any],
    explain: str,
    *,
    copy: bool = True,
    started: float | None = None,
    reader_parts: Mapping[str, bytes] | None = None,
) -> PackResult:
    """A pack document already in hand (read from a file, or recorded in the ledger).
    ``reader_parts``: the reader's content parts of ``doc`` (`packs.read_pack_parts`)."""
    from policy_engine.evaluator.engine import evaluate
    from policy_engine.packs import load_pack

    started = time.perf_counter() if started is None else started
    try:
        pools = load_pack(doc, file=label, idea=common["idea"], copy=copy, reader_parts=reader_parts)
    except PackError as exc:
        return PackResult(label, problems=exc.diagnostics, seconds=time.perf_counter() - started)
    decision = evaluate(
        engine,
        pools,
        usage=common["usage"],
        request=common["request"],
        seen_combos=common["seen_combos"],
        idea=common["idea"],
        explain=explain,
    )
    return PackResult(label, decision, seconds=time.perf_counter() - started)


def _work(paths: Sequence[str]) -> list[PackResult]:
    engine, common, explain = _STATE["engine"], _STATE["common"], _STATE["explain"]
    finish = _STATE.get("finish") or _unchanged
    if "shared" not in _STATE:  # a spawned worker: a memory of its own
        _STATE["shared"] = _shared_values()
    shared = _STATE["shared"]
    return [finish(evaluate_one(engine, path, common, explain, shared)[0]) for path in paths]


def _shared_values() -> SharedValues:
    """A run's memory of the pack values it has read (see `SharedValues`): the documents
    of a corpus run go straight to the evaluator, and nothing changes them."""
    from policy_engine.reading.json_text import SharedValues

    return SharedValues()


def _unchanged(result: PackResult) -> PackResult:
    return result


def _spawned(
    build: Callable[[], tuple[Any, dict[str, Any], str]], finish: Callable[[PackResult], PackResult] | None
) -> None:
    if "engine" not in _STATE:
        _STATE["engine"], _STATE["common"], _STATE["explain"] = build()
        _STATE["finish"] = finish


#: young objects allowed between collections during a run (the default is 700)
_RUN_GC_THRESHOLD = 100_000


@contextmanager
def batch_collection() -> Iterator[None]:
    """A corpus run allocates millions of short-lived, acyclic objects (parsed packs,
    trace steps) and keeps every decision: the collector's default pace spent about 15%
    of a 300-pack run scanning them. Here the objects alive at the start (policy, engine,
    the tokenizer's tables) are frozen out of every scan, and collections happen every
    100,000 allocations instead of 700, as batch tools such as mypy do. Reference counting
    still frees almost everything at once; the collector is only for cycles. Restored on
    exit: an embedding process keeps its own settings. Held over the evaluation and the
    report's formatting (which builds one JSON tree of every decision)."""
    before = gc.get_threshold()
    gc.freeze()  # also keeps forked workers from copying pages the collector would touch
    gc.set_threshold(max(before[0], _RUN_GC_THRESHOLD), *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()


def evaluate_many(
    engine: Any,
    paths: Sequence[str],
    common: dict[str, Any],
    explain: str,
    jobs: int,
    build: Callable[[], tuple[Any, dict[str, Any], str]],
    advance: Callable[[int], None],
    finish: Callable[[PackResult], PackResult] | None = None,
) -> list[PackResult]:
    """Results in the order of ``paths``. ``build`` rebuilds (engine, common, explain) in a
    worker that could not inherit them (no fork on this platform). ``finish`` is the
    output's share of the work that a worker can do on its own results (a module-level
    function, so a spawned worker can receive it); a single process leaves it to the
    report, which does the same."""
    shared = _shared_values()
    if jobs <= 1 or len(paths) < 2 or "-" in paths:  # standard input is read by this process
        out = []
        for path in paths:
            out.append(evaluate_one(engine, path, common, explain, shared)[0])
            advance(1)
        return out
    import multiprocessing  # only here: a one-process run does not pay for its import
    from concurrent.futures import ProcessPoolExecutor

    # The first pack is evaluated here, before forking: the workers inherit what it
    # warmed (the knowledge pack's lists measured, the tokenizer's line counts, the
    # skeleton), instead of each measuring them cold.
    first = evaluate_one(engine, paths[0], common, explain, shared)[0]
    advance(1)
    rest = paths[1:]
    jobs = min(jobs, len(rest))
    # contiguous chunks, several per worker so a slow chunk does not idle the others
    size = max(1, len(rest) // (jobs * 4))
    chunks = [rest[i : i + size] for i in range(0, len(rest), size)]
    fork = "fork" in multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if fork else "spawn")
    _STATE.update(engine=engine, common=common, explain=explain, finish=finish, shared=shared)
    try:
        if fork:  # the workers inherit the engine, warm
            gc.freeze()  # what the first pack built too: the workers' collectors leave those pages alone
            executor = ProcessPoolExecutor(max_workers=jobs, mp_context=context)
        else:
            executor = ProcessPoolExecutor(
                max_workers=jobs, mp_context=context, initializer=_spawned, initargs=(build, finish)
            )
        with executor as pool:
            results: list[PackResult] = [first]
            for chunk in pool.map(_work, chunks):
                results.extend(chunk)
                advance(len(chunk))
        return results
    finally:
        _STATE.clear()
