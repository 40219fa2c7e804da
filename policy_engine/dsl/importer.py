"""The agent's JSON configs → an equivalent rule file.

Upstream silently dropped invalid values and fell back to defaults; we refuse them, one
diagnostic per bad value with its JSON Pointer. Unknown keys are refused too (a typo'd key
would otherwise be ignored). The rule file keeps upstream's semantics (compounding factor
steps over fields, then operators, then subcategories; the rough chars/4 estimate, unless
an exact tokenizer is asked for) so the agent's decisions can be reproduced.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from policy_engine.errors import Diagnostic, RuleCheckError

RETRIEVAL_KEYS = {"exploit_ratio", "explore_ratio", "exploit", "explore", "expansion_policy"}
POOL_KEYS = ("subcategories", "datasets", "fields", "operators")


class _Refusals:
    def __init__(self, file: str) -> None:
        self.file = file
        self.items: list[Diagnostic] = []

    def bad(self, pointer: str, message: str, hint: str) -> None:
        self.items.append(Diagnostic("E401", f"{pointer}: {message}", hint=hint, file=self.file, pointer=pointer))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _dec(value: Any) -> Decimal:
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)


def _int_text(value: int) -> str:
    return f"{value:_d}" if value >= 10_000 else str(value)


def _positive_int(r: _Refusals, doc: Mapping[str, Any], key: str, *, minimum: int = 1) -> int | None:
    if key not in doc:
        return None
    value = doc[key]
    if isinstance(value, bool) or not isinstance(value, int):
        if _is_number(value) and float(value).is_integer():
            value = int(value)
        else:
            r.bad(f"/{key}", f"expected a whole number, got {value!r}", "write a whole number of tokens")
            return None
    if value < minimum:
        r.bad(
            f"/{key}",
            f"must be at least {minimum}, got {value}",
            "use a positive value" if minimum else "use 0 or more",
        )
        return None
    return value


def _ratio(r: _Refusals, doc: Mapping[str, Any], key: str, pointer: str) -> Decimal | None:
    value = doc.get(key)
    if value is None:
        return None
    if not _is_number(value) or not (0 < value <= 1):
        r.bad(pointer, f"expected a ratio in (0, 1], got {value!r}", "e.g. 0.7")
        return None
    return _dec(value)


def _unknown(r: _Refusals, doc: Mapping[str, Any], known: set[str], prefix: str = "") -> None:
    for key in doc:
        if key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=1)
            r.bad(f"{prefix}/{key}", "unknown key", f"did you mean {close[0]!r}?" if close else "remove it")


def _object(doc: Any, file: str, hint: str) -> Mapping[str, Any]:
    """Nothing else can be read from a document that is not an object: one refusal, at once."""
    if not isinstance(doc, Mapping):
        raise RuleCheckError([Diagnostic("E402", f"{file}: expected a JSON object", hint=hint, file=file, pointer="")])
    return doc


# ---- llm_budget.json: one reader per key -----------------------------------------------


def _tokens(r: _Refusals, doc: Mapping[str, Any], key: str) -> int | None:
    """Limits and budgets: a zero-token budget would block every request."""
    return _positive_int(r, doc, key)


def _count(r: _Refusals, doc: Mapping[str, Any], key: str) -> int | None:
    """The explore floor and the reserve: zero is a meaningful 'none'."""
    return _positive_int(r, doc, key, minimum=0)


def _lane_ratio(r: _Refusals, doc: Mapping[str, Any], key: str) -> Decimal | None:
    return _ratio(r, doc, key, f"/{key}")


def _steps(r: _Refusals, doc: Mapping[str, Any], key: str) -> list[Any]:
    """The ladder's factors: upstream dropped bad entries and kept going, which silently
    changed the ladder; each bad entry is refused here."""
    if key not in doc:
        return []
    raw = doc[key]
    if not isinstance(raw, list) or not raw:
        r.bad(f"/{key}", f"expected a non-empty list of factors, got {raw!r}", "e.g. [0.85, 0.7, 0.55, 0.4]")
        return []
    steps: list[Any] = []
    previous = None
    for i, value in enumerate(raw):
        if not _is_number(value) or not (0 < value <= 1):
            hint = "upstream silently dropped such entries; fix or remove it"
            r.bad(f"/{key}/{i}", f"expected a factor in (0, 1], got {value!r}", hint)
            continue
        if previous is not None and value >= previous:
            hint = "list the factors from the largest to the smallest"
            r.bad(f"/{key}/{i}", f"{value} does not decrease after {previous}", hint)
        previous = value
        steps.append(value)
    return steps


def _price(r: _Refusals, doc: Mapping[str, Any], key: str) -> Decimal | None:
    """Upstream's estimated cost per 1k tokens; a free model (0) is allowed."""
    if key not in doc:
        return None
    value = doc[key]
    if not _is_number(value) or value < 0:
        r.bad(f"/{key}", f"expected a price of 0 or more, got {value!r}", "USD per 1,000 tokens")
        return None
    return _dec(value)


