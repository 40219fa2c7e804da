"""The rule file's syntax tree: immutable, every node with its source span.

Spans never take part in equality (`compare=False`), so ``parse(format(x)) == parse(x)``
is a plain `==`. Numbers keep the text the user wrote (``12_000``, ``1.5M``, ``30%``) so
the formatter never rewrites a value; `value` reads it exactly as a Decimal. Comments are
nodes, so the formatter keeps them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from policy_engine.errors import Span

_SPAN = field(default=Span("<unknown>", 0, 0), compare=False, repr=False, kw_only=True)
_SUFFIX = {"k": Decimal(1000), "M": Decimal(1_000_000), "%": Decimal("0.01")}


@dataclass(frozen=True, slots=True)
class Num:
    text: str
    span: Span = _SPAN

    @property
    def value(self) -> Decimal:
        raw = self.text.replace("_", "")
        scale = Decimal(1)
        if raw[-1] in _SUFFIX:
            scale = _SUFFIX[raw[-1]]
            raw = raw[:-1]
        return Decimal(raw) * scale

    @property
    def is_percent(self) -> bool:
        return self.text.endswith("%")


@dataclass(frozen=True, slots=True)
class Money:
    text: str  # with the leading $
    span: Span = _SPAN

    @property
    def value(self) -> Decimal:
        return Decimal(self.text[1:].replace("_", ""))


@dataclass(frozen=True, slots=True)
class Str:
    value: str
    span: Span = _SPAN


@dataclass(frozen=True, slots=True)
class Comment:
    text: str  # including the leading #
    inline: bool = False  # on the same line as the statement before it
    span: Span = _SPAN


@dataclass(frozen=True, slots=True)
class PolicyName:
    name: Str
    span: Span = _SPAN


@dataclass(frozen=True, slots=True)
class Include:
    path: Str
    span: Span = _SPAN


@dataclass(frozen=True, slots=True)
class TokenizerDecl:
    kind: str  # tiktoken | model | rough
    name: Str | None = None
    ratio: Num | None = None
    span: Span = _SPAN


@dataclass(frozen=True, slots=True)
class TemplateDecl:
    name: Str
    span: Span = _SPAN


@dataclass(frozen=True, slots=True)
class PriceDecl:
    model: Str
    prompt: Money
    prompt_per: str  # 1k | 1M
    completion: Money
    completion_per: str
    span: Span = _SPAN


@dataclass(frozen=True, slots=True)
class PricingDecl:
    model: Str
    span: Span = _SPAN


@dataclass(frozen=True, slots=True)
class LimitDecl:
    name: str
    metric: str
    amount: Num | Money
    severity: str | None = None
    metric_span: Span = field(default=Span("<unknown>", 0, 0), compare=False, repr=False)
    span: Span = _SPAN


@dataclass(frozen=True, slots=True)
class CompletionDecl:
    tokens: Num
    span: Span = _SPAN


@dataclass(frozen=True, slots=True)
class ReserveDecl:
    tokens: Num
    span: Span = _SPAN


@dataclass(frozen=True, slots=True)
class LanesDecl:
    exploit: Num
    explore: Num
    span: Span = _SPAN


@dataclass(frozen=True, slots=True)
class FloorDecl:
    count: Num
    span: Span = _SPAN


@dataclass(frozen=True, slots=True)
class TopKDecl:
    pool: str
    exploit: Num
    explore: Num
    span: Span = _SPAN


@dataclass(frozen=True, slots=True)
class StepGroup:
    kind: str  # factor | share | keep
    values: tuple[Num, ...]
    span: Span = _SPAN


@dataclass(frozen=True, slots=True)
class StageDecl:
    name: str
    pool: str
    groups: tuple[StepGroup, ...]
    minimum: Num | None = None
    pool_span: Span = field(default=Span("<unknown>", 0, 0), compare=False, repr=False)
    span: Span = _SPAN


@dataclass(frozen=True, slots=True)
class ExhaustedDecl:
    reason: Str | None = None
    span: Span = _SPAN


@dataclass(frozen=True, slots=True)
class LadderDecl:
    items: tuple[StageDecl | ExhaustedDecl | Comment, ...]
    span: Span = _SPAN


@dataclass(frozen=True, slots=True)
class CompareNode:
    attribute: str
    op: str  # == != < <= > >= in contains
    values: tuple[Str | Num, ...]
    span: Span = _SPAN


@dataclass(frozen=True, slots=True)
class AllOfNode:
    items: tuple[GuardNode, ...]
    span: Span = _SPAN


@dataclass(frozen=True, slots=True)
class AnyOfNode:
    items: tuple[GuardNode, ...]
    span: Span = _SPAN


@dataclass(frozen=True, slots=True)
class NotNode:
    item: GuardNode
    span: Span = _SPAN


GuardNode = CompareNode | AllOfNode | AnyOfNode | NotNode


@dataclass(frozen=True, slots=True)
class WhenDecl:
    name: str
    guard: GuardNode
    body: tuple[Statement, ...]
    span: Span = _SPAN


Statement = (
    PolicyName
    | Include
    | TokenizerDecl
    | TemplateDecl
    | PriceDecl
    | PricingDecl
    | LimitDecl
    | CompletionDecl
    | ReserveDecl
    | LanesDecl
    | FloorDecl
    | TopKDecl
    | LadderDecl
    | WhenDecl
    | Comment
)


@dataclass(frozen=True, slots=True)
class PolicyFile:
    statements: tuple[Statement, ...]
    file: str = field(default="<string>", compare=False)
    span: Span = _SPAN
