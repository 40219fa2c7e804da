"""The agent's retrieval pack (format ``agent-retrieval-pack/v1``) mapped onto pools.

A subcategory's lane is not written in the pack: it is ``explore`` when every candidate
dataset under it is explore (the pack builder fills the explore lane with whole
subcategories), else ``exploit``; a subcategory with no datasets is ``exploit``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from policy_engine.pools import Candidate, Pools

NAME = "agent-retrieval-pack/v1"
#: what `adapt` builds the pools from (the lanes' id lists must agree with the candidates)
CANDIDATE_KEYS = ("selected_subcategories", "candidate_datasets", "candidate_fields", "candidate_operators")


def detect(doc: Any) -> bool:
    return isinstance(doc, Mapping) and "candidate_fields" in doc and "lanes" in doc


def _counts(pools: Mapping[str, tuple[Candidate, ...]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for name, items in pools.items():
        out[f"{name}.count"] = len(items)
        for lane in ("exploit", "explore"):
            out[f"{name}.{lane}.count"] = sum(1 for c in items if c.lane == lane)
    return out


#: candidate lists' content (their content keys) -> their pools and counts: a run's packs
#: mostly share their lists. Bounded: cleared when full.
_CANDIDATES: dict[tuple[bytes, ...], tuple[Mapping[str, tuple[Candidate, ...]], dict[str, int]]] = {}
_CANDIDATES_MAX = 256


def adapt(
    doc: Mapping[str, Any], *, idea: Mapping[str, Any] | None = None, parts: Mapping[str, bytes] | None = None
) -> Pools:
    """The pack's pools and attributes. ``parts`` (each top-level key's content key, from
    the loader) lets pools built before from equal candidate lists stand."""
    key = tuple(parts.get(name, b"") for name in CANDIDATE_KEYS) if parts is not None else ()
    known = _CANDIDATES.get(key) if key and all(key) else None
    if known is None:
        built = MappingProxyType(_pools(doc))
        known = (built, _counts(built))
        if key and all(key):
            if len(_CANDIDATES) >= _CANDIDATES_MAX:
                _CANDIDATES.clear()
            _CANDIDATES[key] = known
    candidates, counts = known
    target = doc.get("target") or {}
    attributes: dict[str, Any] = {
        "region": target.get("region"),
        "universe": target.get("universe"),
        "delay": target.get("delay"),
        "instrument_type": target.get("instrumentType"),
        "query": doc.get("query"),
        "idea_id": doc.get("idea_id"),
        **counts,
    }
    if idea is not None:
        attributes["tags"] = tuple(idea.get("theme_tags") or ())
    return Pools(candidates, MappingProxyType(attributes), NAME, source=doc)


def _pools(doc: Mapping[str, Any]) -> dict[str, tuple[Candidate, ...]]:
    datasets = tuple(Candidate(d["id"], "datasets", d["lane"], d["subcategory_id"]) for d in doc["candidate_datasets"])
    lanes_by_sub: dict[str, set[str]] = {}
    for d in datasets:
        lanes_by_sub.setdefault(d.parent or "", set()).add(d.lane)
    subcategories = tuple(
        Candidate(s, "subcategories", "explore" if lanes_by_sub.get(s) == {"explore"} else "exploit", None)
        for s in doc["selected_subcategories"]
    )
    fields = tuple(Candidate(f["id"], "fields", f["lane"], f["dataset_id"]) for f in doc["candidate_fields"])
    operators = tuple(Candidate(o["name"], "operators", o["lane"], None) for o in doc["candidate_operators"])
    return {"subcategories": subcategories, "datasets": datasets, "fields": fields, "operators": operators}


def _copy(value: Any) -> Any:
    """A copy of a document: JSON's containers rebuilt and its scalars (immutable) shared,
    anything else deep-copied. The gate trims every admitted pack, and `copy.deepcopy`'s
    per-object bookkeeping cost about three times this for JSON (0.15-0.28 ms on the small
    pack); shared sub-objects come out as separate copies, which JSON cannot express."""
    kind = type(value)
    if kind is dict:
        return {k: _copy(v) for k, v in value.items()}
    if kind is list:
        return [_copy(v) for v in value]
    if kind is str or kind is int or kind is float or kind is bool or value is None:
        return value
    return copy.deepcopy(value)


def trim(doc: Mapping[str, Any], selection: Mapping[str, Mapping[str, tuple[str, ...]]]) -> dict[str, Any]:
    """The pack restricted to a selection, in this format: the candidate lists, the lanes'
    id lists and `context_guard.max_items` stay consistent, so the agent reads it as it
    reads any pack. The input is not modified."""
    out: dict[str, Any] = _copy(dict(doc))
    kept = {pool: {i for lane in lanes.values() for i in lane} for pool, lanes in selection.items()}
    out["selected_subcategories"] = [s for s in out["selected_subcategories"] if s in kept["subcategories"]]
    out["candidate_datasets"] = [d for d in out["candidate_datasets"] if d["id"] in kept["datasets"]]
    out["candidate_fields"] = [f for f in out["candidate_fields"] if f["id"] in kept["fields"]]
    out["candidate_operators"] = [o for o in out["candidate_operators"] if o["name"] in kept["operators"]]
    for lane in ("exploit", "explore"):
        lists = out["lanes"][lane]
        lists["field_ids"] = [x for x in lists["field_ids"] if x in kept["fields"]]
        lists["operator_names"] = [x for x in lists["operator_names"] if x in kept["operators"]]
    guard = out.get("context_guard")
    if isinstance(guard, dict) and isinstance(guard.get("max_items"), dict):
        for pool in guard["max_items"]:
            if pool in kept:
                guard["max_items"][pool] = len(kept[pool])
    return out
