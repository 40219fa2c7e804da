"""Hypothesis strategies for every kind of input the CLI reads, hostile ones included.

Each strategy yields an `Invocation`: files to write and the argv that reads them. The
inputs are raw bytes, random JSON/YAML, and mutations of the shipped examples (a value
replaced by a random one, a key dropped, a container nested), because the crashes that
matter sit one mutation away from a valid document, where every check but one passes.
"""

from __future__ import annotations

import json
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[2]
EX = ROOT / "examples"
RULE_TEXTS = [p.read_text(encoding="utf-8") for p in sorted((ROOT / "rules").glob("*.policy"))] + [
    (EX / "policies" / "demo.policy").read_text(encoding="utf-8")
]
PACK = json.loads((EX / "packs" / "small_2x4x10x8.json").read_text(encoding="utf-8"))
USAGE = json.loads((EX / "usage.json").read_text(encoding="utf-8"))
IDEA = json.loads((EX / "ideaspec.json").read_text(encoding="utf-8"))
LLM_BUDGET = json.loads((EX / "llm_budget.json").read_text(encoding="utf-8"))
RETRIEVAL = json.loads((EX / "retrieval_budget.json").read_text(encoding="utf-8"))
CASES_TEXT = (EX / "tests" / "cases.yaml").read_text(encoding="utf-8")


@dataclass(frozen=True)
class Invocation:
    files: dict[str, bytes]
    argv: tuple[str, ...]  # "{dir}" is replaced by the case's directory

    def args(self, directory: Path) -> list[str]:
        return [a.replace("{dir}", str(directory)) for a in self.argv]


# ---- values ---------------------------------------------------------------------------------

EDGE_NUMBERS = st.sampled_from(
    [0, -1, 1, 2**31, 2**53, 2**53 + 1, 2**63, -(2**63), 10**15, 10**15 + 1, 10**400, 0.5, -0.0, 1e308, 1e-320]
)
EDGE_STRINGS = st.sampled_from(
    ["", " ", "\x00", "/etc/passwd", "-", "a" * 300, "NaN", "1e400", "☃", "\ud7ff", "../x", "::", "x::y"]
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**20), 10**20),
    st.floats(allow_nan=False, allow_infinity=False),
    EDGE_NUMBERS,
    EDGE_STRINGS,
    st.text(max_size=20),
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12,
)


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc[:6]):
            out += _paths(v, prefix + (i,))
    return out


@st.composite
def mutated(draw: st.DrawFn, doc: Any) -> Any:
    """The document with one to three edits: a value replaced, a key dropped, a value
    wrapped in a list or an object."""
    doc = json.loads(json.dumps(doc))
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _paths(doc) if p]
        if not paths:
            return draw(JSON_VALUES)
        path = draw(st.sampled_from(paths))
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        last = path[-1]
        action = draw(st.sampled_from(["replace", "drop", "wrap_list", "wrap_dict", "deep"]))
        if action == "drop":
            del parent[last]
        elif action == "wrap_list":
            parent[last] = [parent[last]]
        elif action == "wrap_dict":
            parent[last] = {"x": parent[last]}
        elif action == "deep":
            value: Any = parent[last]
            for _ in range(draw(st.integers(60, 200))):
                value = [value]
            parent[last] = value
        else:
            parent[last] = draw(JSON_VALUES)
    return doc


def as_json_bytes(doc: Any) -> bytes:
    return json.dumps(doc, ensure_ascii=False, allow_nan=True).encode("utf-8", "surrogatepass")


RAW_BYTES = st.one_of(st.binary(max_size=300), st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")))


def document(base: Any) -> st.SearchStrategy[bytes]:
    """Bytes for a JSON input: raw, random JSON, or a mutation of the shipped example."""
    return st.one_of(
        RAW_BYTES, JSON_VALUES.map(as_json_bytes), mutated(base).map(as_json_bytes), st.just(as_json_bytes(base))
    )


# ---- rule text --------------------------------------------------------------------------------

RULE_WORDS = [
    "limit",
    "ladder",
    "stage",
    "when",
    "include",
    "tokenizer",
    "rough",
    "tiktoken",
    "{",
    "}",
    ":",
    "<=",
    "=<",
    "tokens",
    "$",
    "%",
    "12k",
    "1,600",
    "1" + "0" * 5000,
    "0.85",
    "factor",
    "share",
    "keep",
    "min",
    "then",
    "and",
    "or",
    "not",
    '"',
    "#",
    "\n",
    "Limit",
    "explore",
    "floor",
    "topk",
    "fields",
    "operators",
    "request_prompt",
    "day_usd",
    "price",
    "per",
    "1M",
    "block",
    "warn",
    "on",
    "exhausted",
    "#\r",
    "\r\n",
    "\t",
    "# same",
    '"../x.policy"',
    '"/etc/passwd"',
    "\x00",
]


@st.composite
def rule_bytes(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["raw", "words", "mutate"]))
    if kind == "raw":
        return draw(RAW_BYTES)
    if kind == "words":
        return " ".join(draw(st.lists(st.sampled_from(RULE_WORDS), max_size=40))).encode("utf-8")
    text = draw(st.sampled_from(RULE_TEXTS))
    tokens = text.split(" ")
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(tokens) - 1))
        op = draw(st.sampled_from(["delete", "dup", "replace", "garble"]))
        if op == "delete":
            del tokens[i]
        elif op == "dup":
            tokens.insert(i, tokens[i])
        elif op == "replace":
            tokens[i] = draw(st.sampled_from(RULE_WORDS))
        else:
            tokens[i] = draw(st.text(alphabet=string.printable, max_size=6))
        if not tokens:
            tokens = [""]
    return " ".join(tokens).encode("utf-8")


