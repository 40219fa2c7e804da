"""Exact, offline token counting; the additivity the evaluator's arithmetic relies on."""

from __future__ import annotations

import gzip
import json
import os
import re
from decimal import Decimal
from pathlib import Path

import pytest
import tiktoken
import tiktoken_ext.openai_public as openai_public

from policy_engine.errors import TokenizerError
from policy_engine.policy import Tokenizer
from policy_engine.tokens import get_counter, resolve_encoding
from policy_engine.tokens import resolve as resolve_module
from tests.conftest import SHARED

PROMPTS = sorted((SHARED / "agent_prompts").glob("*.txt"))


def test_expected_hashes_equal_tiktokens_own() -> None:
    source = Path(openai_public.__file__).read_text()
    for name, digest in resolve_module.EXPECTED_SHA256.items():
        assert re.search(rf"{name}\.tiktoken\",\s*expected_hash=\"{digest}\"", source), name


@pytest.mark.parametrize("encoding", ["cl100k_base", "o200k_base"])
def test_encodings_load_offline_and_count(encoding: str) -> None:
    counter = get_counter(Tokenizer("tiktoken", encoding))
    assert counter.exact and counter.vocab_hash == resolve_module.EXPECTED_SHA256[encoding]
    assert counter.count("hello world") == 2


def test_reference_counts_of_the_agents_final_prompt() -> None:
    # step20-reference.md: the agent's allowed seed prompt is 12,002 tokens in cl100k_base.
    text = (SHARED / "agent_prompts" / "seed_5x15x72x60.after-default-ladder.prompt.txt").read_text()
    assert get_counter(Tokenizer("tiktoken", "cl100k_base")).count(text) == 12002


@pytest.mark.parametrize("encoding", ["cl100k_base", "o200k_base"])
@pytest.mark.parametrize("prompt", PROMPTS, ids=lambda p: p.name)
def test_newline_terminated_pieces_sum_to_the_whole(encoding: str, prompt: Path) -> None:
    counter = get_counter(Tokenizer("tiktoken", encoding))
    text = prompt.read_text()
    pieces = text.splitlines(keepends=True)
    assert sum(counter.measure(p) for p in pieces) == counter.count(text)


def test_model_names_map_through_tiktoken() -> None:
    assert get_counter(Tokenizer("model", "gpt-4o")).encoding_name == "o200k_base"
    assert get_counter(Tokenizer("model", "gpt-4")).encoding_name == "cl100k_base"


def test_special_token_text_is_ordinary_text() -> None:
    assert get_counter(Tokenizer("tiktoken", "cl100k_base")).count("<|endoftext|>") > 1


def test_rough_counter_is_ceil_chars_over_ratio() -> None:
    rough = get_counter(Tokenizer("rough", chars_per_token=Decimal(4)))
    assert (rough.count("a" * 8), rough.count("a" * 9), rough.exact) == (2, 3, False)
    assert rough.finish(rough.measure("abc") + rough.measure("de")) == 2
    assert get_counter(Tokenizer("rough", chars_per_token=Decimal("3.5"))).count("a" * 8) == 3


@pytest.mark.parametrize("bad", [Decimal(0), Decimal(-1), Decimal("NaN")])
def test_rough_ratio_must_be_positive(bad: Decimal) -> None:
    with pytest.raises(TokenizerError):
        get_counter(Tokenizer("rough", chars_per_token=bad))


def test_unknown_encoding_and_model() -> None:
    with pytest.raises(TokenizerError) as err:
        resolve_encoding("cl100k_bse")
    assert err.value.diagnostics[0].code == "T101" and "cl100k_base" in err.value.diagnostics[0].hint
    with pytest.raises(TokenizerError) as err:
        get_counter(Tokenizer("model", "no-such-model"))
    (d,) = err.value.diagnostics
    assert (d.code, d.message) == ("T102", "unknown model 'no-such-model': tiktoken maps no encoding to it")
    assert d.hint == 'name the encoding instead (tokenizer tiktoken "o200k_base"), or a model such as gpt-4o or gpt-4'


