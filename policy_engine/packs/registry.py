"""Pack formats are plugins: a name, a detector and an adapter to `Pools`.

Built-ins register through the same entry-point group third parties use
(``policy_engine.pack_formats``), so another pack format plugs in without touching the
evaluator. An entry point names a `PackFormat`: a name, a detector, an adapter to `Pools`,
a validator, and a trimmer that writes a selection back in the format's own shape (what
`api.trimmed_pack` and the budget gate hand to the agent).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from policy_engine.errors import Diagnostic, PackError
from policy_engine.pools import Pools

GROUP = "policy_engine.pack_formats"


@dataclass(frozen=True, slots=True)
class PackFormat:
    name: str
    detect: Callable[[Any], bool]
    adapt: Callable[..., Pools]
    validate: Callable[[Any, str], list[Diagnostic]]
    trim: Callable[[Mapping[str, Any], Mapping[str, Mapping[str, tuple[str, ...]]]], dict[str, Any]]
    #: optional fast path, called as ``quick_check(document, parts)``: True only for a
    #: document `validate` finds nothing wrong with (a plain-JSON dict, so it copies exactly
    #: through JSON text); False sends the document through `validate` for the precise
    #: errors. ``parts`` maps each top-level key to its value's content key (marshal bytes or
    #: the reader's JSON text; None when marshal refuses the document), so verdicts on parts seen before may stand.
    quick_check: Callable[[Any, Mapping[str, bytes] | None], bool] | None = None
    #: the document's top-level keys whose content alone determines the pools `adapt`
    #: returns (not their attributes): packs equal there start the ladder from one state.
    #: Empty: unknown (each pack's own, by its digest). A format that names them is also
    #: given ``parts=`` (each top-level key's content key) by `load_pack`'s fast path.
    candidate_keys: tuple[str, ...] = ()


_FORMATS: dict[str, PackFormat] = {}
_builtins_loaded = False
_plugins_loaded = False


def register_format(fmt: PackFormat) -> None:
    _FORMATS[fmt.name] = fmt


def _load_builtins() -> None:
    global _builtins_loaded
    if _builtins_loaded:
        return
    _builtins_loaded = True
    from policy_engine.packs import agent_format
    from policy_engine.packs.fast_check import pack_is_valid
    from policy_engine.packs.validate import validate_pack_document

    register_format(
        PackFormat(
            agent_format.NAME,
            agent_format.detect,
            agent_format.adapt,
            validate_pack_document,
            agent_format.trim,
            pack_is_valid,
            agent_format.CANDIDATE_KEYS,
        )
    )


def _load() -> None:
    """Built-ins first, then the entry points. Scanning the installed distributions' entry
    points (and importing importlib.metadata) costs tens of ms per process, so `find_format`
    only does it when no built-in format takes the document: a plugin never replaces a
    built-in of the same name, and detection tries formats in registration order, so a
    document a built-in detects gets that built-in either way."""
    global _plugins_loaded
    _load_builtins()
    if _plugins_loaded:
        return
    _plugins_loaded = True
    from importlib.metadata import entry_points

    for ep in entry_points(group=GROUP):
        if ep.name in _FORMATS:
            continue
        value = ep.load()
        if isinstance(value, PackFormat):
            register_format(value)


def formats() -> Mapping[str, PackFormat]:
    _load()
    return dict(_FORMATS)


def find_format(doc: Any, file: str, name: str | None) -> PackFormat:
    _load_builtins()
    if name is None:
        builtin = (
            next((fmt for fmt in _FORMATS.values() if fmt.detect(doc)), None) if isinstance(doc, Mapping) else None
        )
        if builtin is not None:
            return builtin
    elif name in _FORMATS:
        return _FORMATS[name]
    _load()
    if name is not None:
        if name not in _FORMATS:
            raise PackError(
                [
                    Diagnostic(
                        "P111",
                        f"unknown pack format {name!r}",
                        hint="known: " + ", ".join(sorted(_FORMATS)),
                        file=file,
                        pointer="",
                    )
                ]
            )
        return _FORMATS[name]
    if not isinstance(doc, Mapping):
        raise PackError(
            [
                Diagnostic(
                    "P112",
                    f"expected a JSON object (a retrieval pack), got {type(doc).__name__ if doc is not None else 'null'}",
                    hint="a pack is one JSON object with candidate_datasets, candidate_fields, candidate_operators and lanes",
                    file=file,
                    pointer="",
                )
            ]
        )
    for fmt in _FORMATS.values():
        if fmt.detect(doc):
            return fmt
    # Validate against the built-in schema so the user learns what is missing.
    return _FORMATS["agent-retrieval-pack/v1"]
