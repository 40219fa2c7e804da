"""The default template renders the agent's prompt byte for byte, and its arithmetic token
count equals a real count of the rendered text for any selection."""

from __future__ import annotations

import json
import random
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policy_engine.errors import PackError, RuleCheckError
from policy_engine.packs import load_pack, load_pack_file
from policy_engine.policy import Tokenizer
from policy_engine.render import build_prompt_model, load_idea, load_knowledge
from policy_engine.render.envelope import print_items
from policy_engine.tokens import get_counter
from tests.conftest import SHARED
from tests.strategies import column_text, json_values, one_line_values

UNTRIMMED_LIMITS = {
    "request_prompt": 10_000_000,
    "request_completion": 1600,
    "batch_total": 100_000_000,
    "day_total": 1_000_000_000,
}
DEFAULT_LIMITS = {"request_prompt": 12000, "request_completion": 1600, "batch_total": 52000, "day_total": 1500000}
KNOWLEDGE = load_knowledge(SHARED / "knowledge")
IDEA = load_idea(SHARED / "ideaspec.example.json")
CL100K = get_counter(Tokenizer("tiktoken", "cl100k_base"))


def model(pack: str, limits: dict, counter=CL100K, knowledge=KNOWLEDGE, idea=IDEA):
    pools = load_pack_file(SHARED / "packs" / f"{pack}.json")
    return pools, build_prompt_model(
        "agent_envelope", pools, idea=idea, knowledge=knowledge, counter=counter, limits=limits
    )


def everything(pools) -> dict:
    return {name: tuple(c.id for c in items) for name, items in pools.pools.items()}


@pytest.mark.parametrize("pack", ["small_2x4x10x8", "seed_5x15x72x60"])
def test_untrimmed_prompt_is_byte_identical(pack: str) -> None:
    pools, m = model(pack, UNTRIMMED_LIMITS)
    expected = (SHARED / "agent_prompts" / f"{pack}.untrimmed.prompt.txt").read_bytes()
    assert m.render(everything(pools)).encode("utf-8") == expected


def test_prompt_after_the_default_ladder_is_byte_identical() -> None:
    pools, m = model("seed_5x15x72x60", DEFAULT_LIMITS)
    decision = json.loads((SHARED / "agent_decisions" / "seed_5x15x72x60.llm_budget.json").read_text())
    selection = everything(pools)
    selection["fields"] = tuple(decision["fields"])
    expected = (SHARED / "agent_prompts" / "seed_5x15x72x60.after-default-ladder.prompt.txt").read_bytes()
    assert m.render(selection).encode("utf-8") == expected
    assert m.tokens(selection) == CL100K.count(expected.decode()) == 12002


COUNTERS = [
    get_counter(Tokenizer("tiktoken", "cl100k_base")),
    get_counter(Tokenizer("tiktoken", "o200k_base")),
    get_counter(Tokenizer("rough", chars_per_token=Decimal(4))),
]


@pytest.mark.parametrize("counter", COUNTERS, ids=lambda c: c.name)
@pytest.mark.parametrize("pack", ["small_2x4x10x8", "seed_5x15x72x60", "large_8x30x400x120"])
def test_arithmetic_equals_real_count_for_random_selections(counter, pack: str) -> None:
    pools, m = model(pack, DEFAULT_LIMITS, counter=counter)
    rng = random.Random(f"{pack}-{counter.name}")
    for _ in range(12):
        keep = rng.choice([0.0, 0.1, 0.5, 0.9, 1.0])
        selection = {name: tuple(c.id for c in items if rng.random() < keep) for name, items in pools.pools.items()}
        assert m.tokens(selection) == counter.count(m.render(selection))


def test_without_knowledge_or_idea_the_envelope_keeps_its_shape() -> None:
    pools, m = model("small_2x4x10x8", DEFAULT_LIMITS, knowledge=None, idea=None)
    doc = json.loads(m.render(everything(pools)))
    assert list(doc) == ["agent", "idea", "retrieval_pack", "knowledge_pack", "rules", "output_schema"]
    assert doc["idea"]["idea_id"] == pools.attributes["idea_id"]
    assert list(doc["knowledge_pack"]) == ["compact_policy"]
    assert m.tokens(everything(pools)) == CL100K.count(m.render(everything(pools)))


