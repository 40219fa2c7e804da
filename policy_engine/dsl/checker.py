"""AST → checked `Policy`. Every check is a small function that yields diagnostics; all of
them run, so one pass reports every independent mistake in the file, each once."""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import tiktoken.model

from policy_engine.conditions import AllOf, AnyOf, Compare, Conditional, Not
from policy_engine.dsl import ast as A
from policy_engine.errors import Diagnostic, Severity, Span
from policy_engine.policy import (
    LANES,
    METRICS,
    POOLS,
    Enforcement,
    Ladder,
    Lanes,
    Limit,
    Policy,
    Price,
    Settings,
    Stage,
    Step,
    StepKind,
    Tokenizer,
    TopK,
)
from policy_engine.reading.bounds import MAX_QUANTITY
from policy_engine.tokens.resolve import KNOWN_ENCODINGS

STRING_ATTRIBUTES = ("region", "universe", "instrument_type", "query", "idea_id")
NUMBER_ATTRIBUTES = ("delay",)
LIST_ATTRIBUTES = ("tags",)
COUNT_ATTRIBUTES = tuple(f"{p}.count" for p in POOLS) + tuple(f"{p}.{lane}.count" for p in POOLS for lane in LANES)
ATTRIBUTES = STRING_ATTRIBUTES + NUMBER_ATTRIBUTES + LIST_ATTRIBUTES + COUNT_ATTRIBUTES
TEMPLATES = ("agent_envelope",)
_ALLOWED_IN_WHEN = (A.LimitDecl, A.LadderDecl, A.TopKDecl, A.FloorDecl, A.ReserveDecl, A.CompletionDecl, A.Comment)
_STEP_KIND = {"factor": StepKind.FACTOR, "share": StepKind.SHARE, "keep": StepKind.COUNT}


#: Work bounds: each step is one ladder rung (evaluated, traced, written to JSON), each
#: condition is tested on every evaluation; real policies use a handful of each.
MAX_STEPS_PER_STAGE = 32
MAX_CONDITIONS = 64
# The other unit's metric for the same scope, for E202's hint.
_USD_TWIN = {"request_prompt": "request_usd", "batch_total": "batch_usd", "day_total": "day_usd"}
_TOKEN_TWIN = {v: k for k, v in _USD_TWIN.items()}


def _d(code: str, message: str, hint: str, span: Span) -> Diagnostic:
    return Diagnostic(code, message, hint=hint, span=span)


def _did_you_mean(word: str, known: tuple[str, ...] | list[str]) -> str:
    close = difflib.get_close_matches(word, list(known), n=1, cutoff=0.6)
    if close:
        return f"did you mean `{close[0]}`?"
    if len(known) <= 8:
        return "known: " + ", ".join(known)
    return ""


