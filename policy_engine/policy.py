"""The checked policy: what the evaluator runs, independent of how it was written.

The DSL (``policy_engine.dsl``) parses and checks rule text into this model; the importer
and tests may also build it directly. Everything here is immutable and already validated,
so the evaluator trusts it. Each item keeps the rule name and source span it came from so a
decision trace can cite "which rule, where".

Units: tokens are ``int``; money is integer micro-dollars (``int``) for limits and usage,
``Decimal`` USD-per-1M-tokens for prices, so no budget is ever a float sum.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from decimal import ROUND_CEILING, Decimal
from enum import Enum
from typing import Any

from policy_engine.errors import Span

#: Candidate pools a pack is mapped onto. Order here is the cascade order
#: (a subcategory owns datasets, a dataset owns fields); it is *not* the ladder order.
POOLS: tuple[str, ...] = ("subcategories", "datasets", "fields", "operators")
LANES: tuple[str, ...] = ("exploit", "explore")

#: Metric name -> unit. The metric name is also the decision's reason code when a limit on
#: it is exceeded; the four token metrics keep the agent's names.
METRICS: dict[str, str] = {
    "request_prompt": "tokens",
    "request_completion": "tokens",
    "batch_total": "tokens",
    "day_total": "tokens",
    "request_usd": "usd",
    "batch_usd": "usd",
    "day_usd": "usd",
}

NO_SPAN = Span("<builtin>", 0, 0)


class Enforcement(str, Enum):
    """What exceeding a limit does: ``block`` drives the ladder and can block the call;
    ``warn`` only records a warning in the decision."""

    BLOCK = "block"
    WARN = "warn"


class StepKind(str, Enum):
    """How a ladder step's value is read.

    ``factor``: multiply the pool's *current* count (compounding, as the agent's
    ``fallback_topk_steps``): new = max(1, min(current - 1, floor(current * value))).
    ``share``: a share of the pool's *original* top-k: new = max(1, floor(original * value)).
    ``count``: an absolute count of candidates to keep.
    Shares and counts never grow a pool: new = min(new, current).
    """

    FACTOR = "factor"
    SHARE = "share"
    COUNT = "count"


@dataclass(frozen=True, slots=True)
class Limit:
    rule: str
    metric: str  # a key of METRICS
    value: int  # tokens, or micro-USD for usd metrics
    severity: Enforcement = Enforcement.BLOCK
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Price:
    """USD per 1,000,000 tokens (a per-1k price is multiplied by 1000 when checked)."""

    model: str
    prompt_per_million: Decimal
    completion_per_million: Decimal
    span: Span = field(default=NO_SPAN, compare=False, repr=False)

    def cost_micro_usd(self, prompt_tokens: int, completion_tokens: int) -> int:
        """tokens * USD/1M == micro-USD; round up so a budget is never under-charged."""
        exact = self.prompt_per_million * prompt_tokens + self.completion_per_million * completion_tokens
        return int(exact.to_integral_value(rounding=ROUND_CEILING))


@dataclass(frozen=True, slots=True)
class Tokenizer:
    """``kind`` is ``tiktoken`` (``name`` is an encoding such as ``cl100k_base``),
    ``model`` (``name`` is a model mapped to an encoding through tiktoken) or ``rough``
    (``ceil(chars / chars_per_token)``, only when a rule file names it)."""

    kind: str
    name: str = ""
    chars_per_token: Decimal | None = None
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Step:
    kind: StepKind
    value: Decimal  # factor/share in (0, 1]; count is a whole number stored as Decimal
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Stage:
    """One stage of the fallback ladder: trims one pool through its steps (rungs)."""

    rule: str
    pool: str
    steps: tuple[Step, ...]
    minimum: int = 1  # the pool never goes below this many candidates (across lanes)
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Ladder:
    stages: tuple[Stage, ...]
    #: reason code when the ladder is exhausted and a blocking limit still fails.
    #: ``None`` means "the metric name of the first blocking limit still exceeded".
    exhausted_reason: str | None = None
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Lanes:
    exploit_ratio: Decimal = Decimal("0.7")
    explore_ratio: Decimal = Decimal("0.3")
    #: minimum explore candidates trimming must keep in each trimmed pool (when the
    #: pack had that many); the agent's ``min_explore_candidates_per_batch``.
    explore_floor: int = 1
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class TopK:
    """The starting size of a pool's lane (``retrieval_budget.json``); absent means
    'everything the pack offers'."""

    pool: str
    lane: str
    value: int
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything a decision depends on, once conditions are applied."""

    limits: tuple[Limit, ...] = ()
    ladder: Ladder = Ladder(stages=())
    lanes: Lanes = Lanes()
    topk: tuple[TopK, ...] = ()
    #: tokens of the batch budget that ordinary requests may not spend.
    expansion_reserve: int = 0
    #: completion tokens budgeted per request when the caller does not say.
    completion_budget: int = 0

    def limit(self, metric: str) -> Limit | None:
        for item in self.limits:
            if item.metric == metric:
                return item
        return None


