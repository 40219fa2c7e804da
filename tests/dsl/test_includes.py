"""Composition: includes resolve relative to the including file, never leave the policy's
root, and the including file's statements override what it includes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from policy_engine.dsl import check_paths, load_policy
from policy_engine.errors import PolicyError, RuleCheckError

BASE = 'tokenizer tiktoken "o200k_base"\nlimit p: request_prompt <= 100 tokens\nlimit d: day_total <= 900 tokens\n'


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def codes(path: Path) -> list[str]:
    with pytest.raises(RuleCheckError) as err:
        load_policy(path)
    return [d.code for d in err.value.diagnostics]


def test_including_file_overrides_included_values(tmp_path: Path) -> None:
    write(tmp_path / "shared" / "base.policy", BASE)
    main = write(tmp_path / "main.policy", 'include "shared/base.policy"\nlimit p: request_prompt <= 50 tokens\n')
    policy = load_policy(main)
    assert policy.settings.limit("request_prompt").value == 50
    assert policy.settings.limit("day_total").value == 900
    assert [Path(f).name for f in policy.source_files] == ["base.policy", "main.policy"]


def test_later_include_overrides_earlier(tmp_path: Path) -> None:
    write(tmp_path / "a.policy", BASE)
    write(tmp_path / "b.policy", "limit p: request_prompt <= 7 tokens\n")
    main = write(tmp_path / "main.policy", 'include "a.policy"\ninclude "b.policy"\n')
    assert load_policy(main).settings.limit("request_prompt").value == 7


def test_include_is_relative_to_the_including_file(tmp_path: Path) -> None:
    write(tmp_path / "lib" / "inner.policy", BASE)
    write(tmp_path / "lib" / "outer.policy", 'include "inner.policy"\n')
    main = write(tmp_path / "main.policy", 'include "lib/outer.policy"\n')
    assert load_policy(main).settings.limit("request_prompt").value == 100


def test_directory_means_main_policy(tmp_path: Path) -> None:
    write(tmp_path / "main.policy", BASE)
    write(tmp_path / "other.policy", "this is not even valid")
    assert load_policy(tmp_path).settings.limit("request_prompt").value == 100


def test_dotdot_escape_is_refused(tmp_path: Path) -> None:
    write(tmp_path / "outside.policy", BASE)
    main = write(tmp_path / "root" / "main.policy", 'include "../outside.policy"\n')
    assert codes(main) == ["E302"]


def test_absolute_include_is_refused(tmp_path: Path) -> None:
    target = write(tmp_path / "x.policy", BASE)
    main = write(tmp_path / "main.policy", f'include "{target}"\n')
    assert codes(main) == ["E303"]


def test_symlink_out_of_root_is_refused(tmp_path: Path) -> None:
    write(tmp_path / "secret" / "s.policy", BASE)
    root = tmp_path / "root"
    root.mkdir()
    os.symlink(tmp_path / "secret", root / "link")
    main = write(root / "main.policy", 'include "link/s.policy"\n')
    assert codes(main) == ["E302"]


def test_cycle_is_reported_not_looped(tmp_path: Path) -> None:
    write(tmp_path / "a.policy", 'include "b.policy"\n' + BASE)
    write(tmp_path / "b.policy", 'include "a.policy"\n')
    with pytest.raises(RuleCheckError) as err:
        load_policy(tmp_path / "a.policy")
    (d,) = err.value.diagnostics
    assert d.code == "E304" and "a.policy -> b.policy -> a.policy" in d.message


def test_include_depth_is_bounded(tmp_path: Path) -> None:
    for i in range(20):
        write(tmp_path / f"f{i}.policy", f'include "f{i + 1}.policy"\n')
    write(tmp_path / "f20.policy", BASE)
    assert "E305" in codes(tmp_path / "f0.policy")


def test_missing_include_points_at_the_include_line(tmp_path: Path) -> None:
    main = write(tmp_path / "main.policy", BASE + 'include "nope.policy"\n')
    with pytest.raises(RuleCheckError) as err:
        load_policy(main)
    (d,) = err.value.diagnostics
    assert d.code == "E301" and d.span.line == 4 and d.span.file == str(main)


def test_duplicate_within_one_file_is_an_error_but_not_across_files(tmp_path: Path) -> None:
    main = write(tmp_path / "main.policy", BASE + "limit q: request_prompt <= 5 tokens\n")
    assert codes(main) == ["E205"]


def test_check_paths_reports_all_files(tmp_path: Path) -> None:
    write(tmp_path / "a.policy", 'tokenizer tiktoken "nope"\n')
    write(tmp_path / "b.policy", "limit p: request_prompt <= 0 tokens\n")
    problems, texts, checked = check_paths([tmp_path])
    assert checked == 2
    assert sorted(d.code for d in problems) == ["E203", "E208", "E216"]
    assert len(texts) == 2


# ---- amplification bounds (security issue, item 3) ------------------------------------------


def test_diamond_includes_parse_each_file_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Five levels of five files, each including every file of the next level: 5^5 include
    paths, 21 distinct files. Each is parsed once; the policy loads."""
    from policy_engine.dsl import includes

    parsed: list[str] = []
    real_parse = includes.parse
    monkeypatch.setattr(includes, "parse", lambda text, file: parsed.append(file) or real_parse(text, file))
    levels = 4
    for level in range(levels):
        for i in range(5):
            body = (
                "".join(f'include "l{level + 1}_{j}.policy"\n' for j in range(5))
                if level < levels - 1
                else "explore floor 1\n"
            )
            write(tmp_path / f"l{level}_{i}.policy", body)
    main = write(
        tmp_path / "main.policy",
        'tokenizer tiktoken "o200k_base"\nlimit p: request_prompt <= 12_000 tokens\n'
        + "".join(f'include "l0_{i}.policy"\n' for i in range(5)),
    )
    load_policy(main)
    assert len(parsed) == len(set(parsed)) == 1 + 5 * levels