def test_examples_follow_the_selected_operators() -> None:
    pools, m = model("small_2x4x10x8", DEFAULT_LIMITS)
    selection = everything(pools)
    selection["operators"] = ("ts_rank", "ts_mean")
    doc = json.loads(m.render(selection))
    used = [e["used_operators"][0] for e in doc["knowledge_pack"]["fastexpr_examples_pack"]["examples"]]
    assert used == ["ts_rank", "ts_mean"]
    assert doc["knowledge_pack"]["operator_signature_pack"]["operator_count"] == 2
    assert doc["knowledge_pack"]["compact_policy"]["operator_candidates"] == 2


def test_item_tokens_is_the_marginal_cost() -> None:
    pools, m = model("seed_5x15x72x60", DEFAULT_LIMITS)
    full = everything(pools)
    victim = full["fields"][3]
    without = {**full, "fields": tuple(f for f in full["fields"] if f != victim)}
    assert m.tokens(full) - m.tokens(without) == m.item_tokens("fields", victim)


def test_knowledge_pack_errors(tmp_path) -> None:
    with pytest.raises(PackError) as err:
        load_knowledge(tmp_path / "none")
    assert err.value.diagnostics[0].code == "R101"
    (tmp_path / "operator_signature_pack.json").write_text('{"operators": 3}')
    with pytest.raises(PackError) as err:
        load_knowledge(tmp_path)
    codes = sorted(d.code for d in err.value.diagnostics)
    assert codes.count("R102") == 4 and "R103" in codes


def test_unknown_template() -> None:
    pools = load_pack_file(SHARED / "packs" / "small_2x4x10x8.json")
    with pytest.raises(RuleCheckError) as err:
        build_prompt_model("nope", pools, idea=None, knowledge=None, counter=CL100K)
    assert err.value.diagnostics[0].code == "R105"


def test_content_caches_never_serve_a_changed_pack_or_knowledge_pack() -> None:
    """The renderer caches by content digest (pack, knowledge pack) or, for pools built
    without a digest, by the items' repr: a one-character change anywhere is a miss."""
    import dataclasses

    doc = json.loads((SHARED / "packs" / "small_2x4x10x8.json").read_text())
    everything = {"subcategories": (), "datasets": (), "fields": (), "operators": ()}

    def render(pack_doc, knowledge=KNOWLEDGE, strip_digest=False):
        pools = load_pack(pack_doc)
        if strip_digest:
            pools = dataclasses.replace(pools, digest="")
        sel = {pool: tuple(c.id for c in pools.pool(pool)) for pool in everything}
        m = build_prompt_model(
            "agent_envelope", pools, idea=IDEA, knowledge=knowledge, counter=CL100K, limits=DEFAULT_LIMITS
        )
        return m.render(sel), m.tokens(sel)

    first_text, _ = render(doc)
    changed = json.loads(json.dumps(doc))
    changed["candidate_fields"][0]["type"] = "VECTOR" if doc["candidate_fields"][0]["type"] != "VECTOR" else "MATRIX"
    for strip in (False, True):
        text, tokens = render(changed, strip_digest=strip)
        assert text != first_text and '"' + changed["candidate_fields"][0]["type"] + '"' in text
        assert tokens == CL100K.count(text)
    other_knowledge = dataclasses.replace(
        KNOWLEDGE, documents={**KNOWLEDGE.documents, "fastexpr_visual_pack": {"version": "changed"}}, digest="other"
    )
    text, tokens = render(doc, knowledge=other_knowledge)
    assert '"version": "changed"' in text and tokens == CL100K.count(text)
    assert render(doc)[0] == first_text


# ---- items printed as one list, cut into each item's lines --------------------------------

