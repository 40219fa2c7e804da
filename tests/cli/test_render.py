"""`policy render` and `policy conform`: every captured agent prompt is rendered byte for
byte and conforms; a one-character change is caught at the right line and JSON Pointer;
the rendered text's tokens are the decision's prompt_tokens, for every shared pack."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from policy_engine.cli.exit_codes import ExitCode
from policy_engine.cli.main import main
from policy_engine.dsl import import_config
from tests.cli.test_cli import run
from tests.conftest import SHARED
from tests.render.prompt_cases import CASES, PromptCase

PACKS = sorted((SHARED / "packs").glob("*.json"))
KNOWLEDGE_DIRS = ["knowledge", "knowledge_real"]


def call(capsys, *args: str) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def raised_rules(tmp_path: Path, limits: dict[str, int]) -> Path:
    """Rules whose limits are the ones a capture echoes (untrimmed captures: raised)."""
    text = 'tokenizer tiktoken "o200k_base"\n' + "".join(f"limit {m}: {m} <= {v} tokens\n" for m, v in limits.items())
    path = tmp_path / "raised.policy"
    path.write_text(text, encoding="utf-8")
    return path


def config_rules(tmp_path: Path, config: str) -> Path:
    cfg = json.loads((SHARED / "configs" / f"{config}.json").read_text())
    path = tmp_path / f"{config}.policy"
    path.write_text(import_config(cfg, llm_file=f"{config}.json"), encoding="utf-8")
    return path


def restricted(doc: dict, selection: dict) -> dict:
    """The pack the agent sent after its ladder: its final selection, lanes lists kept
    consistent (what the agent's pack model holds after trimming)."""
    keep = {pool: set(ids) for pool, ids in selection.items()}
    out = json.loads(json.dumps(doc))
    out["selected_subcategories"] = [s for s in out["selected_subcategories"] if s in keep["subcategories"]]
    out["candidate_datasets"] = [d for d in out["candidate_datasets"] if d["id"] in keep["datasets"]]
    out["candidate_fields"] = [f for f in out["candidate_fields"] if f["id"] in keep["fields"]]
    out["candidate_operators"] = [o for o in out["candidate_operators"] if o["name"] in keep["operators"]]
    for lists in out["lanes"].values():
        lists["field_ids"] = [x for x in lists["field_ids"] if x in keep["fields"]]
        lists["operator_names"] = [x for x in lists["operator_names"] if x in keep["operators"]]
    return out


def render_args(case: PromptCase, tmp_path: Path) -> list[str]:
    """`policy render` arguments that reproduce a capture: untrimmed captures render the
    whole pack with the echoed limits; final captures render the agent's final pack (its
    ladder's selection, which differs from ours only by the agent's numbered defects)."""
    args = ["--knowledge-pack-dir", str(case.knowledge_dir), "--untrimmed"]
    if case.idea:
        args += ["--idea", str(case.idea)]
    pack = case.pack
    if case.decision is not None:
        pack = tmp_path / "agent_final_pack.json"
        pack.write_text(json.dumps(restricted(case.pack_doc(), case.selection())), encoding="utf-8")
    return [str(pack), "--rules", str(raised_rules(tmp_path, case.limits)), *args]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_render_reproduces_each_capture_and_conform_passes(case: PromptCase, tmp_path: Path, capsys) -> None:
    args = render_args(case, tmp_path)
    code, out, err = call(capsys, "render", *args)
    assert code == ExitCode.OK, err
    assert out.encode("utf-8") == case.file.read_bytes()
    code, out, err = call(capsys, "conform", *args, "--prompt", case.file)
    assert code == ExitCode.OK and "byte-identical" in out, out + err


@pytest.mark.parametrize("case", [c for c in CASES if c.config == "llm_budget"], ids=lambda c: c.name)
def test_render_of_our_decision_is_the_agents_final_prompt_under_its_default_config(
    case: PromptCase, tmp_path: Path, capsys
) -> None:
    """Under the default config our ladder reaches the agent's final selection (no defect
    fires), so the decision's own prompt is the capture."""
    args = [case.pack, "--rules", config_rules(tmp_path, case.config), "--knowledge-pack-dir", case.knowledge_dir]
    if case.idea:
        args += ["--idea", case.idea]
    code, out, _ = call(capsys, "render", *args)
    assert code == ExitCode.OK and out == case.file.read_text(encoding="utf-8")
    assert call(capsys, "conform", *args, "--prompt", case.file)[0] == ExitCode.OK


def test_conform_reports_a_one_character_change_at_its_line_and_pointer(tmp_path: Path, capsys) -> None:
    case = next(c for c in CASES if c.name == "small_2x4x10x0.knowledge_real.untrimmed")
    text = case.file.read_text(encoding="utf-8")
    lines = text.split("\n")
    target = next(i for i, line in enumerate(lines) if '"error_key": "empty_expression"' in line)
    lines[target] = lines[target].replace("empty_expression", "empty_expressiom")
    changed = tmp_path / "changed.prompt.txt"
    changed.write_text("\n".join(lines), encoding="utf-8")
    code, out, _ = call(capsys, "conform", *render_args(case, tmp_path), "--prompt", changed)
    assert code == ExitCode.FAILED
    assert f"at line {target + 1} (JSON Pointer /knowledge_pack/fastexpr_visual_pack/error_taxonomy/0/error_key)" in out
    assert out.count(f"  > {target + 1:>6} | ") == 2  # the captured line and the engine's
    assert "empty_expressiom" in out and '"error_key": "empty_expression"' in out


def test_conform_on_a_truncated_capture_points_past_the_end(tmp_path: Path, capsys) -> None:
    case = next(c for c in CASES if c.name == "small_2x4x10x8.untrimmed")
    cut = tmp_path / "cut.txt"
    cut.write_text(case.file.read_text(encoding="utf-8")[:-2], encoding="utf-8")
    code, out, _ = call(capsys, "conform", *render_args(case, tmp_path), "--prompt", cut)
    assert code == ExitCode.FAILED and "differs from" in out


def test_conform_missing_capture_is_an_input_error(tmp_path: Path, capsys) -> None:
    code, _, err = call(capsys, "conform", PACKS[0], "--prompt", tmp_path / "none.txt")
    assert code == ExitCode.INVALID_INPUT and "P101" in err


@pytest.mark.parametrize("knowledge", KNOWLEDGE_DIRS)
@pytest.mark.parametrize("pack", PACKS, ids=lambda p: p.stem)
def test_rendered_tokens_equal_the_decisions_prompt_tokens(pack: Path, knowledge: str, tmp_path: Path, capsys) -> None:
    """And the trimmed pack `eval --trimmed-pack` writes, rendered whole, is that same text."""
    know = ["--knowledge-pack-dir", SHARED / knowledge]
    trimmed = tmp_path / "trimmed.json"
    code, out, _ = call(capsys, "eval", pack, *know, "--format", "json", "--trimmed-pack", trimmed)
    (result,) = json.loads(out)["results"]
    decision = result["decision"]
    code, text, err = call(capsys, "render", pack, *know)
    assert code == ExitCode.OK
    from policy_engine.policy import Tokenizer
    from policy_engine.tokens import get_counter

    assert get_counter(Tokenizer("tiktoken", "o200k_base")).count(text) == decision["metrics"]["prompt_tokens"]
    assert (
        f"{decision['metrics']['prompt_tokens']:,} tokens" in err and len(text) == decision["metrics"]["prompt_chars"]
    )
    code, whole, _ = call(capsys, "render", trimmed, *know, "--untrimmed")
    assert whole == text


def test_render_writes_output_file_and_the_console_script_runs(tmp_path: Path) -> None:
    out = tmp_path / "prompt.txt"
    proc = run("render", str(PACKS[0]), "--knowledge-pack-dir", str(SHARED / "knowledge_real"), "--output", str(out))
    assert proc.returncode == 0 and proc.stdout == "" and "tokens (o200k_base)" in proc.stderr
    assert json.loads(out.read_text(encoding="utf-8"))["agent"] == "Alpha Maker"


def test_render_refuses_a_directory_of_packs(capsys) -> None:
    code, _, err = call(capsys, "render", SHARED / "packs")
    assert code == ExitCode.USAGE and "C131" in err
