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
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from policy_engine.errors import Diagnostic, RuleCheckError

LLM_KEYS = {
    "max_prompt_tokens",
    "max_completion_tokens",
    "max_tokens_per_batch",
    "max_tokens_per_day",
    "fallback_topk_steps",
    "exploit_ratio",
    "explore_ratio",
    "min_explore_candidates_per_batch",
    "expansion_reserve_tokens",
    "estimated_cost_per_1k_prompt_tokens",
    "estimated_cost_per_1k_completion_tokens",
}
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
    if not isinstance(llm_budget, Mapping):
        raise RuleCheckError(
            [
                Diagnostic(
                    "E402",
                    f"{llm_file}: expected a JSON object",
                    hint="give the agent's llm_budget.json",
                    file=llm_file,
                    pointer="",
                )
            ]
        )
    _unknown(r, llm_budget, LLM_KEYS)
    prompt = _positive_int(r, llm_budget, "max_prompt_tokens")
    completion = _positive_int(r, llm_budget, "max_completion_tokens")
    batch = _positive_int(r, llm_budget, "max_tokens_per_batch")
    day = _positive_int(r, llm_budget, "max_tokens_per_day")
    floor = _positive_int(r, llm_budget, "min_explore_candidates_per_batch", minimum=0)
    reserve = _positive_int(r, llm_budget, "expansion_reserve_tokens", minimum=0)
    exploit = _ratio(r, llm_budget, "exploit_ratio", "/exploit_ratio")
    explore = _ratio(r, llm_budget, "explore_ratio", "/explore_ratio")
    steps: list[Any] = []
    if "fallback_topk_steps" in llm_budget:
        raw = llm_budget["fallback_topk_steps"]
        if not isinstance(raw, list) or not raw:
            r.bad(
                "/fallback_topk_steps",
                f"expected a non-empty list of factors, got {raw!r}",
                "e.g. [0.85, 0.7, 0.55, 0.4]",
            )
        else:
            previous = None
            for i, value in enumerate(raw):
                if not _is_number(value) or not (0 < value <= 1):
                    r.bad(
                        f"/fallback_topk_steps/{i}",
                        f"expected a factor in (0, 1], got {value!r}",
                        "upstream silently dropped such entries; fix or remove it",
                    )
                    continue
                if previous is not None and value >= previous:
                    r.bad(
                        f"/fallback_topk_steps/{i}",
                        f"{value} does not decrease after {previous}",
                        "list the factors from the largest to the smallest",
                    )
                previous = value
                steps.append(value)
    prices = {}
    for key in ("estimated_cost_per_1k_prompt_tokens", "estimated_cost_per_1k_completion_tokens"):
        if key in llm_budget:
            value = llm_budget[key]
            if not _is_number(value) or value < 0:
                r.bad(f"/{key}", f"expected a price of 0 or more, got {value!r}", "USD per 1,000 tokens")
            else:
                prices[key] = _dec(value)

    topk: list[tuple[str, Any, Any]] = []
    if retrieval_budget is not None:
        rr = _Refusals(retrieval_file or "retrieval_budget.json")
        if not isinstance(retrieval_budget, Mapping):
            raise RuleCheckError(
                [
                    Diagnostic(
                        "E402",
                        f"{rr.file}: expected a JSON object",
                        hint="give the agent's retrieval_budget.json",
                        file=rr.file,
                        pointer="",
                    )
                ]
            )
        _unknown(rr, retrieval_budget, RETRIEVAL_KEYS)
        r_exploit = _ratio(rr, retrieval_budget, "exploit_ratio", "/exploit_ratio")
        r_explore = _ratio(rr, retrieval_budget, "explore_ratio", "/explore_ratio")
        for key, mine, theirs in (("exploit_ratio", exploit, r_exploit), ("explore_ratio", explore, r_explore)):
            if mine is not None and theirs is not None and mine != theirs:
                rr.bad(f"/{key}", f"{theirs} disagrees with {llm_file}'s {mine}", "make the two configs agree")
        exploit = exploit if exploit is not None else r_exploit
        explore = explore if explore is not None else r_explore
        for lane in ("exploit", "explore"):
            lane_doc = retrieval_budget.get(lane, {})
            if not isinstance(lane_doc, Mapping):
                rr.bad(f"/{lane}", "expected an object of top-k per pool", '{"fields": 60, ...}')
                continue
            _unknown(rr, lane_doc, set(POOL_KEYS), f"/{lane}")
        for pool in POOL_KEYS:
            pair: list[int | None] = []
            for lane in ("exploit", "explore"):
                lane_doc = retrieval_budget.get(lane, {})
                value = lane_doc.get(pool) if isinstance(lane_doc, Mapping) else None
                if value is None:
                    pair.append(None)
                elif isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    rr.bad(f"/{lane}/{pool}", f"expected a whole number of candidates, got {value!r}", "e.g. 60")
                    pair.append(None)
                else:
                    pair.append(value)
            if pair[0] is not None and pair[1] is not None:
                topk.append((pool, pair[0], pair[1]))
            elif pair != [None, None]:
                missing = "explore" if pair[1] is None else "exploit"
                rr.bad(f"/{missing}/{pool}", "missing: top-k needs both lanes", f"add {missing}.{pool}")
        r.items.extend(rr.items)
    if exploit is not None and explore is not None and exploit + explore != 1:
        r.bad("/explore_ratio", f"exploit {exploit} + explore {explore} is not 1", "make them add up to 1")
    if r.items:
        raise RuleCheckError(r.items)

    lines = [
        f"# Imported by `policy import-config` from {llm_file}"
        + (f" and {retrieval_file}" if retrieval_file else "")
        + ".",
        f'policy "{name}"',
        "",
    ]
    if tokenizer:
        lines.append(f'tokenizer tiktoken "{tokenizer}"')
    else:
        lines.append("# Upstream's estimate (chars / 4), kept for parity. It undercounts by ~14%:")
        lines.append('# switch to `tokenizer tiktoken "o200k_base"` for exact counts.')
        lines.append("tokenizer rough 4 chars per token")
    if prices:
        p = prices.get("estimated_cost_per_1k_prompt_tokens", Decimal(0))
        c = prices.get("estimated_cost_per_1k_completion_tokens", Decimal(0))
        lines.append(
            f'price "upstream": prompt ${format(p.normalize(), "f")} per 1k, completion ${format(c.normalize(), "f")} per 1k'
        )
        lines.append('pricing model "upstream"')
    for metric, value in (
        ("request_prompt", prompt),
        ("request_completion", completion),
        ("batch_total", batch),
        ("day_total", day),
    ):
        if value is not None:
            lines.append(f"limit {metric}: {metric} <= {_int_text(value)} tokens")
    if completion is not None:
        lines.append(f"completion budget {_int_text(completion)} tokens")
    if reserve is not None:
        lines.append(f"expansion reserve {_int_text(reserve)} tokens")
    if exploit is not None and explore is not None:
        lines.append(f"lanes exploit {format(exploit.normalize(), 'f')} explore {format(explore.normalize(), 'f')}")
    if floor is not None:
        lines.append(f"explore floor {floor}")
    if topk:
        lines.append("# retrieval_budget.json's top-k: the agent's pack builder applies them, its gate")
        lines.append("# never does. Uncomment to enforce them at the gate as well:")
        for pool, a, b in topk:
            lines.append(f"# topk {pool} exploit {a} explore {b}")
    if steps:
        factors = " ".join(format(_dec(v).normalize(), "f") for v in steps)
        lines.append("ladder {")
        for pool in ("fields", "operators", "subcategories"):
            lines.append(f"  stage {pool}: {pool} factor {factors} min 1")
        lines.append("  on exhausted block")
        lines.append("}")
    return format_text("\n".join(lines) + "\n", "<imported>")
