"""Indented JSON, byte for byte what ``json.dumps(value, indent=N, ...)`` prints, at C speed.

The standard library serialises in C only without ``indent``; with it, it falls back to
its pure-Python encoder, which was the largest cost of writing a corpus's decisions and of
printing each pack's envelope the way the agent does. Here the C encoder writes the
compact text (same escaping, same number forms, same key order) and msgspec's
``json.format`` re-lays it out with the indentation: only whitespace between tokens
changes, and the layout rules are json's own (``": "`` after keys, one item per line,
``[]`` and ``{}`` for empty containers). tests/test_pretty_json.py compares the two on
generated JSON values.

Importing msgspec costs about 12 ms (it brings uuid, platform, datetime and
typing_extensions), more than the pure-Python encoder spends on everything one pack's
evaluation and decision print (about 4 ms). So the choice is a ski rental: values go
through ``json.dumps`` until that has cost as much time as the import, then msgspec is
imported and used from then on. A one-pack run never pays for the import; a corpus pays
it after a few packs, and at most the import's cost twice. The text is the same either way.
"""

from __future__ import annotations

import json
import sys
from time import perf_counter
from typing import Any

#: seconds of pure-Python indenting after which importing msgspec pays (its import's cost)
RENT_LIMIT = 0.012


class _Rent:
    """The time spent indenting in pure Python so far (module state: one process, one rent)."""

    spent = 0.0


def dumps_indented(value: Any, *, indent: int, ensure_ascii: bool = True, sort_keys: bool = False) -> str:
    """``json.dumps(value, indent=indent, ensure_ascii=ensure_ascii, sort_keys=sort_keys)``."""
    if indent <= 0:  # json puts newlines without indentation there: not msgspec's layout
        return json.dumps(value, indent=indent, ensure_ascii=ensure_ascii, sort_keys=sort_keys)
    if _Rent.spent < RENT_LIMIT and "msgspec" not in sys.modules:
        start = perf_counter()
        text = json.dumps(value, indent=indent, ensure_ascii=ensure_ascii, sort_keys=sort_keys)
        _Rent.spent += perf_counter() - start
        return text
    import msgspec

    compact = json.dumps(value, ensure_ascii=ensure_ascii, sort_keys=sort_keys)
    return msgspec.json.format(compact, indent=indent)
