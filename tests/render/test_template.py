"""Templates as data: a user's template in the policy directory is selected by name, a
bad template is reported like a bad rule file (code, file, JSON Pointer, hint) by
`policy check` and on load, and knowledge values of the wrong type are refused (R109)."""

from __future__ import annotations

import json
from pathlib import Path
from types import MappingProxyType

import pytest

from policy_engine.cli.exit_codes import ExitCode
from policy_engine.cli.main import main
from policy_engine.dsl import load_policy
from policy_engine.errors import PackError, RuleCheckError
from policy_engine.evaluator import evaluate
from policy_engine.packs import load_pack_file
from policy_engine.render import KnowledgePack, load_knowledge
from policy_engine.render.template import shipped_template
from tests.conftest import ROOT, SHARED

SHIPPED = ROOT / "policy_engine" / "render" / "templates" / "agent_envelope.template.json"
PACK = SHARED / "packs" / "small_2x4x10x8.json"


def policy_dir(tmp_path: Path, template: dict | str, name: str = "mine") -> Path:
    (tmp_path / "main.policy").write_text(
        f'tokenizer tiktoken "o200k_base"\ntemplate "{name}"\nlimit request_prompt: request_prompt <= 100_000 tokens\n',
        encoding="utf-8",
    )
    (tmp_path / f"{name}.template.json").write_text(
        template if isinstance(template, str) else json.dumps(template), encoding="utf-8"
    )
    return tmp_path


def shipped_doc() -> dict:
    return json.loads(SHIPPED.read_text(encoding="utf-8"))


def test_a_user_template_in_the_policy_directory_changes_the_prompt(tmp_path: Path) -> None:
    doc = shipped_doc()
    doc["name"] = "mine"
    doc["envelope"][0]["const"] = "Alpha Maker v2"
    doc["knowledge_pack"]["max_examples"] = 2
    policy = load_policy(policy_dir(tmp_path, doc))
    assert policy.template == "mine" and policy.template_spec.file.endswith("mine.template.json")
    knowledge = load_knowledge(SHARED / "knowledge_real")
    ours = evaluate(policy, load_pack_file(PACK), knowledge=knowledge)
    shipped = evaluate(load_policy(ROOT / "rules" / "default.policy"), load_pack_file(PACK), knowledge=knowledge)
    assert (
        ours.manifest["template_digest"]
        != shipped.manifest["template_digest"]
        == shipped_template("agent_envelope").digest
    )
    assert ours.metrics["prompt_chars"] < shipped.metrics["prompt_chars"]  # 2 examples and 2 cards instead of 8


@pytest.mark.parametrize(
    "mutate, code, pointer",
    [
        (lambda d: d.pop("json"), "R107", ""),
        (lambda d: d["envelope"].append({"key": "x", "insert": "nowhere"}), "R107", "/envelope/6/insert"),
        (
            lambda d: d["knowledge_pack"]["parts"][0]["entries"][3]["keep_if_any"][0].update(pool="widgets"),
            "R107",
            "/knowledge_pack/parts/0/entries/3/keep_if_any/0/pool",
        ),
        (
            lambda d: d["knowledge_pack"]["parts"][0]["entries"][2].update(count="nothing"),
            "R108",
            "/knowledge_pack/parts/0/entries/2/count",
        ),
        (lambda d: d["envelope"].append({"key": "agent", "const": 1}), "R108", "/envelope/6/key"),
        (
            lambda d: d["knowledge_pack"]["parts"][4]["entries"].append({"key": "v", "copy": "version"}),
            "R108",
            "/knowledge_pack/parts/4/entries/3",
        ),
        (lambda d: d.update(name="other"), "R108", "/name"),
    ],
)
def test_bad_templates_are_reported_with_code_file_and_pointer(
    tmp_path: Path, mutate, code: str, pointer: str, capsys
) -> None:
    doc = shipped_doc()
    doc["name"] = "mine"
    mutate(doc)
    folder = policy_dir(tmp_path, doc)
    with pytest.raises(RuleCheckError) as err:
        load_policy(folder)
    found = [(d.code, d.pointer) for d in err.value.diagnostics]
    assert (code, pointer) in found, found
    assert all(d.file.endswith("mine.template.json") and d.hint for d in err.value.diagnostics)
    assert main(["check", str(folder)]) == ExitCode.INVALID_RULES
    out = capsys.readouterr().out
    assert code in out and "mine.template.json" in out
    assert out.count(code) == sum(1 for c, _ in found if c == code)  # reported once, not per policy


def test_an_unreadable_template_and_an_unknown_name(tmp_path: Path, capsys) -> None:
    folder = policy_dir(tmp_path, "{not json")
    with pytest.raises(RuleCheckError) as err:
        load_policy(folder)
    assert err.value.diagnostics[0].code == "R106"
    assert main(["check", str(folder / "mine.template.json")]) == ExitCode.INVALID_RULES
    (folder / "mine.template.json").unlink()
    with pytest.raises(RuleCheckError) as err:
        load_policy(folder)
    assert err.value.diagnostics[0].code == "E217"


def test_policy_check_accepts_the_shipped_template(capsys) -> None:
    assert main(["check", str(SHIPPED)]) == ExitCode.OK


@pytest.mark.parametrize(
    "file, row, pointer",
    [
        ("operator_signature_pack", {"name": 7}, "/operators/0/name"),
        ("fastexpr_examples_pack", {"used_operators": "ts_rank"}, "/examples/0/used_operators"),
        ("fastexpr_examples_pack", {"used_fields": [1]}, "/examples/0/used_fields"),
    ],
)
def test_knowledge_values_of_the_wrong_type_are_refused(file: str, row: dict, pointer: str) -> None:
    base = load_knowledge(SHARED / "knowledge_real")
    key = {"operator_signature_pack": "operators", "fastexpr_examples_pack": "examples"}[file]
    docs = {**base.documents, file: {**base.documents[file], key: [row]}}
    policy = load_policy(ROOT / "rules" / "default.policy")
    with pytest.raises(PackError) as err:
        evaluate(policy, load_pack_file(PACK), knowledge=KnowledgePack("kdir", MappingProxyType(docs)))
    d = err.value.diagnostics[0]
    assert (d.code, d.pointer, d.file) == ("R109", pointer, f"kdir/{file}.json")


def test_schema_command_prints_the_template_schema(capsys) -> None:
    assert main(["schema", "template"]) == ExitCode.OK
    assert json.loads(capsys.readouterr().out)["title"] == "Prompt template"


def test_every_shipped_template_passes_the_full_check() -> None:
    """Shipped templates skip the schema check at start-up: this is where they get it."""
    from policy_engine.render.template import SHIPPED as NAMES
    from policy_engine.render.template import SUFFIX, check_template

    folder = ROOT / "policy_engine" / "render" / "templates"
    assert NAMES
    for name in NAMES:
        path = folder / f"{name}{SUFFIX}"
        assert check_template(json.loads(path.read_text(encoding="utf-8")), str(path), name) == [], name
