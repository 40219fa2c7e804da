"""Hypothesis strategies for retrieval packs (the agent's format), policies and usage.

They live in the package, not only in the tests, because `policy verify` runs the same
properties against a user's own policy; the test suite imports them from here.

Packs are valid by construction (they pass the loader's schema and cross-reference
checks), and cover what real packs rarely show but can: empty pools and lanes,
explore-only and exploit-only packs, tied scores, unicode and very long names. Policies
are generated as rule *text* and go through the real parser and checker, so every
generated policy is one a user could have written.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from hypothesis import strategies as st

from policy_engine.usage import Request, UsageSnapshot

if TYPE_CHECKING:
    from policy_engine.policy import Policy
    from policy_engine.verify.invariants import Case

POOL_ORDER = ("fields", "operators", "subcategories", "datasets")
LANES = ("exploit", "explore")

# ---- names -----------------------------------------------------------------------------

_plain = st.from_regex(r"[a-z][a-z0-9_]{0,14}", fullmatch=True)
_unicode = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=12)
_long = st.text(
    st.characters(min_codepoint=32, max_codepoint=0x2FFF, exclude_categories=["Cs"]), min_size=200, max_size=400
)
names = st.one_of(_plain, _plain, _unicode, _long)


def _unique_names(min_size: int, max_size: int) -> st.SearchStrategy[list[str]]:
    return st.lists(names, min_size=min_size, max_size=max_size, unique=True)


# ---- scores and lanes --------------------------------------------------------------------

#: few distinct values, so ties are common
_scores = st.one_of(
    st.sampled_from([1.0, 0.9, 0.5, 0.5, 0.25, 0.0]),
    st.floats(min_value=0.0, max_value=1.0, allow_nan=False, allow_infinity=False).map(lambda x: round(x, 4)),
)


def _lane_mode() -> st.SearchStrategy[str]:
    return st.sampled_from(["mixed", "mixed", "exploit_only", "explore_only"])


def _lane(draw: st.DrawFn, mode: str) -> str:
    if mode == "exploit_only":
        return "exploit"
    if mode == "explore_only":
        return "explore"
    return draw(st.sampled_from(LANES))


def _ranked(items: list[dict[str, Any]], draw: st.DrawFn) -> list[dict[str, Any]]:
    """Candidate lists come in rank order (best first), usually exploit first; a stable
    sort keeps tied scores in generation order. Sometimes the lanes interleave."""
    if draw(st.booleans()):
        return sorted(items, key=lambda c: (c["lane"] != "exploit", -c["score"]))
    return sorted(items, key=lambda c: -c["score"])


@dataclass(frozen=True)
class PackSizes:
    """Upper bounds per pool; `policy verify` uses bigger ones than the unit tests."""

    subcategories: int = 5
    datasets: int = 8
    fields: int = 30
    operators: int = 24


@st.composite
def packs(draw: st.DrawFn, sizes: PackSizes = PackSizes()) -> dict[str, Any]:
    """A valid retrieval pack in the agent's format (``agent-retrieval-pack/v1``)."""
    mode = draw(_lane_mode())
    subcategories = draw(_unique_names(0, sizes.subcategories))
    datasets: list[dict[str, Any]] = []
    if subcategories:
        for ident in draw(_unique_names(0, sizes.datasets)):
            datasets.append(
                {
                    "id": ident,
                    "name": draw(st.sampled_from(["", "Dataset"])) or ident,
                    "subcategory_id": draw(st.sampled_from(subcategories)),
                    "lane": _lane(draw, mode),
                    "score": draw(_scores),
                }
            )
    fields: list[dict[str, Any]] = []
    if datasets:
        for ident in draw(_unique_names(0, sizes.fields)):
            fields.append(
                {
                    "id": ident,
                    "dataset_id": draw(st.sampled_from([d["id"] for d in datasets])),
                    "type": draw(st.sampled_from(["MATRIX", "VECTOR", "GROUP"])),
                    "lane": _lane(draw, mode),
                    "score": draw(_scores),
                }
            )
    operators = [
        {
            "name": ident,
            "definition": f"{ident}(x, d)",
            "scope": ["REGULAR"],
            "category": draw(st.sampled_from(["Time Series", "Cross Sectional", "Arithmetic"])),
            "lane": _lane(draw, mode),
            "score": draw(_scores),
        }
        for ident in draw(_unique_names(0, sizes.operators))
    ]
    datasets, fields, operators = _ranked(datasets, draw), _ranked(fields, draw), _ranked(operators, draw)
    pack: dict[str, Any] = {
        "idea_id": draw(st.sampled_from(["idea-0001", "idea-0042"])),
        "query": draw(st.one_of(st.just("earnings surprise mean reversion"), _unicode)),
        "target": {
            "instrumentType": "EQUITY",
            "region": draw(st.sampled_from(["USA", "CHN", "EUR"])),
            "universe": draw(st.sampled_from(["TOP3000", "TOP500"])),
            "delay": draw(st.sampled_from([0, 1])),
        },
        "selected_subcategories": subcategories,
        "candidate_datasets": datasets,
        "candidate_fields": fields,
        "candidate_operators": operators,
        "lanes": {
            lane: {
                "field_ids": [f["id"] for f in fields if f["lane"] == lane],
                "operator_names": [o["name"] for o in operators if o["lane"] == lane],
            }
            for lane in LANES
        },
    }
    if draw(st.booleans()):
        counts = {
            "subcategories": len(subcategories),
            "datasets": len(datasets),
            "fields": len(fields),
            "operators": len(operators),
        }
        pack["visual_graph"] = {"version": "v1", "nodes": [], "edges": []}
        pack["token_estimate"] = {"input_chars": 0, "input_tokens_rough": 0}
        pack["budget_policy"] = {
            "exploit_ratio": 0.7,
            "explore_ratio": 0.3,
            "exploit": {"subcategories": 4, "datasets": 14, "fields": 60, "operators": 48},
            "explore": {"subcategories": 1, "datasets": 3, "fields": 12, "operators": 12},
        }
        pack["expansion_policy"] = {
            "enabled": True,
            "trigger_on_repeated_validation_error": 2,
            "topk_expand_factor": 1.5,
        }
        pack["context_guard"] = {
            "full_metadata_blocked": True,
            "rules": ["Never send full metadata; only top-k candidates."],
            "max_items": dict(counts),
        }
        pack["telemetry"] = {"retrieval_ms": draw(st.integers(0, 500)), "candidate_counts": dict(counts)}
    return pack


