"""The reader's content parts (`read_pack_parts`): a pack read from a file is keyed by
each top-level value's JSON text instead of its marshal bytes. The two kinds are keys of
the same content: they must load the same pools, copy the same document, and never meet."""

from __future__ import annotations

import json
import marshal
from pathlib import Path

import pytest

from policy_engine import msgspec_rent
from policy_engine.packs import load_pack, load_pack_file, read_pack_parts
from policy_engine.reading.json_text import JSON_PART
from tests.conftest import SHARED

SEED_PATH = SHARED / "packs" / "seed_5x15x72x60.json"
SEED = json.loads(SEED_PATH.read_text(encoding="utf-8"))


#: the fast readers (the ones with parts) from the first document on
pytestmark = pytest.mark.usefixtures("msgspec_rent_paid")


def test_a_read_pack_has_one_json_part_per_top_level_value() -> None:
    doc, label, parts = read_pack_parts(SEED_PATH)
    assert label == str(SEED_PATH) and doc == SEED
    assert parts is not None and list(parts) == list(SEED)
    for key, part in parts.items():
        assert part.startswith(JSON_PART)
        assert json.loads(part[len(JSON_PART) :]) == SEED[key]


def test_parts_and_marshal_load_the_same_pools_under_different_keys() -> None:
    doc, label, parts = read_pack_parts(SEED_PATH)
    read = load_pack(doc, file=label, copy=False, reader_parts=parts)
    given = load_pack(SEED)
    assert read == given  # pools and attributes
    assert read.content_keys == parts
    # marshal's bytes never start with the JSON mark: the two kinds of key never collide
    assert not any(key.startswith(JSON_PART) for key in given.content_keys.values())
    assert read.digest != given.digest and read.structure_key != given.structure_key
    # the same file read again has the same keys: a run's packs share them
    again = load_pack_file(SEED_PATH)
    assert (again.digest, again.structure_key) == (read.digest, read.structure_key)


def test_a_copied_document_is_read_back_from_the_parts() -> None:
    doc, label, parts = read_pack_parts(SEED_PATH)
    pools = load_pack(doc, file=label, copy=True, reader_parts=parts)
    assert pools.source is not doc
    assert marshal.dumps(pools.source, 2) == marshal.dumps(doc, 2)  # same values, same types


def test_a_changed_pack_has_other_parts(tmp_path: Path) -> None:
    changed = dict(SEED, query=SEED["query"] + " ")
    path = tmp_path / "changed.json"
    path.write_text(json.dumps(changed), encoding="utf-8")
    first = load_pack_file(SEED_PATH)
    second = load_pack_file(path)
    assert second.digest != first.digest
    assert second.content_keys["query"] != first.content_keys["query"]
    assert second.content_keys["candidate_fields"] == first.content_keys["candidate_fields"]


def test_a_pack_read_without_msgspec_has_no_parts() -> None:
    msgspec_rent._Rent.spent = 0.0
    real = msgspec_rent.owned
    msgspec_rent.owned = lambda: False  # type: ignore[assignment]
    try:
        doc, _, parts = read_pack_parts(SEED_PATH)
    finally:
        msgspec_rent.owned = real  # type: ignore[method-assign]
    assert parts is None and doc == SEED
    assert not any(key.startswith(JSON_PART) for key in load_pack(doc, reader_parts=parts).content_keys.values())


def test_a_warm_engine_decides_alike_on_either_kind_of_key() -> None:
    """Packs read from files and packs handed over as dicts, interleaved on one engine
    (whose caches then hold both kinds of key): every decision is byte for byte the fresh
    engine's."""
    from policy_engine.dsl import default_rules_path, load_policy
    from policy_engine.evaluator import Engine
    from policy_engine.evaluator.engine import evaluate
    from policy_engine.render import load_idea, load_knowledge
    from tests.conftest import ROOT

    policy = load_policy(default_rules_path())
    knowledge = load_knowledge(ROOT / "examples" / "knowledge")
    idea = load_idea(ROOT / "examples" / "ideaspec.json")
    paths = sorted((ROOT / "examples" / "packs").glob("*.json"))
    assert len(paths) >= 3
    warm = Engine.build(policy, knowledge=knowledge)
    for path in paths + paths[::-1]:
        doc, label, parts = read_pack_parts(path)
        assert parts is not None
        for pools in (
            load_pack(doc, file=label, idea=idea, copy=False, reader_parts=parts),
            load_pack(json.loads(path.read_text(encoding="utf-8")), idea=idea),
        ):
            got = json.dumps(evaluate(warm, pools, idea=idea).to_json(), sort_keys=True)
            fresh = Engine.build(policy, knowledge=knowledge)
            want = evaluate(fresh, load_pack(json.loads(path.read_text(encoding="utf-8")), idea=idea), idea=idea)
            assert got == json.dumps(want.to_json(), sort_keys=True)