def test_same_file_included_twice_by_one_file_is_e308(tmp_path: Path) -> None:
    write(tmp_path / "common.policy", "explore floor 1\n")
    main = write(
        tmp_path / "main.policy", 'tokenizer tiktoken "o200k_base"\ninclude "common.policy"\ninclude "common.policy"\n'
    )
    with pytest.raises(RuleCheckError) as err:
        load_policy(main)
    (diag,) = err.value.diagnostics
    assert diag.code == "E308" and diag.span is not None and diag.span.line == 3 and "line 2" in diag.message


def test_include_file_count_is_bounded(tmp_path: Path) -> None:
    from policy_engine.dsl.includes import MAX_INCLUDE_FILES

    for i in range(MAX_INCLUDE_FILES + 5):
        write(tmp_path / f"f{i}.policy", "# empty\n")
    main = write(
        tmp_path / "main.policy",
        'tokenizer tiktoken "o200k_base"\n' + "".join(f'include "f{i}.policy"\n' for i in range(MAX_INCLUDE_FILES + 5)),
    )
    assert codes(main) == ["E309"]


def test_include_total_bytes_are_bounded(tmp_path: Path) -> None:
    from policy_engine.dsl.includes import MAX_TOTAL_BYTES
    from policy_engine.dsl.parser import MAX_FILE_BYTES

    filler = "# " + "x" * (MAX_FILE_BYTES - 100) + "\n"
    count = MAX_TOTAL_BYTES // len(filler) + 2
    for i in range(count):
        write(tmp_path / f"big{i}.policy", filler)
    main = write(
        tmp_path / "main.policy",
        'tokenizer tiktoken "o200k_base"\n' + "".join(f'include "big{i}.policy"\n' for i in range(count)),
    )
    assert codes(main) == ["E310"]


def test_include_path_with_nul_is_an_error_not_a_crash(tmp_path: Path) -> None:
    main = write(tmp_path / "main.policy", 'tokenizer tiktoken "o200k_base"\ninclude "a\\u0000b.policy"\n')
    main.write_text('tokenizer tiktoken "o200k_base"\ninclude "a\x00b.policy"\n', encoding="utf-8")
    with pytest.raises(PolicyError) as err:
        load_policy(main)
    assert [d.code for d in err.value.diagnostics] == ["E106"]


@pytest.mark.parametrize(
    "raw, line, column",
    [
        (b"limit p: request_prompt <= 1 tokens\n\xff\xfe\n", 2, 1),
        (b'tokenizer tiktoken "o200k_base"\nexplore\x00 floor 1\n', 2, 8),
    ],
)
def test_rule_file_that_is_not_text_is_e106_with_a_position(tmp_path: Path, raw: bytes, line: int, column: int) -> None:
    path = tmp_path / "bad.policy"
    path.write_bytes(raw)
    with pytest.raises(PolicyError) as err:
        load_policy(path)
    (diag,) = err.value.diagnostics
    assert (diag.code, diag.span.line, diag.span.column) == ("E106", line, column)  # type: ignore[union-attr]
