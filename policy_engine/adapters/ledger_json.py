"""The JSON text the ledger stores for what the gate produces (event payloads, the decision
in the replay material, the call log's JSON columns): compact, keys sorted at every level.

msgspec's C encoder writes it in about a tenth of `json.dumps(..., sort_keys=True)`'s time
(0.05 ms for one check's two budget events, 0.06 ms for its decision on the small pack):
readers parse it (`json.loads`), so the separators are free to be compact. Only for values
the engine built (finite numbers, string keys); a caller's pack keeps `json.dumps`, its key
order and its exact text.
"""

from __future__ import annotations

from typing import Any

import msgspec

_ENCODER = msgspec.json.Encoder(order="deterministic")


def sorted_json(value: Any) -> str:
    """``value`` as compact JSON text, object keys sorted."""
    return _ENCODER.encode(value).decode()