class Collector:
    """Builds the model while collecting diagnostics; never stops at the first mistake."""

    def __init__(self) -> None:
        self.problems: list[Diagnostic] = []
        self.warnings: list[Diagnostic] = []

    def add(self, diag: Diagnostic) -> None:
        self.problems.append(diag)

    def warn(self, diag: Diagnostic) -> None:
        """Valid, but almost certainly not what was meant: `policy check` shows it, the
        policy still loads."""
        self.warnings.append(dataclasses.replace(diag, severity=Severity.WARNING))

    # ---- numbers ---------------------------------------------------------------------

    def whole(self, num: A.Num, what: str, *, minimum: int = 1) -> int | None:
        if num.is_percent:
            self.add(_d("E215", f"{what} cannot be a percentage ({num.text})", "write a plain number", num.span))
            return None
        value = num.value
        if value != value.to_integral_value():
            self.add(
                _d(
                    "E214",
                    f"{what} must be a whole number, got {num.text}",
                    "token and candidate counts are whole numbers",
                    num.span,
                )
            )
            return None
        if value < minimum:
            self.add(
                _d(
                    "E203",
                    f"{what} must be at least {minimum}, got {num.text}",
                    "use a positive number" if minimum > 0 else "use 0 or more",
                    num.span,
                )
            )
            return None
        if value > MAX_QUANTITY:
            self.add(
                _d(
                    "E203",
                    f"{what} is above the bound of 10^15",
                    "no budget or count has business above a quadrillion",
                    num.span,
                )
            )
            return None
        return int(value)

    def ratio(self, num: A.Num, what: str) -> Decimal | None:
        value = num.value
        if not (Decimal(0) < value <= Decimal(1)):
            self.add(
                _d("E204", f"{what} must be in (0, 1], got {num.text}", "write a share such as 0.85 or 85%", num.span)
            )
            return None
        return value

    # ---- statements ------------------------------------------------------------------

    def limit(self, node: A.LimitDecl) -> Limit | None:
        if node.metric not in METRICS:
            self.add(
                _d(
                    "E201",
                    f"unknown metric `{node.metric}`",
                    _did_you_mean(node.metric, tuple(METRICS)) or "see docs/rules-reference.md",
                    node.metric_span,
                )
            )
            return None
        unit = METRICS[node.metric]
        severity = Enforcement(node.severity) if node.severity else Enforcement.BLOCK
        if unit == "tokens":
            if not isinstance(node.amount, A.Num):
                usd = _USD_TWIN.get(node.metric)
                amount = node.amount.text.lstrip("$")
                hint = f"write `{node.metric} <= {amount} tokens`" + (
                    f", or cap dollars with `{usd} <= {node.amount.text}`" if usd else ""
                )
                self.add(_d("E202", f"`{node.metric}` is counted in tokens, not dollars", hint, node.amount.span))
                return None
            value = self.whole(node.amount, f"limit `{node.name}`")
            return None if value is None else Limit(node.name, node.metric, value, severity, span=node.span)
        if not isinstance(node.amount, A.Money):
            tokens = _TOKEN_TWIN.get(node.metric)
            hint = f"write `{node.metric} <= ${node.amount.text}`" + (
                f", or cap tokens with `{tokens} <= {node.amount.text} tokens`" if tokens else ""
            )
            self.add(_d("E202", f"`{node.metric}` is in USD, not tokens", hint, node.amount.span))
            return None
        micro = node.amount.value * 1_000_000
        if micro <= 0:
            self.add(_d("E203", f"limit `{node.name}` must be more than $0", "use a positive amount", node.amount.span))
            return None
        if micro > MAX_QUANTITY:
            self.add(
                _d(
                    "E203",
                    f"limit `{node.name}` is above the bound of $1,000,000,000",
                    "amounts are held in micro-dollars up to 10^15",
                    node.amount.span,
                )
            )
            return None
        if micro != micro.to_integral_value():
            self.add(
                _d(
                    "E214",
                    f"limit `{node.name}` is finer than a micro-dollar ({node.amount.text})",
                    "use at most 6 decimal places",
                    node.amount.span,
                )
            )
            return None
        return Limit(node.name, node.metric, int(micro), severity, span=node.span)

    def stage(self, node: A.StageDecl) -> Stage | None:
        ok = True
        if node.pool not in POOLS:
            self.add(_d("E207", f"unknown pool `{node.pool}`", _did_you_mean(node.pool, POOLS), node.pool_span))
            ok = False
        steps: list[Step] = []
        count = sum(len(group.values) for group in node.groups)
        if count > MAX_STEPS_PER_STAGE:
            self.add(
                _d(
                    "E220",
                    f"stage `{node.name}` has {count} steps; the limit is {MAX_STEPS_PER_STAGE}",
                    "a few steps per stage suffice: each is one rung of the ladder",
                    node.span,
                )
            )
            return None
        for group in node.groups:
            kind = _STEP_KIND[group.kind]
            previous: Decimal | None = None
            for num in group.values:
                if kind is StepKind.COUNT:
                    n = self.whole(num, "a keep count")
                    value = None if n is None else Decimal(n)
                else:
                    value = self.ratio(num, f"a {group.kind} step")
                if value is None:
                    ok = False
                    continue
                if previous is not None and value >= previous:
                    self.add(
                        _d(
                            "E206",
                            f"steps must strictly decrease: {num.text} follows {previous.normalize()}",
                            "order the steps from the largest to the smallest",
                            num.span,
                        )
                    )
                    ok = False
                previous = value
                steps.append(Step(kind, value, span=num.span))
        minimum = 1
        if node.minimum is not None:
            m = self.whole(node.minimum, "a stage minimum", minimum=0)
            ok = ok and m is not None
            minimum = m if m is not None else 1
        return Stage(node.name, node.pool, tuple(steps), minimum, span=node.span) if ok else None

    def ladder(self, node: A.LadderDecl) -> tuple[list[Stage], str | None, bool]:
        stages: list[Stage] = []
        reason: str | None = None
        seen_pools: dict[str, A.StageDecl] = {}
        seen_names: set[str] = set()
        exhausted_seen = False
        for item in node.items:
            if isinstance(item, A.StageDecl):
                if item.name in seen_names:
                    self.add(
                        _d("E205", f"stage name `{item.name}` is used twice", "give each stage its own name", item.span)
                    )
                seen_names.add(item.name)
                if item.pool in seen_pools:
                    self.add(
                        _d(
                            "E205",
                            f"pool `{item.pool}` has two stages in one ladder",
                            "merge them: `stage x: fields factor 0.85 then keep 5`",
                            item.span,
                        )
                    )
                seen_pools[item.pool] = item
                stage = self.stage(item)
                if stage is not None:
                    stages.append(stage)
            elif isinstance(item, A.ExhaustedDecl):
                if exhausted_seen:
                    self.add(_d("E205", "`on exhausted` appears twice", "keep one", item.span))
                exhausted_seen = True
                reason = item.reason.value if item.reason else None
        return stages, reason, exhausted_seen

    def guard(self, node: Any) -> Any:
        if isinstance(node, A.AllOfNode):
            return AllOf(tuple(self.guard(i) for i in node.items), span=node.span)
        if isinstance(node, A.AnyOfNode):
            return AnyOf(tuple(self.guard(i) for i in node.items), span=node.span)
        if isinstance(node, A.NotNode):
            return Not(self.guard(node.item), span=node.span)
        attr = node.attribute
        if attr not in ATTRIBUTES:
            self.add(_d("E212", f"unknown attribute `{attr}`", _did_you_mean(attr, ATTRIBUTES), node.span))
            return Compare(attr, node.op, None, span=node.span)
        numeric = attr in NUMBER_ATTRIBUTES or attr in COUNT_ATTRIBUTES
        values = node.values
        for v in values:
            if numeric and not isinstance(v, A.Num):
                self.add(_d("E213", f"`{attr}` is a number; compare it with a number", f"e.g. {attr} > 100", v.span))
            if not numeric and isinstance(v, A.Num) and attr not in LIST_ATTRIBUTES:
                self.add(_d("E213", f"`{attr}` is text; quote the value", f'e.g. {attr} == "USA"', v.span))
        if node.op in ("<", "<=", ">", ">=") and not numeric:
            self.add(_d("E213", f"`{node.op}` compares numbers, but `{attr}` is text", "use == != or in", node.span))
        if node.op == "contains" and attr not in LIST_ATTRIBUTES:
            self.add(
                _d(
                    "E213",
                    f"`contains` tests a list, but `{attr}` is not one",
                    'use tags contains "momentum"',
                    node.span,
                )
            )
        if attr in LIST_ATTRIBUTES and node.op != "contains":
            self.add(_d("E213", f"`{attr}` is a list; test it with contains", f'{attr} contains "momentum"', node.span))
        plain = tuple(v.value for v in values)
        value: Any = plain if node.op == "in" else plain[0]
        return Compare(attr, node.op, value, span=node.span)


