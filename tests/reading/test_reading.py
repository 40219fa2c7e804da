"""The input boundary (security issue items 2 and 5, bad-input issue): every reader is
bounded and strict, and a pack's content can never make the engine read a file."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest

from policy_engine.cli.main import main
from policy_engine.errors import PackError, UsageInputError
from policy_engine.packs import load_pack, read_pack_document
from policy_engine.reading import parse_json_text, parse_yaml_text, read_json_file
from policy_engine.reading.bounds import PACK_BOUNDS, SMALL_DOCUMENT_BOUNDS
from tests.conftest import ROOT

SMALL = ROOT / "examples" / "packs" / "small_2x4x10x8.json"


def code_of(fn, *args, **kwargs) -> str:
    with pytest.raises((PackError, UsageInputError)) as err:
        fn(*args, **kwargs)
    return err.value.diagnostics[0].code


# ---- a pack is a JSON object, never a path ----------------------------------------------


@pytest.mark.parametrize("target", ["/etc/passwd", "/dev/zero", "/dev/stdin"])
def test_a_pack_whose_json_is_a_string_is_refused_not_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], target: str
) -> None:
    pack = tmp_path / "r.json"
    pack.write_text(json.dumps(target), encoding="utf-8")
    for command in ("explain", "eval"):
        assert main([command, str(pack)]) == 4
        out = capsys.readouterr()
        assert "P112" in out.out + out.err and "root:" not in out.out + out.err


def test_load_pack_refuses_strings_and_paths() -> None:
    assert code_of(load_pack, str(SMALL)) == "P112"
    assert code_of(load_pack, SMALL) == "P112"
    assert code_of(load_pack, ["not", "a", "pack"]) == "P112"


def test_a_cyclic_python_pack_is_refused_not_looped() -> None:
    doc = json.loads(SMALL.read_text())
    doc["telemetry"] = {"loop": doc}
    assert code_of(load_pack, doc) == "P119"


def test_api_refuses_a_path_for_the_pack() -> None:
    from policy_engine.api import evaluate_pack, load_policy

    policy = load_policy(ROOT / "rules" / "default.policy")
    assert code_of(evaluate_pack, policy, str(SMALL)) == "P112"


# ---- size bounds, on every reader, stdin included ---------------------------------------


def test_stdin_is_bounded_like_a_file(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    huge = b'{"x": "' + b"a" * (PACK_BOUNDS.max_bytes + 10) + b'"}'
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(huge)))
    assert main(["eval", "-", "--format", "json"]) == 4
    assert "P106" in capsys.readouterr().err


def test_a_device_is_read_only_up_to_the_bound() -> None:
    assert code_of(read_json_file, "/dev/zero", bounds=SMALL_DOCUMENT_BOUNDS) == "P106"


@pytest.mark.parametrize("size", [0, 1, 99, 100, 101, 150])
def test_a_file_is_read_whole_up_to_the_bound_and_refused_beyond(tmp_path: Path, size: int) -> None:
    """The read asks for the file's size (plus a byte), not the bound: the same bytes, the
    same verdict at the bound's edges."""
    from policy_engine.reading.bounds import Bounds
    from policy_engine.reading.files import read_bounded

    path = tmp_path / "f.bin"
    path.write_bytes(b"x" * size)
    if size <= 100:
        assert read_bounded(path, Bounds(max_bytes=100), error=PackError) == (b"x" * size, str(path))
    else:
        assert code_of(read_bounded, path, Bounds(max_bytes=100), error=PackError) == "P106"


