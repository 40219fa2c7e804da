"""Rule text → AST. The only module that touches Lark (with dsl/parser_table.py, which builds
and loads the parser, and dsl/lark_import.py, which imports it): no Tree or Token leaves it.

The parser is loaded once (LALR, positions; its tables built from the grammar ahead of time
and shipped in the package). Syntax errors are reported in the user's words (terminal names
become "a number", "`{`", ...), several per file: the parser resumes after an unexpected
token. Oversized files and over-deep nesting are refused before the tree is transformed, so
no input can cause a RecursionError.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from contextvars import ContextVar
from functools import cache
from typing import Any

from policy_engine.dsl import ast as A
from policy_engine.dsl.lark_import import (
    Lark,
    Token,
    Transformer,
    Tree,
    UnexpectedCharacters,
    UnexpectedEOF,
    UnexpectedInput,
    VisitError,
    v_args,
)
from policy_engine.errors import Diagnostic, RuleSyntaxError, Span

MAX_FILE_BYTES = 512 * 1024
MAX_DEPTH = 48
MAX_ERRORS = 20
MAX_RECOVERIES = 200

_DESCRIBE = {
    "NAME": "a name",
    "NUMBER": "a number",
    "STRING": "a quoted string",
    "MONEY": "an amount such as $0.15",
    "ATTRIBUTE": "an attribute such as region or fields.count",
    "OP": "a comparison (==, !=, <, <=, >, >=)",
    "SEVERITY": "block or warn",
    "STEP_KIND": "factor, share or keep",
    "TOKENIZER_KIND": "tiktoken, model or rough",
    "PER": "1k or 1M",
    "UNIT": "`tokens`",
    "$END": "the end of the file",
}


_comment_sink: ContextVar[list[Token] | None] = ContextVar("comment_sink", default=None)


def _collect_comment(tok: Token) -> Token:
    sink = _comment_sink.get()
    if sink is not None:
        sink.append(tok)
    return tok


LEXER_CALLBACKS: dict[str, Callable[[Token], Token]] = {"COMMENT": _collect_comment}


@cache
def grammar() -> Lark:
    """The LALR parser, loaded from the table shipped with the package (dsl/parser_table.py)."""
    from policy_engine.dsl import parser_table

    return parser_table.load(LEXER_CALLBACKS)


def _terminal_text(name: str) -> str:
    if name in _DESCRIBE:
        return _DESCRIBE[name]
    try:
        pattern = grammar().get_terminal(name).pattern
    except KeyError:
        return name.lower()
    if pattern.type == "str":
        return f"`{pattern.value}`"
    return name.lower()


def _token_text(token: Any) -> str:
    if token is None or getattr(token, "type", "") == "$END":
        return "the end of the file"
    value = str(token)
    kind = getattr(token, "type", "")
    if kind in ("NAME", "ATTRIBUTE"):
        return f"name `{value}`"
    if kind in ("NUMBER", "MONEY"):
        return f"number `{value}`"
    if kind == "STRING":
        return f"string {value}"
    return f"`{value}`"


def _expected_list(expected: set[str]) -> list[str]:
    words = sorted({_terminal_text(name) for name in expected})
    return words


_ALTERNATION = re.compile(r"\(\?:([^()]*)\)")
_LOWER_WORD = re.compile(r"[a-z]+")


@cache
def keywords() -> frozenset[str]:
    """The grammar's words, read from Lark's compiled terminals so the set cannot drift from
    grammar.lark (where syntax lives): each string terminal (`"limit"`) and each word of an
    alternation terminal (`SEVERITY: "block" | "warn"`, compiled to `(?:block|warn)`).
    Computed on first use: only an error message needs it, and loading it would cost every
    start the grammar."""
    words: set[str] = set()
    for terminal in grammar().terminals:
        pattern = terminal.pattern
        if pattern.type == "str":
            candidates = [pattern.value]
        else:
            alternation = _ALTERNATION.fullmatch(pattern.value)
            candidates = alternation.group(1).split("|") if alternation else []
        words.update(word for word in candidates if _LOWER_WORD.fullmatch(word))
    return frozenset(words)


# Words that begin a statement (`stage`, `on` inside a ladder): after an error, parsing
# resumes at the next line that starts with one of them, or with `}`.
_SYNC_WORDS = (
    "policy",
    "include",
    "tokenizer",
    "template",
    "price",
    "pricing",
    "limit",
    "completion",
    "expansion",
    "lanes",
    "explore",
    "topk",
    "ladder",
    "when",
    "stage",
    "on",
)
_SYNC_LINE = re.compile(r"^[ \t]*(?:(" + "|".join(_SYNC_WORDS) + r")(?![A-Za-z0-9_])|(\}))", re.M)
_WORD_AT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _char_hint(text: str, offset: int, allowed: list[str]) -> str | None:
    """A hint for a character the lexer cannot start a token with, in the user's words."""
    char = text[offset] if offset < len(text) else ""
    if char == "'":
        return 'strings use double quotes: "..."'
    if char == '"':
        return 'this string is never closed: end it with `"` on the same line'
    if text.startswith(("=<", "=>"), offset) or (text.startswith("==", offset) and "`<=`" in allowed):
        return "write `<=` (a limit is `METRIC <= AMOUNT`)"
    word = _WORD_AT.match(text, offset)
    if word is not None and word.group(0) != word.group(0).lower():
        lower = word.group(0).lower()
        if lower in keywords():
            return f"keywords are lower case: write `{lower}`"
        return f"names are lower case: write `{lower}`"
    return None