def test_env_dir_is_used_and_a_corrupt_file_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POLICY_ENGINE_TIKTOKEN_DIR", str(tmp_path))
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(
        resolve_module,
        "_candidates",
        lambda name: [c for c in resolve_module.__dict__["_all_candidates"](name) if "bpe-openai" not in c[0]],
    )
    (tmp_path / "p50k_base.tiktoken").write_bytes(b"garbage 1\n")
    resolve_encoding.cache_clear()
    with pytest.raises(TokenizerError) as err:
        resolve_encoding("p50k_base")
    d = err.value.diagnostics[0]
    assert d.code == "T104" and "sha256 mismatch" in d.message
    resolve_encoding.cache_clear()


def test_unavailable_encoding_says_how_to_provide_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("POLICY_ENGINE_TIKTOKEN_DIR", raising=False)
    resolve_encoding.cache_clear()
    with pytest.raises(TokenizerError) as err:
        resolve_encoding("r50k_base")
    d = err.value.diagnostics[0]
    assert d.code == "T103"
    assert (
        "POLICY_ENGINE_TIKTOKEN_DIR" in d.hint
        and "r50k_base.tiktoken" in d.hint
        and resolve_module.EXPECTED_SHA256["r50k_base"] in d.hint
    )
    resolve_encoding.cache_clear()


def test_env_dir_with_a_good_gzipped_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    bundled = (
        Path(importlib.util.find_spec("bpe_openai").submodule_search_locations[0]) / "data" / "cl100k_base.tiktoken.gz"
    )
    (tmp_path / "cl100k_base.tiktoken.gz").write_bytes(bundled.read_bytes())
    monkeypatch.setenv("POLICY_ENGINE_TIKTOKEN_DIR", str(tmp_path))
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "cache"))
    resolve_encoding.cache_clear()
    resolved = resolve_encoding("cl100k_base")
    assert "POLICY_ENGINE_TIKTOKEN_DIR" in resolved.source
    assert resolved.encoding.encode_ordinary("hello world") == [15339, 1917]
    assert len(gzip.decompress(bundled.read_bytes())) > 1_000_000
    resolve_encoding.cache_clear()


def test_an_unavailable_encoding_points_at_the_rules_tokenizer_line(tmp_path, monkeypatch) -> None:
    """T103 names the rule file, line and column of the `tokenizer` statement, not `<input>`."""
    from policy_engine.dsl import load_policy
    from policy_engine.errors import TokenizerError
    from policy_engine.tokens import get_counter

    rules = tmp_path / "r.policy"
    rules.write_text('# header\ntokenizer tiktoken "r50k_base"\n', encoding="utf-8")
    monkeypatch.setenv("POLICY_ENGINE_TIKTOKEN_DIR", str(tmp_path))
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    policy = load_policy(rules)
    try:
        get_counter(policy.tokenizer)
    except TokenizerError as exc:
        span = exc.diagnostics[0].span
        assert exc.diagnostics[0].code == "T103"
        assert span is not None and (span.file, span.line, span.column) == (str(rules), 2, 1)
    else:
        raise AssertionError("r50k_base resolved without its file")