def _tokenizer(col: Collector, node: A.TokenizerDecl) -> Tokenizer | None:
    if node.kind == "rough":
        ratio_num = node.ratio
        assert ratio_num is not None  # the grammar gives every rough tokenizer its ratio
        ratio = ratio_num.value
        if not Decimal("0.1") <= ratio <= 100:
            col.add(
                _d(
                    "E203",
                    f"chars per token must be from 0.1 to 100, got {ratio_num.text}",
                    "upstream used 4",
                    ratio_num.span,
                )
            )
            return None
        return Tokenizer("rough", chars_per_token=ratio, span=node.span)
    name_str = node.name
    assert name_str is not None  # the grammar names every tiktoken and model tokenizer
    name = name_str.value
    if node.kind == "tiktoken":
        if name not in KNOWN_ENCODINGS:
            col.add(
                _d("E208", f"unknown tiktoken encoding `{name}`", _did_you_mean(name, KNOWN_ENCODINGS), name_str.span)
            )
            return None
        return Tokenizer("tiktoken", name, span=node.span)
    try:
        tiktoken.model.encoding_name_for_model(name)
    except KeyError:
        known = sorted(tiktoken.model.MODEL_TO_ENCODING)
        hint = _did_you_mean(name, known) or 'name an encoding instead: tokenizer tiktoken "o200k_base"'
        col.add(_d("E208", f"tiktoken maps no encoding to model `{name}`", hint, name_str.span))
        return None
    return Tokenizer("model", name, span=node.span)