def _syntax_diagnostic(err: UnexpectedInput, file: str, lines: list[str], text: str = "") -> Diagnostic:
    line = getattr(err, "line", 0) or len(lines)
    column = getattr(err, "column", 0) or 1
    if isinstance(err, UnexpectedCharacters):
        char = lines[line - 1][column - 1] if 0 < line <= len(lines) and 0 < column <= len(lines[line - 1]) else "?"
        allowed = _expected_list(set(err.allowed or ()))
        message = f"unexpected character `{char}`"
        pos = err.pos_in_stream or 0  # always set for a character error; Lark types it optional
        hint = _char_hint(text, pos, allowed) if text else None
        if hint is None:
            hint = ("expected " + _join(allowed)) if allowed else "remove the character or quote the text"
        word = _WORD_AT.match(text, pos) if text else None
        end = column + len(word.group(0)) - 1 if word is not None else column
        if word is not None:
            message = f"unexpected `{word.group(0)}`"
        elif text.startswith(("=<", "=>"), pos):
            end, message = column + 1, f"unexpected `{text[pos : pos + 2]}`"
        if char == '"':
            end = len(lines[line - 1]) if 0 < line <= len(lines) else column
            message = "unterminated string"
        return Diagnostic("E101", message, hint=hint, span=Span(file, line, column, line, max(end, column)))
    accepted: set[str] = set()
    interactive = getattr(err, "interactive_parser", None)
    if interactive is not None:
        try:
            accepted = set(interactive.accepts())
        except Exception:  # accepts() replays the parser; fall back to the state's set
            accepted = set()
    expected = _expected_list(accepted or set(getattr(err, "expected", None) or ()))
    token = getattr(err, "token", None)
    if isinstance(err, UnexpectedEOF) or (token is not None and token.type == "$END"):
        line = len(lines)
        column = len(lines[-1]) + 1 if lines else 1
        return Diagnostic(
            "E102",
            "the file ends in the middle of a statement",
            hint="expected " + _join(expected),
            span=Span(file, line, column, line, column),
        )
    message = f"unexpected {_token_text(token)}"
    hint = "expected " + _join(expected)
    if token is not None:
        pos = token.start_pos or 0
        if str(token) == "," and 0 < pos < len(text) - 1 and text[pos - 1].isdigit() and text[pos + 1].isdigit():
            grouped = re.match(r"[0-9][0-9,]*", text[_number_start(text, pos) :])
            written = grouped.group(0) if grouped else "1,000"
            return Diagnostic(
                "E103",
                f"unexpected `,` in the number `{written}`",
                hint=f"group digits with `_`: write `{written.replace(',', '_')}`",
                span=Span(file, line, column, line, column),
            )
        keywords = [w.strip("`") for w in expected if w.startswith("`")]
        close = difflib.get_close_matches(str(token), keywords, n=1)
        if close:
            hint = f"did you mean `{close[0]}`?" + ("" if len(expected) == 1 else " " + hint)
    end = column + max(len(str(token or "")) - 1, 0)
    return Diagnostic("E103", message, hint=hint, span=Span(file, line, column, line, end))


