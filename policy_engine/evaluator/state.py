"""The ladder's state: the candidates kept per pool, and the cascade (a subcategory owns
its datasets and a dataset its fields, so dropping an owner drops what it owns).

A state maps each pool to a `PoolState` that carries what rungs, trace records and the
prompt model read from it (ids, lanes, lane counts), computed once. A rung builds a new
state that shares the `PoolState` of every pool it did not change, so the prompt model's
memos (keyed by the identity of a pool's ids) and this module's diffs cost only what the
rung changed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from itertools import compress, filterfalse
from operator import attrgetter
from typing import Any, TypeVar

from policy_engine.policy import POOLS, TopK
from policy_engine.pools import Candidate, Pools

#: a candidate's id (also `lanes`' key for the ids it keeps)
candidate_id = attrgetter("id")
_lane_of = attrgetter("lane")
_parent_of = attrgetter("parent")


@dataclass(frozen=True, slots=True)
class PoolState:
    """One pool's kept candidates in rank order, with their ids and per-lane split."""

    items: tuple[Candidate, ...]
    ids: tuple[str, ...]
    exploit: tuple[Candidate, ...]
    explore: tuple[Candidate, ...]

    @classmethod
    def of(cls, items: tuple[Candidate, ...]) -> PoolState:
        # C-level passes (attrgetter, compress): a rung on a 1,000-field pool builds one
        lanes = list(map(_lane_of, items))
        return cls(
            items,
            tuple(map(candidate_id, items)),
            tuple(compress(items, map("exploit".__eq__, lanes))),
            tuple(compress(items, map("explore".__eq__, lanes))),
        )

    def counts(self) -> dict[str, int]:
        return {"exploit": len(self.exploit), "explore": len(self.explore)}


_T = TypeVar("_T")
_MISSING = object()


class LadderState(dict[str, PoolState]):
    """Pool -> `PoolState`, never mutated after it is built, so what the walk and the trace
    read from it (ids per pool, lane counts) is computed once and kept on it."""

    __slots__ = ("_counts", "_derived", "_lane_ids", "_selection")

    def __init__(self, pools: Mapping[str, PoolState]) -> None:
        super().__init__(pools)
        self._counts: dict[str, dict[str, int]] | None = None
        self._selection: dict[str, tuple[str, ...]] | None = None
        self._lane_ids: dict[str, dict[str, tuple[str, ...]]] | None = None
        self._derived: dict[str, Any] | None = None

    def derived(self, name: str, build: Callable[[], _T]) -> _T:
        """A report value that depends on this state alone (``name`` says which), built
        once: a pack evaluated again ends on the same state object (the engine's memo of
        cuts), and its decision reads the same KPIs. The value must be immutable: every
        decision that reads it shares it."""
        if self._derived is None:
            self._derived = {}
        hit = self._derived.get(name, _MISSING)
        if hit is _MISSING:
            hit = self._derived[name] = build()
        return hit  # type: ignore[no-any-return]

    def counts(self) -> dict[str, dict[str, int]]:
        if self._counts is None:
            self._counts = {pool: ps.counts() for pool, ps in self.items()}
        return self._counts

    def selection(self) -> dict[str, tuple[str, ...]]:
        if self._selection is None:
            self._selection = {pool: ps.ids for pool, ps in self.items()}
        return self._selection

    def lane_ids(self) -> dict[str, dict[str, tuple[str, ...]]]:
        """Pool -> lane -> kept ids: a decision's ``selection``. A fresh copy of the outer
        and inner dicts each call (they go into a decision its caller may change); the id
        tuples, immutable, are computed once per state."""
        if self._lane_ids is None:
            self._lane_ids = {
                pool: {"exploit": tuple(c.id for c in ps.exploit), "explore": tuple(c.id for c in ps.explore)}
                for pool, ps in self.items()
            }
        return {pool: dict(lanes) for pool, lanes in self._lane_ids.items()}


State = LadderState

#: the pool whose kept ids a pool's candidates must name as their parent
_OWNER = {"datasets": "subcategories", "fields": "datasets"}


def _children_of(items: tuple[Candidate, ...], owners: set[str]) -> tuple[Candidate, ...]:
    """The candidates whose parent is kept (C-level passes: a cut cascades through every field)."""
    return tuple(compress(items, map(owners.__contains__, map(_parent_of, items))))


def initial_state(pools: Pools, topk: tuple[TopK, ...]) -> State:
    """The pack's top-k per pool and lane, cascaded."""
    limits = {(t.pool, t.lane): t.value for t in topk}
    raw: dict[str, tuple[Candidate, ...]] = {}
    for pool in POOLS:
        items = tuple(pools.pool(pool))
        caps = [limits.get((pool, lane)) for lane in ("exploit", "explore")]
        if caps == [None, None]:  # no top-k for the pool (the default rules): a C-level copy
            raw[pool] = items
            continue
        kept: list[Candidate] = []
        taken = {"exploit": 0, "explore": 0}
        for cand in items:
            cap = limits.get((pool, cand.lane))
            if cap is not None and taken[cand.lane] >= cap:
                continue
            taken[cand.lane] += 1
            kept.append(cand)
        raw[pool] = tuple(kept)
    for pool, owner in _OWNER.items():
        raw[pool] = _children_of(raw[pool], set(map(candidate_id, raw[owner])))
    return LadderState({pool: PoolState.of(items) for pool, items in raw.items()})


def with_pool(state: State, pool: str, items: tuple[Candidate, ...] | PoolState) -> State:
    """``state`` with ``pool`` cut to ``items`` (or to a `PoolState` built for it),
    cascaded to the pools it owns. Pools the cut leaves untouched keep their `PoolState`
    object."""
    out = dict(state)
    out[pool] = items if isinstance(items, PoolState) else PoolState.of(items)
    changed = pool
    for child, owner in _OWNER.items():
        if owner != changed:
            continue
        owners = set(out[owner].ids)
        before = out[child].items
        after = _children_of(before, owners)
        if len(after) == len(before):
            break
        out[child] = PoolState.of(after)
        changed = child
    return LadderState(out)


def selection_of(state: State) -> dict[str, tuple[str, ...]]:
    """Ids kept per pool (the tuples are the states' own: identity marks unchanged pools).
    Shared: read it, never change it."""
    return state.selection()


def lane_counts(state: State) -> dict[str, dict[str, int]]:
    """Exploit and explore counts per pool. Shared: read it, never change it."""
    return state.counts()


def removed_between(before: State, after: State) -> dict[str, tuple[str, ...]]:
    """Ids dropped per pool, in pool order; only pools whose state changed are compared."""
    out: dict[str, tuple[str, ...]] = {}
    for pool, old in before.items():
        new = after[pool]  # every state holds every pool
        if new is old:
            continue
        gone = tuple(filterfalse(set(new.ids).__contains__, old.ids))
        if gone:
            out[pool] = gone
    return out