def test_a_file_that_grows_past_its_stat_size_is_read_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``stat`` is only a hint: a file longer than it said (written meanwhile) is read on,
    up to the bound."""
    import os

    from policy_engine.reading.bounds import Bounds
    from policy_engine.reading.files import read_bounded

    path = tmp_path / "f.bin"
    path.write_bytes(b"y" * 60)
    real = os.fstat

    def stale(fd: int) -> os.stat_result:
        st = real(fd)
        return os.stat_result((st.st_mode, st.st_ino, st.st_dev, st.st_nlink, st.st_uid, st.st_gid, 10, *st[7:10]))

    monkeypatch.setattr(os, "fstat", stale)
    assert read_bounded(path, Bounds(max_bytes=100), error=PackError)[0] == b"y" * 60
    path.write_bytes(b"y" * 101)
    assert code_of(read_bounded, path, Bounds(max_bytes=100), error=PackError) == "P106"


def test_a_name_too_long_is_an_error_not_a_crash() -> None:
    assert code_of(read_json_file, "x" * 5000 + ".json") == "P102"


# ---- strict JSON --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, code",
    [
        ('{"a": 1' + "0" * 5000 + "}", "P118"),
        ('{"a": 9007199254740992}', "P118"),
        ('{"a": -9007199254740992}', "P118"),
        ('{"a": 1e400}', "P118"),
        ('{"a": NaN}', "P105"),
        ('{"a": -Infinity}', "P105"),
        ('{"a": 1, "a": 2}', "P104"),
        ("[" * 100_000 + "]" * 100_000, "P119"),
        ("[" * 70 + "]" * 70, "P119"),
        ("   ", "P115"),
    ],
)
def test_strict_json_refusals(text: str, code: str) -> None:
    assert code_of(parse_json_text, text, "x.json") == code


def test_largest_allowed_integer_passes() -> None:
    assert parse_json_text('{"a": 9007199254740991}', "x.json") == {"a": 9007199254740991}


def test_not_utf8_names_the_byte_offset(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_bytes(b'{"a": "\xc3\x28"}')
    with pytest.raises(PackError) as err:
        read_pack_document(path)
    assert err.value.diagnostics[0].code == "P103" and "byte offset 7" in err.value.diagnostics[0].message


# ---- YAML case files ----------------------------------------------------------------------

LAUGHS = (
    "a: &a [x, x, x, x, x, x, x, x, x]\n"
    + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
        for i in range(8)
    )
    + "cases: []\n"
)


@pytest.mark.parametrize(
    "text, needle",
    [
        (LAUGHS, "aliases"),
        ("cases: [1" + "0" * 5000 + "]", "Error"),
        ("cases:\n  - {pack: p.json, expect: {prompt_tokens: {max: .nan}}}\n", "finite"),
        ("? [a, b]\n: 1\n", "YAML"),
        ("{1: x}\n", "keys"),
    ],
)
def test_hostile_yaml_is_refused(text: str, needle: str) -> None:
    with pytest.raises(UsageInputError) as err:
        parse_yaml_text(text, "cases.yaml", error=UsageInputError, code="P116", bounds=SMALL_DOCUMENT_BOUNDS)
    assert err.value.diagnostics[0].code == "P116"


@pytest.mark.parametrize(
    "case, pointer",
    [
        ({"pack": "p.json", "expect": {"topk": {"fields": "many"}}}, "/cases/0/expect/topk/fields"),
        ({"pack": "p.json", "expect": {"prompt_tokens": {"max": [1]}}}, "/cases/0/expect/prompt_tokens/max"),
        ({"pack": "p.json", "completion_tokens": -5, "expect": {}}, "/cases/0/completion_tokens"),
        ({"pack": 7, "expect": {}}, "/cases/0/pack"),
        ({"pack": "p.json", "expect": "allowed"}, "/cases/0/expect"),
        ({"pack": "p.json", "expect": {}, "expansion": "yes"}, "/cases/0/expansion"),
    ],
)
def test_case_files_are_validated_with_pointers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: dict, pointer: str
) -> None:
    path = tmp_path / "cases.yaml"
    path.write_text(json.dumps({"cases": [case]}), encoding="utf-8")
    assert main(["test", str(path)]) == 4
    err = capsys.readouterr().err
    assert "P116" in err and pointer in err


def test_a_case_whose_pack_is_missing_exits_4(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "cases.yaml"
    path.write_text("cases:\n  - {name: gone, pack: missing.json, expect: {outcome: allowed}}\n", encoding="utf-8")
    assert main(["test", str(path)]) == 4
    assert "P101" in capsys.readouterr().out


def test_eval_of_an_invalid_pack_with_trimmed_pack_exits_4(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"idea_id": 1}', encoding="utf-8")
    assert main(["eval", str(bad), "--trimmed-pack", str(tmp_path / "t.json"), "--format", "json"]) == 4
    assert not (tmp_path / "t.json").exists()
    capsys.readouterr()


def test_signaling_nan_rough_ratio_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tokens", "hello", "--rough", "sNaN"]) == 64
    assert "C105" in capsys.readouterr().err


# ---- lone UTF-16 surrogates: valid JSON grammar, not Unicode text -----------------------


def _with_name(raw_name: str) -> str:
    """The small pack's text with its first dataset's name replaced by a raw JSON string body."""
    doc = json.loads(SMALL.read_text(encoding="utf-8"))
    doc["candidate_datasets"][0]["name"] = "@@NAME@@"
    return json.dumps(doc).replace("@@NAME@@", raw_name)


@pytest.mark.parametrize("raw", ["\\ud800", "x\\udfff", "\\ud83d", "\\ude00\\ud83d"])
def test_a_lone_surrogate_is_refused_at_its_pointer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], raw: str
) -> None:
    pack = tmp_path / "s.json"
    pack.write_text(_with_name(raw), encoding="utf-8")
    with pytest.raises(PackError) as err:
        read_pack_document(pack)
    (diag,) = err.value.diagnostics
    assert (diag.code, diag.pointer) == ("P121", "/candidate_datasets/0/name")
    assert main(["eval", str(pack)]) == 4
    out = capsys.readouterr()
    assert "P121" in out.out + out.err and "Traceback" not in out.err and "internal error" not in out.err


def test_a_lone_surrogate_in_a_key_is_shown_escaped() -> None:
    with pytest.raises(PackError) as err:
        parse_json_text('{"ok": {"bad\\udc00": 1}}', "k.json")
    assert err.value.diagnostics[0].pointer == "/ok/bad\\udc00"


@pytest.mark.parametrize("raw", ["\\ud83d\\ude00", "\\\\ud800", "\\u00e9", "plain"])
def test_pairs_and_look_alikes_are_text(raw: str) -> None:
    doc = parse_json_text(_with_name(raw), "p.json")
    name = doc["candidate_datasets"][0]["name"]
    assert name == json.loads(f'"{raw}"')
    load_pack(doc)  # and the pack loads


@pytest.mark.parametrize(("copy", "kind"), [(True, str), (False, str), (True, type("Text", (str,), {}))])
def test_an_api_document_with_a_lone_surrogate_is_refused(copy: bool, kind: type[str]) -> None:
    """On the fast path, and on the precise one (a str subclass is not a plain JSON value)."""
    doc = json.loads(SMALL.read_text(encoding="utf-8"))
    doc["candidate_fields"][1]["description"] = kind("x\ud800")
    with pytest.raises(PackError) as err:
        load_pack(doc, copy=copy, file="api")
    assert [(d.code, d.pointer) for d in err.value.diagnostics] == [("P121", "/candidate_fields/1/description")]


def test_other_json_inputs_refuse_lone_surrogates_too(tmp_path: Path) -> None:
    usage = tmp_path / "usage.json"
    usage.write_text('{"batch": {"tokens": 1, "note": "\\ud800"}}', encoding="utf-8")
    with pytest.raises(UsageInputError) as err:
        read_json_file(usage, error=UsageInputError)
    assert err.value.diagnostics[0].code == "P121"