def _token_span(file: str, tok: Token) -> Span:
    """Tokens from the lexer always carry positions; Lark types them optional because a
    hand-made Token has none, so a missing one is a bug here, not a user error."""
    if tok.line is None or tok.column is None or tok.end_column is None:
        raise ValueError(f"token {tok.type} has no position")
    return Span(file, tok.line, tok.column, tok.line, tok.end_column - 1)


def _number_start(text: str, pos: int) -> int:
    while pos > 0 and (text[pos - 1].isdigit() or text[pos - 1] == ","):
        pos -= 1
    return pos


class _Recovery:
    """Panic-mode error recovery on Lark's LALR parser: report the error, skip to the next
    line that starts a statement (or closes a block), pop the parser's stack back to a state
    that accepts that word, and go on. One mistake gives one error, not an echo on the
    next valid line. A block that a statement cannot be in (a `when` inside `ladder { }`)
    means the block was never closed: that is reported at its `{`."""

    def __init__(self, text: str, file: str, lines: list[str]) -> None:
        self.text, self.file, self.lines = text, file, lines
        self.errors: list[Diagnostic] = []
        self.pending_eof: Diagnostic | None = None
        self._terminals = {t.pattern.value: t.name for t in grammar().terminals if t.pattern.type == "str"}

    def on_error(self, err: UnexpectedInput) -> bool:
        if len(self.errors) >= MAX_ERRORS:
            return False
        ip = err.interactive_parser
        token = getattr(err, "token", None)
        diag = _syntax_diagnostic(err, self.file, self.lines, self.text)
        if isinstance(err, UnexpectedEOF) or (token is not None and token.type == "$END"):
            brace = self._open_brace(ip.parser_state.value_stack)
            self.pending_eof = self._unclosed(brace) if brace is not None else (diag if not self.errors else None)
            return False
        if isinstance(err, UnexpectedCharacters):
            resume_from = (err.pos_in_stream or 0) + 1
        else:
            assert token is not None
            resume_from = token.end_pos or 0
            if self._starts_line(token) and str(token) in _SYNC_WORDS + ("}",):
                # The previous statement ended early; this word starts the next one.
                diag = self._ended_early(token, diag)
                if self._resync(ip, str(token), diag):
                    try:
                        ip.feed_token(token)
                        return True
                    except UnexpectedInput:
                        pass
                resume_from = token.end_pos or 0
                self._skip_to_next_statement(ip, resume_from, diag)
                return True
        self._skip_to_next_statement(ip, resume_from, diag)
        return True

    def _ended_early(self, token: Token, diag: Diagnostic) -> Diagnostic:
        """Report an incomplete statement where it stops, not at the next statement's
        first word."""
        pos = (token.start_pos or 0) - 1
        while pos >= 0 and self.text[pos].isspace():
            pos -= 1
        if pos < 0:
            return diag
        line = self.text.count("\n", 0, pos) + 1
        column = pos - (self.text.rfind("\n", 0, pos) + 1) + 1
        expected = diag.hint.split("expected ", 1)[-1]
        return Diagnostic(
            "E103",
            f"the statement ends before `{token}` starts the next one",
            hint=f"expected {expected} here",
            span=Span(self.file, line, column + 1, line, column + 1),
        )

    def _add(self, diag: Diagnostic | None) -> None:
        if diag is None:
            return
        line = diag.span.line if diag.span else 0
        if not any(d.span is not None and d.span.line == line and d.code == diag.code for d in self.errors):
            self.errors.append(diag)

    def _starts_line(self, token: Token) -> bool:
        line = self.lines[(token.line or 1) - 1] if token.line and token.line <= len(self.lines) else ""
        return line[: (token.column or 1) - 1].strip() == ""

    def _skip_to_next_statement(self, ip: Any, offset: int, diag: Diagnostic | None) -> None:
        line_end = self.text.find("\n", offset)
        match = _SYNC_LINE.search(self.text, len(self.text) if line_end < 0 else line_end + 1)
        target = match.start(1) if match and match.group(1) else (match.start(2) if match else len(self.text))
        counter = ip.lexer_thread.state.line_ctr
        if target > counter.char_pos:
            counter.feed(self.text[counter.char_pos : target])
        word = (match.group(1) or match.group(2)) if match else None
        if word is None:
            brace = self._open_brace(ip.parser_state.value_stack)
            if brace is not None:
                self._add(diag)
                self.pending_eof = self._unclosed(brace)
                return
            self._add(diag)
            return
        self._resync(ip, word, diag)

    def _resync(self, ip: Any, word: str, diag: Diagnostic | None) -> bool:
        """Pop the stack until a state accepts `word`; report `diag`, or an unclosed `{`
        when popping leaves a block. False (stack untouched, `diag` reported) if none does."""
        kind = self._terminals.get(word)
        state = ip.parser_state
        states = state.parse_conf.parse_table.states
        depth = len(state.state_stack)
        while depth > 0 and kind not in states[state.state_stack[depth - 1]]:
            depth -= 1
        if depth == 0 or kind is None:
            self._add(diag)
            return False
        popped = state.value_stack[depth - 1 :]
        brace = self._open_brace(popped)
        del state.state_stack[depth:]
        del state.value_stack[depth - 1 :]
        self._add(self._unclosed(brace) if brace is not None else diag)
        return True

    @staticmethod
    def _open_brace(values: list[Any]) -> Token | None:
        """The innermost `{` still open among the parser's stacked values."""
        for value in reversed(values):
            if isinstance(value, Token) and value.type == "LBRACE":
                return value
        return None

    def _unclosed(self, brace: Token) -> Diagnostic:
        return Diagnostic(
            "E107",
            "this `{` is never closed",
            hint="add `}` after the block's last statement",
            span=Span(self.file, brace.line or 1, brace.column or 1, brace.line or 1, brace.column or 1),
        )


