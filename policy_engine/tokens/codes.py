"""Tokenizer error codes (T1xx): code -> (title, how to fix)."""

from __future__ import annotations

CODES: dict[str, tuple[str, str]] = {
    "T101": ("unknown encoding", "use one of the encodings tiktoken knows, e.g. cl100k_base or o200k_base"),
    "T102": (
        "unknown model",
        "name a model tiktoken maps to an encoding (gpt-4o, gpt-4, ...) or name the encoding itself",
    ),
    "T103": (
        "encoding file unavailable offline",
        "set POLICY_ENGINE_TIKTOKEN_DIR to a folder holding <encoding>.tiktoken (or .tiktoken.gz), "
        "or install the bpe-openai package, or pre-fill tiktoken's cache (TIKTOKEN_CACHE_DIR)",
    ),
    "T104": (
        "encoding file corrupted",
        "the file's sha256 differs from tiktoken's expected hash: replace it with the official file",
    ),
    "T105": ("invalid rough ratio", "chars per token must be a finite number greater than 0"),
}
