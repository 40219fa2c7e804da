"""`policy eval DIR --jobs N`: one engine for the run, N processes, and output byte for
byte what one process prints, in input order, bad packs included."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from policy_engine.cli.exit_codes import ExitCode
from tests.cli.test_cli import EX, KNOW, run
from tests.conftest import SHARED


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Twelve packs of mixed sizes and outcomes, and one invalid pack in the middle."""
    root = tmp_path_factory.mktemp("corpus")
    sources = sorted((SHARED / "packs").glob("*.json")) + sorted((EX / "packs").glob("*.json"))
    for i in range(12):
        shutil.copy(sources[i % len(sources)], root / f"p{i:02d}.json")
    doc = json.loads((EX / "packs" / "small_2x4x10x8.json").read_text())
    del doc["lanes"]
    (root / "p05b_invalid.json").write_text(json.dumps(doc))
    return root


@pytest.mark.parametrize(("fmt", "jobs"), [("json", "2"), ("json", "3"), ("text", "3")])
def test_jobs_output_is_byte_identical_to_one_process(corpus: Path, fmt: str, jobs: str) -> None:
    one = run("eval", str(corpus), *KNOW, "--format", fmt, "--jobs", "1")
    three = run("eval", str(corpus), *KNOW, "--format", fmt, "--jobs", jobs)
    assert one.returncode == three.returncode == ExitCode.INVALID_INPUT
    assert three.stdout == one.stdout and three.stderr == one.stderr
    if fmt == "json":
        files = [Path(r["file"]).name for r in json.loads(one.stdout)["results"]]
        assert files == sorted(p.name for p in corpus.iterdir())  # input order, the invalid one in place
        assert sum(1 for r in json.loads(one.stdout)["results"] if r.get("decision") is None) == 1


def test_jobs_must_be_positive(corpus: Path) -> None:
    proc = run("eval", str(corpus), "--jobs", "0")
    assert proc.returncode == ExitCode.USAGE and "C124" in proc.stderr


def test_verify_counts_agrees_with_the_composed_counts(corpus: Path) -> None:
    """`--verify-counts` encodes each final prompt whole as well: same decisions, byte for byte
    apart from the timings, on every pack of the corpus."""
    plain = run("eval", str(corpus), *KNOW, "--format", "json")
    verified = run("eval", str(corpus), *KNOW, "--format", "json", "--verify-counts")
    assert plain.returncode == verified.returncode == ExitCode.INVALID_INPUT

    def decisions(out: str) -> list[object]:
        return [r.get("decision") for r in json.loads(out)["results"]]

    got = decisions(verified.stdout)
    assert got == decisions(plain.stdout) and sum(d is not None for d in got) == 12
    assert "accounting" not in verified.stdout


def test_a_too_deep_pack_in_a_directory_is_refused_with_its_pointer(tmp_path: Path) -> None:
    """A directory run reads packs without the reader's nesting walk (the loader bounds the
    nesting itself): a deep pack is still P119 at its JSON Pointer, never a crash."""
    doc = json.loads((EX / "packs" / "small_2x4x10x8.json").read_text())
    deep: object = 1
    for _ in range(100):
        deep = {"a": deep}
    doc["telemetry"] = deep
    (tmp_path / "deep.json").write_text(json.dumps(doc))
    (tmp_path / "flat.json").write_text("[" * 100_000 + "]" * 100_000)
    proc = run("eval", str(tmp_path), "--format", "json")
    assert proc.returncode == ExitCode.INVALID_INPUT, proc.stderr
    results = {Path(r["file"]).name: r for r in json.loads(proc.stdout)["results"]}
    (error,) = results["deep.json"]["errors"]
    assert error["code"] == "P119" and error["pointer"] == "/telemetry" + "/a" * 63
    assert results["flat.json"]["errors"][0]["code"] == "P119"


