"""`policy render` and `policy conform`: the prompt text behind a decision, and a check of
a captured prompt against it. Thin: the core does the rendering and the comparison."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from policy_engine.cli.exit_codes import ExitCode
from policy_engine.errors import PackError


def add_commands(sub: Any, inputs: Callable[[argparse.ArgumentParser], None]) -> None:
    p = sub.add_parser(
        "render",
        help="print the exact prompt the agent would send for a pack",
        description="Print the prompt text the engine counted: by default for the decision's final (trimmed) selection, "
        "with --untrimmed for the whole pack. Its token count equals the decision's prompt_tokens.",
    )
    p.add_argument("pack", metavar="PACK")
    inputs(p)
    p.add_argument("--untrimmed", action="store_true", help="render the whole pack, not the decision's final selection")
    p.add_argument("--output", metavar="FILE", help="write the prompt here instead of stdout")
    p.set_defaults(run=cmd_render)

    p = sub.add_parser(
        "conform",
        help="check that the engine renders a captured prompt byte for byte",
        description="Compare the prompt an agent really sent for PACK with the engine's rendering of it (the decision's final "
        "selection, or the whole pack with --untrimmed). Exit 0 when byte-identical, 1 with the first differing "
        "line, the JSON Pointer of the value on it and both texts around it.",
    )
    p.add_argument("pack", metavar="PACK")
    p.add_argument("--prompt", required=True, metavar="CAPTURED.txt", help="the prompt text the agent sent")
    inputs(p)
    p.add_argument("--untrimmed", action="store_true", help="compare with the whole pack's prompt, not the trimmed one")
    p.set_defaults(run=cmd_conform)


def _prompt(args: argparse.Namespace) -> tuple[str, int, Any, str]:
    """(text, tokens, decision, pack label) as `eval` would decide and count it."""
    from policy_engine.cli.commands import _err, _evaluate_one, _inputs, load_rules, pack_paths
    from policy_engine.packs import load_pack, read_pack_document
    from policy_engine.render.prompt import decision_selection, prompt_text, whole_pack

    policy = load_rules(args)
    common = _inputs(args)
    paths = pack_paths([args.pack])
    if len(paths) != 1:
        raise _err("C131", f"{args.pack} holds {len(paths)} packs", "render one pack at a time", file=args.pack)
    result, _ = _evaluate_one(policy, paths[0], common, "off")
    if result.decision is None:
        raise PackError(result.problems)
    doc, label = read_pack_document(paths[0])
    pools = load_pack(doc, file=label, idea=common["idea"])
    selection = whole_pack(pools) if args.untrimmed else decision_selection(result.decision)
    text, tokens = prompt_text(policy, pools, selection, idea=common["idea"], knowledge=common["knowledge"])
    return text, tokens, result.decision, label


def cmd_render(args: argparse.Namespace) -> int:
    from policy_engine.cli.commands import _err

    text, tokens, decision, label = _prompt(args)
    if args.output:
        try:
            Path(args.output).write_text(text, encoding="utf-8")
        except OSError as exc:
            raise _err("C132", f"cannot write {args.output}: {exc.strerror}", "give a writable path") from None
    else:
        sys.stdout.write(text)
    which = "whole pack" if args.untrimmed else f"final selection, {decision.outcome}"
    print(
        f"{label}: {tokens:,} tokens ({decision.manifest['tokenizer']}), {len(text):,} chars ({which})", file=sys.stderr
    )
    return ExitCode.OK


def cmd_conform(args: argparse.Namespace) -> int:
    from policy_engine.cli.commands import _err
    from policy_engine.render.prompt import first_difference

    try:
        captured = Path(args.prompt).read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise _err("P101", "no such file", "pass the prompt text the agent sent", file=args.prompt) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise _err(
            "P102",
            f"cannot read ({getattr(exc, 'strerror', None) or 'not UTF-8'})",
            "pass a UTF-8 text file",
            file=args.prompt,
        ) from None
    text, tokens, _decision, label = _prompt(args)
    diff = first_difference(captured, text)
    if diff is None:
        print(f"{label}: byte-identical to {args.prompt} ({tokens:,} tokens, {len(text):,} chars)")
        return ExitCode.OK
    where = f" (JSON Pointer {diff.pointer or '/'})" if diff.pointer is not None else ""
    out = [
        f"{label}: the engine's prompt differs from {args.prompt} at line {diff.line}{where}",
        f"  captured ({args.prompt}):",
    ]
    out += [f"  {'>' if n == diff.line else ' '} {n:>6} | {line}" for n, line in diff.expected]
    out.append("  engine:")
    out += [f"  {'>' if n == diff.line else ' '} {n:>6} | {line}" for n, line in diff.actual]
    out.append(
        '  hint: if the agent\'s prompt builder changed, copy the template next to your rules (NAME.template.json), edit it, and select it with `template "NAME"`'
    )
    print("\n".join(out))
    return ExitCode.FAILED