def _duplicates(col: Collector, statements: tuple[Any, ...], where: str) -> None:
    singles = (
        A.PolicyName,
        A.TokenizerDecl,
        A.TemplateDecl,
        A.PricingDecl,
        A.CompletionDecl,
        A.ReserveDecl,
        A.LanesDecl,
        A.FloorDecl,
        A.LadderDecl,
    )
    seen: dict[Any, Any] = {}
    for node in statements:
        key: Any = None
        if isinstance(node, singles):
            key = type(node)
        elif isinstance(node, A.LimitDecl):
            key = ("metric", node.metric)
            if ("rule", node.name) in seen:
                first_rule = seen[("rule", node.name)].span
                col.add(
                    Diagnostic(
                        "E205",
                        f"rule name `{node.name}` is used twice in {where}",
                        hint="give each rule its own name",
                        span=node.span,
                        related=((first_rule, f"`{node.name}` is first defined here"),),
                    )
                )
            seen[("rule", node.name)] = node
        elif isinstance(node, A.PriceDecl):
            key = ("price", node.model.value)
        elif isinstance(node, A.TopKDecl):
            key = ("topk", node.pool)
        elif isinstance(node, A.WhenDecl):
            key = ("when", node.name)
        if key is None:
            continue
        if key in seen:
            first = seen[key].span
            col.add(
                Diagnostic(
                    "E205",
                    f"this repeats the statement at line {first.line} in {where}",
                    hint="keep one; to override a value, put it in a file that includes this one",
                    span=node.span,
                    related=((first, "first here"),),
                )
            )
        else:
            seen[key] = node


def check_file_statements(col: Collector, statements: tuple[Any, ...], *, in_when: bool = False) -> None:
    _duplicates(col, statements, "this block" if in_when else "this file")
    for node in statements:
        if in_when and not isinstance(node, _ALLOWED_IN_WHEN):
            col.add(
                _d("E218", f"`{_keyword(node)}` cannot appear inside `when`", "move it to the top level", node.span)
            )


def _keyword(node: Any) -> str:
    return {
        A.PolicyName: "policy",
        A.Include: "include",
        A.TokenizerDecl: "tokenizer",
        A.TemplateDecl: "template",
        A.PriceDecl: "price",
        A.PricingDecl: "pricing",
        A.LanesDecl: "lanes",
        A.WhenDecl: "when",
    }.get(type(node), type(node).__name__)


@dataclasses.dataclass
class _Merged:
    """Each construct's winning statement once the files are merged in precedence order: a
    later file's statement replaces an earlier one with the same key (one per kind for the
    single statements, one per metric, priced model, pool and condition name for the rest)."""

    singles: dict[type, Any] = dataclasses.field(default_factory=dict)
    limits: dict[str, A.LimitDecl] = dataclasses.field(default_factory=dict)
    prices: dict[str, A.PriceDecl] = dataclasses.field(default_factory=dict)
    topk: dict[str, A.TopKDecl] = dataclasses.field(default_factory=dict)
    whens: dict[str, A.WhenDecl] = dataclasses.field(default_factory=dict)

    def add(self, node: Any) -> None:
        if isinstance(node, A.LimitDecl):
            self.limits[node.metric] = node
        elif isinstance(node, A.PriceDecl):
            self.prices[node.model.value] = node
        elif isinstance(node, A.TopKDecl):
            self.topk[node.pool] = node
        elif isinstance(node, A.WhenDecl):
            self.whens[node.name] = node
        elif not isinstance(node, (A.Comment, A.Include)):
            self.singles[type(node)] = node


@dataclasses.dataclass
class _Build:
    """One build: the merged statements and the parts made so far. The construct functions
    run in `_CONSTRUCTS` order because some read what an earlier one made (the explore floor
    is checked against the top-k, the reserve against the batch limit)."""

    col: Collector
    merged: _Merged
    top_file: str
    templates: tuple[str, ...]
    name: str = ""
    tokenizer: Tokenizer | None = None
    template: str = "agent_envelope"
    prices: list[Price] = dataclasses.field(default_factory=list)
    price_model: str | None = None
    limits: list[Limit] = dataclasses.field(default_factory=list)
    lanes: Lanes = dataclasses.field(default_factory=Lanes)
    topk: list[TopK] = dataclasses.field(default_factory=list)
    ladder: Ladder = dataclasses.field(default_factory=lambda: Ladder((), None, span=Span("<builtin>", 0, 0)))
    completion: int | None = None
    reserve: int | None = None
    conditionals: list[Conditional] = dataclasses.field(default_factory=list)


