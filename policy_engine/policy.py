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
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, Decimal
from enum import Enum
from typing import TYPE_CHECKING, Any

from policy_engine.errors import Span

if TYPE_CHECKING:
    from policy_engine.conditions import Conditional

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
        if not self.conditionals:
            return self.settings, ()
        from policy_engine.conditions import apply_conditional, guard_matches

        settings = self.settings
        matched: list[Conditional] = []
        for cond in self.conditionals:
            if guard_matches(cond.guard, attributes):
                settings = apply_conditional(settings, cond)
                matched.append(cond)
        return settings, tuple(matched)
