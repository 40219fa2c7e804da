"""The engine: everything a decision needs that does not depend on the pack, built once.

An `Engine` holds the policy, its token counter and the render caches its prompt models
fill; `evaluate(engine, pools, ...)` is then a function of its arguments alone (no
module state is read or written). A corpus run, a gate or a server builds one engine and
evaluates every pack with it, so the tokenizer is loaded once and the knowledge pack's
blocks, the skeleton lines and every candidate block seen before are measured once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from policy_engine.policy import Policy
from policy_engine.pools import Pools
from policy_engine.usage import Request, UsageSnapshot

if TYPE_CHECKING:
    from policy_engine.decision import Decision
    from policy_engine.render import KnowledgePack, PromptModel, RenderCaches
    from policy_engine.tokens import TokenCounter


def _fresh_caches() -> RenderCaches:
    from policy_engine.render import RenderCaches

    return RenderCaches()


@dataclass(frozen=True, eq=False)
class Engine:
    """A policy ready to evaluate packs: its counter and the render caches it owns.

    ``knowledge`` is the default knowledge pack for every evaluation (a call may pass
    another). Engines are independent: two never share caches."""

    policy: Policy
    counter: TokenCounter
    knowledge: KnowledgePack | None = None
    caches: RenderCaches = field(default_factory=_fresh_caches)
    #: also count every final prompt with one whole-text encode and check the composed
    #: count against it (`policy eval --verify-counts`; the test suite's goldens use it)
    verify_counts: bool = False
    #: (pack key, top-k) -> (pools kept alive, the ladder's start state): a pack evaluated
    #: again, or another pack with equal candidate lists, starts from the same state
    #: objects, which the memo of cuts and the prompt models' memos recognise
    starts: dict[tuple[Any, ...], tuple[Pools, Any]] = field(default_factory=dict)
    #: (id of a state, pool, exploit kept, explore kept) -> (that state, the state after the cut):
    #: a rung is a pure function of its state, so a pack walked again reuses every state object
    cuts: dict[tuple[Any, ...], Any] = field(default_factory=dict)
    #: (id of resolved settings, expansion?) -> (those settings, their `LimitTable`)
    tables: dict[tuple[int, bool], tuple[Any, Any]] = field(default_factory=dict)

    def limit_table(self, settings: Any, request: Any) -> Any:
        """The settings' limits prepared for this kind of request, once per settings object
        (the policy's own settings, or a conditional's: `Policy.resolve` returns the same
        object for the same matches only when no condition applies, so the memo is bounded)."""
        from policy_engine.evaluator.limits import limit_table

        # the settings live with the entry: the id in the key stays theirs
        return _kept(
            self.tables, (id(settings), bool(request.expansion)), settings, 64, lambda: limit_table(settings, request)
        )

    def start_state(self, pools: Pools, topk: tuple[Any, ...]) -> Any:
        """The pack's top-k state (`evaluator/state.py`), built once per pack and top-k."""
        from policy_engine.evaluator.state import initial_state

        # packs whose candidates come from equal lists (a corpus of one agent's packs) share
        # the state, and with it the memo of cuts and the prompt models' memos of the lists
        identity = ("lists", pools.structure_key) if pools.structure_key else ("pack", pools.digest or id(pools))
        return _kept(self.starts, (pools.format, identity, topk), pools, 32, lambda: initial_state(pools, topk))

    @classmethod
    def build(
        cls,
        policy: Policy,
        *,
        counter: TokenCounter | None = None,
        knowledge: KnowledgePack | None = None,
        verify_counts: bool = False,
    ) -> Engine:
        """Resolve the policy's tokenizer (loaded once per process; the count cache is this
        engine's own unless ``counter`` is given)."""
        from policy_engine.tokens import new_counter

        return cls(
            policy,
            counter if counter is not None else new_counter(policy.tokenizer),
            knowledge,
            verify_counts=verify_counts,
        )

    def prompt_model(
        self,
        pools: Pools,
        *,
        idea: Mapping[str, Any] | None,
        knowledge: KnowledgePack | None,
        limits: Mapping[str, int | None],
    ) -> PromptModel:
        """The prompt model of these inputs, reused when the same pack (by content digest,
        or the same object) is evaluated again with the same idea, knowledge and limits."""
        from policy_engine.render import build_prompt_model
        from policy_engine.render.caches import MODEL_CACHE_MAX, content_key

        policy = self.policy
        # the policy (so its template) is the engine's own: the key holds what varies by call
        key = (
            pools.format,
            pools.digest or id(pools),
            content_key(idea),
            (getattr(knowledge, "digest", "") or id(knowledge)) if knowledge is not None else None,
            tuple(sorted(limits.items())),
        )
        hit = self.caches.models.get(key)
        if hit is not None:
            return hit[1]  # type: ignore[no-any-return]
        model = build_prompt_model(
            policy.template,
            pools,
            idea=idea,
            knowledge=knowledge,
            counter=self.counter,
            limits=limits,
            spec=policy.template_spec,
            caches=self.caches,
        )
        # the inputs are kept with the model, so an id() in the key is never reused while it lives
        self.caches.remember(self.caches.models, key, ((pools, idea, knowledge), model), MODEL_CACHE_MAX)
        return model


def evaluate(
    engine: Engine,
    pools: Pools,
    *,
    usage: UsageSnapshot = UsageSnapshot(),
    request: Request = Request(),
    seen_combos: frozenset[str] = frozenset(),
    idea: Mapping[str, Any] | None = None,
    knowledge: KnowledgePack | None = None,
    explain: str = "rules",
    prompt_model: PromptModel | None = None,
) -> Decision:
    """The decision for one pack: a pure function of the engine and these inputs."""
    from policy_engine.evaluator.core import decide

    return decide(
        engine,
        pools,
        usage=usage,
        request=request,
        seen_combos=seen_combos,
        idea=idea,
        knowledge=knowledge if knowledge is not None else engine.knowledge,
        explain=explain,
        prompt_model=prompt_model,
    )


def _kept(store: dict[Any, tuple[Any, Any]], key: Any, alive: Any, bound: int, build: Callable[[], Any]) -> Any:
    """``store[key]``'s value, built on a miss. Each entry keeps ``alive`` (what an id in
    its key names) with the value, so that id is never reused while the entry lives. A
    full store is cleared."""
    hit = store.get(key)
    if hit is not None:
        return hit[1]
    if len(store) >= bound:
        store.clear()
    value = build()
    store[key] = (alive, value)
    return value
