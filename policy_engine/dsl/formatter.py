"""The canonical form of a rule file, printed from the AST.

One statement per line, two-space indentation inside blocks, numbers exactly as written,
comments kept (inline ones stay on their line). Blank lines are canonical too: one before
each group of statements of a new kind, before blocks and before comment paragraphs, so the
output depends only on the AST. `format_text` checks every result like black does: the
output parses to the same AST and formats to itself.
"""

from __future__ import annotations

from typing import Any

from policy_engine.dsl import ast as A


def _q(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _value(v: Any) -> str:
    return _q(v.value) if isinstance(v, A.Str) else v.text


def _guard(node: Any, parent: str = "") -> str:
    if isinstance(node, A.CompareNode):
        if node.op == "in":
            return f"{node.attribute} in [" + ", ".join(_value(v) for v in node.values) + "]"
        return f"{node.attribute} {node.op} {_value(node.values[0])}"
    if isinstance(node, A.NotNode):
        return "not " + _guard(node.item, "not")
    if isinstance(node, A.AllOfNode):
        text = " and ".join(_guard(i, "and") for i in node.items)
        return f"({text})" if parent == "not" else text
    text = " or ".join(_guard(i, "or") for i in node.items)
    return f"({text})" if parent in ("and", "not") else text


def _line(node: Any) -> str:
    if isinstance(node, A.PolicyName):
        return f"policy {_q(node.name.value)}"
    if isinstance(node, A.Include):
        return f"include {_q(node.path.value)}"
    if isinstance(node, A.TokenizerDecl):
        if node.kind == "rough":
            return f"tokenizer rough {node.ratio.text} chars per token"  # type: ignore[union-attr]
        return f"tokenizer {node.kind} {_q(node.name.value)}"  # type: ignore[union-attr]
    if isinstance(node, A.TemplateDecl):
        return f"template {_q(node.name.value)}"
    if isinstance(node, A.PriceDecl):
        return f"price {_q(node.model.value)}: prompt {node.prompt.text} per {node.prompt_per}, completion {node.completion.text} per {node.completion_per}"
    if isinstance(node, A.PricingDecl):
        return f"pricing model {_q(node.model.value)}"
    if isinstance(node, A.LimitDecl):
        amount = node.amount.text + (" tokens" if isinstance(node.amount, A.Num) else "")
        return f"limit {node.name}: {node.metric} <= {amount}" + (f" {node.severity}" if node.severity else "")
    if isinstance(node, A.CompletionDecl):
        return f"completion budget {node.tokens.text} tokens"
    if isinstance(node, A.ReserveDecl):
        return f"expansion reserve {node.tokens.text} tokens"
    if isinstance(node, A.LanesDecl):
        return f"lanes exploit {node.exploit.text} explore {node.explore.text}"
    if isinstance(node, A.FloorDecl):
        return f"explore floor {node.count.text}"
    if isinstance(node, A.TopKDecl):
        return f"topk {node.pool} exploit {node.exploit.text} explore {node.explore.text}"
    if isinstance(node, A.StageDecl):
        groups = " then ".join(g.kind + " " + " ".join(v.text for v in g.values) for g in node.groups)
        return f"stage {node.name}: {node.pool} {groups}" + (f" min {node.minimum.text}" if node.minimum else "")
    if isinstance(node, A.ExhaustedDecl):
        return "on exhausted block" + (f" {_q(node.reason.value)}" if node.reason else "")
    if isinstance(node, A.Comment):
        return node.text
    raise TypeError(f"cannot format {type(node).__name__}")


def _block(items: tuple[Any, ...], indent: str, top: bool) -> list[str]:
    out: list[str] = []
    prev: Any = None
    for node in items:
        if isinstance(node, A.Comment) and node.inline and out:
            out[-1] = out[-1] + "  " + node.text
            continue
        if prev is not None and top and _blank_before(prev, node):
            out.append("")
        if isinstance(node, A.LadderDecl):
            out.append(indent + "ladder {")
            out.extend(_block(node.items, indent + "  ", False))
            out.append(indent + "}")
        elif isinstance(node, A.WhenDecl):
            out.append(indent + f"when {node.name}: {_guard(node.guard)} {{")
            out.extend(_block(node.body, indent + "  ", False))
            out.append(indent + "}")
        else:
            out.append(indent + _line(node))
        prev = node
    return out


def _blank_before(prev: Any, node: Any) -> bool:
    if isinstance(prev, A.Comment):
        return False
    if isinstance(node, (A.Comment, A.LadderDecl, A.WhenDecl)) or isinstance(prev, (A.LadderDecl, A.WhenDecl)):
        return True
    return _GROUP.get(type(node), type(node)) is not _GROUP.get(type(prev), type(prev))


#: statements printed as one paragraph
_GROUP: dict[type, object] = {
    A.PolicyName: "head",
    A.Include: "head",
    A.TokenizerDecl: "head",
    A.TemplateDecl: "head",
    A.PriceDecl: "price",
    A.PricingDecl: "price",
    A.LimitDecl: "limit",
    A.CompletionDecl: "budget",
    A.ReserveDecl: "budget",
    A.LanesDecl: "lanes",
    A.FloorDecl: "lanes",
    A.TopKDecl: "lanes",
}


def format_ast(tree: A.PolicyFile) -> str:
    lines = _block(tree.statements, "", True)
    return "\n".join(lines) + "\n" if lines else ""
