"""The suite's generators, for any test to reuse: valid packs in the agent's format, valid
policies (as rule text through the real parser), usage snapshots, and cases placed near a
policy's limits. They live in `policy_engine.verify.strategies` because `policy verify` runs
them against users' policies; this module is the test suite's door to them."""

from policy_engine.verify.strategies import (
    PackSizes,
    PolicySpec,
    StageSpec,
    cases,
    ladders,
    packs,
    policy_specs,
    requests,
    stage_specs,
    usage_snapshots,
)

__all__ = [
    "PackSizes",
    "PolicySpec",
    "StageSpec",
    "cases",
    "ladders",
    "packs",
    "policy_specs",
    "requests",
    "stage_specs",
    "usage_snapshots",
]


# ---- knowledge packs (section 3.1's edge cases), for the template/reference property ------

from typing import Any

from hypothesis import strategies as st

_TEXT = st.text(alphabet="abcxyz_é한 ", max_size=6)


def _names_from(pack: dict[str, Any], pool_key: str, id_key: str) -> st.SearchStrategy[str]:
    known = [item[id_key] for item in pack[pool_key]]
    others = st.sampled_from(["ghost_op", "ghost_field", "rank", ""])
    return st.one_of(st.sampled_from(known), others) if known else others


def _maybe(key: str, value: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """{key: value} or {} (the key missing), or {key: None}."""
    return st.one_of(st.just({}), st.builds(lambda v: {key: v}, value), st.just({key: None}))


@st.composite
def knowledge_documents(draw: Any, pack: dict[str, Any]) -> dict[str, Any]:
    """A knowledge bundle (file stem -> document) around a pack: signatures and visual cards
    named after the pack's operators or not (duplicates, empty and missing names),
    examples and cards using operators and fields or none, non-object rows, non-object or
    missing files, a non-list error taxonomy."""
    op = _names_from(pack, "candidate_operators", "name")
    field = _names_from(pack, "candidate_fields", "id")
    junk = st.one_of(st.integers(-2, 2), _TEXT, st.none(), st.lists(st.integers(), max_size=2))

    def row(extra: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[Any]:
        return st.one_of(extra, junk) if draw(st.booleans()) else extra

    named = st.builds(lambda n, body: {**n, "body": body}, _maybe("name", op), _TEXT)
    used = st.builds(
        lambda u, f, body: {**u, **f, "expression": body},
        _maybe("used_operators", st.lists(op, max_size=3)),
        _maybe("used_fields", st.lists(field, max_size=3)),
        _TEXT,
    )
    cards = st.builds(
        lambda u, body: {**u, "expression": body}, _maybe("used_operators", st.lists(op, max_size=3)), _TEXT
    )
    head = st.fixed_dictionaries({}, optional={"version": _TEXT, "generated_at": _TEXT})
    docs: dict[str, Any] = {}
    if draw(st.integers(0, 9)):
        docs["operator_signature_pack"] = {
            **draw(head),
            "operator_count": 999,
            "operators": draw(st.lists(row(named), max_size=8)),
            "missing_required_fields": [],
        }
    if draw(st.integers(0, 9)):
        docs["fastexpr_examples_pack"] = {
            **draw(head),
            **draw(_maybe("fallback_used", st.booleans())),
            "examples": draw(st.lists(row(used), max_size=12)),
        }
    if draw(st.integers(0, 9)):
        taxonomy = draw(st.one_of(st.lists(st.fixed_dictionaries({"error_key": _TEXT}), max_size=2), junk))
        docs["fastexpr_visual_pack"] = {
            **draw(head),
            "operators": draw(st.lists(row(named), max_size=6)),
            "error_taxonomy": taxonomy,
            "example_cards": draw(st.lists(row(cards), max_size=11)),
            "extra_key": "never sent",
        }
    if draw(st.integers(0, 9)):
        docs["simulation_settings_allowed_pack"] = draw(
            st.one_of(st.fixed_dictionaries({"allowed": st.dictionaries(_TEXT, _TEXT, max_size=2)}), junk)
        )
    if draw(st.booleans()):
        docs["fastexpr_counterexamples_pack"] = {"cases": [{"never": "sent"}]}
    return docs


# ---- JSON values, for the tests of printed JSON -------------------------------------------


def json_values(strings: st.SearchStrategy[str], keys: st.SearchStrategy[str], max_leaves: int = 10) -> Any:
    """Finite JSON values whose strings and keys come from the given strategies: a test
    of printed JSON aims them at what it cuts by (brackets, commas, newlines, a
    tokenizer's special fragments)."""
    return st.recursive(
        st.none()
        | st.booleans()
        | st.integers(-(10**6), 10**6)
        | st.floats(allow_nan=False, allow_infinity=False)
        | strings,
        lambda children: st.lists(children, max_size=3) | st.dictionaries(keys, children, max_size=3),
        max_leaves=max_leaves,
    )


#: keys and string values aimed at the head/tail cut of a printed JSON line (the lists
#: measured by columns): quotes, escapes, the `": ` a key line holds, spaces, underscores
#: (word pieces), the slash o200k's punctuation takes, non-ASCII, a newline, a tab and a
#: line separator inside strings
column_text = st.text(alphabet=list('ab_1 ":\\,/é中\n\t\u2028'), max_size=8)
#: values printed on one line: scalars of any size, strings from `column_text`, empty containers
one_line_values = (
    st.none()
    | st.booleans()
    | st.integers(-(10**20), 10**20)
    | st.floats(allow_nan=False, allow_infinity=False)
    | column_text
    | st.sampled_from([[], {}])
)
