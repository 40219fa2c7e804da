"""Schema and semantic validation of the agent's retrieval pack, every violation with its
JSON Pointer. The schema says the shape; cross-references (ids unique per pool, fields
pointing at listed datasets, lanes lists agreeing with candidates' lanes) are checked here
because JSON Schema cannot express them."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from functools import cache
from typing import TYPE_CHECKING, Any

from policy_engine.errors import Diagnostic
from policy_engine.reading.bounds import MAX_JSON_INTEGER, PACK_BOUNDS

if TYPE_CHECKING:  # imported when a document fails the fast path (it costs ~40 ms at start-up)
    import jsonschema

_TYPE_NAMES = {
    "object": "object",
    "array": "array",
    "string": "string",
    "number": "number",
    "integer": "integer",
    "boolean": "boolean",
    "null": "null",
}


@cache
def load_schema(name: str) -> dict[str, Any]:
    from importlib import resources  # only here: its import costs a cold start ~9 ms (a valid pack needs no schema)

    text = resources.files("policy_engine.schemas").joinpath(f"{name}.schema.json").read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def pointer(path: Any) -> str:
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in path)


def _message(error: jsonschema.ValidationError) -> str:
    """Plain-language messages: `expected number, got "high"` rather than jsonschema's repr."""
    got = json.dumps(error.instance, ensure_ascii=False)
    if len(got) > 60:
        got = got[:57] + "..."
    if error.validator == "type":
        want = error.validator_value
        want = " or ".join(want) if isinstance(want, list) else want
        return (
            f"expected {want}, got {_json_type(error.instance)} {got}"
            if isinstance(error.instance, (dict, list))
            else f"expected {want}, got {got}"
        )
    if error.validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else error.message
        return f"missing required key {missing!r}"
    if error.validator == "enum":
        return f"expected one of {', '.join(json.dumps(v) for v in (error.validator_value if isinstance(error.validator_value, list) else [error.validator_value]))}, got {got}"
    if error.validator == "minLength":
        return f"expected a non-empty string, got {got}"
    if error.validator == "minimum":
        return f"expected a number >= {error.validator_value}, got {got}"
    if error.validator == "additionalProperties":
        return error.message.replace("Additional properties are not allowed", "unknown key(s)")
    return error.message