def test_a_run_paces_the_collector_and_restores_it(corpus: Path) -> None:
    """In process (`main`, as an embedding tool calls it): during the run the collector
    runs rarely and the objects alive at its start are frozen; afterwards the process has
    its own settings back, even when the run fails."""
    import gc

    from policy_engine.cli import corpus as corpus_module
    from policy_engine.cli.main import main

    seen: list[tuple[tuple[int, int, int], int]] = []
    real = corpus_module.evaluate_one

    def spy(*args: object, **kwargs: object) -> object:
        seen.append((gc.get_threshold(), gc.get_freeze_count()))
        return real(*args, **kwargs)  # type: ignore[arg-type]

    before = gc.get_threshold()
    corpus_module.evaluate_one = spy  # type: ignore[assignment]
    try:
        code = main(["eval", str(corpus), *KNOW, "--format", "json", "--output", str(corpus.parent / "out.json")])
    finally:
        corpus_module.evaluate_one = real
    assert code == ExitCode.INVALID_INPUT
    assert len(seen) == 13
    assert all(threshold[0] >= 100_000 and frozen > 0 for threshold, frozen in seen)
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0


@pytest.mark.parametrize("count", [0, 1, 3])
def test_the_json_report_joined_from_entries_is_the_whole_document_dumped(corpus: Path, count: int) -> None:
    """The report is joined from each result's entry (a `--jobs` worker writes its own):
    byte for byte the whole document dumped at once, for no result, one, and several with
    an invalid pack among them; entries written ahead give the same text."""
    from policy_engine.cli.formats import (
        PackResult,
        Report,
        _result_item,
        decision_json,
        summary_counts,
        with_json_item,
    )
    from policy_engine.dsl import default_rules_path, load_policy
    from policy_engine.errors import Diagnostic
    from policy_engine.evaluator import Engine
    from policy_engine.evaluator.engine import evaluate
    from policy_engine.packs import load_pack_file

    engine = Engine.build(load_policy(default_rules_path()))
    paths = sorted(corpus.glob("p0[0-4].json"))[:count]
    results = [PackResult(str(p), evaluate(engine, load_pack_file(p))) for p in paths]
    if count == 3:
        results.insert(
            1,
            PackResult(
                "bad.json", problems=(Diagnostic("P101", "bad é\u2028", hint="fix", file="bad.json", pointer="/x"),)
            ),
        )
    report = Report(tuple(results))
    whole = {"results": [_result_item(r) for r in results], "summary": summary_counts(results)}
    expected = json.dumps(whole, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    assert decision_json(report) == expected
    finished = tuple(map(with_json_item, results))
    assert decision_json(Report(finished)) == expected
    # a worker sends the entry and the brief, not the decision: the report reads the same
    assert all(r.decision is None for r in finished)
    assert [r.status for r in finished] == [r.status for r in results]
    assert [r.brief() for r in finished] == [r.brief() for r in results]
    for fail_on_warn in (False, True):
        assert [Report(finished, fail_on_warn).failure(r) for r in finished] == [
            Report(report.results, fail_on_warn).failure(r) for r in results
        ]


def test_a_run_decides_each_pack_as_it_would_alone(
    corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run reads its packs with a shared memory of the values read before (the same list
    parsed once, its objects shared by every pack that holds it): each decision is still
    the one a fresh engine makes on that pack read on its own."""
    from policy_engine import msgspec_rent
    from policy_engine.cli.main import main
    from policy_engine.dsl import default_rules_path, load_policy
    from policy_engine.evaluator import Engine
    from policy_engine.evaluator.engine import evaluate
    from policy_engine.packs import load_pack
    from policy_engine.render import load_knowledge

    monkeypatch.setattr(msgspec_rent._Rent, "spent", msgspec_rent.RENT_LIMIT)  # fast readers from the first pack
    out = tmp_path / "out.json"
    assert main(["eval", str(corpus), *KNOW, "--format", "json", "--output", str(out)]) == ExitCode.INVALID_INPUT
    results = json.loads(out.read_text(encoding="utf-8"))["results"]
    policy, knowledge = load_policy(default_rules_path()), load_knowledge(EX / "knowledge")
    decided = 0
    for result in results:
        if result.get("decision") is None:
            continue
        doc = json.loads(Path(result["file"]).read_text(encoding="utf-8"))
        alone = evaluate(Engine.build(policy, knowledge=knowledge), load_pack(doc))
        assert json.loads(json.dumps(alone.to_dict())) == result["decision"], result["file"]
        decided += 1
    assert decided == 12
