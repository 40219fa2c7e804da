"""Lark, imported without the third-party `regex` module: the one door through which the
package reaches Lark (dsl/parser.py and dsl/parser_table.py take every Lark name from here).

When `regex` is installed (tiktoken depends on it), Lark imports it as it loads, only to use
it for grammars built with ``regex=True`` or with ``\\p{...}`` classes in a terminal. This
grammar has neither, and importing `regex` costs every start about 14 ms (its pure-Python
core), a third of Lark's own import. So, in the `policy` command's own process only
(`policy_engine.OWN_PROCESS`: a program that imports the engine keeps a Lark that can build
its own ``regex=True`` grammars), Lark is imported with `regex` refused to this thread
only: another thread importing `regex` meanwhile gets it, and a process that has already
imported `regex` hands it to Lark as usual (nothing left to save). Lark then reads its
patterns with the standard `re` module, as it does where `regex` is not installed; the
parser is the same (tests/dsl/test_parser_table.py compares it with the grammar's) and
tests/cli/test_cold_start.py checks a cold evaluation leaves `regex` unimported.
"""

from __future__ import annotations

import sys
from _thread import get_ident
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence
    from importlib.machinery import ModuleSpec
    from types import ModuleType


class _RefuseRegex:
    """A finder that answers "not installed" for `regex`, to the thread that set it only."""

    def __init__(self) -> None:
        self.thread = get_ident()

    def find_spec(
        self, name: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if (name == "regex" or name.startswith("regex.")) and get_ident() == self.thread:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


def _import_lark() -> None:
    import policy_engine

    if "lark" in sys.modules or not policy_engine.OWN_PROCESS:
        # As a library the engine leaves Lark as the host program gets it: a Lark without
        # `regex` would refuse the host's own grammars built with ``regex=True``.
        import lark

        return
    finder = _RefuseRegex()
    sys.meta_path.insert(0, finder)
    try:
        import lark  # noqa: F401 - the import is the point
    finally:
        sys.meta_path.remove(finder)


_import_lark()

from lark import Lark, Token, Transformer, Tree, v_args  # noqa: E402 - after _import_lark, by design
from lark import __version__ as lark_version  # noqa: E402
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, VisitError  # noqa: E402

__all__ = [
    "Lark",
    "Token",
    "Transformer",
    "Tree",
    "UnexpectedCharacters",
    "UnexpectedEOF",
    "UnexpectedInput",
    "VisitError",
    "lark_version",
    "v_args",
]
