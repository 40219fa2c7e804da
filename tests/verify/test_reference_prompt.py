"""The template engine (render/, driven by the shipped agent_envelope template) and the
independent plain rendering of section 3.1 (verify/reference.py) agree byte for byte on
generated packs, knowledge packs and selections; and the engine's arithmetic count is the
real count of that text."""

from __future__ import annotations

from decimal import Decimal
from types import MappingProxyType
from typing import Any

from hypothesis import event, given
from hypothesis import strategies as st

from policy_engine.packs import load_pack
from policy_engine.policy import Tokenizer
from policy_engine.render import KnowledgePack, build_prompt_model
from policy_engine.tokens import get_counter
from policy_engine.verify.reference import ALL_POOLS, reference_prompt
from tests.strategies import knowledge_documents, packs

COUNTERS = [
    get_counter(Tokenizer("tiktoken", "o200k_base")),
    get_counter(Tokenizer("rough", chars_per_token=Decimal(4))),
]
LIMITS = st.fixed_dictionaries(
    {
        m: st.one_of(st.none(), st.integers(0, 10**9))
        for m in ("request_prompt", "request_completion", "batch_total", "day_total")
    }
)


@st.composite
def prompt_cases(draw: Any) -> Any:
    pack = draw(packs())
    docs = None if draw(st.integers(0, 4)) == 0 else draw(knowledge_documents(pack))
    pools = load_pack(pack)
    selection = {pool: tuple(c.id for c in pools.pool(pool) if draw(st.booleans())) for pool in ALL_POOLS}
    if draw(st.integers(0, 4)) == 0:
        selection["operators"] = ()  # no operator: every signature and card is sent
    idea = draw(
        st.one_of(
            st.none(),
            st.fixed_dictionaries(
                {"idea_id": st.just("i-1"), "theme_tags": st.lists(st.just("x"), max_size=2)},
                optional={"retrieval_context_id": st.just("ctx")},
            ),
        )
    )
    return pack, pools, docs, selection, idea, draw(LIMITS), draw(st.sampled_from(COUNTERS))


@given(prompt_cases())
def test_template_engine_matches_the_reference_rendering(case: Any) -> None:
    pack, pools, docs, selection, idea, limits, counter = case
    knowledge = None if docs is None else KnowledgePack("<generated>", MappingProxyType(docs))
    event("knowledge: " + ("none" if docs is None else ",".join(sorted(k.split("_")[0] for k in docs)) or "empty"))
    event("operators selected: " + ("none" if not selection["operators"] else "some"))
    model = build_prompt_model("agent_envelope", pools, idea=idea, knowledge=knowledge, counter=counter, limits=limits)
    text = model.render(selection)
    assert text == reference_prompt(pack, selection, idea=idea, knowledge=docs, limits=limits)
    assert model.tokens(selection) == counter.count(text)
