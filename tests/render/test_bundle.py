"""A knowledge pack from the agent's in-memory bundle equals the one read from its
directory (same documents, same digest, so the renderer's caches are shared), and is
checked the same way."""

from __future__ import annotations

import json

import pytest

from policy_engine.errors import PackError
from policy_engine.render import load_knowledge
from policy_engine.render.bundle import knowledge_from_documents
from tests.conftest import SHARED


def bundle(name: str) -> dict:
    return {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in (SHARED / name).glob("*.json")}


@pytest.mark.parametrize("name", ["knowledge", "knowledge_real"])
def test_bundle_equals_directory(name: str) -> None:
    a, b = knowledge_from_documents(bundle(name)), load_knowledge(SHARED / name)
    assert a.digest == b.digest and dict(a.documents) == dict(b.documents)


def test_bundle_is_a_copy() -> None:
    docs = bundle("knowledge_real")
    pack = knowledge_from_documents(docs)
    docs["operator_signature_pack"]["operators"].clear()
    assert pack["operator_signature_pack"]["operators"]


@pytest.mark.parametrize(
    ("change", "code", "pointer"),
    [
        (lambda d: d.pop("fastexpr_examples_pack"), "R102", "/fastexpr_examples_pack"),
        (lambda d: d.update(operator_signature_pack=[]), "R103", "/operator_signature_pack"),
        (lambda d: d["fastexpr_counterexamples_pack"].update(cases={}), "R103", "/fastexpr_counterexamples_pack/cases"),
        (
            lambda d: d["simulation_settings_allowed_pack"].update(bad=float("nan")),
            "P105",
            "/simulation_settings_allowed_pack/bad",
        ),
        (
            lambda d: d["simulation_settings_allowed_pack"].update(bad=(1, 2)),
            "P107",
            "/simulation_settings_allowed_pack/bad",
        ),
    ],
)
def test_bad_bundles_are_refused_with_a_pointer(change, code: str, pointer: str) -> None:
    docs = bundle("knowledge")
    change(docs)
    with pytest.raises(PackError) as info:
        knowledge_from_documents(docs)
    assert [(d.code, d.pointer) for d in info.value.diagnostics] == [(code, pointer)]


def test_not_a_mapping() -> None:
    with pytest.raises(PackError) as info:
        knowledge_from_documents(["operator_signature_pack"])
    assert info.value.diagnostics[0].code == "R103"