#: JSON values, with strings that look like the lines the cut goes by
_ITEM_VALUES = json_values(
    st.sampled_from(["", "x", "]", "},", ",\n  {", "\n]\n", "  ", "é", "\u2028"]) | st.text(max_size=6),
    st.text(max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(
    values=st.lists(_ITEM_VALUES, max_size=8),
    width=st.integers(1, 4),
    depth=st.integers(0, 3),
    odd=st.integers(0, 1),
    ensure_ascii=st.booleans(),
)
def test_items_printed_together_are_each_items_own_lines(
    values: list, width: int, depth: int, odd: int, ensure_ascii: bool
) -> None:
    """Each item's block is its own ``json.dumps`` at the slot's indentation: what printing
    it alone gave before (also at an indentation that is no multiple of the width)."""
    indent = " " * (width * (depth + 1) + odd)

    def dumps(value):
        return json.dumps(value, indent=width, ensure_ascii=ensure_ascii)

    printed = print_items(dumps, width, indent, values)
    assert printed == ["\n".join(indent + line for line in dumps(value).split("\n")) for value in values]


@pytest.mark.parametrize("counter", COUNTERS, ids=lambda c: c.name)
def test_costs_without_the_trailing_comma_are_measured_when_read(counter) -> None:
    """Only a kept list's last item needs its cost without the comma: each item's, read
    in any order, is its block's measure with a newline."""
    _, m = model("seed_5x15x72x60", DEFAULT_LIMITS, counter=counter)
    assert sum(map(len, m._comma_costs.values())) > 100
    for name, plain in m._plain_costs.items():
        blocks, ids = m._blocks[name], list(m._comma_costs[name])
        assert not dict.items(plain)  # nothing measured before it is read
        for ident in reversed(ids):
            text = blocks[ident] + "\n"
            assert plain[ident] == (counter.count_whole(text) if counter.exact else counter.measure(text))
        assert dict.keys(plain) == set(ids)


# ---- the envelope printed entry by entry ---------------------------------------------------

_MARKS = st.sampled_from(["\x00slot:fields\x00", "\x00value:count.fields\x00", "\x00slot:k0.1\x00"])
_SKELETON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-1000, 1000) | st.text(max_size=5) | _MARKS,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3),
    max_leaves=10,
)


def _text_of(parts) -> str:
    out = []
    for part in parts:
        if isinstance(part, str):
            out.append(part)
        elif hasattr(part, "prefix"):  # a list slot's line
            out.append(part.prefix + json.dumps(f"\x00slot:{part.name}\x00") + part.suffix + part.newline)
        else:  # a value line
            out.append(part.before + json.dumps(f"\x00value:{part.name}\x00") + part.after)
    return "".join(out)


@settings(max_examples=200, deadline=None)
@given(
    entries=st.lists(
        st.tuples(
            st.text(max_size=5),
            st.booleans(),
            _SKELETON_VALUES | st.dictionaries(st.text(max_size=4), _SKELETON_VALUES, max_size=4),
        ),
        max_size=5,
        unique_by=lambda e: e[0],
    )
)
def test_the_envelope_assembled_from_its_entries_is_printed_whole(entries) -> None:
    """Entries printed one by one (objects one level deeper, entry by entry), cut and
    reassembled, give the text ``json.dumps`` prints for the whole envelope, and the
    fixed measure is the fixed text's count."""
    from policy_engine.render.caches import content_key

    _, m = model("small_2x4x10x8", DEFAULT_LIMITS)
    sections = []
    for key, nested, value in entries:
        if nested and isinstance(value, dict) and value:
            sections.append((key, None, [(k, content_key((k, v)), v) for k, v in value.items()]))
        else:
            sections.append((key, content_key((key, value)), value))
    parts, fixed = m._assemble(sections)
    whole = {key: value for key, _, value in entries}
    assert _text_of(parts) == json.dumps(whole, indent=2, ensure_ascii=False)
    assert fixed == sum(CL100K.count(p) for p in parts if isinstance(p, str))
    again, _ = m._assemble(sections)  # from the cache
    assert again == parts


def test_assembling_when_the_entry_cache_fills_up() -> None:
    """Entries found in the cache stay in hand when storing the new ones clears it."""
    from policy_engine.render.caches import DOC_CACHE_MAX, content_key

    _, m = model("small_2x4x10x8", DEFAULT_LIMITS)
    old = [(f"k{i}", content_key((f"k{i}", i)), i) for i in range(3)]
    m._assemble(old)
    for i in range(DOC_CACHE_MAX - len(m._caches.skeletons) - 1):
        m._caches.skeletons[("filler", i)] = ((), 0)
    sections = [*old, ("new", content_key(("new", [1, 2])), [1, 2]), ("more", content_key(("more", "x")), "x")]
    parts, _ = m._assemble(sections)
    assert _text_of(parts) == json.dumps({k: v for k, _, v in sections}, indent=2, ensure_ascii=False)