_Reader = Callable[[_Refusals, Mapping[str, Any], str], Any]

#: llm_budget.json's keys and their readers (jsonschema's keyword functions are the model),
#: in the order their refusals are reported.
_LLM_READERS: tuple[tuple[str, _Reader], ...] = (
    ("max_prompt_tokens", _tokens),
    ("max_completion_tokens", _tokens),
    ("max_tokens_per_batch", _tokens),
    ("max_tokens_per_day", _tokens),
    ("min_explore_candidates_per_batch", _count),
    ("expansion_reserve_tokens", _count),
    ("exploit_ratio", _lane_ratio),
    ("explore_ratio", _lane_ratio),
    ("fallback_topk_steps", _steps),
    ("estimated_cost_per_1k_prompt_tokens", _price),
    ("estimated_cost_per_1k_completion_tokens", _price),
)
LLM_KEYS = {key for key, _ in _LLM_READERS}


# ---- retrieval_budget.json ----------------------------------------------------------------


def _agreeing_ratios(rr: _Refusals, doc: Mapping[str, Any], llm: dict[str, Any], llm_file: str) -> None:
    """Both configs may give the lane ratios; they must agree, and either one may give them."""
    theirs_by_key = {key: _ratio(rr, doc, key, f"/{key}") for key in ("exploit_ratio", "explore_ratio")}
    for key, theirs in theirs_by_key.items():
        mine = llm[key]
        if mine is not None and theirs is not None and mine != theirs:
            rr.bad(f"/{key}", f"{theirs} disagrees with {llm_file}'s {mine}", "make the two configs agree")
        llm[key] = mine if mine is not None else theirs


def _pool_topk(rr: _Refusals, doc: Mapping[str, Any], pool: str) -> tuple[str, int, int] | None:
    """A pool's top-k needs both lanes: one lane alone would leave the other unbounded."""
    pair: list[int | None] = []
    for lane in ("exploit", "explore"):
        lane_doc = doc.get(lane, {})
        value = lane_doc.get(pool) if isinstance(lane_doc, Mapping) else None
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            rr.bad(f"/{lane}/{pool}", f"expected a whole number of candidates, got {value!r}", "e.g. 60")
            value = None
        pair.append(value)
    exploit, explore = pair
    if exploit is not None and explore is not None:
        return pool, exploit, explore
    if pair != [None, None]:
        missing = "explore" if explore is None else "exploit"
        rr.bad(f"/{missing}/{pool}", "missing: top-k needs both lanes", f"add {missing}.{pool}")
    return None


def _retrieval(r: _Refusals, doc: Any, file: str, llm: dict[str, Any], llm_file: str) -> list[tuple[str, int, int]]:
    """The retrieval config adds the pools' top-k (shown in the rule file, not enforced: the
    agent's gate never applies them) and may give the lane ratios."""
    rr = _Refusals(file)
    doc = _object(doc, rr.file, "give the agent's retrieval_budget.json")
    _unknown(rr, doc, RETRIEVAL_KEYS)
    _agreeing_ratios(rr, doc, llm, llm_file)
    for lane in ("exploit", "explore"):
        lane_doc = doc.get(lane, {})
        if not isinstance(lane_doc, Mapping):
            rr.bad(f"/{lane}", "expected an object of top-k per pool", '{"fields": 60, ...}')
            continue
        _unknown(rr, lane_doc, set(POOL_KEYS), f"/{lane}")
    topk = [entry for entry in (_pool_topk(rr, doc, pool) for pool in POOL_KEYS) if entry is not None]
    r.items.extend(rr.items)
    return topk


# ---- the rule file: one writer per construct ----------------------------------------------


@dataclass(frozen=True)
class _Imported:
    """The checked values and what the caller asked for: everything the writers need."""

    llm: dict[str, Any]
    topk: list[tuple[str, int, int]]
    llm_file: str
    retrieval_file: str | None
    tokenizer: str | None
    name: str


def _header(imp: _Imported) -> list[str]:
    """Says where the rules came from, so a reader can go back to the configs."""
    sources = imp.llm_file + (f" and {imp.retrieval_file}" if imp.retrieval_file else "")
    return [f"# Imported by `policy import-config` from {sources}.", f'policy "{imp.name}"', ""]


def _tokenizer_line(imp: _Imported) -> list[str]:
    """Upstream's rough estimate unless an exact encoding is asked for: parity by default."""
    if imp.tokenizer:
        return [f'tokenizer tiktoken "{imp.tokenizer}"']
    return [
        "# Upstream's estimate (chars / 4), kept for parity. It undercounts by ~14%:",
        '# switch to `tokenizer tiktoken "o200k_base"` for exact counts.',
        "tokenizer rough 4 chars per token",
    ]


