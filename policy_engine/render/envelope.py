"""The template engine: a prompt template (``render/template.py``) turned into the exact
prompt text for any selection, and its exact incremental cost.

The agent prints its envelope with ``json.dumps``. We render the envelope once as a
*skeleton* in which every list that follows the selection (the pack's candidates and lane
lists, the knowledge lists a template declares with ``list``) and every number that does
(``max_items``, ``compact_policy``, ``operator_count``: ``pool_count`` and ``count``
entries) is a placeholder. Splitting the skeleton at newlines leaves fixed lines, list
slots and value lines. Each list item's block is newline-terminated, so its token count is
measured once (with and without the trailing comma JSON puts on all but the last element)
and the prompt's count for any selection is integer arithmetic: fixed + slot openings and
closings + kept items + value lines. Per-line counts of newline-terminated pieces sum
exactly to the whole prompt's count under tiktoken's pre-tokenisation; the evaluator
still counts the final prompt once as proof.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain, repeat
from operator import add, is_, itemgetter
from typing import TYPE_CHECKING, Any

from policy_engine.errors import Diagnostic, PackError
from policy_engine.pools import Pools, Selection
from policy_engine.pretty_json import dumps_indented
from policy_engine.render.caches import DOC_CACHE_MAX, SLOT_STATES_MAX, SLOT_TEXTS_MAX, RenderCaches
from policy_engine.render.caches import content_key as content_key_of
from policy_engine.render.knowledge import KnowledgePack
from policy_engine.render.template import Template, shipped_template, thaw
from policy_engine.tokens.compose import indentation

if TYPE_CHECKING:
    from policy_engine.tokens.counter import TokenCounter

_first = itemgetter(0)
_MARK = re.compile(r'"\\u0000(slot|value):([^"\\]+)\\u0000"')
#: the pack's own lists, by pool (the agent-format pack: section 1 of the reference doc)
_PACK_LISTS = (
    ("selected_subcategories", "subcategories", None),
    ("candidate_datasets", "datasets", "id"),
    ("candidate_fields", "fields", "id"),
    ("candidate_operators", "operators", "name"),
)


def _slot(name: str) -> str:
    return f"\x00slot:{name}\x00"


class _PackItems(Sequence[tuple[str, Any]]):
    """A pack list's ``(id, item)`` pairs, built only when read. A run's packs mostly share
    their lists, and a list measured before (its slot found in the shared caches by the
    loader's content key) is never read again: building its pairs for every pack was the
    largest cost of a new pack's prompt model."""

    __slots__ = ("_built", "_id_key", "_ids", "_rows")

    def __init__(self, rows: Sequence[Any], id_key: str | None) -> None:
        self._rows, self._id_key = rows, id_key
        self._built: list[tuple[str, Any]] | None = None
        self._ids: list[str] | None = None

    def _pairs(self) -> list[tuple[str, Any]]:
        if self._built is None:
            key = self._id_key
            self._built = [((row if key is None else row[key]), row) for row in self._rows]
        return self._built

    def ids(self) -> list[str]:
        """The items' ids, without building the pairs (computed once: shared, never changed)."""
        if self._ids is None:
            key = self._id_key
            self._ids = list(self._rows) if key is None else list(map(itemgetter(key), self._rows))
        return self._ids

    def values(self) -> list[Any]:
        return list(self._rows)

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, index: Any) -> Any:
        return self._pairs()[index]

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        return iter(self._pairs())


class _SlotOrders(dict[str, tuple[str, ...]]):
    """Slot -> its item ids in order, computed on first use (see `_PackItems`)."""

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[str, Sequence[tuple[str, Any]]]) -> None:
        super().__init__()
        self._items = items

    def __missing__(self, name: str) -> tuple[str, ...]:
        items = self._items[name]
        order = self[name] = tuple(items.ids() if isinstance(items, _PackItems) else map(_first, items))
        return order


def _value(name: str) -> str:
    return f"\x00value:{name}\x00"


def template_idea(template: Template, idea: Mapping[str, Any] | None, pack: Mapping[str, Any]) -> dict[str, Any]:
    """The idea as the template puts it in the prompt: the idea spec (or, without one, the
    idea the template builds from the pack), completed with the template's defaults."""
    spec = template.doc.get("idea", {})
    if idea is None:
        out: dict[str, Any] = {}
        for entry in spec.get("without_idea", ()):
            out[entry["key"]] = thaw(entry["const"]) if "const" in entry else pack.get(entry["copy"])
    else:
        out = dict(idea)
    for key, value in spec.get("defaults", {}).items():
        out.setdefault(key, thaw(value))
    return out


def normalise_idea(idea: Mapping[str, Any] | None, pack: Mapping[str, Any]) -> dict[str, Any]:
    """The idea as the shipped agent envelope puts it in the prompt."""
    return template_idea(shipped_template("agent_envelope"), idea, pack)


def print_items(dumps: Callable[[Any], str], width: int, indent: str, values: list[Any]) -> list[str]:
    """Each value as ``dumps`` prints it with ``width`` spaces per level, each line after
    ``indent``.

    The values are printed as one list (one call of the printer, not one per item: a
    1,000-field pack's fields are printed several times faster) and cut where a line at the
    items' own indentation opens an item: JSON strings hold no raw newline, an item's inner
    lines are indented deeper, and its closing line at that indentation is a bracket.
    ``width`` is at least 1 (the template schema's minimum): with no indentation the cut
    would find nothing to go by.

    The list is printed inside as many outer lists as put its items at ``indent`` (the
    printer writes the indentation, and only the outer lists' bracket lines are cut off):
    moving every line right afterwards cost as much as printing. An indentation that is no
    multiple of ``width`` is added line by line."""
    if not values:
        return []
    depth, odd = divmod(len(indent), width)
    if odd or not depth:
        text = dumps(values)  # "[\n" + the items' lines, each after `width` spaces + "\n]"
        inner = indent[width:]
        body = inner + text[2:-2].replace("\n", "\n" + inner) if inner else text[2:-2]
    else:
        wrapped: Any = values
        for _ in range(depth - 1):
            wrapped = [wrapped]
        text = dumps(wrapped)  # one "[" line per level, the items, one "]" line per level
        # each level's "[" and newline before the items; a newline and its "]" after them
        edge = sum(width * level + 2 for level in range(depth))
        body = text[edge:-edge]
    return re.split(",\n(?=" + indent + "[^ \\]}])", body)