@pytest.mark.parametrize(("indent", "ascii_only"), [(4, True), (1, False), (3, True)])
def test_other_json_options_print_what_json_dumps_prints(indent: int, ascii_only: bool, tmp_path) -> None:
    """A template with other JSON options (indent, ensure_ascii) renders, entry by entry
    and item by item, exactly what ``json.dumps`` prints for the same envelope, on a pack
    holding non-ASCII text, and its arithmetic stays exact."""
    from policy_engine.render.template import shipped_template, template_from_document, thaw

    doc = thaw(shipped_template("agent_envelope").doc)
    doc["json"] = {"indent": indent, "ensure_ascii": ascii_only}
    template = template_from_document(doc, "custom.template.json")
    raw = json.loads((SHARED / "packs" / "small_2x4x10x8.json").read_text(encoding="utf-8"))
    raw["query"] = "résumé 中文 \u2028 🙂"
    raw["candidate_fields"][0]["description"] = "naïve é"
    pools = load_pack(raw)
    counter = get_counter(Tokenizer("tiktoken", "o200k_base"))
    plain = build_prompt_model(
        "agent_envelope", pools, idea=IDEA, knowledge=KNOWLEDGE, counter=counter, limits=DEFAULT_LIMITS
    )
    custom = build_prompt_model(
        "agent_envelope", pools, idea=IDEA, knowledge=KNOWLEDGE, counter=counter, limits=DEFAULT_LIMITS, spec=template
    )
    rng = random.Random(indent)
    for keep in (1.0, 0.5, 0.0):
        selection = {name: tuple(c.id for c in items if rng.random() < keep) for name, items in pools.pools.items()}
        expected = json.dumps(json.loads(plain.render(selection)), indent=indent, ensure_ascii=ascii_only)
        assert custom.render(selection) == expected
        assert custom.tokens(selection) == counter.count(expected)


# ---- lists of flat objects, measured by columns ------------------------------------------


def _custom_model(indent: int, ascii_only: bool, counter):
    from policy_engine.render.template import shipped_template, template_from_document, thaw

    doc = thaw(shipped_template("agent_envelope").doc)
    doc["json"] = {"indent": indent, "ensure_ascii": ascii_only}
    template = template_from_document(doc, "custom.template.json")
    pools = load_pack_file(SHARED / "packs" / "small_2x4x10x8.json")
    return build_prompt_model(
        "agent_envelope", pools, idea=IDEA, knowledge=KNOWLEDGE, counter=counter, limits=DEFAULT_LIMITS, spec=template
    )


@settings(max_examples=150, deadline=None)
@given(
    keys=st.lists(column_text, min_size=1, max_size=4, unique=True),
    n=st.integers(1, 8),
    data=st.data(),
    width=st.integers(1, 4),
    depth=st.integers(1, 3),
    ascii_only=st.booleans(),
    encoding=st.sampled_from(["cl100k_base", "o200k_base"]),
)
def test_flat_objects_measured_by_columns_cost_what_their_printed_items_cost(
    keys: list[str], n: int, data: st.DataObject, width: int, depth: int, ascii_only: bool, encoding: str
) -> None:
    """A list of objects with the same keys and one-line values is measured without
    printing its items: each item's cost with and without its comma equals a whole count
    of the item as ``json.dumps`` prints it at the slot's indentation, and the item a
    prompt asks for is printed exactly so. Keys the head cut cannot take whole (escapes)
    fall back to printing, never to a wrong cost."""
    from policy_engine.tokens.counter import TiktokenCounter

    counter = TiktokenCounter(encoding)
    m = _custom_model(width, ascii_only, counter)
    rows = [{key: data.draw(one_line_values) for key in keys} for _ in range(n)]
    ids = [f"r{i}" for i in range(n)]
    indent = " " * (width * depth)
    measured = m._measure_records(indent, ids, rows)
    simple = all(json.dumps(key, ensure_ascii=ascii_only) == f'"{key}"' for key in keys)
    if not simple:
        assert measured is None
        return
    assert measured is not None
    blocks, with_comma, plain = measured
    assert not dict.items(blocks)  # nothing printed before a prompt asks
    for ident, row in zip(ids, rows, strict=True):
        block = "\n".join(indent + line for line in json.dumps(row, indent=width, ensure_ascii=ascii_only).split("\n"))
        assert with_comma[ident] == counter.count_whole(block + ",\n")
        assert plain[ident] == counter.count_whole(block + "\n")
        assert blocks[ident] == block


