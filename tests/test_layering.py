"""The core never imports adapters or the CLI; adapters never import the CLI.

Walks every module's import statements (statically, so a lazy import inside a function
counts too) rather than trusting reviewers to notice.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "policy_engine"


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    module_parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(module_parts[: len(module_parts) - node.level])
                if path.name == "__init__.py":
                    base = list(module_parts[: len(module_parts) - node.level + 1])
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            found.add(name)
            found.update(f"{name}.{alias.name}" for alias in node.names)
    return found


def _layer(path: Path) -> str:
    rel = path.relative_to(PACKAGE).parts
    if rel[0] == "cli" or rel == ("__main__.py",):  # `python -m policy_engine` is the CLI's entry point
        return "cli"
    if rel[0] == "cli":
        return "cli"
    if rel[0] == "adapters":
        return "adapters"
    return "core"


FORBIDDEN = {
    "core": ("policy_engine.cli", "policy_engine.adapters"),
    "adapters": ("policy_engine.cli",),
    "cli": (),
}


def test_core_and_adapters_never_import_upward() -> None:
    offences = []
    files = sorted(PACKAGE.rglob("*.py"))
    assert files, "no package sources found"
    for path in files:
        layer = _layer(path)
        for name in _imports(path):
            for banned in FORBIDDEN[layer]:
                if name == banned or name.startswith(banned + "."):
                    offences.append(f"{path.relative_to(PACKAGE.parent)} ({layer}) imports {name}")
    assert offences == []


def test_the_walker_sees_relative_and_absolute_imports(tmp_path: Path) -> None:
    sample = PACKAGE / "policy.py"
    names = _imports(sample)
    assert "policy_engine.errors" in names