# ---- usage ---------------------------------------------------------------------------------


def usage_snapshots(max_tokens: int = 2_000_000, max_micro_usd: int = 100_000_000) -> st.SearchStrategy[UsageSnapshot]:
    """Any snapshot (day usage at least the batch's, as a ledger would report)."""

    @st.composite
    def build(draw: st.DrawFn) -> UsageSnapshot:
        batch = draw(st.integers(0, max_tokens))
        batch_usd = draw(st.integers(0, max_micro_usd))
        return UsageSnapshot(
            batch_tokens=batch,
            day_tokens=batch + draw(st.integers(0, max_tokens)),
            batch_micro_usd=batch_usd,
            day_micro_usd=batch_usd + draw(st.integers(0, max_micro_usd)),
        )

    return build()


requests = st.builds(Request, completion_tokens=st.one_of(st.none(), st.integers(1, 4000)), expansion=st.booleans())


# ---- policies --------------------------------------------------------------------------------

METRIC_UNITS = {
    "request_prompt": "tokens",
    "request_completion": "tokens",
    "batch_total": "tokens",
    "day_total": "tokens",
    "request_usd": "usd",
    "batch_usd": "usd",
    "day_usd": "usd",
}


@dataclass(frozen=True)
class StageSpec:
    name: str
    pool: str
    kind: str  # factor | share | keep
    values: tuple[str, ...]  # as written
    minimum: int | None

    def text(self) -> str:
        words = " ".join(self.values)
        tail = f" min {self.minimum}" if self.minimum is not None else ""
        return f"  stage {self.name}: {self.pool} {self.kind} {words}{tail}"