def _policy_name(b: _Build) -> None:
    """An unnamed policy is called after its top file, so traces and ledgers still say which
    policy decided."""
    node = b.merged.singles.get(A.PolicyName)
    b.name = node.name.value if node else b.top_file.rsplit("/", 1)[-1].removesuffix(".policy")


def _tokenizer_statement(b: _Build) -> None:
    """No default tokenizer: rough and exact counts differ by ~14%, so the policy must say
    which one its limits are written against."""
    node = b.merged.singles.get(A.TokenizerDecl)
    if node is not None:
        b.tokenizer = _tokenizer(b.col, node)
        return
    b.col.add(
        _d(
            "E216",
            "the policy names no tokenizer",
            'add `tokenizer tiktoken "o200k_base"` (or `tokenizer rough 4 chars per token` for upstream parity)',
            Span(b.top_file, 1, 1),
        )
    )


def _template(b: _Build) -> None:
    """The template shapes the prompt being counted, so an unknown name is an error, not a
    fallback to the shipped one."""
    node = b.merged.singles.get(A.TemplateDecl)
    if node is None:
        return
    if node.name.value not in b.templates:
        hint = _did_you_mean(node.name.value, list(b.templates))
        b.col.add(_d("E217", f"unknown prompt template `{node.name.value}`", hint, node.name.span))
    b.template = node.name.value


def _condition_count(b: _Build) -> None:
    """Every condition is tested on every evaluation: the count is a work bound."""
    whens = b.merged.whens
    if len(whens) > MAX_CONDITIONS:
        extra = list(whens.values())[MAX_CONDITIONS]
        message = f"the policy has {len(whens)} `when` conditions; the limit is {MAX_CONDITIONS}"
        b.col.add(_d("E221", message, "merge conditions with `or`", extra.span))


def _prices(b: _Build) -> None:
    """Prices are held per 1M tokens whichever unit the statement used; absurd prices are
    refused (a slipped decimal point would make every USD limit trip)."""
    for node in b.merged.prices.values():
        if max(node.prompt.value, node.completion.value) > 1_000_000:
            message = f"price for `{node.model.value}` is above $1,000,000 per unit"
            b.col.add(_d("E203", message, "prices are per 1M or per 1k tokens", node.span))
            continue
        per_p = Decimal(1000) if node.prompt_per == "1k" else Decimal(1)
        per_c = Decimal(1000) if node.completion_per == "1k" else Decimal(1)
        b.prices.append(
            Price(node.model.value, node.prompt.value * per_p, node.completion.value * per_c, span=node.span)
        )


def _pricing(b: _Build) -> None:
    """The priced model must have a price, or USD limits would have nothing to count with."""
    pricing = b.merged.singles.get(A.PricingDecl)
    if pricing is None:
        return
    b.price_model = pricing.model.value
    if b.price_model not in b.merged.prices:
        hint = _did_you_mean(b.price_model, list(b.merged.prices)) or (
            f'add `price "{b.price_model}": prompt $0.15 per 1M, completion $0.60 per 1M`'
        )
        b.col.add(_d("E211", f"no price for model `{b.price_model}`", hint, pricing.model.span))


def _limits(b: _Build) -> None:
    """A USD limit needs a priced model; when the model is named but unpriced, `_pricing`
    has already said so."""
    b.limits = [lim for lim in (b.col.limit(n) for n in b.merged.limits.values()) if lim is not None]
    if A.PricingDecl in b.merged.singles or not any(METRICS[lim.metric] == "usd" for lim in b.limits):
        return
    first = next(n for n in b.merged.limits.values() if n.metric in METRICS and METRICS[n.metric] == "usd")
    b.col.add(
        _d(
            "E211",
            f"limit `{first.name}` is in USD but no `pricing model` is named",
            'add `pricing model "..."` and its `price`',
            first.span,
        )
    )