def _price_lines(imp: _Imported) -> list[str]:
    """Upstream's two per-1k costs become one priced model; a missing one costs 0, as upstream."""
    p, c = imp.llm["estimated_cost_per_1k_prompt_tokens"], imp.llm["estimated_cost_per_1k_completion_tokens"]
    if p is None and c is None:
        return []
    p, c = p or Decimal(0), c or Decimal(0)
    return [
        f'price "upstream": prompt ${format(p.normalize(), "f")} per 1k, completion ${format(c.normalize(), "f")} per 1k',
        'pricing model "upstream"',
    ]


_LIMITS = (
    ("request_prompt", "max_prompt_tokens"),
    ("request_completion", "max_completion_tokens"),
    ("batch_total", "max_tokens_per_batch"),
    ("day_total", "max_tokens_per_day"),
)


def _limit_lines(imp: _Imported) -> list[str]:
    """One token limit per upstream maximum; each limit is named after its metric."""
    values = ((metric, imp.llm[key]) for metric, key in _LIMITS)
    return [f"limit {metric}: {metric} <= {_int_text(v)} tokens" for metric, v in values if v is not None]


def _budget_lines(imp: _Imported) -> list[str]:
    """The completion budget repeats max_completion_tokens: upstream budgets that many per
    request; the reserve is upstream's expansion reserve."""
    completion, reserve = imp.llm["max_completion_tokens"], imp.llm["expansion_reserve_tokens"]
    lines = [] if completion is None else [f"completion budget {_int_text(completion)} tokens"]
    return lines + ([] if reserve is None else [f"expansion reserve {_int_text(reserve)} tokens"])


def _lane_lines(imp: _Imported) -> list[str]:
    """Lanes need both ratios; the floor is upstream's min_explore_candidates_per_batch."""
    exploit, explore, floor = (
        imp.llm["exploit_ratio"],
        imp.llm["explore_ratio"],
        imp.llm["min_explore_candidates_per_batch"],
    )
    lines = []
    if exploit is not None and explore is not None:
        lines.append(f"lanes exploit {format(exploit.normalize(), 'f')} explore {format(explore.normalize(), 'f')}")
    return lines + ([] if floor is None else [f"explore floor {floor}"])


def _topk_lines(imp: _Imported) -> list[str]:
    """Commented out: enforcing them would make the gate stricter than the agent's."""
    if not imp.topk:
        return []
    return [
        "# retrieval_budget.json's top-k: the agent's pack builder applies them, its gate",
        "# never does. Uncomment to enforce them at the gate as well:",
        *(f"# topk {pool} exploit {a} explore {b}" for pool, a, b in imp.topk),
    ]


def _ladder_lines(imp: _Imported) -> list[str]:
    """Upstream compounds the same factors over fields, then operators, then subcategories."""
    steps = imp.llm["fallback_topk_steps"]
    if not steps:
        return []
    factors = " ".join(format(_dec(v).normalize(), "f") for v in steps)
    stages = [f"  stage {pool}: {pool} factor {factors} min 1" for pool in ("fields", "operators", "subcategories")]
    return ["ladder {", *stages, "  on exhausted block", "}"]


#: The rule file's constructs in the order they are written.
_WRITERS: tuple[Callable[[_Imported], list[str]], ...] = (
    _header,
    _tokenizer_line,
    _price_lines,
    _limit_lines,
    _budget_lines,
    _lane_lines,
    _topk_lines,
    _ladder_lines,
)


def import_config(
    llm_budget: Any,
    retrieval_budget: Any = None,
    *,
    llm_file: str = "llm_budget.json",
    retrieval_file: str | None = None,
    tokenizer: str | None = None,
    name: str = "imported",
) -> str:
    """Rule text (canonical). ``tokenizer``: an exact encoding to use instead of upstream's
    rough chars/4 estimate (for parity, leave it None)."""
    from policy_engine.dsl import format_text

    r = _Refusals(llm_file)
    llm_budget = _object(llm_budget, llm_file, "give the agent's llm_budget.json")
    _unknown(r, llm_budget, LLM_KEYS)
    llm = {key: read(r, llm_budget, key) for key, read in _LLM_READERS}
    topk: list[tuple[str, int, int]] = []
    if retrieval_budget is not None:
        topk = _retrieval(r, retrieval_budget, retrieval_file or "retrieval_budget.json", llm, llm_file)
    exploit, explore = llm["exploit_ratio"], llm["explore_ratio"]
    if exploit is not None and explore is not None and exploit + explore != 1:
        r.bad("/explore_ratio", f"exploit {exploit} + explore {explore} is not 1", "make them add up to 1")
    if r.items:
        raise RuleCheckError(r.items)
    imp = _Imported(llm, topk, llm_file, retrieval_file, tokenizer, name)
    lines = [line for write in _WRITERS for line in write(imp)]
    return format_text("\n".join(lines) + "\n", "<imported>")