@dataclass(frozen=True)
class PolicySpec:
    """A policy as data, printed as rule text by `text()`. Limits are written with
    whatever number style was drawn (`12_000`, `12k`, `12000`)."""

    tokenizer: str
    limits: tuple[tuple[str, str, str, str], ...]  # (rule name, metric, amount text, severity)
    stages: tuple[StageSpec, ...]
    exploit_pct: int = 70
    floor: int = 1
    reserve: int = 0
    completion: int = 0
    topk: tuple[tuple[str, int, int], ...] = ()  # (pool, exploit, explore)
    price: tuple[str, str] | None = None  # (prompt $, completion $) per 1M
    exhausted_reason: str | None = None
    conditions: tuple[str, ...] = ()  # complete `when` blocks
    comments: bool = False
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def text(self) -> str:
        out = []
        if self.comments:
            out.append("# generated policy")
        out.append('policy "generated"')
        out.append(self.tokenizer)
        if self.price is not None:
            out.append(f'price "m": prompt ${self.price[0]} per 1M, completion ${self.price[1]} per 1M')
            out.append('pricing model "m"')
        for name, metric, amount, severity in self.limits:
            suffix = "" if severity == "block" else f" {severity}"
            unit = "" if METRIC_UNITS[metric] == "usd" else " tokens"
            out.append(f"limit {name}: {metric} <= {amount}{unit}{suffix}")
        if self.completion:
            out.append(f"completion budget {self.completion} tokens")
        if self.reserve:
            out.append(f"expansion reserve {self.reserve} tokens")
        out.append(f"lanes exploit {self.exploit_pct}% explore {100 - self.exploit_pct}%")
        out.append(f"explore floor {self.floor}")
        for pool, exploit, explore in self.topk:
            out.append(f"topk {pool} exploit {exploit} explore {explore}")
        if self.stages or self.exhausted_reason is not None:
            out.append("ladder {")
            for stage in self.stages:
                out.append(stage.text())
                if self.comments:
                    out.append("  # a comment between stages")
            out.append("  on exhausted block" + (f' "{self.exhausted_reason}"' if self.exhausted_reason else ""))
            out.append("}")
        out.extend(self.conditions)
        return "\n".join(out) + "\n"


def _amount(value: int) -> st.SearchStrategy[str]:
    """One integer written in any of the DSL's number styles."""
    styles = [st.just(str(value)), st.just(f"{value:_}")]
    if value % 1000 == 0 and value:
        styles.append(st.just(f"{value // 1000}k"))
    if value % 1_000_000 == 0 and value:
        styles.append(st.just(f"{value // 1_000_000}M"))
    return st.one_of(styles)


@st.composite
def stage_specs(draw: st.DrawFn, pool: str, name: str) -> StageSpec:
    kind = draw(st.sampled_from(["factor", "share", "keep"]))
    n = draw(st.integers(1, 5))
    if kind == "keep":
        values = sorted(draw(st.lists(st.integers(1, 60), min_size=n, max_size=n, unique=True)), reverse=True)
        words = tuple(str(v) for v in values)
    else:
        hundredths = sorted(draw(st.lists(st.integers(1, 100), min_size=n, max_size=n, unique=True)), reverse=True)
        if draw(st.booleans()):
            words = tuple(f"{h}%" for h in hundredths)
        else:
            words = tuple(str((Decimal(h) / 100).normalize()) if h != 100 else "1" for h in hundredths)
    minimum = draw(st.one_of(st.none(), st.integers(0, 6)))
    return StageSpec(name, pool, kind, words, minimum)


@st.composite
def ladders(draw: st.DrawFn) -> tuple[StageSpec, ...]:
    pools = draw(
        st.lists(st.sampled_from(POOL_ORDER), unique=True, min_size=draw(st.sampled_from([0, 1, 1, 1])), max_size=4)
    )
    return tuple(draw(stage_specs(pool, f"trim_{pool}")) for pool in pools)


TOKENIZERS = (
    'tokenizer tiktoken "o200k_base"',
    'tokenizer tiktoken "cl100k_base"',
    'tokenizer model "gpt-4o"',
    "tokenizer rough 4 chars per token",
    "tokenizer rough 3.5 chars per token",
)


