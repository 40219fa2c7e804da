"""Where colour and width are decided, once: rich's own rules (a terminal gets colour;
NO_COLOR turns it off, FORCE_COLOR on; COLUMNS or the terminal sets the width, 80 when
piped), so every command behaves like other well-mannered CLIs. Long lines wrap at the
width rather than being cut."""

from __future__ import annotations

import sys

from rich.console import Console


def console(stderr: bool = False) -> Console:
    return Console(file=sys.stderr if stderr else sys.stdout, highlight=False, soft_wrap=False)
