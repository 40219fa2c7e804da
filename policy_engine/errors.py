"""Errors as data: every problem a user can cause becomes a `Diagnostic`.

One exception type per layer (syntax, check, pack, tokenizer, usage input) so callers can
catch exactly what they can handle, and one `Diagnostic` shape so the CLI renders all of
them the same way (``file:line:col: CODE message``, caret snippet, hint) or as JSON.
Codes are stable and catalogued in `policy_engine.codes`; docs and tests are tied to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


@dataclass(frozen=True, slots=True)
class Span:
    """Where something came from in a rule file. Lines and columns are 1-based;
    ``end_*`` are inclusive of the last character (0 means 'unknown')."""

    file: str
    line: int
    column: int
    end_line: int = 0
    end_column: int = 0

    def __str__(self) -> str:
        if self.line <= 0:
            return self.file
        return f"{self.file}:{self.line}:{self.column}"


class Severity(str, Enum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One user-facing problem.

    Exactly one of ``span`` (rule files) or ``pointer`` (JSON documents: packs, usage
    snapshots, configs) locates it; ``file`` names the document for pointer locations.
    """

    code: str
    message: str
    hint: str = ""
    severity: Severity = Severity.ERROR
    span: Span | None = None
    file: str | None = None
    pointer: str | None = None
    # Other places the same problem involves (the first of two duplicates), each with a
    # note; rendered as a second snippet, as rustc and ruff do.
    related: tuple[tuple[Span, str], ...] = ()

    @property
    def location(self) -> str:
        if self.span is not None:
            return str(self.span)
        if self.file is not None and self.pointer:
            return f"{self.file}#{self.pointer}"
        return self.file or "<input>"

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "code": self.code,
            "severity": self.severity.value,
            "message": self.message,
            "hint": self.hint,
        }
        if self.span is not None:
            out["file"] = self.span.file
            out["line"] = self.span.line
            out["column"] = self.span.column
            out["end_line"] = self.span.end_line
            out["end_column"] = self.span.end_column
            if self.related:
                out["related"] = [
                    {"file": sp.file, "line": sp.line, "column": sp.column, "note": note} for sp, note in self.related
                ]
        else:
            out["file"] = self.file
            out["pointer"] = self.pointer
        return out


class PolicyError(Exception):
    """Base of every error the engine raises on bad input. Carries diagnostics, never
    a bare string, so the CLI can render them all with spans and hints."""

    kind = "error"

    def __init__(self, diagnostics: list[Diagnostic] | tuple[Diagnostic, ...]):
        self.diagnostics: tuple[Diagnostic, ...] = tuple(diagnostics)
        first = self.diagnostics[0] if self.diagnostics else None
        text = f"{first.location}: {first.code}: {first.message}" if first else self.kind
        if len(self.diagnostics) > 1:
            text += f" (and {len(self.diagnostics) - 1} more)"
        super().__init__(text)


class RuleSyntaxError(PolicyError):
    """A rule file does not parse (or is refused before parsing: size, depth)."""

    kind = "syntax"


class RuleCheckError(PolicyError):
    """A rule file parses but says something invalid (names, types, ranges, includes)."""

    kind = "check"


class PackError(PolicyError):
    """A retrieval pack (or knowledge pack) is missing, not JSON, or violates the schema."""

    kind = "pack"


class UsageInputError(PolicyError):
    """A usage snapshot, seen-combos file or other auxiliary input is invalid."""

    kind = "input"


class TokenizerError(PolicyError):
    """A tokenizer cannot be resolved (unknown encoding/model, BPE file unavailable)."""

    kind = "tokenizer"


class CommandLineError(PolicyError):
    """Bad command-line usage found after parsing (a flag's value, a missing argument)."""

    kind = "usage"


class LedgerError(PolicyError):
    """The usage ledger cannot be opened or is inconsistent."""

    kind = "ledger"