@st.composite
def policy_specs(draw: st.DrawFn, *, scale: int = 3000, with_conditions: bool = True) -> PolicySpec:
    """A valid policy. ``scale`` is the prompt size (tokens) limits are drawn around, so
    the ladder runs often instead of everything fitting or nothing fitting."""
    limits = []
    values: dict[str, int] = {}
    priced = draw(st.booleans())
    for metric, unit in METRIC_UNITS.items():
        if unit == "usd" and not priced:
            continue
        if not draw(st.booleans()):
            continue
        if unit == "usd":
            amount = "$" + str(
                draw(st.sampled_from([Decimal("0.001"), Decimal("0.01"), Decimal("0.5"), Decimal("50")]))
            )
        else:
            base = {
                "request_prompt": scale * 3 // 4,
                "request_completion": 2000,
                "batch_total": scale * 3,
                "day_total": scale * 10,
            }[metric]
            values[metric] = draw(st.integers(max(1, base // 10), base * 2))
            amount = draw(_amount(values[metric]))
        severity = draw(st.sampled_from(["block", "block", "warn"]))
        limits.append((f"lim_{metric}", metric, amount, severity))
    price = None
    if priced:
        price = (draw(st.sampled_from(["0", "0.15", "2.5", "30"])), draw(st.sampled_from(["0", "0.6", "10", "60"])))
    stages = draw(ladders())
    topk = tuple(
        (pool, draw(st.integers(1, 40)), draw(st.integers(1, 12)))
        for pool in POOL_ORDER
        if draw(st.integers(0, 5)) == 0
    )
    floor = draw(st.integers(0, 3))
    capped = [explore for _pool, _exploit, explore in topk]
    if capped:
        floor = min(floor, min(capped))
    conditions: tuple[str, ...] = ()
    if with_conditions and draw(st.booleans()):
        value = draw(st.integers(1, scale * 2))
        conditions = (
            f'when usa: region == "USA" and fields.count > {draw(st.integers(0, 20))} {{\n'
            f"  limit request_prompt: request_prompt <= {value} tokens\n}}",
        )
    return PolicySpec(
        tokenizer=draw(st.sampled_from(TOKENIZERS)),
        limits=tuple(limits),
        stages=stages,
        exploit_pct=draw(st.integers(1, 99)),
        floor=floor,
        reserve=min(draw(st.sampled_from([0, 0, 100, 500])), values.get("batch_total", 10**9) - 1),
        completion=draw(st.sampled_from([0, 200, 1600])),
        topk=topk,
        price=price,
        exhausted_reason=draw(st.sampled_from([None, None, "budget_exhausted"])),
        conditions=conditions,
        comments=draw(st.booleans()),
    )


# ---- cases: a pack, usage and a request, with pressure on the policy's own limits ---------


@st.composite
def cases(draw: st.DrawFn, policy: Policy, sizes: PackSizes = PackSizes(), pack: dict[str, Any] | None = None) -> Case:
    """A `Case` for ``policy``. Usage is drawn so that the room left under the policy's
    batch and day limits holds the prompt's fixed part plus a random share (-20% to 150%)
    of its candidates' part: the ladder then runs, stops early, exhausts or cannot help."""
    from policy_engine.packs import load_pack
    from policy_engine.verify.invariants import Case
    from policy_engine.verify.reference import reference_for

    if pack is None:
        pack = draw(packs(sizes))
    pools = load_pack(pack)
    settings = policy.resolve(pools.attributes)[0]
    render, count = reference_for(policy, pools)
    untrimmed = count(render({pool: tuple(c.id for c in pools.pool(pool)) for pool in POOL_ORDER}))
    fixed = count(render({pool: () for pool in POOL_ORDER}))
    request = draw(
        st.builds(
            Request, completion_tokens=st.one_of(st.none(), st.none(), st.integers(1, 2000)), expansion=st.booleans()
        )
    )
    completion = request.completion_tokens if request.completion_tokens is not None else settings.completion_budget

    def room(
        metric: str, spent_by_request: int, reserve: int = 0, per_token: Callable[[int], int] | None = None
    ) -> int:
        """Usage that leaves a random share of the request's cost under the limit."""
        limit = settings.limit(metric)
        cost: Callable[[int], int] = (lambda tokens: tokens) if per_token is None else per_token
        if limit is None or draw(st.integers(0, 4)) == 0:
            return draw(st.integers(0, 3 * max(cost(untrimmed), 1)))
        # room for the fixed part plus the case's share (+ up to 40%) of the candidates' part
        share = common_share + draw(st.integers(0, 40))
        prompt_room = cost(fixed) + (cost(untrimmed) - cost(fixed)) * share // 100
        return max(0, limit.value - reserve - spent_by_request - prompt_room)

    common_share = draw(st.integers(-20, 110))
    reserve = 0 if request.expansion else settings.expansion_reserve
    batch = room("batch_total", completion, reserve)
    day = max(batch, room("day_total", completion))
    price = policy.price
    batch_usd = day_usd = 0
    if price is not None:
        completion_cost = price.cost_micro_usd(0, completion)

        def prompt_cost(tokens: int) -> int:
            return price.cost_micro_usd(tokens, 0)

        batch_usd = room("batch_usd", completion_cost, per_token=prompt_cost)
        day_usd = max(batch_usd, room("day_usd", completion_cost, per_token=prompt_cost))
    return Case(pack, UsageSnapshot(batch, day, batch_usd, day_usd), request)
