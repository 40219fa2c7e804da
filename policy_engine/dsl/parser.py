"""Rule text → AST. The only module that touches Lark: no Tree or Token leaves it.

The grammar is loaded once (LALR, positions, Lark's grammar cache). Syntax errors are
reported in the user's words (terminal names become "a number", "`{`", ...), several per
file: the parser resumes after an unexpected token. Oversized files and over-deep nesting
are refused before the tree is transformed, so no input can cause a RecursionError.
"""

from __future__ import annotations

import difflib
from contextvars import ContextVar
from functools import cache
from typing import Any

from lark import Lark, Token, Transformer, Tree, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError

from policy_engine.dsl import ast as A
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


@cache
def grammar() -> Lark:
    return Lark.open_from_package(
        "policy_engine.dsl", "grammar.lark", parser="lalr", propagate_positions=True, cache=True,
        maybe_placeholders=False, lexer_callbacks={"COMMENT": _collect_comment},
    )


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


def _syntax_diagnostic(err: UnexpectedInput, file: str, lines: list[str]) -> Diagnostic:
    line = getattr(err, "line", 0) or len(lines)
    column = getattr(err, "column", 0) or 1
    if isinstance(err, UnexpectedCharacters):
        char = lines[line - 1][column - 1] if 0 < line <= len(lines) and 0 < column <= len(lines[line - 1]) else "?"
        allowed = _expected_list(set(err.allowed or ()))
        message = f"unexpected character `{char}`"
        hint = ("expected " + _join(allowed)) if allowed else "remove the character or quote the text"
        if char == "'":
            hint = 'strings use double quotes: "..."'
        return Diagnostic("E101", message, hint=hint, span=Span(file, line, column, line, column))
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
        return Diagnostic("E102", "the file ends in the middle of a statement", hint="expected " + _join(expected), span=Span(file, line, column, line, column))
    message = f"unexpected {_token_text(token)}"
    hint = "expected " + _join(expected)
    if token is not None:
        keywords = [w.strip("`") for w in expected if w.startswith("`")]
        close = difflib.get_close_matches(str(token), keywords, n=1)
        if close:
            hint = f"did you mean `{close[0]}`? " + hint
    end = column + max(len(str(token or "")) - 1, 0)
    return Diagnostic("E103", message, hint=hint, span=Span(file, line, column, line, end))


def _join(words: list[str]) -> str:
    if len(words) > 8:
        return ", ".join(words[:8]) + ", ..."
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " or " + words[-1]


def _depth(tree: Tree) -> int:
    deepest, stack = 0, [(tree, 1)]
    while stack:
        node, level = stack.pop()
        deepest = max(deepest, level)
        if level > MAX_DEPTH:
            return level
        stack.extend((child, level + 1) for child in node.children if isinstance(child, Tree))
    return deepest


def _first_deep_line(tree: Tree) -> int:
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
        raise RuleSyntaxError([Diagnostic("E104", f"rule file is {size} bytes; the limit is {MAX_FILE_BYTES}", hint="split it into files joined with include", span=Span(file, 1, 1))])
    lines = text.split("\n")
    comments: list[Token] = []
    errors: list[Diagnostic] = []

    recoveries = [0]

    def on_error(err: UnexpectedInput) -> bool:
        # One report per line: errors after the first on a line are usually its echoes.
        # Recovery itself is bounded too: a 512 KB line of debris after an unterminated
        # string would otherwise be re-lexed token by token (seconds) for no new report.
        recoveries[0] += 1
        if recoveries[0] > MAX_RECOVERIES:
            return False
        line = getattr(err, "line", 0)
        if not errors or errors[-1].span is None or errors[-1].span.line != line:
            errors.append(_syntax_diagnostic(err, file, lines))
        return len(errors) < MAX_ERRORS and not isinstance(err, UnexpectedEOF)

    parser = grammar()
    token = _comment_sink.set(comments)
    try:
        try:
            tree = parser.parse(text, on_error=on_error)
        finally:
            _comment_sink.reset(token)
    except UnexpectedInput as err:
        # after an earlier error, running out of input is that error's echo
        if recoveries[0] > MAX_RECOVERIES and errors:
            pass  # recovery gave up on debris already reported
        elif not errors or not isinstance(err, UnexpectedEOF) and getattr(err, "token", None) is not None and err.token.type != "$END":  # type: ignore[attr-defined]
            errors.append(_syntax_diagnostic(err, file, lines))
        tree = None
    except RecursionError:
        errors.append(Diagnostic("E105", "rule file nested too deeply", hint=f"nesting is limited to {MAX_DEPTH} levels", span=Span(file, 1, 1)))
        tree = None
    if errors:
        unique = {(d.span.line, d.span.column, d.code): d for d in errors if d.span}  # type: ignore[union-attr]
        raise RuleSyntaxError(sorted(unique.values(), key=lambda d: (d.span.line, d.span.column)))  # type: ignore[union-attr]
    assert tree is not None
    if _depth(tree) > MAX_DEPTH:
        raise RuleSyntaxError([Diagnostic("E105", "rule file nested too deeply", hint=f"nesting is limited to {MAX_DEPTH} levels (conditions, parentheses, `when` blocks)", span=Span(file, _first_deep_line(tree), 1))])
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
class _ToAst(Transformer):
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
        return A.LimitDecl(str(c[0]), str(c[1]), c[2], severity, metric_span=_tok_span(self.file, c[1]), span=self.s(meta))

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

    def minimum(self, meta: Any, c: list[Any]) -> A.Num:
        return c[0]

    def stage(self, meta: Any, c: list[Any]) -> A.StageDecl:
        groups = tuple(x for x in c[2:] if isinstance(x, A.StepGroup))
        minimum = next((x for x in c[2:] if isinstance(x, A.Num)), None)
        return A.StageDecl(str(c[0]), str(c[1]), groups, minimum, pool_span=_tok_span(self.file, c[1]), span=self.s(meta))

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
            out.append(A.Comment(str(tok).rstrip(), False, span=Span(file, tok.line, tok.column, tok.line, tok.end_column - 1)))
        out.sort(key=lambda n: (n.span.line, n.span.column))
        fixed: list[Any] = []
        for node in out:
            if isinstance(node, A.Comment) and fixed and not isinstance(fixed[-1], A.Comment) and fixed[-1].span.end_line == node.span.line:
                from dataclasses import replace

                node = replace(node, inline=True)
            fixed.append(node)
        return fixed

    return place(statements, list(comments))
