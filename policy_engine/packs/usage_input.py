"""Auxiliary inputs: a usage snapshot and a set of already-seen field×operator combos."""

from __future__ import annotations

import os
from decimal import Decimal, InvalidOperation
from typing import Any

from policy_engine.errors import Diagnostic, UsageInputError
from policy_engine.packs.document import read_json_file
from policy_engine.packs.validate import non_json_diagnostics, schema_diagnostics
from policy_engine.reading.bounds import SMALL_DOCUMENT_BOUNDS
from policy_engine.usage import UsageSnapshot


def _micro_usd(value: Any) -> int:
    amount = Decimal(str(value)) * 1_000_000
    return int(amount.to_integral_value())


def usage_from_document(doc: Any, file: str) -> UsageSnapshot:
    problems = non_json_diagnostics(doc, file, "P") or schema_diagnostics(
        doc, "usage", file, "P113", "see `policy schema usage`"
    )
    if problems:
        raise UsageInputError(problems)
    try:
        batch = doc.get("batch", {})
        day = doc.get("day", {})
        return UsageSnapshot(
            batch_tokens=batch.get("tokens", 0),
            day_tokens=day.get("tokens", 0),
            batch_micro_usd=_micro_usd(batch.get("usd", 0)),
            day_micro_usd=_micro_usd(day.get("usd", 0)),
        )
    except InvalidOperation:
        raise UsageInputError(
            [Diagnostic("P113", "usd is not a decimal amount", hint='write USD as "0.0125"', file=file, pointer="")]
        ) from None


def load_usage(path: str | os.PathLike[str]) -> UsageSnapshot:
    doc, label = read_json_file(path, error=UsageInputError, bounds=SMALL_DOCUMENT_BOUNDS)
    return usage_from_document(doc, label)


def load_seen_combos(path: str | os.PathLike[str]) -> frozenset[str]:
    """A JSON list of ``"<field_id>::<operator_name>"`` strings (the agent's
    ``combo_sample`` format)."""
    doc, label = read_json_file(path, error=UsageInputError, bounds=SMALL_DOCUMENT_BOUNDS)
    if not isinstance(doc, list):
        raise UsageInputError(
            [
                Diagnostic(
                    "P114",
                    "expected a JSON list of combo strings",
                    hint='["fnd6_epspxq::ts_rank", ...]',
                    file=label,
                    pointer="",
                )
            ]
        )
    bad = [i for i, item in enumerate(doc) if not isinstance(item, str) or "::" not in item]
    if bad:
        raise UsageInputError(
            [
                Diagnostic(
                    "P114",
                    f'/{i}: expected "<field_id>::<operator_name>"',
                    hint="each combo is a string with ::",
                    file=label,
                    pointer=f"/{i}",
                )
                for i in bad
            ]
        )
    return frozenset(doc)