def _lanes(b: _Build) -> None:
    """The two lanes split one pack, so their shares must make the whole of it."""
    node = b.merged.singles.get(A.LanesDecl)
    if node is None:
        return
    exploit, explore = b.col.ratio(node.exploit, "the exploit ratio"), b.col.ratio(node.explore, "the explore ratio")
    if exploit is None or explore is None:
        return
    if exploit + explore != 1:
        message = f"exploit {node.exploit.text} + explore {node.explore.text} is not 100%"
        b.col.add(_d("E210", message, "make them add up to 1 (e.g. 70% and 30%)", node.span))
    b.lanes = Lanes(exploit, explore, b.lanes.explore_floor, span=node.span)


def _explore_floor(b: _Build) -> None:
    """The floor belongs to the lanes (it is what trimming keeps of the explore lane)."""
    node = b.merged.singles.get(A.FloorDecl)
    if node is None:
        return
    f = b.col.whole(node.count, "the explore floor", minimum=0)
    floor = f if f is not None else b.lanes.explore_floor
    b.lanes = Lanes(b.lanes.exploit_ratio, b.lanes.explore_ratio, floor, span=node.span)


def _topk_entries(col: Collector, node: A.TopKDecl) -> list[TopK]:
    """One `topk` statement names both lanes of a pool; each lane becomes its own entry."""
    if node.pool not in POOLS:
        col.add(_d("E207", f"unknown pool `{node.pool}`", _did_you_mean(node.pool, POOLS), node.span))
        return []
    entries = []
    for lane, num in (("exploit", node.exploit), ("explore", node.explore)):
        v = col.whole(num, f"top-k of {node.pool} {lane}", minimum=0)
        if v is not None:
            entries.append(TopK(node.pool, lane, v, span=num.span))
    return entries


def _topk(b: _Build) -> None:
    """A floor above a lane's top-k cannot hold: an error when the lane keeps some, a warning
    when it keeps none (then the lane is deliberately empty)."""
    floor = b.lanes.explore_floor
    b.topk = [entry for node in b.merged.topk.values() for entry in _topk_entries(b.col, node)]
    for t in b.topk:
        if t.lane != "explore" or floor <= 0:
            continue
        if floor > t.value > 0:
            message = f"explore floor {floor} is larger than the explore top-k of {t.pool} ({t.value})"
            b.col.add(_d("E209", message, "lower the floor or raise the top-k", t.span))
        elif t.value == 0:
            b.col.warn(
                _d(
                    "W201",
                    f"`topk {t.pool} ... explore 0` keeps no explore {t.pool}, so the explore floor of {floor} cannot hold for them",
                    f"raise the explore top-k of {t.pool} to at least {floor}, or set `explore floor 0`",
                    t.span,
                )
            )


def _ladder(b: _Build) -> None:
    """Without a ladder nothing is trimmed: a blocking limit that fails blocks at once."""
    node = b.merged.singles.get(A.LadderDecl)
    if node is not None:
        stages, reason, _ = b.col.ladder(node)
        b.ladder = Ladder(tuple(stages), reason, span=node.span)


def _completion(b: _Build) -> None:
    """The completion tokens a request budgets when its caller does not say."""
    node = b.merged.singles.get(A.CompletionDecl)
    if node is not None:
        b.completion = b.col.whole(node.tokens, "the completion budget")


def _reserve(b: _Build) -> None:
    """The reserve is carved out of the batch limit, so it must leave some of it."""
    node = b.merged.singles.get(A.ReserveDecl)
    if node is None:
        return
    b.reserve = b.col.whole(node.tokens, "the expansion reserve", minimum=0)
    batch = next((lim for lim in b.limits if lim.metric == "batch_total"), None)
    if b.reserve and batch is not None and b.reserve >= batch.value:
        message = f"the expansion reserve ({b.reserve}) leaves nothing of the batch limit ({batch.value})"
        b.col.add(_d("E203", message, "keep the reserve below the batch limit", node.span))


def _when_ladder(col: Collector, body: tuple[Any, ...]) -> tuple[Stage, ...]:
    """A condition swaps the ladder's stages, never its exhausted reason (that one names why
    a request is blocked, whatever matched)."""
    stages: tuple[Stage, ...] = ()
    for n in body:
        if isinstance(n, A.LadderDecl):
            s, _, exhausted = col.ladder(n)
            if exhausted:
                message = "`on exhausted` cannot be changed inside `when`"
                col.add(_d("E218", message, "set it in the top-level ladder", n.span))
            stages = tuple(s)
    return stages


