"""The renderer's memory, owned by whoever builds prompt models (an `Engine`), never by
the module: two engines never share or evict each other's entries, and dropping the
engine drops its memory.

Every cache is content-addressed (a key is the content itself or its digest, so an entry
can never serve another input's text) and bounded: it is simply cleared when full.
"""

from __future__ import annotations

import marshal
from typing import Any

DOC_CACHE_MAX = 256
MODEL_CACHE_MAX = 32
SLOT_STATES_MAX = 4096
#: rendered lists are kilobytes each: fewer of them
SLOT_TEXTS_MAX = 256


def content_key(value: Any) -> bytes | str:
    """A cache key that two JSON values share exactly when they print alike: their marshal
    bytes in format 2, which has no back-references (so equal values give equal bytes,
    whatever objects they happen to share) and tells apart what JSON prints apart (``1``,
    ``1.0`` and ``true``; ``0.0`` and ``-0.0``; key order). It is written in C at about
    three times the speed of ``repr``, which the keys used before. A value marshal refuses
    (another type, from an API caller) is keyed by its ``repr``, in its own key space:
    ``str`` never equals ``bytes``."""
    try:
        return marshal.dumps(value, 2)
    except ValueError:
        return repr(value)


class RenderCaches:
    """Rendered and measured pieces shared by every prompt model built with this object."""

    __slots__ = (
        "brackets",
        "knowledge",
        "knowledge_slots",
        "measures",
        "models",
        "object_brackets",
        "skeletons",
        "slot_states",
        "slot_texts",
        "slots",
    )

    def __init__(self) -> None:
        #: (counter, depth, whether it is the last entry, its content key) -> (parts of an
        #: envelope entry's printed lines, their fixed measure)
        self.skeletons: dict[tuple[Any, ...], tuple[tuple[Any, ...], int]] = {}
        #: (counter, json options, indent, slot key) -> (blocks, comma measures, plain measures: filled when read) of a whole slot
        self.slots: dict[tuple[Any, ...], tuple[dict[str, str], dict[str, int], dict[str, int]]] = {}
        #: the same for the knowledge pack's lists (kept apart: packs come and go, the knowledge pack stays)
        self.knowledge_slots: dict[tuple[Any, ...], tuple[dict[str, str], dict[str, int], dict[str, int]]] = {}
        #: (template digest, knowledge digest, max examples) -> (knowledge skeleton, its list items, their rules)
        self.knowledge: dict[tuple[Any, ...], tuple[dict[str, Any], dict[str, Any], dict[str, Any]]] = {}
        #: (template, pack, idea, knowledge pack, limits) -> (the inputs kept alive, the prompt model): a
        #: pack evaluated again (a gate's retry, a replay, another usage snapshot) reuses its model and memos
        self.models: dict[tuple[Any, ...], tuple[tuple[Any, ...], Any]] = {}
        #: (slot key, ids of the id tuples it follows) -> (those tuples, kept ids, the items'
        #: measure): a list's state for a selection, shared by the models of one run
        #: (identity of the tuples: packs with equal lists share their ladder states)
        self.slot_states: dict[tuple[Any, ...], tuple[tuple[Any, ...], list[str], int]] = {}
        #: (model signature, (pool, id of its ids tuple) per pool) -> (those tuples, the
        #: measure of the model's dynamic parts): the same, for a whole selection
        self.measures: dict[tuple[Any, ...], tuple[tuple[Any, ...], int]] = {}
        #: (slot key, its prefix, suffix and newline, id of the kept ids list) -> (that list,
        #: the list's printed text)
        self.slot_texts: dict[tuple[Any, ...], tuple[list[str], str]] = {}
        #: (counter, indent, text before and after a list) -> measures of its opening line,
        #: its closing line and the empty list's line
        self.brackets: dict[tuple[Any, ...], tuple[int, int, int]] = {}
        #: (counter, key, whether last) -> the opening and closing lines of an envelope entry
        #: printed as its own entries
        self.object_brackets: dict[tuple[Any, ...], tuple[str, str]] = {}

    @staticmethod
    def remember(cache: dict[Any, Any], key: Any, value: Any, bound: int) -> Any:
        if len(cache) >= bound:
            cache.clear()
        cache[key] = value
        return value

    def clear(self) -> None:
        for name in self.__slots__:
            getattr(self, name).clear()
