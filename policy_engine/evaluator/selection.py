"""Selections as ordered candidate tuples, and the cascade: a subcategory owns its datasets
and a dataset its fields, so dropping an owner drops what it owns."""

from __future__ import annotations

from collections.abc import Mapping

from policy_engine.policy import POOLS, TopK
from policy_engine.pools import Candidate, Pools

State = dict[str, tuple[Candidate, ...]]


def initial_state(pools: Pools, topk: tuple[TopK, ...]) -> State:
    limits = {(t.pool, t.lane): t.value for t in topk}
    state: State = {}
    for pool in POOLS:
        kept: list[Candidate] = []
        taken = {"exploit": 0, "explore": 0}
        for cand in pools.pool(pool):
            cap = limits.get((pool, cand.lane))
            if cap is not None and taken[cand.lane] >= cap:
                continue
            taken[cand.lane] += 1
            kept.append(cand)
        state[pool] = tuple(kept)
    return cascade(state)


def cascade(state: State) -> State:
    subs = {c.id for c in state.get("subcategories", ())}
    datasets = tuple(c for c in state.get("datasets", ()) if c.parent in subs)
    dataset_ids = {c.id for c in datasets}
    fields = tuple(c for c in state.get("fields", ()) if c.parent in dataset_ids)
    out = dict(state)
    out["datasets"] = datasets
    out["fields"] = fields
    return out


def lane_counts(state: Mapping[str, tuple[Candidate, ...]]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for pool, items in state.items():
        exploit = [c.lane for c in items].count("exploit")
        out[pool] = {"exploit": exploit, "explore": len(items) - exploit}
    return out


def as_selection(state: Mapping[str, tuple[Candidate, ...]]) -> dict[str, tuple[str, ...]]:
    return {pool: tuple(c.id for c in items) for pool, items in state.items()}


def removed_between(before: State, after: State) -> dict[str, tuple[str, ...]]:
    out: dict[str, tuple[str, ...]] = {}
    for pool, items in before.items():
        kept = {c.id for c in after.get(pool, ())}
        gone = tuple(c.id for c in items if c.id not in kept)
        if gone:
            out[pool] = gone
    return out