def _join(words: list[str]) -> str:
    if len(words) > 8:
        return ", ".join(words[:8]) + ", ..."
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " or " + words[-1]


def _depth(tree: Tree[Token]) -> int:
    deepest, stack = 0, [(tree, 1)]
    while stack:
        node, level = stack.pop()
        deepest = max(deepest, level)
        if level > MAX_DEPTH:
            return level
        stack.extend((child, level + 1) for child in node.children if isinstance(child, Tree))
    return deepest


def _first_deep_line(tree: Tree[Token]) -> int:
    stack = [(tree, 1)]
    while stack:
        node, level = stack.pop()
        if level > MAX_DEPTH:
            return getattr(node.meta, "line", 1)
        stack.extend((child, level + 1) for child in node.children if isinstance(child, Tree))
    return 1


def parse(text: str, file: str = "<string>") -> A.PolicyFile:
    size = len(text.encode("utf-8"))
    if size > MAX_FILE_BYTES:
        raise RuleSyntaxError(
            [
                Diagnostic(
                    "E104",
                    f"rule file is {size} bytes; the limit is {MAX_FILE_BYTES}",
                    hint="split it into files joined with include",
                    span=Span(file, 1, 1),
                )
            ]
        )
    lines = text.split("\n")
    comments: list[Token] = []
    recovery = _Recovery(text, file, lines)
    parser = grammar()
    token = _comment_sink.set(comments)
    try:
        try:
            tree = parser.parse(text, on_error=recovery.on_error)
        finally:
            _comment_sink.reset(token)
    except UnexpectedInput as err:
        # the end of the file after a reported error is usually that error's echo
        if not recovery.errors or recovery.pending_eof is not None:
            recovery.errors.append(recovery.pending_eof or _syntax_diagnostic(err, file, lines, text))
        tree = None
    except RecursionError:
        recovery.errors.append(
            Diagnostic(
                "E105",
                "rule file nested too deeply",
                hint=f"nesting is limited to {MAX_DEPTH} levels",
                span=Span(file, 1, 1),
            )
        )
        tree = None
    errors = recovery.errors
    if errors:
        unique = {(d.span.line, d.span.column, d.code): d for d in errors if d.span}
        raise RuleSyntaxError(sorted(unique.values(), key=lambda d: (d.span.line, d.span.column)))  # type: ignore[union-attr]
    assert tree is not None
    if _depth(tree) > MAX_DEPTH:
        raise RuleSyntaxError(
            [
                Diagnostic(
                    "E105",
                    "rule file nested too deeply",
                    hint=f"nesting is limited to {MAX_DEPTH} levels (conditions, parentheses, `when` blocks)",
                    span=Span(file, _first_deep_line(tree), 1),
                )
            ]
        )
    try:
        statements = _ToAst(file).transform(tree)
    except VisitError as err:  # pragma: no cover - a transformer bug, not user input
        raise err.orig_exc from None
    placed = _place_comments(list(statements.children if isinstance(statements, Tree) else statements), comments, file)
    return A.PolicyFile(tuple(placed), file=file, span=Span(file, 1, 1))


