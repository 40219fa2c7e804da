"""Pack and input error codes (P1xx): code -> (title, how to fix)."""

from __future__ import annotations

CODES: dict[str, tuple[str, str]] = {
    "P101": ("file not found", "check the path; pass a pack file, a directory of *.json packs, or - for stdin"),
    "P102": ("not readable", "check permissions, or that the path is a file and not a directory"),
    "P103": ("not valid JSON", "fix the JSON syntax at the given line and column"),
    "P104": ("duplicate key", "remove one of the duplicated keys; JSON readers disagree on which one wins"),
    "P105": ("NaN or Infinity", "use a finite number; NaN and Infinity are not JSON"),
    "P106": ("file too large", "packs over the size limit are refused; trim the pack upstream"),
    "P107": ("schema violation", "make the value match the retrieval pack schema (policy schema retrieval_pack)"),
    "P108": ("duplicate candidate id", "candidate ids must be unique within a pool"),
    "P109": (
        "dangling reference",
        "a field's dataset_id must name a candidate dataset, a dataset's subcategory_id a selected subcategory",
    ),
    "P110": ("lane lists disagree with candidates", "the lanes lists must name exactly the candidates of that lane"),
    "P111": ("unknown pack format", "name a registered pack format, or let the engine detect it"),
    "P112": ("not a retrieval pack", "the document matches no registered pack format"),
    "P113": (
        "invalid usage snapshot",
        'see policy schema usage: {"batch": {"tokens": N, "usd": "0.01"}, "day": {...}}',
    ),
    "P114": ("invalid seen-combos file", 'give a JSON list of "<field_id>::<operator_name>" strings'),
    "P115": ("empty input", "the file is empty: give a JSON document"),
    "P116": ("invalid policy test-case file", "see `policy test` in the README: a mapping with a `cases` list"),
    "P117": ("no inputs in directory", "pass files, or a directory that contains *.json packs (or case files)"),
    "P118": (
        "number out of range",
        "integers must lie within ±(2^53 - 1) and numbers must be finite; quantities within 0..10^15",
    ),
    "P119": ("nested too deeply", "documents are limited to 64 levels of nesting; flatten it"),
    "P120": (
        "invalid request or usage quantity",
        "token counts and micro-USD amounts are whole numbers from 0 to 10^15",
    ),
    "P121": (
        "lone surrogate in a string",
        "a `\\ud800`-style escape without its pair is not Unicode text (I-JSON): write the character as UTF-8 or escape it as a full pair",
    ),
}
