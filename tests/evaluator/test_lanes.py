"""A rung's cut of one pool (`evaluator/lanes.py`): each lane keeps its top-ranked prefix."""

from __future__ import annotations

from itertools import compress

from hypothesis import given, settings
from hypothesis import strategies as st

from policy_engine.evaluator.lanes import keep_lane_prefixes
from policy_engine.evaluator.state import PoolState
from policy_engine.pools import Candidate

#: pools of up to 30 candidates in both lanes; ids drawn from a small alphabet, so some
#: pools repeat an id (the loader refuses that, a pool built by hand may not)
POOLS = st.lists(
    st.tuples(st.sampled_from("abcdefghijklmnopqrstuvwxyz"), st.sampled_from(["exploit", "explore"])), max_size=30
).map(lambda rows: PoolState.of(tuple(Candidate(i, "fields", lane) for i, lane in rows)))


@settings(max_examples=300, deadline=None)
@given(pool=POOLS, data=st.data())
def test_the_cut_is_the_pool_state_of_the_kept_candidates(pool: PoolState, data: st.DataObject) -> None:
    """Whatever the pool (repeated ids too), the cut is what building a pool state from the
    kept candidates gives: the candidates whose id is in a lane's prefix, in rank order."""
    n_exploit = data.draw(st.integers(0, len(pool.exploit)))
    n_explore = data.draw(st.integers(0, len(pool.explore)))
    keep = {c.id for c in pool.exploit[:n_exploit]} | {c.id for c in pool.explore[:n_explore]}
    expected = PoolState.of(tuple(compress(pool.items, (i in keep for i in pool.ids))))
    assert keep_lane_prefixes(pool, n_exploit, n_explore) == expected


def test_unique_ids_keep_the_prefixes_themselves() -> None:
    pool = PoolState.of(tuple(Candidate(f"f{i}", "fields", "explore" if i % 3 else "exploit") for i in range(9)))
    cut = keep_lane_prefixes(pool, 2, 3)
    assert cut.ids == ("f0", "f1", "f2", "f3", "f4") and cut.exploit == pool.exploit[:2]
    assert cut.explore == pool.explore[:3]
    assert keep_lane_prefixes(pool, 0, 0) == PoolState.of(())
