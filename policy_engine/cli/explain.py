"""`policy explain`: the decision as a tree a person reads top to bottom: each rung, its
tokens before and after against the limit, what it removed, and why evaluation stopped."""

from __future__ import annotations

from rich.markup import escape
from rich.tree import Tree

from policy_engine.decision import Decision


def _removed(step_removed: dict[str, tuple[str, ...]] | None) -> str:
    if not step_removed:
        return ""
    parts = []
    for pool, ids in step_removed.items():
        shown = ", ".join(ids[:6]) + (f", … (+{len(ids) - 6})" if len(ids) > 6 else "")
        parts.append(f"{pool} -{len(ids)}: {escape(shown)}")
    return "; ".join(parts)


def decision_tree(decision: Decision, title: str) -> Tree:
    limit = decision.limits.get("request_prompt", {}).get("effective")
    of_limit = f" / {limit:,}" if limit else ""
    colour = {"allowed": "green", "trimmed": "yellow", "blocked": "red"}[decision.outcome]
    root = Tree(
        f"[bold]{escape(title)}[/]: [{colour}]{decision.outcome.upper()}[/]"
        + (f" ({decision.reason})" if decision.reason else "")
        + f" — prompt {decision.metrics['prompt_tokens']:,}{of_limit} tokens, tokenizer {decision.manifest['tokenizer']}"
    )
    for step in decision.trace:
        where = f" [dim]({step.span.file}:{step.span.line})[/]" if step.span is not None and step.span.line else ""
        if step.kind == "condition":
            root.add(f"[cyan]when {step.rule}[/] matched{where}")
        elif step.kind == "start":
            node = root.add(f"start: prompt {step.prompt_tokens_after:,}{of_limit} tokens — {step.message}")
            if step.counts_after:
                node.add(", ".join(f"{pool} {c['exploit']}+{c['explore']}" for pool, c in step.counts_after.items()))
        elif step.kind == "rung":
            mark = {"pass": "[green]✓[/]", "fail": "[red]✗[/]", "skipped": "[dim]–[/]"}.get(step.verdict, "")
            label = f"{mark} rung {step.rung} {step.rule}: {step.pool} {step.step_kind} {step.step_value}{where}"
            if step.verdict == "skipped":
                root.add(f"[dim]{label} — {step.message}[/]")
                continue
            node = root.add(f"{label}: {step.prompt_tokens_before:,} → {step.prompt_tokens_after:,}{of_limit} tokens")
            node.add(step.message)
            removed = _removed(dict(step.removed) if step.removed else None)
            if removed:
                node.add(f"removed: {removed}")
        elif step.kind == "check" and step.verdict in ("fail", "warn"):
            root.add(f"[red]limit {step.rule}[/]{where}: {step.message}")
        elif step.kind == "stop":
            root.add(f"[bold]stop[/]: {step.message}")
    for w in decision.warnings:
        root.add(f"[yellow]warning {w.code}[/]: {w.message}")
    return root