@pytest.mark.parametrize(
    "rows",
    [
        [{"a": 1, "b": [1]}, {"a": 2, "b": []}],  # a value printed over several lines
        [{"a": 1, "b": 2}, {"b": 2, "a": 1}],  # another key order
        [{"a": 1}, {"a": 1, "b": 2}],  # another key set
        [{"a": 1, "b": 2}, {"a": 3}, {"b": 4}, {"a": 5, "b": 6}],  # the keys of two rows split over three
        [{"a": 1}, "a"],  # an object among one-line values
        ["a", [1, 2]],  # a list among them
        [],
    ],
    ids=["nested", "order", "keys", "split-keys", "object-and-scalar", "scalar-and-list", "no-items"],
)
def test_lists_that_are_not_flat_objects_are_printed_and_measured_by_lines(rows: list) -> None:
    _, m = model("small_2x4x10x8", DEFAULT_LIMITS)
    assert m._measure_records("      ", [str(i) for i in range(len(rows))], rows) is None
    blocks, with_comma, _ = m._measure_items("      ", [(str(i), row) for i, row in enumerate(rows)])
    assert dict.keys(blocks) == with_comma.keys() == {str(i) for i in range(len(rows))}
    for ident, row in enumerate(rows):
        block = "\n".join("      " + line for line in json.dumps(row, indent=2, ensure_ascii=False).split("\n"))
        assert blocks[str(ident)] == block
        assert with_comma[str(ident)] == CL100K.count_whole(block + ",\n")


def test_a_duplicate_id_keeps_its_last_item_as_printing_did() -> None:
    _, m = model("small_2x4x10x8", DEFAULT_LIMITS)
    rows = [{"id": "x", "n": 1}, {"id": "x", "n": 22222}]
    by_columns = m._measure_records("    ", ["x", "x"], rows)
    by_lines = print_items(lambda v: json.dumps(v, indent=2, ensure_ascii=False), 2, "    ", rows)
    assert by_columns is not None
    assert by_columns[0]["x"] == by_lines[1]
    assert by_columns[1]["x"] == CL100K.count_whole(by_lines[1] + ",\n")


@settings(max_examples=100, deadline=None)
@given(
    values=st.lists(one_line_values, min_size=1, max_size=10),
    width=st.integers(1, 4),
    depth=st.integers(1, 3),
    ascii_only=st.booleans(),
    encoding=st.sampled_from(["cl100k_base", "o200k_base"]),
)
def test_one_line_values_measured_as_one_column_cost_what_their_lines_cost(
    values: list, width: int, depth: int, ascii_only: bool, encoding: str
) -> None:
    """A list of one-line values (a lane's ids; empty lists and objects print on one line
    too) is one column whose head is the items' indentation but its last space."""
    from policy_engine.tokens.counter import TiktokenCounter

    counter = TiktokenCounter(encoding)
    m = _custom_model(width, ascii_only, counter)
    ids = [f"v{i}" for i in range(len(values))]
    indent = " " * (width * depth)
    measured = m._measure_records(indent, ids, values)
    assert measured is not None
    blocks, with_comma, plain = measured
    for ident, value in zip(ids, values, strict=True):
        line = indent + json.dumps(value, ensure_ascii=ascii_only)
        assert with_comma[ident] == counter.count_whole(line + ",\n")
        assert plain[ident] == counter.count_whole(line + "\n")
        assert blocks[ident] == line


def test_short_lists_are_measured_by_lines_long_ones_by_columns() -> None:
    from policy_engine.render import envelope

    pools, m = model("large_8x30x400x120", DEFAULT_LIMITS)
    assert len(pools.pools["fields"]) >= envelope._COLUMNS_MIN_ITEMS > len(pools.pools["datasets"])
    assert isinstance(m._blocks["fields"], envelope._RecordBlocks)
    assert not isinstance(m._blocks["datasets"], envelope._RecordBlocks)


def test_the_rough_counter_measures_flat_objects_by_printing() -> None:
    _, m = model("small_2x4x10x8", DEFAULT_LIMITS, counter=COUNTERS[2])
    assert m._measure_records("    ", ["a"], [{"id": "a"}]) is None


