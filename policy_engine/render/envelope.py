"""The agent's prompt envelope, rendered byte for byte, and its exact incremental cost.

The agent sends ``json.dumps(envelope, indent=2)``. We render the envelope once as a
*skeleton* in which every list that trimming shortens (candidates, lanes lists, operator
signatures) and every number that follows the selection (``max_items``,
``compact_policy``, ``operator_count``) is a placeholder. Splitting the skeleton at
newlines leaves fixed lines, list slots and value lines. Each candidate's block is
newline-terminated, so its token count is measured once (with and without the trailing
comma JSON puts on all but the last element) and the prompt's count for any selection is
integer arithmetic: fixed + slot openings/closings + kept items + value lines. Per-line
counts of newline-terminated pieces sum exactly to the whole prompt's count under
tiktoken's pre-tokenisation; the evaluator still counts the final prompt once as proof.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any, Callable, Mapping, Sequence

from policy_engine.pools import Pools, Selection
from policy_engine.render.knowledge import KnowledgePack

_EXCLUDED = ("visual_graph", "token_estimate", "telemetry")
_MARK = re.compile(r'"\\u0000(slot|value):([^"\\]+)\\u0000"')
_LLM_BUDGET_KEYS = (
    ("max_prompt_tokens", "request_prompt"),
    ("max_completion_tokens", "request_completion"),
    ("max_tokens_per_batch", "batch_total"),
    ("max_tokens_per_day", "day_total"),
)


def _constants() -> dict[str, Any]:
    text = resources.files("policy_engine.render").joinpath("agent_envelope.json").read_text(encoding="utf-8")
    return json.loads(text)


def _slot(name: str) -> str:
    return f"\x00slot:{name}\x00"


def _value(name: str) -> str:
    return f"\x00value:{name}\x00"


# Content-addressed caches (a key is the content itself or its digest, so an entry can
# never serve another input's text); each is bounded and simply cleared when full.
_ITEM_CACHE_MAX = 65536
_DOC_CACHE_MAX = 256
#: (counter, indent, repr(item)) -> (block, measure with a trailing comma, measure without)
_ITEM_CACHE: dict[tuple[Any, str, str], tuple[str, int, int]] = {}
#: (counter, skeleton key) -> (parts, fixed measure)
_SKELETON_CACHE: dict[tuple[Any, str], tuple[tuple[Any, ...], int]] = {}
#: (counter, indent, slot key) -> (blocks, comma measures, plain measures) of a whole slot
_SLOT_CACHE: dict[tuple[Any, str, str], tuple[dict[str, str], dict[str, int], dict[str, int]]] = {}


def _remember(cache: dict[Any, Any], key: Any, value: Any, bound: int) -> Any:
    if len(cache) >= bound:
        cache.clear()
    cache[key] = value
    return value


def clear_caches() -> None:
    """Forget every rendered and measured piece (benchmarks use it to measure cold runs)."""
    for cache in (_ITEM_CACHE, _SKELETON_CACHE, _SLOT_CACHE):
        cache.clear()


def normalise_idea(idea: Mapping[str, Any] | None, pack: Mapping[str, Any]) -> dict[str, Any]:
    """The agent fills three optional keys of an idea spec; without an idea spec we derive a
    minimal one from the pack (its id, query and target) so the envelope keeps its shape."""
    if idea is None:
        idea = {
            "idea_id": pack.get("idea_id"),
            "hypothesis": pack.get("query"),
            "theme_tags": [],
            "target": pack.get("target"),
            "candidate_datasets": [],
            "keywords_for_retrieval": [],
        }
    out = dict(idea)
    out.setdefault("candidate_subcategories", [])
    out.setdefault("retrieval_context_id", None)
    out.setdefault("exploration_intent", None)
    return out


@dataclass(frozen=True, slots=True)
class _Slot:
    name: str
    prefix: str  # text before the list on its line: indentation and `"key": `
    suffix: str  # text after it: "," or ""
    newline: str  # "\n" unless it is the prompt's last line


@dataclass(frozen=True, slots=True)
class _ValueLine:
    name: str
    before: str
    after: str


class AgentEnvelopeModel:
    """Examples follow the operators: the agent keeps the first ``max_examples`` examples
    that use at least one selected operator.

    Built once per (pack, idea, knowledge, limits, counter); then `tokens()` is
    O(selected candidates) integer additions and `render()` builds the exact text."""

    def __init__(
        self,
        pools: Pools,
        *,
        idea: Mapping[str, Any] | None,
        knowledge: KnowledgePack | None,
        counter: Any,
        limits: Mapping[str, int | None],
    ) -> None:
        self._counter = counter
        self._measure: Callable[[str], int] = counter.measure
        pack = pools.source
        consts = _constants()
        self._max_examples = int(consts["max_examples"])
        self._pools = pools
        skeleton = self._skeleton(pack, idea, knowledge, limits, consts)
        self._items: dict[str, Sequence[tuple[str, Any]]] = self._slot_items(pack, knowledge)
        self._counter_key = (counter.name, getattr(counter, "vocab_hash", ""))
        # Packs in one run share the knowledge pack, rules and most of the skeleton: with
        # digests (set when pack and knowledge pack are loaded) the skeleton is keyed by its
        # inputs; without, by its own repr. "none": no knowledge pack at all.
        self._knowledge_digest = "none" if knowledge is None else getattr(knowledge, "digest", "")
        self._pack_digest = pools.digest
        if self._pack_digest and self._knowledge_digest:
            skeleton_key = repr((pools.format, self._pack_digest, self._knowledge_digest, idea, sorted(limits.items()), self._max_examples))
        else:
            skeleton_key = repr(skeleton)
        cached = _SKELETON_CACHE.get((self._counter_key, skeleton_key))
        if cached is None:
            self._parts: list[str | _Slot | _ValueLine] = []
            self._split(json.dumps(skeleton, indent=2))
            fixed = sum(self._measure(p) for p in self._parts if isinstance(p, str))
            cached = _remember(_SKELETON_CACHE, (self._counter_key, skeleton_key), (tuple(self._parts), fixed), _DOC_CACHE_MAX)
        self._parts = list(cached[0])
        self._fixed_measure = cached[1]
        #: the parts whose cost depends on the selection (the fixed ones are summed above)
        self._dynamic = [p for p in self._parts if not isinstance(p, str)]
        self._comma_costs: dict[str, dict[str, int]] = {}
        self._plain_costs: dict[str, dict[str, int]] = {}
        self._slot_order = {name: tuple(ident for ident, _ in items) for name, items in self._items.items()}
        self._blocks: dict[str, dict[str, str]] = {}
        self._slot_meta: dict[str, tuple[int, int, int]] = {}
        for part in self._parts:
            if isinstance(part, _Slot):
                self._prepare_slot(part)

    # ---- building ---------------------------------------------------------------------

    def _skeleton(self, pack: Mapping[str, Any], idea: Any, knowledge: KnowledgePack | None, limits: Mapping[str, int | None], consts: Mapping[str, Any]) -> dict[str, Any]:
        rp: dict[str, Any] = {}
        for key, value in pack.items():
            if key in _EXCLUDED:
                continue
            rp[key] = value
        rp["selected_subcategories"] = _slot("subcategories")
        rp["candidate_datasets"] = _slot("datasets")
        rp["candidate_fields"] = _slot("fields")
        rp["candidate_operators"] = _slot("operators")
        lanes: dict[str, Any] = {}
        for lane, lists in pack["lanes"].items():
            new = dict(lists)
            if lane in ("exploit", "explore"):
                new["field_ids"] = _slot(f"lane.{lane}.fields")
                new["operator_names"] = _slot(f"lane.{lane}.operators")
            lanes[lane] = new
        rp["lanes"] = lanes
        if isinstance(rp.get("budget_policy"), dict):
            budget = dict(rp["budget_policy"])
            budget["llm_budget"] = {key: limits.get(metric) for key, metric in _LLM_BUDGET_KEYS if limits.get(metric) is not None}
            rp["budget_policy"] = budget
        guard = rp.get("context_guard")
        if isinstance(guard, dict) and isinstance(guard.get("max_items"), dict):
            guard = dict(guard)
            guard["max_items"] = {k: (_value(f"count.{k}") if k in self._pools.pools else v) for k, v in guard["max_items"].items()}
            rp["context_guard"] = guard
        kp: dict[str, Any] = {}
        if knowledge is not None:
            sig = knowledge["operator_signature_pack"]
            kp["operator_signature_pack"] = {
                "version": sig.get("version"),
                "generated_at": sig.get("generated_at"),
                "operator_count": _value("count.signatures"),
                "operators": _slot("signatures"),
            }
            ex = knowledge["fastexpr_examples_pack"]
            kp["fastexpr_examples_pack"] = {
                "version": ex.get("version"),
                "generated_at": ex.get("generated_at"),
                "fallback_used": ex.get("fallback_used"),
                "examples": _slot("examples"),
            }
            kp["fastexpr_visual_pack"] = knowledge["fastexpr_visual_pack"]
            kp["simulation_settings_allowed_pack"] = knowledge["simulation_settings_allowed_pack"]
        kp["compact_policy"] = {
            "operator_candidates": _value("count.operators"),
            "field_candidates": _value("count.fields"),
            "max_examples": self._max_examples,
        }
        return {
            "agent": consts["agent"],
            "idea": normalise_idea(idea, pack),
            "retrieval_pack": rp,
            "knowledge_pack": kp,
            "rules": consts["rules"],
            "output_schema": consts["output_schema"],
        }

    def _slot_items(self, pack: Mapping[str, Any], knowledge: KnowledgePack | None) -> dict[str, Sequence[tuple[str, Any]]]:
        items: dict[str, Sequence[tuple[str, Any]]] = {
            "subcategories": [(s, s) for s in pack["selected_subcategories"]],
            "datasets": [(d["id"], d) for d in pack["candidate_datasets"]],
            "fields": [(f["id"], f) for f in pack["candidate_fields"]],
            "operators": [(o["name"], o) for o in pack["candidate_operators"]],
        }
        for lane in ("exploit", "explore"):
            items[f"lane.{lane}.fields"] = [(x, x) for x in pack["lanes"][lane]["field_ids"]]
            items[f"lane.{lane}.operators"] = [(x, x) for x in pack["lanes"][lane]["operator_names"]]
        if knowledge is not None:
            items["signatures"] = [(o["name"], o) for o in knowledge["operator_signature_pack"]["operators"]]
            examples = knowledge["fastexpr_examples_pack"]["examples"]
            items["examples"] = [(str(i), e) for i, e in enumerate(examples)]
            self._example_ops = [frozenset(e.get("used_operators") or ()) if isinstance(e, dict) else frozenset() for e in examples]
        return items

    def _split(self, text: str) -> None:
        lines = text.split("\n")
        fixed: list[str] = []
        for i, line in enumerate(lines):
            newline = "\n" if i < len(lines) - 1 else ""
            match = _MARK.search(line)
            if match is None:
                fixed.append(line + newline)
                continue
            if fixed:
                # one fixed part per line keeps every measured piece newline-terminated
                self._parts.extend(fixed)
                fixed = []
            kind, name = match.group(1), match.group(2)
            before, after = line[: match.start()], line[match.end():]
            if kind == "slot":
                self._parts.append(_Slot(name, before, after, newline))
            else:
                self._parts.append(_ValueLine(name, before, after + newline))
        self._parts.extend(fixed)

    def _prepare_slot(self, slot: _Slot) -> None:
        indent = " " * (len(slot.prefix) - len(slot.prefix.lstrip(" ")) + 2)
        items = self._items.get(slot.name, ())
        source_digest = self._knowledge_digest if slot.name in ("signatures", "examples") else self._pack_digest
        slot_key = (self._counter_key, indent, f"{slot.name}:{source_digest}" if source_digest else repr(items))
        cached = _SLOT_CACHE.get(slot_key)
        if cached is None:
            cached = _remember(_SLOT_CACHE, slot_key, self._measure_items(indent, items), _DOC_CACHE_MAX)
        self._blocks[slot.name], self._comma_costs[slot.name], self._plain_costs[slot.name] = cached
        closing_indent = indent[:-2]
        self._slot_meta[slot.name] = (
            self._measure(slot.prefix + "[\n"),
            self._measure(closing_indent + "]" + slot.suffix + slot.newline),
            self._measure(slot.prefix + "[]" + slot.suffix + slot.newline),
        )

    def _measure_items(self, indent: str, items: Sequence[tuple[str, Any]]) -> tuple[dict[str, str], dict[str, int], dict[str, int]]:
        """Each candidate's block as the agent's ``json.dumps(indent=2)`` prints it, and its
        cost with and without a trailing comma. The pretty printer is pure Python and
        dominated decision time, so items are cached by ``repr`` (C code; for JSON values,
        equal reprs mean equal JSON)."""
        blocks: dict[str, str] = {}
        comma: dict[str, int] = {}
        plain: dict[str, int] = {}
        for ident, item in items:
            key = (self._counter_key, indent, repr(item))
            hit = _ITEM_CACHE.get(key)
            if hit is None:
                lines = [indent + line for line in json.dumps(item, indent=2).split("\n")]
                head = "".join(line + "\n" for line in lines[:-1])
                last = lines[-1]
                # newline-terminated pieces add up exactly (the final count proves it): the
                # head once, then its last line with and without the comma (shared by most
                # items, so counted once per run).
                head_measure = self._measure(head) if head else 0
                hit = _remember(_ITEM_CACHE, key, (head + last, head_measure + self._measure(last + ",\n"), head_measure + self._measure(last + "\n")), _ITEM_CACHE_MAX)
            blocks[ident], comma[ident], plain[ident] = hit
        return blocks, comma, plain

    # ---- selection -> ordered ids per slot ----------------------------------------------

    def _slot_ids(self, selection: Selection) -> dict[str, list[str]]:
        chosen = {pool: set(ids) for pool, ids in selection.items()}
        out: dict[str, list[str]] = {}
        for name, items in self._items.items():
            if name.startswith("lane."):
                pool = name.rsplit(".", 1)[1]
                keep = chosen.get(pool, set())
            elif name == "signatures":
                keep = chosen.get("operators", set())
            elif name == "examples":
                ops = chosen.get("operators", set())
                matching = [str(i) for i, used in enumerate(self._example_ops) if used & ops]
                out[name] = matching[: self._max_examples]
                continue
            else:
                keep = chosen.get(name, set())
            out[name] = list(filter(keep.__contains__, self._slot_order[name]))
        return out

    def _value_of(self, name: str, ids: Mapping[str, list[str]]) -> int:
        key = name.split(".", 1)[1]
        return len(ids[key])

    # ---- the model's interface ----------------------------------------------------------

    def measure(self, selection: Selection) -> int:
        ids = self._slot_ids(selection)
        total = self._fixed_measure
        for part in self._dynamic:
            if isinstance(part, _Slot):
                kept = ids.get(part.name, [])
                opening, closing, empty = self._slot_meta[part.name]
                if not kept:
                    total += empty
                    continue
                with_comma, without = self._comma_costs[part.name], self._plain_costs[part.name]
                last = kept[-1]
                total += opening + closing + sum(map(with_comma.__getitem__, kept)) - with_comma[last] + without[last]
            elif isinstance(part, _ValueLine):
                total += self._measure(part.before + str(self._value_of(part.name, ids)) + part.after)
        return total

    def tokens(self, selection: Selection) -> int:
        return self._counter.finish(self.measure(selection))

    def render(self, selection: Selection) -> str:
        ids = self._slot_ids(selection)
        out: list[str] = []
        for part in self._parts:
            if isinstance(part, str):
                out.append(part)
            elif isinstance(part, _Slot):
                kept = ids.get(part.name, [])
                if not kept:
                    out.append(part.prefix + "[]" + part.suffix + part.newline)
                    continue
                blocks = self._blocks[part.name]
                indent = " " * (len(part.prefix) - len(part.prefix.lstrip(" ")))
                out.append(part.prefix + "[\n" + ",\n".join(blocks[i] for i in kept) + "\n" + indent + "]" + part.suffix + part.newline)
            else:
                out.append(part.before + str(self._value_of(part.name, ids)) + part.after)
        return "".join(out)

    def item_tokens(self, pool: str, ident: str) -> int:
        """Marginal cost of one candidate: its block in every slot it appears in (its pool,
        its lane list, its operator signature), counted with a trailing comma."""
        total = 0
        for name, costs in self._comma_costs.items():
            belongs = name == pool or (name.startswith("lane.") and name.endswith("." + pool)) or (name == "signatures" and pool == "operators")
            if belongs and ident in costs:
                total += costs[ident]
        return self._counter.finish(total) if not self._counter.exact else total
