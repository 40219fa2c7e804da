"""dsl/lark_import.py imports Lark without `regex`, refusing it to the importing thread only,
and leaves `regex` importable afterwards."""

from __future__ import annotations

import threading

import pytest

from policy_engine.dsl.lark_import import _RefuseRegex
from tests.conftest import fresh_python


def test_lark_comes_without_regex_and_regex_stays_importable() -> None:
    code = (
        "import sys, policy_engine; policy_engine.OWN_PROCESS = True; "
        "import policy_engine.dsl.parser as p; p.parse('limit a: b <= 1 tokens', 'x'); "
        "print('lark' in sys.modules, 'regex' in sys.modules); "
        "import lark.utils, regex; print(lark.utils._has_regex, regex.__name__, any(type(f).__name__ == '_RefuseRegex' for f in sys.meta_path))"
    )
    assert fresh_python(code).split() == ["True", "False", "False", "regex", "False"]


def test_the_refusal_is_for_the_importing_thread_only() -> None:
    finder = _RefuseRegex()
    with pytest.raises(ModuleNotFoundError):
        finder.find_spec("regex")
    with pytest.raises(ModuleNotFoundError):
        finder.find_spec("regex._regex_core")
    assert finder.find_spec("re") is None and finder.find_spec("regexp") is None
    seen: list[object] = []
    other = threading.Thread(target=lambda: seen.append(finder.find_spec("regex")))
    other.start()
    other.join()
    assert seen == [None]


def test_a_program_importing_the_engine_keeps_lark_with_regex() -> None:
    """As a library the engine must not change how Lark loads for its host: a host grammar
    built with ``regex=True`` still works after the engine parsed rules."""
    code = (
        "import policy_engine.dsl.parser as p; p.parse('limit a: b <= 1 tokens', 'x'); "
        "import lark; print(lark.Lark('start: /\\\\p{Lu}+/', regex=True).parse('AB').children[0])"
    )
    assert fresh_python(code).split() == ["AB"]