class _PlainCosts(dict[str, int]):
    """Items' costs without their trailing comma, by id, computed when first read.

    Only the last line differs from the item with its comma (a newline between printed
    JSON lines is a safe boundary, so costs add up by lines): the cost is the one with the
    comma, less its last line's with the comma, plus that line's without it. An object's
    last line is its closing brace, the same for every item: lookups, not a count of the
    whole item per rung.

    ``without``: the counter's `measure_without_comma`, for a one-line item whose line with
    the comma no line-by-line measure taught the counter (a list measured by columns): its
    cost then comes from the cost with the comma, with no encode of the line (the last id
    a lane list keeps changes with every rung)."""

    __slots__ = ("_blocks", "_measure", "_with_comma", "_without")

    def __init__(
        self,
        blocks: dict[str, str],
        with_comma: dict[str, int],
        measure: Callable[[str], int],
        without: Callable[[str, int], int] | None = None,
    ) -> None:
        super().__init__()
        self._blocks = blocks
        self._with_comma = with_comma
        self._measure = measure
        self._without = without

    def __missing__(self, ident: str) -> int:
        block = self._blocks[ident]
        cut = block.rfind("\n") + 1
        if not cut:  # one line: measured as it is, or from its cost with the comma
            without = self._without
            n = self[ident] = (
                self._measure(block + "\n") if without is None else without(block, self._with_comma[ident])
            )
            return n
        last = block[cut:]
        n = self[ident] = self._with_comma[ident] - self._measure(last + ",\n") + self._measure(last + "\n")
        return n


#: a column of at least this many values whose first `_SHARED_TAILS_SAMPLE` hold at most half as
#: many distinct ones is checked for repeated strings (`TemplateModel._column_tails`)
_SHARED_TAILS_MIN = 64
_SHARED_TAILS_SAMPLE = 32

#: shorter lists are printed and measured by lines, not by columns (`TemplateModel._measure_records`):
#: a prompt keeps most of a short list, and its final count then learns those lines anyway.
#: Measured in instructions of a cold decision, by columns against by lines: a 72-field pack
#: +3.5%, 150 fields even, 300 fields -5%, 1,000 fields -15%
_COLUMNS_MIN_ITEMS = 128


class _RecordBlocks(dict[str, str]):
    """Items' printed blocks by id, built when first read from the lines their columns were
    measured by (`TemplateModel._measure_records`): a line is its key's head and the value's
    tail, as ``json.dumps`` prints a flat object (``{``, a ``"key": value`` line per key, the
    last without its comma, ``}``) or a one-line value (its line less the comma). Only the
    items a prompt keeps are ever built, and nothing of the pack's own values is kept (a
    shared cache holds this mapping)."""

    __slots__ = ("_braces", "_columns", "_heads", "_ids", "_indent", "_index", "_remember")

    def __init__(
        self,
        ids: list[str],
        heads: list[str],
        columns: list[list[str]],
        indent: str,
        braces: bool,
        remember: Callable[[str, list[str], list[str]], None] | None = None,
    ) -> None:
        super().__init__()
        self._ids, self._heads, self._columns, self._indent, self._braces = ids, heads, columns, indent, braces
        self._index: dict[str, int] | None = None
        #: tells the counter what the built lines count (`TiktokenCounter.remember_lines`)
        self._remember = remember

    def fill(self, ids: Sequence[str]) -> None:
        """Build the blocks of ``ids`` not built yet, together (a render asks for a kept
        list's items at once): each step a pass over them all, not one call per item."""
        missing = [ident for ident in dict.fromkeys(ids) if ident not in self]
        if not missing:
            return
        if self._index is None:  # a repeated id is its last item, as a dict of the items keeps it
            self._index = dict(zip(self._ids, range(len(self._ids)), strict=True))
        rows = list(map(self._index.__getitem__, missing))
        lines = []
        for head, column in zip(self._heads, self._columns, strict=True):
            tails = list(map(column.__getitem__, rows))
            lines.append(list(map(add, repeat(head), tails)))
            if self._remember is not None:
                # the final count of a prompt that keeps them then finds these lines counted
                self._remember(head, tails, lines[-1])
        if self._braces:
            opening, closing = self._indent + "{\n", "\n" + self._indent + "}"
            blocks = map(add, repeat(opening), map(add, map("\n".join, zip(*lines, strict=True)), repeat(closing)))
        else:  # a one-line value: its line less the comma
            blocks = map(str.removesuffix, lines[0], repeat(","))
        self.update(zip(missing, blocks, strict=True))

    def __missing__(self, ident: str) -> str:
        self.fill((ident,))
        return self[ident]


class _ShiftedCosts(dict[str, int]):
    """Items' costs without their trailing comma when every item ends with the same line
    (a flat object's closing brace): the cost with the comma plus one constant, per id as
    read."""

    __slots__ = ("_shift", "_with_comma")

    def __init__(self, with_comma: dict[str, int], shift: int) -> None:
        super().__init__()
        self._with_comma = with_comma
        self._shift = shift

    def __missing__(self, ident: str) -> int:
        n = self[ident] = self._with_comma[ident] + self._shift
        return n


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


@dataclass(frozen=True, slots=True)
class _Test:
    """One ``keep_if_any`` test, with each item's values extracted once."""

    pool: str
    keep_if_item_empty: bool
    keep_if_pool_empty: bool
    #: per kept-candidate item (same order as the slot's items): the names it carries
    values: tuple[frozenset[str], ...]