def test_encoding_table_matches_the_definitions_tiktoken_ships(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pattern, special tokens and vocabulary size of every encoding we build equal tiktoken's
    own constructors' (their BPE loader stubbed: only the ranks come from elsewhere)."""
    import tiktoken_ext.openai_public as public

    from policy_engine.tokens.encodings import ENCODINGS

    monkeypatch.setattr(public, "load_tiktoken_bpe", lambda *a, **k: {})
    for name, (_, pattern, special, n_vocab) in ENCODINGS.items():
        spec = public.ENCODING_CONSTRUCTORS[name]()
        assert (pattern, special, n_vocab) == (spec["pat_str"], spec["special_tokens"], spec.get("explicit_n_vocab")), (
            name
        )


def test_resolving_writes_nothing_and_leaves_the_environment_alone(tmp_path: Path) -> None:
    """A fresh process resolves o200k_base with tiktoken's cache pointed at an empty folder:
    the folder stays empty, os.environ is unchanged, and counts equal tiktoken's."""
    import subprocess
    import sys

    cache = tmp_path / "cache"
    cache.mkdir()
    script = (
        "import os, json\n"
        "before = dict(os.environ)\n"
        "from policy_engine.tokens import resolve_encoding\n"
        "r = resolve_encoding('o200k_base')\n"
        "print(json.dumps([dict(os.environ) == before, len(r.encoding.encode_ordinary('hello world, <|endoftext|>')), r.source]))\n"
    )
    env = {**os.environ, "TIKTOKEN_CACHE_DIR": str(cache), "TMPDIR": str(tmp_path)}
    env.pop("POLICY_ENGINE_TIKTOKEN_DIR", None)
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True, timeout=120
    ).stdout
    same_env, count, source = json.loads(out)
    assert same_env and "bpe-openai" in source
    assert count == 10  # what tiktoken.get_encoding("o200k_base") gives
    assert list(cache.iterdir()) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["cache"]


@pytest.mark.parametrize("encoding", ["cl100k_base", "o200k_base"])
def test_ranks_equal_tiktokens_own_reading_of_the_file(
    encoding: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fast reading of a BPE file (one split, decoded in C) gives tiktoken's own
    `load_tiktoken_bpe` result, key order included, and the encoding built from it encodes
    as tiktoken's own `Encoding` built from tiktoken's ranks does."""
    import gzip
    import importlib.util

    from tiktoken.load import load_tiktoken_bpe

    from policy_engine.tokens.encodings import ENCODINGS
    from policy_engine.tokens.resolve import EXPECTED_SHA256, LINE_NUMBER_RANKS, _ranks, build_encoding

    bundled = Path(importlib.util.find_spec("bpe_openai").submodule_search_locations[0]) / "data"
    data = gzip.decompress((bundled / f"{encoding}.tiktoken.gz").read_bytes())
    plain = tmp_path / f"{encoding}.tiktoken"
    plain.write_bytes(data)
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "")  # tiktoken reads the file without caching it
    theirs = load_tiktoken_bpe(str(plain), expected_hash=EXPECTED_SHA256[encoding])
    assert EXPECTED_SHA256[encoding] in LINE_NUMBER_RANKS  # so both readings are checked
    for ours in (_ranks(data), _ranks(data, EXPECTED_SHA256[encoding])):
        assert list(ours.items()) == list(theirs.items())
    _, pattern, special, n_vocab = ENCODINGS[encoding]
    reference = tiktoken.Encoding(
        encoding, pat_str=pattern, mergeable_ranks=theirs, special_tokens=dict(special), explicit_n_vocab=n_vocab
    )
    built = build_encoding(encoding, data, EXPECTED_SHA256[encoding])
    samples = [p.read_text(encoding="utf-8") for p in PROMPTS]
    samples += ["hello world, <|endoftext|> ünïcödé 漢字 🙂 \r\n\t  ", "x" * 3000, ""]
    assert len(samples) > 3
    for sample in samples:
        assert built.encode_ordinary(sample) == reference.encode_ordinary(sample)


def test_line_number_ranks_names_only_files_whose_ranks_are_their_line_numbers() -> None:
    """Every file `LINE_NUMBER_RANKS` lets skip its rank column is one checked here."""
    import gzip
    import hashlib
    import importlib.util

    from policy_engine.tokens.resolve import LINE_NUMBER_RANKS

    bundled = Path(importlib.util.find_spec("bpe_openai").submodule_search_locations[0]) / "data"
    checked = set()
    for path in sorted(bundled.glob("*.tiktoken.gz")):
        data = gzip.decompress(path.read_bytes())
        digest = hashlib.sha256(data).hexdigest()
        if digest in LINE_NUMBER_RANKS:
            ranks = data.split()[1::2]
            assert ranks == [str(i).encode() for i in range(len(ranks))], path.name
            checked.add(digest)
    assert checked == LINE_NUMBER_RANKS