@pytest.mark.parametrize("pack", ["small_2x4x10x8", "seed_5x15x72x60", "large_8x30x400x120"])
def test_the_pack_lists_are_measured_by_columns_and_render_alike(pack: str, monkeypatch) -> None:
    """The shared packs' candidate lists take the column path (it is not dead code), and a
    model that prints every item instead renders and prices every selection alike."""
    from policy_engine.render import envelope
    from policy_engine.tokens.counter import TiktokenCounter

    counter = TiktokenCounter("o200k_base")
    monkeypatch.setattr(envelope, "_COLUMNS_MIN_ITEMS", 1)  # the small packs' lists too
    pools, by_columns = model(pack, DEFAULT_LIMITS, counter=counter)
    assert isinstance(by_columns._blocks["fields"], envelope._RecordBlocks)
    monkeypatch.setattr(envelope.TemplateModel, "_measure_records", lambda self, indent, ids, values: None)
    _, by_lines = model(pack, DEFAULT_LIMITS, counter=TiktokenCounter("o200k_base"))
    assert not isinstance(by_lines._blocks["fields"], envelope._RecordBlocks)
    rng = random.Random(pack)
    for keep in (1.0, 0.9, 0.5, 0.1, 0.0):
        selection = {name: tuple(c.id for c in items if rng.random() < keep) for name, items in pools.pools.items()}
        text = by_lines.render(selection)
        assert by_columns.render(selection) == text
        assert by_columns.tokens(selection) == by_lines.tokens(selection) == counter.count_whole(text)


@pytest.mark.parametrize(
    "column",
    [
        ["MATRIX", "VECTOR"] * 100,  # few distinct strings: printed once each
        ["x", "é", 'a"b', "1", "\u2028"] * 40,  # strings that need escapes or look like numbers
        ["a", "a", "b", 1, 1.0, True, None, "b"] * 25,  # not all strings: every row printed
        ["same"] * 150 + ["other"] * 50,
    ],
    ids=["two-strings", "escapes", "mixed-types", "skewed"],
)
@pytest.mark.parametrize("ascii_only", [False, True])
def test_a_column_of_repeated_strings_shares_its_tails_and_costs_alike(column: list, ascii_only: bool) -> None:
    from policy_engine.tokens.counter import TiktokenCounter

    counter = TiktokenCounter("o200k_base")
    m = _custom_model(2, ascii_only, counter)
    rows = [{"id": f"r{i}", "kind": value, "n": i % 7} for i, value in enumerate(column)]
    ids = [row["id"] for row in rows]
    measured = m._measure_records("    ", ids, rows)
    assert measured is not None
    blocks, with_comma, plain = measured
    for ident, row in list(zip(ids, rows, strict=True))[::17]:
        block = "\n".join("    " + line for line in json.dumps(row, indent=2, ensure_ascii=ascii_only).split("\n"))
        assert blocks[ident] == block
        assert with_comma[ident] == counter.count_whole(block + ",\n")
        assert plain[ident] == counter.count_whole(block + "\n")
    tails = m._column_tails(column, commas=True)
    assert tails == [" " + json.dumps(v, ensure_ascii=ascii_only) + "," for v in column]
    if all(type(v) is str for v in column):  # each distinct value's tail is one object
        assert len({id(t) for t in tails}) == len(set(column))


def test_a_kept_list_measured_by_columns_is_counted_with_no_encode_and_no_line_cut(monkeypatch) -> None:
    """The lines a render builds from heads and tails are known to the counter with their
    counts (`remember_lines`): the final count of the prompt encodes nothing new for them
    and cuts no line into head and tail again, and it equals a whole encode."""
    from policy_engine.render import envelope
    from policy_engine.tokens.counter import TiktokenCounter

    counter = TiktokenCounter("o200k_base")
    pools, m = model("large_8x30x400x120", DEFAULT_LIMITS, counter=counter)
    assert isinstance(m._blocks["fields"], envelope._RecordBlocks)
    rng = random.Random(7)
    selection = {name: tuple(c.id for c in items if rng.random() < 0.3) for name, items in pools.pools.items()}
    parts = m.render_parts(selection)
    text = "".join(parts)
    fields_text = next(part for part in parts if part.lstrip().startswith('"candidate_fields": [\n'))
    assert fields_text.count("\n") > 200  # a long kept list
    encoded: list[str] = []
    learned: list[int] = []
    real_encode, real_learn = counter._encode, counter._learn_lines
    monkeypatch.setattr(counter, "_encode", lambda t: encoded.append(t) or real_encode(t))
    monkeypatch.setattr(counter, "_learn_lines", lambda lines: learned.append(len(lines)) or real_learn(lines))
    assert counter.count(fields_text) == counter.count_whole(fields_text)
    assert not learned, learned
    assert len(encoded) == 1  # the whole count just above
    assert counter.count_parts(parts) == m.tokens(selection) == counter.count_whole(text)
