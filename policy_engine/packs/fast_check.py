"""The valid-pack fast path: one pass that says whether an agent-format pack document is
valid, without building a single error.

Measured on the seed pack, jsonschema's validator costs several decisions' worth of time
and fastjsonschema's generated code still walks the document once per keyword; this check
walks it once, answering yes or no. `True` means exactly what an empty
`validate_pack_document` means (JSON values only, the schema, the cross-references); on
`False` the loader runs that precise path, which reports every problem with its JSON
Pointer. tests/packs/test_fast_check.py holds the two to the same verdict on fuzzed packs.
The walk is bounded by the nesting limit, so a cyclic or too-deep document ends it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from policy_engine.reading.bounds import MAX_JSON_INTEGER, PACK_BOUNDS

_MAX_DEPTH = PACK_BOUNDS.max_depth
_LANES = ("exploit", "explore")
_OBJECT_KEYS = ("budget_policy", "context_guard", "visual_graph", "token_estimate", "telemetry")
_isfinite = math.isfinite


def _json(value: Any, depth: int) -> bool:
    """A plain JSON value nested at most the limit. Conservative: anything but the exact
    built-in types (a str subclass, a tuple) says no and leaves it to the precise path."""
    kind = type(value)
    if kind is str or value is None or kind is bool:
        return True
    if depth >= _MAX_DEPTH:
        return False
    if kind is dict:
        depth += 1
        for key, item in value.items():  # noqa: SIM110 - a plain loop: this is the hot path, all() adds a generator frame per value
            if type(key) is not str or not _json(item, depth):
                return False
        return True
    if kind is list:
        depth += 1
        for item in value:  # noqa: SIM110 - see above
            if not _json(item, depth):
                return False
        return True
    if kind is int:
        return bool(-MAX_JSON_INTEGER <= value <= MAX_JSON_INTEGER)
    if kind is float:
        return _isfinite(value)
    return False


def _number(value: Any) -> bool:
    kind = type(value)
    if kind is float:
        return _isfinite(value)
    return kind is int and -MAX_JSON_INTEGER <= value <= MAX_JSON_INTEGER


def _strings(value: Any, non_empty: bool = False) -> bool:
    if type(value) is not list:
        return False
    if value and set(map(type, value)) != {str}:
        return False
    return not (non_empty and "" in value)


def _candidates(
    items: Any,
    id_key: str,
    required: frozenset[str],
    string_keys: frozenset[str],
    non_empty: frozenset[str],
    parent_key: str | None,
    parents: Any,
    lane_ids: dict[str, list[str]],
) -> set[str] | None:
    """The pool's ids when every candidate is a valid object (and its parent is listed),
    else None. Candidates are at depth 2 (pack, list, object): their values at 3."""
    if type(items) is not list:
        return None
    ids: set[str] = set()
    for item in items:
        if type(item) is not dict or not required <= item.keys():
            return None
        for key, value in item.items():
            if type(value) is str:
                if (not value and key in non_empty) or key == "score" or (key == "scope" and id_key == "name"):
                    return None
            elif key in string_keys:  # a string key holding a non-string (or a str subclass)
                return None
            elif key == "score":
                if not _number(value):
                    return None
            elif key == "scope" and id_key == "name":
                if not _strings(value):
                    return None
            elif type(key) is not str or not _json(value, 3):
                return None
        ident = item[id_key]
        if ident in ids:
            return None
        ids.add(ident)
        lane = item["lane"]
        if lane != "exploit" and lane != "explore":
            return None
        if parent_key is not None and item[parent_key] not in parents:
            return None
        lane_ids[lane].append(ident)
    return ids


_DATASET = (
    frozenset({"id", "subcategory_id", "lane", "score"}),
    frozenset({"id", "subcategory_id", "lane", "name"}),
    frozenset({"id", "subcategory_id"}),
)
_FIELD = (
    frozenset({"id", "dataset_id", "lane", "score"}),
    frozenset({"id", "dataset_id", "lane", "type"}),
    frozenset({"id", "dataset_id"}),
)
_OPERATOR = (
    frozenset({"name", "lane", "score"}),
    frozenset({"name", "lane", "definition", "category"}),
    frozenset({"name"}),
)
_KNOWN = frozenset(
    {
        "idea_id",
        "query",
        "target",
        "selected_subcategories",
        "candidate_datasets",
        "candidate_fields",
        "candidate_operators",
        "lanes",
    }
)


#: the parts whose validity depends on each other (ids, parents, lanes): checked together
_STRUCTURE = ("selected_subcategories", "candidate_datasets", "candidate_fields", "candidate_operators", "lanes")
#: verdicts by content (a part's content key: its marshal bytes or the reader's JSON text,
#: see `packs._content_parts`): a run's packs mostly share their lists, and equal keys are
#: equal plain JSON values (both kinds tell every type apart), whose verdict is the same.
#: Bounded: cleared when full.
_STRUCTURE_VERDICTS: dict[tuple[bytes, ...], bool] = {}
_PART_VERDICTS: dict[tuple[str, bytes], bool] = {}
_MEMO_MAX = 512


def _remember(memo: dict[Any, bool], key: Any, verdict: bool) -> bool:
    if len(memo) >= _MEMO_MAX:
        memo.clear()
    memo[key] = verdict
    return verdict


def pack_is_valid(doc: Any, parts: Mapping[str, bytes] | None = None) -> bool:
    """True only if the agent-format pack `doc` has no problem at all (see the module doc).
    ``parts`` (top-level key -> its value's content key), when given, lets verdicts on
    parts seen before in this process stand."""
    if type(doc) is not dict:
        return False
    try:
        for key, value in doc.items():
            if type(key) is not str:
                return False
            if key in _KNOWN:
                continue
            data = parts.get(key) if parts is not None else None
            verdict = _PART_VERDICTS.get((key, data)) if data is not None else None
            if verdict is None:
                verdict = (key not in _OBJECT_KEYS or type(value) is dict) and _json(value, 1)
                if data is not None:
                    _remember(_PART_VERDICTS, (key, data), verdict)
            if not verdict:
                return False
        if type(doc["idea_id"]) is not str or type(doc["query"]) is not str:
            return False
        target = doc["target"]
        if type(target) is not dict or not _json(target, 1):
            return False
        for key in ("instrumentType", "region", "universe"):
            if key in target and type(target[key]) is not str:
                return False
        if "delay" in target:
            delay = target["delay"]
            if not (type(delay) is int or (type(delay) is float and delay.is_integer())) or delay < 0:
                return False
        structure = tuple(parts.get(key, b"") for key in _STRUCTURE) if parts is not None else ()
        if structure and all(structure):
            known = _STRUCTURE_VERDICTS.get(structure)
            if known is None:
                known = _remember(_STRUCTURE_VERDICTS, structure, _structure_valid(doc))
            return known
        return _structure_valid(doc)
    except KeyError:
        return False


def _structure_valid(doc: dict[str, Any]) -> bool:
    """The candidate lists and the lanes: each list valid, ids unique, parents listed, and
    the lanes' id lists in agreement with the candidates' lanes. KeyError: a part is missing."""
    subcategories = doc["selected_subcategories"]
    if not _strings(subcategories, non_empty=True):
        return False
    subs = set(subcategories)
    if len(subs) != len(subcategories):
        return False
    lanes = doc["lanes"]
    if type(lanes) is not dict or "exploit" not in lanes or "explore" not in lanes or not _json(lanes, 1):
        return False
    for lane in _LANES:
        lists = lanes[lane]
        if type(lists) is not dict or not _strings(lists.get("field_ids")) or not _strings(lists.get("operator_names")):
            return False
    by_lane: dict[str, dict[str, list[str]]] = {
        pool: {lane: [] for lane in _LANES} for pool in ("datasets", "fields", "operators")
    }
    datasets = _candidates(doc["candidate_datasets"], "id", *_DATASET, "subcategory_id", subs, by_lane["datasets"])
    if datasets is None:
        return False
    fields = _candidates(doc["candidate_fields"], "id", *_FIELD, "dataset_id", datasets, by_lane["fields"])
    operators = _candidates(doc["candidate_operators"], "name", *_OPERATOR, None, None, by_lane["operators"])
    if fields is None or operators is None:
        return False
    for lane in _LANES:
        if sorted(lanes[lane]["field_ids"]) != sorted(by_lane["fields"][lane]):
            return False
        if sorted(lanes[lane]["operator_names"]) != sorted(by_lane["operators"][lane]):
            return False
    return True