@dataclass(frozen=True, slots=True)
class _KnowledgeList:
    """A knowledge list that follows the selection: which items, how they are tested, the cap."""

    tests: tuple[_Test, ...]
    cap: int | None
    #: pool -> name -> item ids, for tests that match a single name (signatures, cards)
    named: Mapping[str, Mapping[str, tuple[str, ...]]]


def _item_values(item: Mapping[str, Any], by: str, match: str, where: str, file: str) -> frozenset[str]:
    value = item.get(by)
    if value is None:
        return frozenset()
    if match == "name":
        if not isinstance(value, str):
            raise PackError(
                [
                    Diagnostic(
                        "R109",
                        f"{where}/{by}: expected a string name, got {type(value).__name__}",
                        hint="the template matches this key as an operator or field name",
                        file=file,
                        pointer=f"{where}/{by}",
                    )
                ]
            )
        return frozenset((value,)) if value else frozenset()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise PackError(
            [
                Diagnostic(
                    "R109",
                    f"{where}/{by}: expected a list of names",
                    hint="the template matches this key's names against the selection",
                    file=file,
                    pointer=f"{where}/{by}",
                )
            ]
        )
    return frozenset(value)


def _split(text: str) -> list[str | _Slot | _ValueLine]:
    """Cut printed envelope lines into fixed text and the lines holding a mark (a list
    slot or a value). Fixed text runs whole lines (newline-terminated, so its measure
    adds up exactly); a line's first mark is its part, as the printer never puts two
    values on one line (a second mark would stay literal text, as before)."""
    parts: list[str | _Slot | _ValueLine] = []
    pos = 0
    for match in _MARK.finditer(text):
        if match.start() < pos:  # a second mark on a line already cut
            continue
        start = text.rfind("\n", 0, match.start()) + 1
        end = text.find("\n", match.end())
        newline = "\n" if end >= 0 else ""
        end = end if end >= 0 else len(text)
        if start > pos:
            parts.append(text[pos:start])
        kind, name = match.group(1), match.group(2)
        before, after = text[start : match.start()], text[match.end() : end]
        if kind == "slot":
            parts.append(_Slot(name, before, after, newline))
        else:
            parts.append(_ValueLine(name, before, after + newline))
        pos = end + len(newline)
    if pos < len(text):
        parts.append(text[pos:])
    return parts


def _merged(parts: list[str | _Slot | _ValueLine]) -> tuple[str | _Slot | _ValueLine, ...]:
    """Adjacent fixed runs joined into one: the prompt has as few pieces to render and to
    count as when it was printed whole."""
    out: list[str | _Slot | _ValueLine] = []
    run: list[str] = []
    for part in parts:
        if isinstance(part, str):
            run.append(part)
            continue
        if run:
            out.append("".join(run))
            run = []
        out.append(part)
    if run:
        out.append("".join(run))
    return tuple(out)