# ---- tree -> AST -------------------------------------------------------------------------


def _span(file: str, meta: Any) -> Span:
    if getattr(meta, "empty", True):
        return Span(file, 0, 0)
    return Span(file, meta.line, meta.column, meta.end_line, meta.end_column - 1)


def _tok_span(file: str, tok: Token) -> Span:
    return Span(file, tok.line or 0, tok.column or 0, tok.end_line or 0, (tok.end_column or 1) - 1)


def _unquote(tok: Token) -> str:
    inner = str(tok)[1:-1]
    return inner.replace('\\"', '"').replace("\\\\", "\\")


@v_args(meta=True)
class _ToAst(Transformer[Token, Any]):
    def __init__(self, file: str) -> None:
        super().__init__()
        self.file = file

    def s(self, meta: Any) -> Span:
        return _span(self.file, meta)

    def start(self, meta: Any, children: list[Any]) -> list[Any]:
        return children

    def number(self, meta: Any, children: list[Token]) -> A.Num:
        return A.Num(str(children[0]), span=_tok_span(self.file, children[0]))

    def money(self, meta: Any, children: list[Token]) -> A.Money:
        return A.Money(str(children[0]), span=_tok_span(self.file, children[0]))

    def _str(self, tok: Token) -> A.Str:
        return A.Str(_unquote(tok), span=_tok_span(self.file, tok))

    def string_value(self, meta: Any, children: list[Token]) -> A.Str:
        return self._str(children[0])

    def quantity(self, meta: Any, children: list[Any]) -> Any:
        return children[0]

    def policy_name(self, meta: Any, c: list[Any]) -> A.PolicyName:
        return A.PolicyName(self._str(c[0]), span=self.s(meta))

    def include(self, meta: Any, c: list[Any]) -> A.Include:
        return A.Include(self._str(c[0]), span=self.s(meta))

    def tokenizer_named(self, meta: Any, c: list[Any]) -> A.TokenizerDecl:
        return A.TokenizerDecl(str(c[0]), name=self._str(c[1]), span=self.s(meta))

    def tokenizer_rough(self, meta: Any, c: list[Any]) -> A.TokenizerDecl:
        return A.TokenizerDecl("rough", ratio=c[0], span=self.s(meta))

    def template(self, meta: Any, c: list[Any]) -> A.TemplateDecl:
        return A.TemplateDecl(self._str(c[0]), span=self.s(meta))

    def price(self, meta: Any, c: list[Any]) -> A.PriceDecl:
        return A.PriceDecl(self._str(c[0]), c[1], str(c[2]), c[3], str(c[4]), span=self.s(meta))

    def pricing(self, meta: Any, c: list[Any]) -> A.PricingDecl:
        return A.PricingDecl(self._str(c[0]), span=self.s(meta))

    def limit(self, meta: Any, c: list[Any]) -> A.LimitDecl:
        severity = str(c[3]) if len(c) > 3 else None
        return A.LimitDecl(
            str(c[0]), str(c[1]), c[2], severity, metric_span=_tok_span(self.file, c[1]), span=self.s(meta)
        )

    def completion(self, meta: Any, c: list[Any]) -> A.CompletionDecl:
        return A.CompletionDecl(c[0], span=self.s(meta))

    def reserve(self, meta: Any, c: list[Any]) -> A.ReserveDecl:
        return A.ReserveDecl(c[0], span=self.s(meta))

    def lanes(self, meta: Any, c: list[Any]) -> A.LanesDecl:
        return A.LanesDecl(c[0], c[1], span=self.s(meta))

    def floor(self, meta: Any, c: list[Any]) -> A.FloorDecl:
        return A.FloorDecl(c[0], span=self.s(meta))

    def topk(self, meta: Any, c: list[Any]) -> A.TopKDecl:
        return A.TopKDecl(str(c[0]), c[1], c[2], span=self.s(meta))

    def ladder(self, meta: Any, c: list[Any]) -> A.LadderDecl:
        return A.LadderDecl(tuple(c), span=self.s(meta))

    def step_group(self, meta: Any, c: list[Any]) -> A.StepGroup:
        return A.StepGroup(str(c[0]), tuple(c[1:]), span=self.s(meta))

    def minimum(self, meta: Any, c: list[A.Num]) -> A.Num:
        return c[0]

    def stage(self, meta: Any, c: list[Any]) -> A.StageDecl:
        groups = tuple(x for x in c[2:] if isinstance(x, A.StepGroup))
        minimum = next((x for x in c[2:] if isinstance(x, A.Num)), None)
        return A.StageDecl(
            str(c[0]), str(c[1]), groups, minimum, pool_span=_tok_span(self.file, c[1]), span=self.s(meta)
        )

    def exhausted(self, meta: Any, c: list[Any]) -> A.ExhaustedDecl:
        return A.ExhaustedDecl(self._str(c[0]) if c else None, span=self.s(meta))

    def when(self, meta: Any, c: list[Any]) -> A.WhenDecl:
        return A.WhenDecl(str(c[0]), c[1], tuple(c[2:]), span=self.s(meta))

    def any_of(self, meta: Any, c: list[Any]) -> Any:
        return c[0] if len(c) == 1 else A.AnyOfNode(tuple(c), span=self.s(meta))

    def all_of(self, meta: Any, c: list[Any]) -> Any:
        return c[0] if len(c) == 1 else A.AllOfNode(tuple(c), span=self.s(meta))

    def negate(self, meta: Any, c: list[Any]) -> A.NotNode:
        return A.NotNode(c[0], span=self.s(meta))

    def compare(self, meta: Any, c: list[Any]) -> A.CompareNode:
        return A.CompareNode(str(c[0]), str(c[1]), (c[2],), span=self.s(meta))

    def compare_in(self, meta: Any, c: list[Any]) -> A.CompareNode:
        return A.CompareNode(str(c[0]), "in", tuple(c[1:]), span=self.s(meta))

    def compare_contains(self, meta: Any, c: list[Any]) -> A.CompareNode:
        return A.CompareNode(str(c[0]), "contains", (c[1],), span=self.s(meta))


