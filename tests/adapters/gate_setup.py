"""What the lease and admission tests share: the small pack, a fixed day, a lease TTL, a
one-stage policy with a day cap, and a clock the test moves (the ledger's injectable
clock: no sleeps)."""

from __future__ import annotations

import json

from tests.conftest import ROOT

SMALL = json.loads((ROOT / "examples" / "packs" / "small_2x4x10x8.json").read_text())
DAY = 1_790_000_000.0 - (1_790_000_000.0 % 86400) + 3600  # 01:00 UTC: no midnight inside a test
TTL = 60.0


def rules(cap: int) -> str:
    return f"""tokenizer rough 4 chars per token
limit day_total: day_total <= {cap} tokens
completion budget 600 tokens
ladder {{
  stage trim_fields: fields factor 0.5 min 1
  on exhausted block
}}
"""


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t
