"""`policy explain --breakdown`: where the tokens go, as tables a person scans: the final
and the untrimmed prompt side by side per section, then the ten most expensive items of
each (the untrimmed list only when it differs). On a terminal each section gets a bar of its share."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.console import Group
from rich.markup import escape
from rich.table import Table
from rich.text import Text

BAR_WIDTH = 16


def _bar(tokens: int, total: int) -> Text:
    filled = 0 if total <= 0 else round(BAR_WIDTH * tokens / total)
    return Text("█" * filled + "·" * (BAR_WIDTH - filled), style="cyan")


def breakdown_view(breakdown: Mapping[str, Any], *, bars: bool) -> Group:
    final, untrimmed = breakdown["final"], breakdown["untrimmed"]
    table = Table(title="tokens by section", title_justify="left", show_edge=False, pad_edge=False)
    table.add_column("section", overflow="ellipsis", no_wrap=True, min_width=12, ratio=1)
    for name in ("final", "share") + (("",) if bars else ()) + ("untrimmed", "share"):
        table.add_column(name, justify="right", no_wrap=True, min_width=max(len(name), 6) if name else BAR_WIDTH)
    before = {s["section"]: s for s in untrimmed["sections"]}
    names = [s["section"] for s in final["sections"]] + [
        n for n in before if n not in {s["section"] for s in final["sections"]}
    ]
    after = {s["section"]: s for s in final["sections"]}
    for name in names:
        f = after.get(name, {"tokens": 0, "share": "0.0"})
        u = before.get(name, {"tokens": 0, "share": "0.0"})
        row: list[str | Text] = [escape(name), f"{f['tokens']:,}", f"{f['share']}%"]
        if bars:
            row.append(_bar(f["tokens"], final["prompt_tokens"]))
        row += [f"{u['tokens']:,}", f"{u['share']}%"]
        table.add_row(*row)
    total = (
        ["total", f"{final['prompt_tokens']:,}", "100.0%"]
        + ([""] if bars else [])
        + [f"{untrimmed['prompt_tokens']:,}", "100.0%"]
    )
    table.add_row(*total, style="bold")
    parts: list[Any] = [table]
    shown = [("final", final)]
    if untrimmed["top_items"] != final["top_items"]:
        shown.append(("untrimmed", untrimmed))
    for label, part in shown:
        items = Table(
            title=f"most expensive items ({label} prompt)", title_justify="left", show_edge=False, pad_edge=False
        )
        items.add_column("#", justify="right")
        items.add_column("tokens", justify="right")
        items.add_column("section")
        items.add_column("item")
        for i, item in enumerate(part["top_items"], 1):
            items.add_row(str(i), f"{item['tokens']:,}", escape(item["section"]), escape(item["item"]))
        parts.append(Text(""))
        parts.append(items)
    return Group(*parts)