# ---- comments ----------------------------------------------------------------------------


def _with_items(node: Any, items: list[Any]) -> Any:
    from dataclasses import replace

    if isinstance(node, A.LadderDecl):
        return replace(node, items=tuple(items))
    return replace(node, body=tuple(items))


def _place_comments(statements: list[Any], comments: list[Token], file: str) -> list[Any]:
    """Attach each comment to the innermost block it sits in, in source order; a comment on
    the line where a statement ends is marked inline so the formatter keeps it there."""

    def children(node: Any) -> list[Any] | None:
        if isinstance(node, A.LadderDecl):
            return list(node.items)
        if isinstance(node, A.WhenDecl):
            return list(node.body)
        return None

    def place(items: list[Any], pending: list[Token]) -> list[Any]:
        out: list[Any] = []
        for item in items:
            inner = children(item)
            if inner is not None:
                start, end = item.span.line, item.span.end_line
                mine = [c for c in pending if start <= c.line < end]
                # by identity: tokens compare as strings, so two `# same text` comments
                # would both leave `pending` and the outer one would be lost
                taken = {id(c) for c in mine}
                pending = [c for c in pending if id(c) not in taken]
                item = _with_items(item, place(inner, mine))
            out.append(item)
        for tok in pending:
            out.append(A.Comment(str(tok).rstrip(), False, span=_token_span(file, tok)))
        out.sort(key=lambda n: (n.span.line, n.span.column))
        fixed: list[Any] = []
        for node in out:
            if (
                isinstance(node, A.Comment)
                and fixed
                and not isinstance(fixed[-1], A.Comment)
                and fixed[-1].span.end_line == node.span.line
            ):
                from dataclasses import replace

                node = replace(node, inline=True)
            fixed.append(node)
        return fixed

    return place(statements, list(comments))