# ---- conditions -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Compare:
    """``attribute op value``. Attributes are pack attributes (``region``, ``universe``,
    ``delay``, ``instrument_type``, ``query``, ``idea_id``, ``tags``) or pool sizes
    (``fields.count``, ``fields.explore.count``...). ``op`` is one of
    ``== != < <= > >= in contains``; ``value`` is str, int, Decimal or a tuple of those."""

    attribute: str
    op: str
    value: Any
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class AllOf:
    items: tuple[Guard, ...]
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class AnyOf:
    items: tuple[Guard, ...]
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Not:
    item: Guard
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


Guard = Compare | AllOf | AnyOf | Not


@dataclass(frozen=True, slots=True)
class Conditional:
    """``when <guard> { ... }``: for matching packs, these items replace the base ones
    (limits by metric, stages by pool, top-k by pool and lane, scalars when set).
    Conditionals apply in file order; a later match wins over an earlier one."""

    rule: str
    guard: Guard
    limits: tuple[Limit, ...] = ()
    stages: tuple[Stage, ...] = ()
    topk: tuple[TopK, ...] = ()
    explore_floor: int | None = None
    expansion_reserve: int | None = None
    completion_budget: int | None = None
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


# ---- the policy -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Policy:
    name: str
    tokenizer: Tokenizer
    settings: Settings
    prices: tuple[Price, ...] = ()
    price_model: str | None = None  # which model the policy prices for
    template: str = "agent_envelope"  # prompt rendering template (a registry name)
    #: the checked template document when ``template`` names a data template (the policy
    #: directory's ``NAME.template.json`` or a shipped one); None for a Python template
    template_spec: Any = field(default=None, compare=False, repr=False)
    conditionals: tuple[Conditional, ...] = ()
    #: sha256 of the canonical rule text of every file that made this policy, in include
    #: order; the decision manifest cites it.
    digest: str = ""
    source_files: tuple[str, ...] = ()

    @property
    def price(self) -> Price | None:
        for item in self.prices:
            if item.model == self.price_model:
                return item
        return None

    def resolve(self, attributes: Mapping[str, Any]) -> tuple[Settings, tuple[Conditional, ...]]:
        """Settings for one pack, and the conditionals that matched (for the trace)."""
        settings = self.settings
        matched: list[Conditional] = []
        for cond in self.conditionals:
            if guard_matches(cond.guard, attributes):
                settings = apply_conditional(settings, cond)
                matched.append(cond)
        return settings, tuple(matched)


def apply_conditional(settings: Settings, cond: Conditional) -> Settings:
    limits = {item.metric: item for item in settings.limits}
    for item in cond.limits:
        limits[item.metric] = item
    stages = list(settings.ladder.stages)
    for new in cond.stages:
        for i, old in enumerate(stages):
            if old.pool == new.pool:
                stages[i] = new
                break
        else:
            stages.append(new)
    topk = {(t.pool, t.lane): t for t in settings.topk}
    for t in cond.topk:
        topk[(t.pool, t.lane)] = t
    lanes = settings.lanes
    if cond.explore_floor is not None:
        lanes = replace(lanes, explore_floor=cond.explore_floor)
    return replace(
        settings,
        limits=tuple(sorted(limits.values(), key=lambda lim: list(METRICS).index(lim.metric))),
        ladder=replace(settings.ladder, stages=tuple(stages)),
        topk=tuple(topk.values()),
        lanes=lanes,
        expansion_reserve=settings.expansion_reserve if cond.expansion_reserve is None else cond.expansion_reserve,
        completion_budget=settings.completion_budget if cond.completion_budget is None else cond.completion_budget,
    )


def _attribute(attributes: Mapping[str, Any], name: str) -> Any:
    return attributes.get(name)


def guard_matches(guard: Guard, attributes: Mapping[str, Any]) -> bool:
    """Missing attributes never match (except under ``not``), so a guard on a field the
    pack lacks is simply false rather than an error at evaluation time."""
    if isinstance(guard, AllOf):
        return all(guard_matches(g, attributes) for g in guard.items)
    if isinstance(guard, AnyOf):
        return any(guard_matches(g, attributes) for g in guard.items)
    if isinstance(guard, Not):
        return not guard_matches(guard.item, attributes)
    actual = _attribute(attributes, guard.attribute)
    if actual is None:
        return False
    want = guard.value
    op = guard.op
    try:
        if op == "==":
            return _norm(actual) == _norm(want)
        if op == "!=":
            return _norm(actual) != _norm(want)
        if op == "in":
            return _norm(actual) in {_norm(v) for v in want}
        if op == "contains":
            return isinstance(actual, (list, tuple, set, frozenset)) and _norm(want) in {_norm(v) for v in actual}
        a, w = Decimal(str(actual)), Decimal(str(want))
    except (TypeError, ArithmeticError, ValueError):
        return False
    return {"<": a < w, "<=": a <= w, ">": a > w, ">=": a >= w}.get(op, False)


def _norm(value: object) -> object:
    """Compare numbers as numbers and strings case-sensitively."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, Decimal, float)):
        return Decimal(str(value))
    return value