# ---- invocations per input kind ----------------------------------------------------------------

FLAG_VALUES = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.sampled_from(["-1", "0", "1", "abc", "", "1e400", "nan", "99999999999999999999999"]),
)


@st.composite
def pack_invocation(draw: st.DrawFn) -> Invocation:
    command = draw(st.sampled_from(["eval", "explain"]))
    argv = [command, "{dir}/pack.json", "--rules", str(ROOT / "rules" / "default.policy")]
    if command == "eval":
        argv += draw(
            st.sampled_from(
                [
                    [],
                    ["--format", "json"],
                    ["--format", "sarif"],
                    ["--format", "junit"],
                    ["--format", "github"],
                    ["--trimmed-pack", "{dir}/t.json"],
                ]
            )
        )
    if draw(st.booleans()):
        argv += ["--completion-tokens", draw(FLAG_VALUES)]
    return Invocation({"pack.json": draw(document(PACK))}, tuple(argv))


@st.composite
def aux_invocation(draw: st.DrawFn) -> Invocation:
    """Usage snapshots, idea specs and seen-combo files beside a valid pack."""
    flag, base = draw(st.sampled_from([("--usage", USAGE), ("--idea", IDEA), ("--seen", ["a::b"])]))
    files = {"pack.json": as_json_bytes(PACK), "aux.json": draw(document(base))}
    return Invocation(files, ("eval", "{dir}/pack.json", flag, "{dir}/aux.json", "--format", "json"))


@st.composite
def rules_invocation(draw: st.DrawFn) -> Invocation:
    command = draw(st.sampled_from(["check", "fmt", "eval"]))
    files = {"r.policy": draw(rule_bytes())}
    if draw(st.booleans()):
        files["inc.policy"] = draw(rule_bytes())
    if command == "check":
        argv: tuple[str, ...] = ("check", "{dir}/r.policy")
    elif command == "fmt":
        argv = ("fmt", "--check", "{dir}/r.policy")
    else:
        argv = ("eval", str(EX / "packs" / "small_2x4x10x8.json"), "--rules", "{dir}/r.policy", "--format", "json")
    return Invocation(files, argv)


@st.composite
def cases_invocation(draw: st.DrawFn) -> Invocation:
    from yaml import safe_dump

    kind = draw(st.sampled_from(["raw", "random", "mutate"]))
    if kind == "raw":
        body = draw(RAW_BYTES)
    elif kind == "random":
        body = safe_dump(draw(JSON_VALUES), allow_unicode=True).encode("utf-8", "surrogatepass")
    else:
        import yaml

        doc = yaml.safe_load(CASES_TEXT)
        doc = {
            **doc,
            "rules": str(ROOT / "rules" / "default.policy"),
            "knowledge": str(EX / "knowledge"),
            "idea": str(EX / "ideaspec.json"),
        }
        doc["cases"] = [
            dict(c, pack=str(EX / "tests" / c["pack"])) for c in doc["cases"][:1]
        ]  # the small pack: cheap to evaluate
        body = safe_dump(draw(mutated(doc)), allow_unicode=True).encode("utf-8", "surrogatepass")
    return Invocation({"cases.yaml": body}, ("test", "{dir}/cases.yaml"))


@st.composite
def import_invocation(draw: st.DrawFn) -> Invocation:
    files = {"llm.json": draw(document(LLM_BUDGET))}
    argv = ["import-config", "{dir}/llm.json"]
    if draw(st.booleans()):
        files["ret.json"] = draw(document(RETRIEVAL))
        argv += ["--retrieval-budget", "{dir}/ret.json"]
    return Invocation(files, tuple(argv))


@st.composite
def tokens_invocation(draw: st.DrawFn) -> Invocation:
    text = draw(st.text(max_size=50))
    extra = draw(
        st.sampled_from(
            [
                [],
                ["--rough", draw(FLAG_VALUES)],
                ["--rough", "sNaN"],
                ["--encoding", draw(st.sampled_from(["cl100k_base", "o200k_base", "nope", ""]))],
                ["--model", draw(st.text(max_size=10))],
            ]
        )
    )
    if draw(st.booleans()):
        return Invocation({"t.txt": draw(RAW_BYTES)}, ("tokens", "--file", "{dir}/t.txt", *extra))
    return Invocation({}, ("tokens", text, *extra))


@st.composite
def path_invocation(draw: st.DrawFn) -> Invocation:
    """Odd paths: missing, too long, directories, NUL-free garbage."""
    path = draw(
        st.sampled_from(
            [
                "{dir}/missing.json",
                "{dir}/" + "x" * 300,
                "{dir}",
                "{dir}/" + "y" * 5000 + ".json",
                "/dev/null",
                "{dir}/sub/",
            ]
        )
    )
    command = draw(
        st.sampled_from(
            [
                ["eval", path],
                ["explain", path],
                ["check", path],
                ["fmt", path],
                ["test", path],
                ["tokens", "--file", path],
                ["eval", str(EX / "packs" / "small_2x4x10x8.json"), "--rules", path],
                ["eval", str(EX / "packs" / "small_2x4x10x8.json"), "--usage", path],
                ["eval", str(EX / "packs" / "small_2x4x10x8.json"), "--knowledge-pack-dir", path],
                ["import-config", path],
            ]
        )
    )
    return Invocation({}, tuple(command))


KINDS = {
    "packs": pack_invocation(),
    "aux": aux_invocation(),
    "rules": rules_invocation(),
    "cases": cases_invocation(),
    "import": import_invocation(),
    "tokens": tokens_invocation(),
    "paths": path_invocation(),
}
