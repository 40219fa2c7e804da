"""When to start using msgspec: a ski rental shared by every reader and writer of JSON.

msgspec does two JSON jobs in C that the standard library does slowly (indented output,
`pretty_json`; strict parsing without Python hooks, `reading/json_text`). Importing it
costs about 12 ms (it brings uuid, platform, datetime and typing_extensions): more than a
one-pack `policy eval` spends on all its JSON. So both jobs go through the standard
library until, together, they have cost as much as the import; then msgspec is imported
and used from then on. A one-pack run never pays for it; a corpus pays it after a few
packs, and at most the import's cost twice. The results are the same either way (each
user proves it: tests/test_pretty_json.py, tests/reading/test_json_fast.py).
"""

from __future__ import annotations

import sys

#: seconds of standard-library JSON work after which importing msgspec pays (its import's cost)
RENT_LIMIT = 0.012


class _Rent:
    """The time spent on standard-library JSON so far (module state: one process, one rent)."""

    spent = 0.0


def owned() -> bool:
    """True once msgspec is worth using: the rent is paid, or it is imported already."""
    return _Rent.spent >= RENT_LIMIT or "msgspec" in sys.modules


def pay(seconds: float) -> None:
    _Rent.spent += seconds