def _inline_local_refs(node: Any, defs: Mapping[str, Any]) -> Any:
    """Replace ``{"$ref": "#/$defs/x"}`` by the definition itself. The shipped schemas use
    small, non-recursive $defs; resolving them once here instead of on every instance
    (jsonschema's referencing) halves the gate's validation time. The published schema
    files keep their $refs."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/") and len(node) == 1:
            return _inline_local_refs(defs[ref.removeprefix("#/$defs/")], defs)
        return {k: _inline_local_refs(v, defs) for k, v in node.items() if k != "$defs"}
    if isinstance(node, list):
        return [_inline_local_refs(v, defs) for v in node]
    return node


@cache
def _validator(schema_name: str) -> jsonschema.Draft202012Validator:
    import jsonschema

    schema = load_schema(schema_name)
    return jsonschema.Draft202012Validator(_inline_local_refs(schema, schema.get("$defs", {})))


def schema_diagnostics(doc: Any, schema_name: str, file: str, code: str, hint: str) -> list[Diagnostic]:
    import jsonschema

    validator = _validator(schema_name)
    found: list[tuple[str, str]] = []
    for error in validator.iter_errors(doc):
        # for oneOf/anyOf, report the most specific branch error when there is one
        best = jsonschema.exceptions.best_match([error]) if error.context else error
        found.append((pointer(best.absolute_path), _message(best)))
    return [
        Diagnostic(code, f"{ptr or '/'}: {msg}", hint=hint, file=file, pointer=ptr) for ptr, msg in sorted(set(found))
    ]


def _semantic(doc: Mapping[str, Any], file: str) -> Iterator[Diagnostic]:
    def diag(code: str, ptr: str, msg: str, hint: str) -> Diagnostic:
        return Diagnostic(code, f"{ptr}: {msg}", hint=hint, file=file, pointer=ptr)

    subcats = doc["selected_subcategories"]
    seen: dict[str, int] = {}
    for i, sub in enumerate(subcats):
        if sub in seen:
            yield diag(
                "P108",
                f"/selected_subcategories/{i}",
                f"subcategory {sub!r} is listed twice (first at index {seen[sub]})",
                "list each subcategory once",
            )
        seen.setdefault(sub, i)
    for key, id_key in (("candidate_datasets", "id"), ("candidate_fields", "id"), ("candidate_operators", "name")):
        first: dict[str, int] = {}
        for i, item in enumerate(doc[key]):
            ident = item[id_key]
            if ident in first:
                yield diag(
                    "P108",
                    f"/{key}/{i}/{id_key}",
                    f"{id_key} {ident!r} repeats /{key}/{first[ident]}",
                    "candidate ids must be unique within a pool",
                )
            first.setdefault(ident, i)
    dataset_ids = {d["id"] for d in doc["candidate_datasets"]}
    for i, ds in enumerate(doc["candidate_datasets"]):
        if ds["subcategory_id"] not in seen:
            yield diag(
                "P109",
                f"/candidate_datasets/{i}/subcategory_id",
                f"{ds['subcategory_id']!r} is not in selected_subcategories",
                "add the subcategory or drop the dataset",
            )
    for i, field in enumerate(doc["candidate_fields"]):
        if field["dataset_id"] not in dataset_ids:
            yield diag(
                "P109",
                f"/candidate_fields/{i}/dataset_id",
                f"{field['dataset_id']!r} is not a candidate dataset",
                "add the dataset or drop the field",
            )
    for lane in ("exploit", "explore"):
        for list_key, cand_key, id_key in (
            ("field_ids", "candidate_fields", "id"),
            ("operator_names", "candidate_operators", "name"),
        ):
            listed = doc["lanes"][lane][list_key]
            actual = [c[id_key] for c in doc[cand_key] if c["lane"] == lane]
            if sorted(listed) != sorted(actual):
                extra = sorted(set(listed) - set(actual))
                missing = sorted(set(actual) - set(listed))
                parts = []
                if extra:
                    parts.append(
                        "lists "
                        + ", ".join(map(repr, extra[:5]))
                        + (" ..." if len(extra) > 5 else "")
                        + f" not in {lane} lane of {cand_key}"
                    )
                if missing:
                    parts.append("omits " + ", ".join(map(repr, missing[:5])) + (" ..." if len(missing) > 5 else ""))
                if not parts:
                    parts.append("repeats an id")
                yield diag(
                    "P110",
                    f"/lanes/{lane}/{list_key}",
                    "; ".join(parts),
                    "keep lanes lists and candidates' lane values in agreement",
                )


def non_json_diagnostics(doc: Any, file: str, code_prefix: str = "P") -> list[Diagnostic]:
    """Values a JSON file cannot hold but a Python caller can pass: NaN and infinities
    (JSON Schema's "number" accepts them), non-string keys, tuples, sets, bytes, objects.
    Walked iteratively, so a deeply nested document cannot exhaust the stack."""
    found: list[Diagnostic] = []
    stack: list[tuple[Any, tuple[Any, ...]]] = [(doc, ())]
    while stack and len(found) < 50:
        value, path = stack.pop()
        if len(path) > PACK_BOUNDS.max_depth:
            found.append(
                Diagnostic(
                    f"{code_prefix}119",
                    f"{pointer(path)}: nested deeper than {PACK_BOUNDS.max_depth} levels",
                    hint="flatten the document",
                    file=file,
                    pointer=pointer(path),
                )
            )
            break
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_JSON_INTEGER:
            found.append(
                Diagnostic(
                    f"{code_prefix}118",
                    f"{pointer(path) or '/'}: integer out of range",
                    hint=f"integers must lie within ±{MAX_JSON_INTEGER:,} (2^53 - 1)",
                    file=file,
                    pointer=pointer(path),
                )
            )
        elif isinstance(value, float) and not math.isfinite(value):
            found.append(
                Diagnostic(
                    f"{code_prefix}105",
                    f"{pointer(path) or '/'}: {value!r} is not a JSON number",
                    hint="use a finite number",
                    file=file,
                    pointer=pointer(path),
                )
            )
        elif isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str):
                    found.append(
                        Diagnostic(
                            f"{code_prefix}107",
                            f"{pointer(path) or '/'}: key {key!r} is not a string",
                            hint="JSON object keys are strings",
                            file=file,
                            pointer=pointer(path),
                        )
                    )
                else:
                    stack.append((item, path + (key,)))
        elif isinstance(value, list):
            stack.extend((item, path + (i,)) for i, item in enumerate(value))
        elif value is not None and not isinstance(value, (str, int, float, bool)):
            found.append(
                Diagnostic(
                    f"{code_prefix}107",
                    f"{pointer(path) or '/'}: a {type(value).__name__} is not a JSON value",
                    hint="pass lists, dicts, strings, numbers, booleans or None",
                    file=file,
                    pointer=pointer(path),
                )
            )
    return sorted(found, key=lambda d: (d.pointer or "", d.code))


def validate_pack_document(doc: Any, file: str) -> list[Diagnostic]:
    odd = non_json_diagnostics(doc, file)
    if odd:
        return odd
    found = schema_diagnostics(doc, "retrieval_pack", file, "P107", "see `policy schema retrieval_pack`")
    if found:
        return found
    return sorted(_semantic(doc, file), key=lambda d: (d.pointer or "", d.code))
