"""The input boundary: every file the engine reads passes through here.

Reading untrusted input is where a policy engine must be total: bytes that are not UTF-8,
a file bigger than any real pack, a number with ten thousand digits, a YAML alias bomb or a
document nested a million levels deep each become a coded `Diagnostic` with a location,
never a traceback and never unbounded work. Callers choose the exception class and the
code prefix of their layer; the checks and their bounds are the same for every reader.
"""

from __future__ import annotations

from typing import Any

from policy_engine.reading.bounds import DEFAULT_BOUNDS, Bounds
from policy_engine.reading.files import decode_utf8, read_bounded
from policy_engine.reading.json_text import parse_json_text, read_json_file

__all__ = [
    "DEFAULT_BOUNDS",
    "Bounds",
    "decode_utf8",
    "parse_json_text",
    "parse_yaml_text",
    "read_bounded",
    "read_json_file",
]


def __getattr__(name: str) -> Any:
    """`parse_yaml_text` is imported on first use: PyYAML costs start-up time and only case
    files and configs are YAML."""
    if name == "parse_yaml_text":
        from policy_engine.reading.yaml_text import parse_yaml_text

        return parse_yaml_text
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
