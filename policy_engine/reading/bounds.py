"""The limits every reader applies, in one place so docs/security.md can quote them.

They are chosen far above anything a real agent produces (its largest retrieval pack is
about 1 MB, its knowledge files are tens of KB) and far below what makes the engine slow or
hungry: a 4 MiB pack evaluates in well under a second.
"""

from __future__ import annotations

from dataclasses import dataclass

#: I-JSON (RFC 7493): integers beyond 2^53 are not interoperable between JSON readers, and
#: Python turns a 5,000-digit literal into a ValueError; both are refused.
MAX_JSON_INTEGER = 2**53 - 1
#: A number literal longer than this is refused before any conversion.
MAX_NUMBER_LITERAL = 64
#: Tokens and micro-USD: no budget has business above this (a quadrillion tokens).
MAX_QUANTITY = 10**15


@dataclass(frozen=True, slots=True)
class Bounds:
    """Size (bytes) and nesting limits for one kind of input document."""

    max_bytes: int
    max_depth: int = 64


PACK_BOUNDS = Bounds(max_bytes=4 * 1024 * 1024)
DEFAULT_BOUNDS = PACK_BOUNDS
SMALL_DOCUMENT_BOUNDS = Bounds(max_bytes=1024 * 1024)  # usage, idea, seen combos, configs, case files
KNOWLEDGE_BOUNDS = Bounds(max_bytes=4 * 1024 * 1024)
TEXT_BOUNDS = Bounds(max_bytes=4 * 1024 * 1024)  # `policy tokens --file`