def _when_whole(col: Collector, body: tuple[Any, ...], kind: type, attr: str, what: str, minimum: int) -> int | None:
    """A condition's single-number statements (floor, reserve, completion): the first one
    counts (a repeat is already an E205)."""
    return next((col.whole(getattr(n, attr), what, minimum=minimum) for n in body if isinstance(n, kind)), None)


def _conditional(col: Collector, node: A.WhenDecl) -> Conditional:
    """A `when` block holds the statements that may change per pack; what it leaves out keeps
    the top-level value."""
    body = node.body
    check_file_statements(col, body, in_when=True)
    guard = col.guard(node.guard)
    limits = tuple(lim for lim in (col.limit(n) for n in body if isinstance(n, A.LimitDecl)) if lim is not None)
    stages = _when_ladder(col, body)
    topk = tuple(entry for n in body if isinstance(n, A.TopKDecl) for entry in _topk_entries(col, n))
    floor = _when_whole(col, body, A.FloorDecl, "count", "the explore floor", 0)
    reserve = _when_whole(col, body, A.ReserveDecl, "tokens", "the expansion reserve", 0)
    completion = _when_whole(col, body, A.CompletionDecl, "tokens", "the completion budget", 1)
    return Conditional(node.name, guard, limits, stages, topk, floor, reserve, completion, span=node.span)


def _conditionals(b: _Build) -> None:
    """Conditions are built last: each one checks its own block like a small file."""
    b.conditionals = [_conditional(b.col, node) for node in b.merged.whens.values()]


#: One function per construct, in dependency order (jsonschema's keyword functions are the
#: model): each checks its statements, reports through the collector, and stores its part.
_CONSTRUCTS: tuple[tuple[str, Callable[[_Build], None]], ...] = (
    ("policy", _policy_name),
    ("tokenizer", _tokenizer_statement),
    ("template", _template),
    ("when (count)", _condition_count),
    ("price", _prices),
    ("pricing model", _pricing),
    ("limit", _limits),
    ("lanes", _lanes),
    ("explore floor", _explore_floor),
    ("topk", _topk),
    ("ladder", _ladder),
    ("completion budget", _completion),
    ("expansion reserve", _reserve),
    ("when", _conditionals),
)


def build_policy(
    files: list[tuple[A.PolicyFile, str]], digest: str, templates: tuple[str, ...] = TEMPLATES
) -> tuple[Policy | None, list[Diagnostic]]:
    """``files`` in precedence order, lowest first (included files before the files that
    include them); a later file's statement overrides an earlier one with the same key.
    ``templates``: the template names the policy may select (shipped, and the policy
    directory's ``NAME.template.json`` files)."""
    col = Collector()
    merged = _Merged()
    for tree, _text in files:
        check_file_statements(col, tree.statements)
        for node in tree.statements:
            merged.add(node)
    b = _Build(col, merged, files[-1][0].file, templates)
    for _construct, build in _CONSTRUCTS:
        build(b)
    if col.problems or b.tokenizer is None:
        return None, _sorted(col.problems + col.warnings)
    return _policy(b, digest, files), _sorted(col.warnings)


def _policy(b: _Build, digest: str, files: list[tuple[A.PolicyFile, str]]) -> Policy:
    """Limits are kept in METRICS order, so a decision's limit order does not depend on the
    order the rule file wrote them in."""
    assert b.tokenizer is not None  # build_policy returns before this without one
    settings = Settings(
        limits=tuple(sorted(b.limits, key=lambda lim: list(METRICS).index(lim.metric))),
        ladder=b.ladder,
        lanes=b.lanes,
        topk=tuple(b.topk),
        expansion_reserve=b.reserve or 0,
        completion_budget=b.completion or 0,
    )
    return Policy(
        name=b.name,
        tokenizer=b.tokenizer,
        settings=settings,
        prices=tuple(b.prices),
        price_model=b.price_model,
        template=b.template,
        conditionals=tuple(b.conditionals),
        digest=digest,
        source_files=tuple(t.file for t, _ in files),
    )


def _sorted(items: list[Diagnostic]) -> list[Diagnostic]:
    unique: dict[tuple[Any, ...], Diagnostic] = {}
    for d in items:
        key = (
            d.span.file if d.span else "",
            d.span.line if d.span else 0,
            d.span.column if d.span else 0,
            d.code,
            d.message,
        )
        unique.setdefault(key, d)
    return [unique[k] for k in sorted(unique)]
