"""The agent's retrieval pack (format ``agent-retrieval-pack/v1``) mapped onto pools.

A subcategory's lane is not written in the pack: it is ``explore`` when every candidate
dataset under it is explore (the pack builder fills the explore lane with whole
subcategories), else ``exploit``; a subcategory with no datasets is ``exploit``.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from policy_engine.pools import Candidate, Pools

NAME = "agent-retrieval-pack/v1"


def detect(doc: Any) -> bool:
    return isinstance(doc, Mapping) and "candidate_fields" in doc and "lanes" in doc


def _counts(pools: Mapping[str, tuple[Candidate, ...]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for name, items in pools.items():
        out[f"{name}.count"] = len(items)
        for lane in ("exploit", "explore"):
            out[f"{name}.{lane}.count"] = sum(1 for c in items if c.lane == lane)
    return out


def adapt(doc: Mapping[str, Any], *, idea: Mapping[str, Any] | None = None) -> Pools:
    datasets = tuple(
        Candidate(d["id"], "datasets", d["lane"], float(d["score"]), i, d["subcategory_id"])
        for i, d in enumerate(doc["candidate_datasets"])
    )
    lanes_by_sub: dict[str, set[str]] = {}
    for d in datasets:
        lanes_by_sub.setdefault(d.parent or "", set()).add(d.lane)
    subcategories = tuple(
        Candidate(s, "subcategories", "explore" if lanes_by_sub.get(s) == {"explore"} else "exploit", 0.0, i, None)
        for i, s in enumerate(doc["selected_subcategories"])
    )
    fields = tuple(
        Candidate(f["id"], "fields", f["lane"], float(f["score"]), i, f["dataset_id"])
        for i, f in enumerate(doc["candidate_fields"])
    )
    operators = tuple(
        Candidate(o["name"], "operators", o["lane"], float(o["score"]), i, None)
        for i, o in enumerate(doc["candidate_operators"])
    )
    pools = {"subcategories": subcategories, "datasets": datasets, "fields": fields, "operators": operators}
    target = doc.get("target") or {}
    attributes: dict[str, Any] = {
        "region": target.get("region"),
        "universe": target.get("universe"),
        "delay": target.get("delay"),
        "instrument_type": target.get("instrumentType"),
        "query": doc.get("query"),
        "idea_id": doc.get("idea_id"),
        **_counts(pools),
    }
    if idea is not None:
        attributes["tags"] = tuple(idea.get("theme_tags") or ())
    return Pools(MappingProxyType(pools), MappingProxyType(attributes), NAME, source=doc)
