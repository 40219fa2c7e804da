"""Token counting as the engine counts: exact tiktoken encodings, offline, or the rough
chars-per-token estimator when (and only when) a rule file names it."""

from __future__ import annotations

from policy_engine.tokens.counter import RoughCounter, TiktokenCounter, TokenCounter, get_counter, new_counter
from policy_engine.tokens.resolve import KNOWN_ENCODINGS, encoding_for_model, resolve_encoding

__all__ = [
    "KNOWN_ENCODINGS",
    "RoughCounter",
    "TiktokenCounter",
    "TokenCounter",
    "encoding_for_model",
    "get_counter",
    "new_counter",
    "resolve_encoding",
]