class TemplateModel:
    """A template applied to one (pack, idea, knowledge pack, limits, counter).

    Built once; then `tokens()` is O(list items) integer additions and `render()` builds
    the exact text."""

    def __init__(
        self,
        pools: Pools,
        *,
        idea: Mapping[str, Any] | None,
        knowledge: KnowledgePack | None,
        counter: TokenCounter,
        limits: Mapping[str, int | None],
        template: Template | None = None,
        caches: RenderCaches | None = None,
    ) -> None:
        #: shared with every model its owner (an Engine) builds; private (cold) otherwise
        self._caches = caches if caches is not None else RenderCaches()
        self._template = template or shipped_template("agent_envelope")
        options = self._template["json"]
        self._indent_width = int(options["indent"])
        self._ascii = bool(options["ensure_ascii"])
        self._counter = counter
        self._measure: Callable[[str], int] = counter.measure
        # optional for counters written before it existed: one measure per text then
        self._measure_many: Callable[..., list[int]] = getattr(
            counter, "measure_many", lambda texts, **_: list(map(counter.measure, texts))
        )
        pack = pools.source
        kp_spec = self._template["knowledge_pack"]
        self._max_examples = max(1, int(kp_spec.get("max_examples", 1)))
        self._pools = pools
        self._items: dict[str, Sequence[tuple[str, Any]]] = {}
        #: a pack list's slot -> the document's top-level key its items come from
        self._item_sources: dict[str, str] = {}
        #: slot -> its key in the shared caches (the slot's content, counter and indent)
        self._slot_keys: dict[str, tuple[Any, ...]] = {}
        self._lists: dict[str, _KnowledgeList] = {}
        self._knowledge = knowledge
        self._kept_memo: dict[tuple[Any, ...], list[str]] = {}
        self._knowledge_digest = "none" if knowledge is None else getattr(knowledge, "digest", "")
        #: the knowledge pack's lists and entries are keyed by its digest (else by content)
        self._knowledge_keyed = bool(self._knowledge_digest) and self._knowledge_digest != "none"
        sections = self._skeleton(pack, idea, knowledge, limits)
        self._counter_key = (counter.name, getattr(counter, "vocab_hash", ""), self._indent_width, self._ascii)
        parts, self._fixed_measure = self._assemble(sections)
        self._parts = list(parts)
        #: the parts whose cost depends on the selection (the fixed ones are summed above)
        self._dynamic = [p for p in self._parts if not isinstance(p, str)]
        self._comma_costs: dict[str, dict[str, int]] = {}
        self._plain_costs: dict[str, dict[str, int]] = {}
        self._slot_order = _SlotOrders(self._items)
        self._blocks: dict[str, dict[str, str]] = {}
        self._slot_meta: dict[str, tuple[int, int, int]] = {}
        #: the pool a pack list follows (its lane lists follow the pool too)
        self._slot_pool = {
            name: (name.rsplit(".", 1)[1] if name.startswith("lane.") else name)
            for name in self._items
            if name not in self._lists
        }
        self._chosen_memo: dict[str, tuple[Sequence[str], set[str]]] = {}
        self._slot_memo: dict[str, tuple[tuple[Sequence[str], ...], list[str], int]] = {}
        #: measures by the identity of the selection's ids tuples (a ladder state walked again)
        self._measures: dict[tuple[tuple[str, int], ...], tuple[tuple[Sequence[str], ...], int]] = {}
        slots = [part for part in self._parts if isinstance(part, _Slot)]
        for slot in slots:
            self._prepare_slot(slot)
        self._measure_brackets(slots)
        #: everything the dynamic parts' measure depends on besides the selection: the
        #: counter, each list's content key and bracket costs, each value line's text. Models with equal
        #: signatures (a run's packs that differ outside their lists) share measures.
        self._signature = (
            self._counter_key,
            *(
                (p.name, self._slot_keys[p.name], self._slot_meta[p.name])
                if isinstance(p, _Slot)
                else (p.name, p.before, p.after)
                for p in self._dynamic
            ),
        )

    @property
    def template(self) -> Template:
        return self._template

    def _dumps(self, value: Any) -> str:
        return dumps_indented(value, indent=self._indent_width, ensure_ascii=self._ascii)

    def _dumps_items(self, values: list[Any]) -> str:
        """A pack's or knowledge pack's list items: validated JSON values (str keys, finite
        floats, bounded ints), which msgspec may write once its floats are checked."""
        return dumps_indented(values, indent=self._indent_width, ensure_ascii=self._ascii, json_values=True)

    # ---- building ---------------------------------------------------------------------

    def _skeleton(
        self, pack: Mapping[str, Any], idea: Any, knowledge: KnowledgePack | None, limits: Mapping[str, int | None]
    ) -> list[tuple[str, Any, Any]]:
        """The envelope's entries as (key, content key, value). A constant entry is keyed by
        the template and copied only if it must be printed. A built entry (the pack's lists
        and the knowledge pack's become slots here) is an object: it is given as its own
        entries, each keyed by content, so a pack whose idea id alone is new prints one
        line anew, not its whole retrieval pack."""
        sections = {
            "idea": lambda: template_idea(self._template, idea, pack),
            "retrieval_pack": lambda: self._pack_skeleton(pack, limits),
            "knowledge_pack": lambda: self._knowledge_skeleton(knowledge),
        }
        out: list[tuple[str, Any, Any]] = []
        for entry in self._template["envelope"]:
            key = entry["key"]
            if "const" in entry:
                out.append((key, ("const", self._template.digest, key), entry))
                continue
            value = sections[entry["insert"]]()
            if isinstance(value, dict) and value:
                out.append(
                    (key, None, [(k, self._entry_key(entry["insert"], pack, k, v), v) for k, v in value.items()])
                )
            else:
                out.append((key, content_key_of((key, value)), value))
        return out

    def _entry_key(self, section: str, pack: Mapping[str, Any], key: str, value: Any) -> Any:
        """The content key of one entry of a built object. A retrieval pack entry that is
        the pack's own value, untouched, has the loader's bytes for it; a knowledge pack
        entry is a function of the template and the knowledge pack (their digests); any
        other is marshalled. Two keys for one printed entry cost a miss, never a wrong hit."""
        if section == "retrieval_pack" and pack.get(key) is value:
            part = self._pools.content_keys.get(key)
            if part is not None:
                return ("pack part", key, part)
        elif section == "knowledge_pack" and self._knowledge_keyed:
            return ("knowledge", self._template.digest, self._knowledge_digest, self._max_examples, key)
        return content_key_of((key, value))

    def _assemble(self, sections: list[tuple[str, Any, Any]]) -> tuple[tuple[Any, ...], int]:
        """(parts, fixed measure) of the printed envelope, from each entry's printed lines.
        ``json.dumps`` prints an object as ``{``, its entries' lines (each but the last
        followed by a comma) and ``}``, at each depth, so an entry's lines are a function
        of its key, value, depth and place (last or not) alone: cut into parts once and
        shared by every pack whose entry prints alike (a run's packs differ in a few
        values: their idea id, their query). The entries not printed before are measured
        together (a cold counter shares one encode among their new lines)."""
        if not sections:
            return ("{}",), self._measure("{}")
        # the envelope in order: fixed lines, and entries as (cache key, (depth, key, content,
        # value, last))
        layout: list[str | tuple[tuple[Any, ...], tuple[int, str, Any, Any, bool]]] = ["{\n"]
        last = len(sections) - 1
        for i, (key, content, value) in enumerate(sections):
            if content is not None:
                layout.append(self._entry_of(1, key, content, value, i == last))
                continue
            # an object given as its entries: its opening line, its entries one level
            # deeper, its closing line
            opening, closing = self._brackets_of(key, i == last)
            inner_last = len(value) - 1
            layout.append(opening)
            layout.extend(self._entry_of(2, k, c, v, j == inner_last) for j, (k, c, v) in enumerate(value))
            layout.append(closing)
        fixed_lines = [piece for piece in layout if isinstance(piece, str)]
        # each entry's (parts, fixed measure): from the cache, or printed now
        entries: dict[tuple[Any, ...], tuple[tuple[Any, ...], int]] = {}
        printed: dict[tuple[Any, ...], list[str | _Slot | _ValueLine]] = {}
        for piece in layout:
            if not isinstance(piece, str):
                key_of, entry = piece
                hit = self._caches.skeletons.get(key_of)
                if hit is not None:
                    entries[key_of] = hit
                elif key_of not in printed:
                    printed[key_of] = self._print_entry(*entry)
        runs = [[part for part in entry if isinstance(part, str)] for entry in printed.values()]
        measures = iter(self._measure_many([*fixed_lines, *(run for entry in runs for run in entry)]))
        fixed = sum(next(measures) for _ in fixed_lines) + self._measure("}")
        for (key_of, new_parts), entry_runs in zip(printed.items(), runs, strict=True):
            entries[key_of] = (tuple(new_parts), sum(next(measures) for _ in entry_runs))
            self._caches.remember(self._caches.skeletons, key_of, entries[key_of], DOC_CACHE_MAX)
        parts: list[str | _Slot | _ValueLine] = []
        for piece in layout:
            if isinstance(piece, str):
                parts.append(piece)
            else:
                entry_parts, measure = entries[piece[0]]
                parts.extend(entry_parts)
                fixed += measure
        parts.append("}")
        return _merged(parts), fixed

    def _entry_of(
        self, depth: int, key: str, content: Any, value: Any, last: bool
    ) -> tuple[tuple[Any, ...], tuple[int, str, Any, Any, bool]]:
        """An entry of the layout: its key in the shared cache (what its printed lines
        depend on), and what prints it."""
        return (self._counter_key, depth, last, content), (depth, key, content, value, last)

    def _print_entry(
        self, depth: int, key: str, content: Any, value: Any, last: bool
    ) -> list[str | _Slot | _ValueLine]:
        """One object entry's parts: its lines at ``depth``, then a comma unless it is the
        last, cut into fixed runs (each newline-terminated), slots and value lines."""
        if isinstance(content, tuple) and content[0] == "const":  # its template value
            value = thaw(value["const"])
        wrapped: Any = {key: value}
        for _ in range(depth - 1):
            wrapped = {"": wrapped}
        lines = self._dumps(wrapped).split("\n")[depth:-depth]  # between `depth` lines of brackets
        return _split("\n".join(lines) + ("\n" if last else ",\n"))

    def _brackets_of(self, key: str, last: bool) -> tuple[str, str]:
        """The opening and closing lines of a non-empty object entry at depth 1."""
        cache_key = (self._counter_key, key, last)
        hit = self._caches.object_brackets.get(cache_key)
        if hit is None:
            line = self._dumps({key: {}}).split("\n")[1]  # '  "key": {}'
            closing = indentation(line) + "}" + ("\n" if last else ",\n")
            hit = self._caches.remember(
                self._caches.object_brackets, cache_key, (line[:-1] + "\n", closing), DOC_CACHE_MAX
            )
        return hit

    def _pack_skeleton(self, pack: Mapping[str, Any], limits: Mapping[str, int | None]) -> dict[str, Any]:
        spec = self._template.doc.get("retrieval_pack", {})
        omit = set(spec.get("omit", ()))
        rp = {key: value for key, value in pack.items() if key not in omit}
        for key, pool, id_key in _PACK_LISTS:
            if key in rp:
                rp[key] = _slot(pool)
                self._items[pool] = _PackItems(pack[key], id_key)
                self._item_sources[pool] = key
        if "lanes" in rp:
            lanes: dict[str, Any] = {}
            for lane, lists in pack["lanes"].items():
                new = dict(lists)
                if lane in ("exploit", "explore"):
                    new["field_ids"] = _slot(f"lane.{lane}.fields")
                    new["operator_names"] = _slot(f"lane.{lane}.operators")
                    self._items[f"lane.{lane}.fields"] = _PackItems(lists["field_ids"], None)
                    self._items[f"lane.{lane}.operators"] = _PackItems(lists["operator_names"], None)
                    self._item_sources[f"lane.{lane}.fields"] = "lanes"
                    self._item_sources[f"lane.{lane}.operators"] = "lanes"
                lanes[lane] = new
            rp["lanes"] = lanes
        echo = spec.get("echo_limits")
        if echo is not None:
            outer, inner = echo["into"]
            if isinstance(rp.get(outer), dict):
                rp[outer] = {
                    **rp[outer],
                    inner: {
                        key: limits.get(metric)
                        for key, metric in echo["keys"].items()
                        if limits.get(metric) is not None
                    },
                }
        counts = spec.get("echo_counts")
        if counts is not None:
            outer, inner = counts["into"]
            guard = rp.get(outer)
            if isinstance(guard, dict) and isinstance(guard.get(inner), dict):
                rp[outer] = {
                    **guard,
                    inner: {
                        k: (_value(f"count.{k}") if k in self._pools.pools else v) for k, v in guard[inner].items()
                    },
                }
        return rp

    def _knowledge_skeleton(self, knowledge: KnowledgePack | None) -> dict[str, Any]:
        """Cached per (template, knowledge pack) content: runs share both, and extracting
        every list item's names is the costly part."""
        digest = getattr(knowledge, "digest", "") if knowledge is not None else "none"
        key = (self._template.digest, digest, self._max_examples)
        hit = self._caches.knowledge.get(key) if digest else None
        if hit is None:
            before = set(self._items)
            kp = self._build_knowledge_skeleton(knowledge)
            hit = (kp, {n: self._items[n] for n in self._items if n not in before}, dict(self._lists))
            if digest:
                self._caches.remember(self._caches.knowledge, key, hit, DOC_CACHE_MAX)
        kp, items, lists = hit
        self._items.update(items)
        self._lists.update(lists)
        return dict(kp)

    def _build_knowledge_skeleton(self, knowledge: KnowledgePack | None) -> dict[str, Any]:
        kp: dict[str, Any] = {}
        documents = knowledge.documents if knowledge is not None else {}
        for p, part in enumerate(self._template["knowledge_pack"]["parts"]):
            doc = None
            if "file" in part:
                doc = documents.get(part["file"])
                if not isinstance(doc, Mapping):
                    continue  # a part appears only when its file is a JSON object
            if part.get("whole"):
                kp[part["key"]] = doc
                continue
            list_slots = {e["key"]: f"k{p}.{j}" for j, e in enumerate(part["entries"]) if "list" in e}
            obj: dict[str, Any] = {}
            for entry in part["entries"]:
                key = entry["key"]
                if "const" in entry:
                    obj[key] = thaw(entry["const"])
                elif "copy" in entry:
                    value = doc.get(entry["copy"]) if doc is not None else None
                    if entry.get("as") == "bool":
                        value = bool(value)
                    elif entry.get("as") == "list":
                        value = value if isinstance(value, list) else []
                    obj[key] = value
                elif "list" in entry:
                    obj[key] = _slot(list_slots[key])
                    self._add_knowledge_list(list_slots[key], entry, doc, part["file"])
                elif "count" in entry:
                    obj[key] = _value(f"kept.{list_slots[entry['count']]}")
                elif "pool_count" in entry:
                    obj[key] = _value(f"count.{entry['pool_count']}")
                else:  # setting: max_examples
                    obj[key] = self._max_examples
            kp[part["key"]] = obj
        return kp

    def _add_knowledge_list(self, name: str, entry: Mapping[str, Any], doc: Any, file: str) -> None:
        rows = doc.get(entry["list"]) if doc is not None else None
        rows = rows if isinstance(rows, list) else []
        label = f"{self._knowledge.directory}/{file}.json" if self._knowledge is not None else f"{file}.json"
        # non-object rows are never sent: they are not items of the slot at all
        items = [(str(i), row) for i, row in enumerate(rows) if isinstance(row, dict)]
        tests = []
        named: dict[str, dict[str, list[str]]] = {}
        for test in entry["keep_if_any"]:
            values = tuple(
                _item_values(row, test["by"], test["match"], f"/{entry['list']}/{ident}", label) for ident, row in items
            )
            tests.append(_Test(test["pool"], test["if_item_empty"] == "keep", test["if_pool_empty"] == "keep", values))
            if test["match"] == "name":
                by_name = named.setdefault(test["pool"], {})
                for (ident, _), names in zip(items, values, strict=True):
                    for n in names:
                        by_name.setdefault(n, []).append(ident)
        cap = entry.get("cap")
        self._items[name] = items
        self._lists[name] = _KnowledgeList(
            tuple(tests),
            self._max_examples if cap == "max_examples" else cap,
            {pool: {n: tuple(ids) for n, ids in by.items()} for pool, by in named.items()},
        )

    def _items_indent(self, slot: _Slot) -> str:
        """The indentation of a list slot's items: one level deeper than its opening line."""
        return indentation(slot.prefix) + " " * self._indent_width

    def _prepare_slot(self, slot: _Slot) -> None:
        indent = self._items_indent(slot)
        items = self._items.get(slot.name, ())
        knowledge_slot = slot.name in self._lists
        if knowledge_slot and self._knowledge_keyed:
            content_key: bytes | str | tuple[str, bytes] = (
                f"{slot.name}:{self._template.digest}:{self._knowledge_digest}"
            )
        else:
            # a pack's list by its own content: packs of a run that share a list (the same
            # operators, the same datasets) measure it once. The loader has the content key
            # of the document part the items come from (the items are a function of it).
            source = self._pools.content_keys.get(self._item_sources.get(slot.name, ""))
            content_key = (slot.name, source) if source is not None else content_key_of(list(items))
        slot_key = (self._counter_key, indent, content_key)
        self._slot_keys[slot.name] = slot_key
        # knowledge lists (shared by every pack of a run) live apart from the packs' own
        # lists, so a corpus of new packs never evicts them
        store = self._caches.knowledge_slots if knowledge_slot else self._caches.slots
        cached = store.get(slot_key)
        if cached is None:
            cached = self._caches.remember(store, slot_key, self._measure_items(indent, items), DOC_CACHE_MAX)
        self._blocks[slot.name], self._comma_costs[slot.name], self._plain_costs[slot.name] = cached

    def _measure_brackets(self, slots: list[_Slot]) -> None:
        """Each list's opening line, closing line and empty list's line, measured by the
        text around the list (the same in every pack of a run). The ones not measured
        before are measured together: a cold counter then shares one encode among them,
        where each had cost an encode of its own (a dozen lists, three lines each)."""
        keys = []
        missing: dict[tuple[Any, ...], tuple[str, str, str]] = {}
        for slot in slots:
            indent = self._items_indent(slot)
            key = (self._counter_key, indent, slot.prefix, slot.suffix, slot.newline)
            keys.append(key)
            if key not in missing and key not in self._caches.brackets:
                closing = indent[: -self._indent_width] + "]" + slot.suffix + slot.newline
                missing[key] = (slot.prefix + "[\n", closing, slot.prefix + "[]" + slot.suffix + slot.newline)
        found = {key: self._caches.brackets[key] for key in keys if key not in missing}
        if missing:
            measures = iter(self._measure_many([text for texts in missing.values() for text in texts]))
            for key in missing:
                found[key] = (next(measures), next(measures), next(measures))
                self._caches.remember(self._caches.brackets, key, found[key], DOC_CACHE_MAX)
        for slot, key in zip(slots, keys, strict=True):
            self._slot_meta[slot.name] = found[key]

    def _measure_items(
        self, indent: str, items: Sequence[tuple[str, Any]]
    ) -> tuple[dict[str, str], dict[str, int], dict[str, int]]:
        """Each item's block as the agent's ``json.dumps`` prints it, and its cost with a
        trailing comma. The items are printed together (`print_items`: one printer call)
        and measured together: the counter answers a block it has counted before (an item
        of an earlier pack's list) from its piece cache and shares one encode among the
        lines it has never seen. The cost without the comma is wanted only for the last
        item a list keeps, so it is measured when first read (`_PlainCosts`)."""
        if isinstance(items, _PackItems):
            ids, values = items.ids(), items.values()
        else:
            ids, values = [ident for ident, _ in items], [item for _, item in items]
        records = self._measure_records(indent, ids, values) if len(values) >= _COLUMNS_MIN_ITEMS else None
        if records is not None:
            return records
        blocks = print_items(self._dumps_items, self._indent_width, indent, values)
        measures = self._measure_many([block + ",\n" for block in blocks], json_lines=True)
        printed = dict(zip(ids, blocks, strict=True))
        with_comma = dict(zip(ids, measures, strict=True))
        return printed, with_comma, _PlainCosts(printed, with_comma, self._measure)

    def _measure_records(
        self, indent: str, ids: list[str], values: list[Any]
    ) -> tuple[dict[str, str], dict[str, int], dict[str, int]] | None:
        """`_measure_items` without printing the items, for a list of flat objects (the
        same keys in the same order, each value printed on its key's line) or of one-line
        values (a lane's ids), measured by columns: each key's values printed as one list
        (``json.dumps(values, indent=1)`` puts each on its own line after one space: the
        tail its item's line ends with) and each item's cost summed from cached tail counts
        (`TiktokenCounter.measure_columns`). A one-line value's head is the items'
        indentation but its last space. No item is printed until a prompt keeps it. None
        when the list is anything else or the counter cannot (then the items are printed
        and measured by lines)."""
        measure_columns = getattr(self._counter, "measure_columns", None)
        if measure_columns is None or not values or not indent:
            return None
        remember = getattr(self._counter, "remember_lines", None)
        if type(values[0]) is not dict or not values[0]:
            heads = [indent[:-1]]
            tails = self._column_tails(values, commas=True)
            measured = measure_columns(heads, [tails]) if tails is not None else None
            if tails is None or measured is None:
                return None
            printed = _RecordBlocks(ids, heads, [tails], indent, braces=False, remember=remember)
            with_comma = dict(zip(ids, measured[0], strict=True))
            without = getattr(self._counter, "measure_without_comma", None)
            return printed, with_comma, _PlainCosts(printed, with_comma, self._measure, without)
        keys = list(values[0])
        # every row an object with the same keys in the same order: the rows' keys, read in a
        # row, repeat the first row's (no object repeats a key, so no row can be longer or
        # shorter than the first and still match)
        if set(map(type, values)) != {dict} or list(chain.from_iterable(values)) != keys * len(values):
            return None
        columns = []
        for j, key in enumerate(keys):
            # an object's lines but its last end with a comma
            column = self._column_tails(list(map(itemgetter(key), values)), commas=j < len(keys) - 1)
            if column is None:
                return None
            columns.append(column)
        inner = indent + " " * self._indent_width
        heads = [inner + json.dumps(key, ensure_ascii=self._ascii) + ":" for key in keys]
        measured = measure_columns(heads, columns, [indent + "{\n", indent + "},\n", indent + "}\n"])
        if measured is None:
            return None
        sums, (opening, closing, closing_last) = measured
        with_comma = dict(zip(ids, map(add, sums, repeat(opening + closing)), strict=True))
        printed = _RecordBlocks(ids, heads, columns, indent, braces=True, remember=remember)
        return printed, with_comma, _ShiftedCosts(with_comma, closing_last - closing)

    def _column_tails(self, values: list[Any], *, commas: bool) -> list[str] | None:
        """Each value as its line's tail (a space, the value, a comma if ``commas``), or None
        when one is printed over several lines (a non-empty list or object).

        A column of few distinct strings (a field's dataset, type, lane) prints each once
        and shares its tail among the rows: one string object per distinct value, whose
        hash the counter's lookups then compute once. Only strings are merged (``1``,
        ``1.0`` and ``True`` are one dictionary key but print apart)."""
        sample = values[:_SHARED_TAILS_SAMPLE]
        if (
            len(values) >= _SHARED_TAILS_MIN
            and set(map(type, sample)) == {str}  # (unhashable values never reach the set below)
            and 2 * len(set(sample)) <= len(sample)
            and set(map(type, values)) == {str}
        ):
            distinct = list(dict.fromkeys(values))
            if 2 * len(distinct) <= len(values):
                tails = self._printed_tails(distinct, commas)
                return None if tails is None else list(map(dict(zip(distinct, tails, strict=True)).__getitem__, values))
        return self._printed_tails(values, commas)

    def _printed_tails(self, values: list[Any], commas: bool) -> list[str] | None:
        text = dumps_indented(values, indent=1, ensure_ascii=self._ascii, json_values=True)
        if not commas:  # JSON strings hold no raw newline: each ",\n" ends an element
            text = text.replace(",\n", "\n")
        tails = text.split("\n")
        if len(tails) != len(values) + 2:
            return None
        del tails[0], tails[-1]
        if commas:
            tails[-1] += ","
        return tails

    # ---- selection -> ordered ids per slot ----------------------------------------------

    def _chosen(self, pool: str, selection: Selection) -> tuple[Sequence[str], set[str]]:
        """The pool's selected ids and their set, memoised by the ids tuple's identity: a
        ladder state shares the tuple of every pool a rung did not change."""
        ids = selection.get(pool, ())
        hit = self._chosen_memo.get(pool)
        if hit is not None and hit[0] is ids:
            return hit
        hit = self._chosen_memo[pool] = (ids, set(ids))
        return hit

    def _slot_state(self, name: str, selection: Selection) -> tuple[list[str], int]:
        """(kept ids, measure) of one list slot for this selection. Memoised by the
        identity of the selections it follows, so a rung re-measures only the lists of
        the pools it changed (and the knowledge lists that follow them)."""
        rule = self._lists.get(name)
        # the id tuples it follows (no sets: a list found in the shared states needs none)
        if rule is None:
            deps: tuple[Sequence[str], ...] = (selection.get(self._slot_pool[name], ()),)
        else:
            deps = tuple(selection.get(t.pool, ()) for t in rule.tests)
        hit = self._slot_memo.get(name)
        if hit is not None and all(map(is_, hit[0], deps)):
            return hit[1], hit[2]
        # other models of the run (packs with equal lists start from one ladder state, so
        # their selections share the same id tuples) computed it already
        shared_key = (self._slot_keys[name], *map(id, deps))
        shared = self._caches.slot_states.get(shared_key)
        if shared is not None:  # the entry keeps its deps alive: the ids in its key are theirs
            kept, items_cost = shared[1], shared[2]
        else:
            if rule is None:
                chosen = self._chosen(self._slot_pool[name], selection)[1]
                kept = list(filter(chosen.__contains__, self._slot_order[name]))
            else:
                kept = self._kept_items(name, rule, selection)
            items_cost = 0
            if kept:
                with_comma, without = self._comma_costs[name], self._plain_costs[name]
                last = kept[-1]
                items_cost = sum(map(with_comma.__getitem__, kept)) - with_comma[last] + without[last]
            self._caches.remember(self._caches.slot_states, shared_key, (deps, kept, items_cost), SLOT_STATES_MAX)
        opening, closing, empty = self._slot_meta[name]
        cost = opening + closing + items_cost if kept else empty
        self._slot_memo[name] = (deps, kept, cost)
        return kept, cost

    def _kept_items(self, name: str, rule: _KnowledgeList, selection: Selection) -> list[str]:
        """Memoised by the selected ids of the pools the list follows (equal selections in
        other states, or other decisions on this model, reuse it). A pool's ids are in its
        rank order in every selection, so the tuples themselves are the key: hashing them
        costs less than building sets of a 1,000-field pool's names per rung."""
        key = (name, *(selection.get(t.pool, ()) for t in rule.tests))
        hit = self._kept_memo.get(key)
        if hit is None:
            if len(self._kept_memo) > 4096:
                self._kept_memo.clear()
            chosen = {t.pool: self._chosen(t.pool, selection)[1] for t in rule.tests}
            hit = self._kept_memo[key] = self._compute_kept(name, rule, chosen)
        return hit

    def _compute_kept(self, name: str, rule: _KnowledgeList, chosen: Mapping[str, set[str]]) -> list[str]:
        out: list[str] = []
        order = self._slot_order[name]
        cap = rule.cap
        for position, ident in enumerate(order):
            for test in rule.tests:
                values = test.values[position]
                if not values:
                    keep = test.keep_if_item_empty
                else:
                    pool = chosen.get(test.pool)
                    keep = test.keep_if_pool_empty if not pool else not values.isdisjoint(pool)
                if keep:
                    out.append(ident)
                    break
            if cap is not None and len(out) >= cap:
                break
        return out

    def _value_of(self, name: str, selection: Selection) -> int:
        kind, key = name.split(".", 1)
        if kind == "kept":
            return len(self._slot_state(key, selection)[0])
        return len(self._chosen(key, selection)[1])  # count: distinct selected candidates of a pool

    # ---- the model's interface ----------------------------------------------------------

    def _part_measure(self, part: _Slot | _ValueLine, selection: Selection) -> int:
        if isinstance(part, _Slot):
            return self._slot_state(part.name, selection)[1]
        return self._measure(part.before + str(self._value_of(part.name, selection)) + part.after)

    def measure(self, selection: Selection) -> int:
        """The prompt's measure for ``selection``: the fixed parts' sum plus each dynamic
        part's. A selection measured before (by the identity of its ids tuples) is answered
        from memory; otherwise only the lists that follow a changed pool are measured again
        (`_slot_state`), so a ladder rung costs the lists it touched."""
        key = tuple((pool, id(ids)) for pool, ids in selection.items())
        hit = self._measures.get(key)
        if hit is not None:  # the entry keeps its tuples alive: an id in the key is never reused meanwhile
            return hit[1]
        shared_key = (self._signature, *key)
        shared = self._caches.measures.get(shared_key)
        if shared is None:
            dynamic = sum(self._part_measure(part, selection) for part in self._dynamic)
            # kept with the tuples whose ids the key holds, as above
            self._caches.remember(
                self._caches.measures, shared_key, (tuple(selection.values()), dynamic), SLOT_STATES_MAX
            )
        else:
            dynamic = shared[1]
        total = self._fixed_measure + dynamic
        if len(self._measures) >= 256:
            self._measures.clear()
        self._measures[key] = (tuple(selection.values()), total)  # the tuples kept alive with their ids
        return total

    def tokens(self, selection: Selection) -> int:
        return self._counter.finish(self.measure(selection))

    def render(self, selection: Selection) -> str:
        return "".join(self.render_parts(selection))

    def render_parts(self, selection: Selection) -> list[str]:
        """The prompt for ``selection`` as the pieces `render` joins: the skeleton's fixed
        runs of lines, each list whole, each value line (each piece but the last ends with a
        newline). A run's packs share most pieces, so counting by pieces
        (`TiktokenCounter.count_parts`) finds most of them counted already."""
        out: list[str] = []
        for part in self._parts:
            if isinstance(part, str):
                out.append(part)
            elif isinstance(part, _Slot):
                kept = self._slot_state(part.name, selection)[0]
                if not kept:
                    out.append(part.prefix + "[]" + part.suffix + part.newline)
                    continue
                # a list's text by its content key, its place and its kept ids (the list
                # object models share for a selection, `slot_states`): packs of a run that
                # keep the same candidates print the same list, and the same text object
                # is counted by a lookup whose hash is already known
                key = (self._slot_keys[part.name], part.prefix, part.suffix, part.newline, id(kept))
                hit = self._caches.slot_texts.get(key)
                if hit is not None:  # the entry keeps its list alive: the id is never reused meanwhile
                    out.append(hit[1])
                    continue
                blocks = self._blocks[part.name]
                if isinstance(blocks, _RecordBlocks):
                    blocks.fill(kept)
                indent = indentation(part.prefix)
                text = (
                    part.prefix
                    + "[\n"
                    + ",\n".join(map(blocks.__getitem__, kept))
                    + "\n"
                    + indent
                    + "]"
                    + part.suffix
                    + part.newline
                )
                self._caches.remember(self._caches.slot_texts, key, (kept, text), SLOT_TEXTS_MAX)
                out.append(text)
            else:
                out.append(part.before + str(self._value_of(part.name, selection)) + part.after)
        return out

    def item_tokens(self, pool: str, ident: str) -> int:
        """Cost of one candidate's own blocks: in its pool's list, its lane list and every
        knowledge list that names it (its operator signature, its visual card), counted with
        a trailing comma. Lists that follow a pool as a set (examples kept while any selected
        operator or field matches) are not attributed to a single candidate."""
        total = 0
        for name, costs in self._comma_costs.items():
            rule = self._lists.get(name)
            if rule is not None:
                total += sum(costs[i] for i in rule.named.get(pool, {}).get(ident, ()))
            elif (name == pool or (name.startswith("lane.") and name.endswith("." + pool))) and ident in costs:
                total += costs[ident]
        return self._counter.finish(total) if not self._counter.exact else total


#: the old name of the shipped template's model
AgentEnvelopeModel = TemplateModel
