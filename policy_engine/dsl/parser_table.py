"""The rule language's LALR parser, built from grammar.lark once, at development time, and
shipped in the package as data (``grammar.lalr``).

Building Lark's LALR tables costs about 150 ms, every process. Lark's own ``cache=True``
would keep them in the temp folder, a write outside the paths the user named. So the built
parser is saved with Lark's own ``save`` into the package and loaded with ``Lark.load``. Its
first line records the sha256 of the grammar and options it was built from and the Lark
version that built it; when they are not the ones in use (an edited grammar, another Lark)
the file is ignored and the parser built in memory: slower, the same parser, nothing written.
tests/dsl/test_parser_table.py proves the shipped table is the one the grammar gives;
``python -m policy_engine.dsl.parser_table`` rewrites it after a grammar change.
"""

from __future__ import annotations

import hashlib
import io
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from policy_engine.dsl.lark_import import Lark, Token, lark_version

PACKAGE = "policy_engine.dsl"
GRAMMAR = "grammar.lark"
TABLE = "grammar.lalr"
#: the package's folder: its data files are read from beside this module (importlib.resources,
#: which would find the same files, costs a cold start ~9 ms of imports: zipfile, tempfile, ...)
HERE = Path(__file__).parent
#: how the parser is built (the lexer callbacks are passed separately)
OPTIONS: dict[str, Any] = {"parser": "lalr", "propagate_positions": True, "maybe_placeholders": False}


def header() -> dict[str, str]:
    """What a table must have been built from to be used: this grammar, these options, this Lark."""
    text = (HERE / GRAMMAR).read_text(encoding="utf-8")
    source = text + json.dumps(OPTIONS, sort_keys=True)
    return {"grammar_sha256": hashlib.sha256(source.encode("utf-8")).hexdigest(), "lark": lark_version}


def build(lexer_callbacks: dict[str, Callable[[Token], Token]]) -> Lark:
    """The parser from the grammar itself (no cache: nothing is written)."""
    return Lark.open_from_package(PACKAGE, GRAMMAR, lexer_callbacks=lexer_callbacks, **OPTIONS)


def table_bytes(lexer_callbacks: dict[str, Callable[[Token], Token]]) -> bytes:
    """The shipped file's content: the header line, then Lark's saved parser. The callbacks
    are saved by reference (their module and name), so ``Lark.load`` restores them."""
    out = io.BytesIO()
    out.write(json.dumps(header(), sort_keys=True).encode("utf-8") + b"\n")
    build(lexer_callbacks).save(out)
    return out.getvalue()


def load(lexer_callbacks: dict[str, Callable[[Token], Token]]) -> Lark:
    """The shipped parser when it was built from the grammar, options and Lark in use; else
    the parser built from the grammar."""
    try:
        data = (HERE / TABLE).read_bytes()
    except OSError:
        return build(lexer_callbacks)
    first, _, saved = data.partition(b"\n")
    try:
        shipped = json.loads(first)
    except ValueError:
        return build(lexer_callbacks)
    if shipped != header():
        return build(lexer_callbacks)
    parser = Lark.load(io.BytesIO(saved))
    if parser.options.lexer_callbacks != lexer_callbacks:  # saved with other callbacks: not ours to use
        return build(lexer_callbacks)
    return parser


def main() -> int:
    """Rewrite the shipped table from the grammar (run after editing grammar.lark)."""
    from policy_engine.dsl.parser import LEXER_CALLBACKS

    path = Path(__file__).resolve().with_name(TABLE)  # the source tree's copy, also under an editable install
    path.write_bytes(table_bytes(LEXER_CALLBACKS))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
