"""How each encoding splits text (its pre-tokenisation pattern) and its special tokens:
what tiktoken builds an `Encoding` from besides the BPE ranks. Held here so the engine
builds the encoding from a verified BPE file itself, without tiktoken's download path,
its cache folder or the environment. tests/tokens checks every entry against the
definitions tiktoken ships (tiktoken_ext.openai_public)."""

from __future__ import annotations

_PAT_0 = "'(?:[sdmt]|ll|ve|re)| ?\\p{L}++| ?\\p{N}++| ?[^\\s\\p{L}\\p{N}]++|\\s++$|\\s+(?!\\S)|\\s"
_PAT_1 = "'(?i:[sdmt]|ll|ve|re)|[^\\r\\n\\p{L}\\p{N}]?+\\p{L}++|\\p{N}{1,3}+| ?[^\\s\\p{L}\\p{N}]++[\\r\\n]*+|\\s++$|\\s*[\\r\\n]|\\s+(?!\\S)|\\s"
_PAT_2 = "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"

#: encoding -> (BPE file, pattern, special tokens, explicit vocabulary size or None)
ENCODINGS: dict[str, tuple[str, str, dict[str, int], int | None]] = {
    "r50k_base": ("r50k_base", _PAT_0, {"<|endoftext|>": 50256}, 50257),
    "p50k_base": ("p50k_base", _PAT_0, {"<|endoftext|>": 50256}, 50281),
    "p50k_edit": (
        "p50k_base",
        _PAT_0,
        {"<|endoftext|>": 50256, "<|fim_prefix|>": 50281, "<|fim_middle|>": 50282, "<|fim_suffix|>": 50283},
        None,
    ),
    "cl100k_base": (
        "cl100k_base",
        _PAT_1,
        {
            "<|endoftext|>": 100257,
            "<|fim_prefix|>": 100258,
            "<|fim_middle|>": 100259,
            "<|fim_suffix|>": 100260,
            "<|endofprompt|>": 100276,
        },
        None,
    ),
    "o200k_base": ("o200k_base", _PAT_2, {"<|endoftext|>": 199999, "<|endofprompt|>": 200018}, None),
    "o200k_harmony": (
        "o200k_base",
        _PAT_2,
        {
            **{
                "<|endoftext|>": 199999,
                "<|endofprompt|>": 200018,
                "<|startoftext|>": 199998,
                "<|reserved_200000|>": 200000,
                "<|reserved_200001|>": 200001,
                "<|return|>": 200002,
                "<|constrain|>": 200003,
                "<|reserved_200004|>": 200004,
                "<|channel|>": 200005,
                "<|start|>": 200006,
                "<|end|>": 200007,
                "<|message|>": 200008,
                "<|reserved_200009|>": 200009,
                "<|reserved_200010|>": 200010,
                "<|reserved_200011|>": 200011,
                "<|call|>": 200012,
            },
            **{f"<|reserved_{i}|>": i for i in range(200013, 201088)},
        },
        None,
    ),
}
