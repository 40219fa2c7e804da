"""Generic pools of ranked candidates: the evaluator's view of a pack.

A pack format adapter (``policy_engine.packs``) maps a concrete pack onto `Pools`, so
the evaluator never reads the agent's JSON keys. Each pool holds its candidates in the
pack's rank order, best first, and that order is the only ranking the engine uses: trimming
keeps a prefix per lane, so the lowest-ranked go first and ties are broken by position
(stable). The pack's scores are not carried: nothing may re-rank what the agent ranked.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Candidate:
    id: str
    pool: str  # one of policy.POOLS
    lane: str  # "exploit" | "explore"
    #: the owning candidate's id in the cascade: a field's dataset, a dataset's
    #: subcategory; None for subcategories and operators.
    parent: str | None = None


@dataclass(frozen=True, slots=True)
class Pools:
    """Candidates per pool in rank order, plus attributes guards can test.

    ``source`` is the original document (never mutated) for renderers that need the
    pack's own bytes; ``format`` names the adapter that produced this.
    """

    pools: Mapping[str, tuple[Candidate, ...]]
    attributes: Mapping[str, Any]
    format: str
    source: Any = field(default=None, compare=False, repr=False)
    #: sha256 of the source document's JSON, set by `load_pack`; lets renderers cache by
    #: content without re-reading the document. Empty when a caller built the pools itself.
    digest: str = field(default="", compare=False, repr=False)
    #: top-level key of the source document -> its value's content key (marshal bytes, as
    #: `render.caches.content_key`, or the reader's JSON text of it: `packs.read_pack_parts`),
    #: set by `load_pack`: packs of one run that share a list share its key, so what
    #: depends on that list alone is computed once per run
    content_keys: Mapping[str, bytes] = field(default_factory=dict, compare=False, repr=False)
    #: the content keys of the document's parts that alone determine ``pools`` (the
    #: format's `candidate_keys`); empty when unknown
    structure_key: tuple[bytes, ...] = field(default=(), compare=False, repr=False)

    def pool(self, name: str) -> tuple[Candidate, ...]:
        return self.pools.get(name, ())


#: A selection: for each pool, the ids kept, in rank order.
Selection = Mapping[str, tuple[str, ...]]
