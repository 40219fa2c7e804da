"""The core never imports adapters or the CLI; adapters never import the CLI.

Walks every module's import statements (statically, so a lazy import inside a function
counts too) rather than trusting reviewers to notice. String imports through
`importlib.import_module(...)` and `__import__(...)` count as imports as well, and a
relative import in a package's `__init__.py` resolves against that package (not against
a module called `__init__`). The planted-violation tests copy the package, plant one
offence of each kind, and prove the walker reports it.
"""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "policy_engine"

FORBIDDEN = {
    "core": ("policy_engine.cli", "policy_engine.adapters"),
    "adapters": ("policy_engine.cli",),
    "cli": (),
}


def _package_of(path: Path, root: Path) -> list[str]:
    """The dotted package a module's relative imports start from.

    For `a/b/c.py` that is `a.b`; for `a/b/__init__.py` it is `a.b` too: `__init__`
    is never part of a module name.
    """
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return parts[:-1]


def _resolve(package: list[str], level: int, module: str | None) -> str:
    base = package[: len(package) - (level - 1)] if level else []
    return ".".join(base + ([module] if module else []))


def _string_import(node: ast.Call, package: list[str]) -> str | None:
    """The module named by `importlib.import_module("x")`, `import_module(".x", __package__)` or `__import__("x")`."""
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
    if name not in ("import_module", "__import__") or not node.args:
        return None
    first = node.args[0]
    if not (isinstance(first, ast.Constant) and isinstance(first.value, str)):
        return None
    text = first.value
    if name == "import_module" and text.startswith("."):
        level = len(text) - len(text.lstrip("."))
        return _resolve(package, level, text.lstrip(".") or None)
    return text


def _imports(path: Path, root: Path = PACKAGE) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    package = _package_of(path, root)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            name = _resolve(package, node.level, node.module) if node.level else node.module or ""
            found.add(name)
            found.update(f"{name}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Call):
            target = _string_import(node, package)
            if target is not None:
                found.add(target)
    return found


def _layer(path: Path, root: Path = PACKAGE) -> str:
    rel = path.relative_to(root).parts
    if rel[0] == "cli" or rel == ("__main__.py",):  # `python -m policy_engine` is the CLI's entry point
        return "cli"
    if rel[0] == "adapters":
        return "adapters"
    return "core"


def _offences(root: Path) -> list[str]:
    offences = []
    for path in sorted(root.rglob("*.py")):
        layer = _layer(path, root)
        for name in _imports(path, root):
            for banned in FORBIDDEN[layer]:
                if name == banned or name.startswith(banned + "."):
                    offences.append(f"{path.relative_to(root.parent).as_posix()} ({layer}) imports {name}")
    return offences


def test_core_and_adapters_never_import_upward() -> None:
    assert sorted(PACKAGE.rglob("*.py")), "no package sources found"
    assert _offences(PACKAGE) == []


def test_the_walker_sees_relative_and_absolute_imports() -> None:
    names = _imports(PACKAGE / "policy.py")
    assert "policy_engine.errors" in names


def test_relative_imports_in_an_init_resolve_against_its_package(tmp_path: Path) -> None:
    init = tmp_path / "policy_engine" / "evaluator" / "__init__.py"
    init.parent.mkdir(parents=True)
    init.write_text("from .core import evaluate\nfrom .. import errors\nfrom ..adapters import ledger\n")
    names = _imports(init, tmp_path / "policy_engine")
    assert {"policy_engine.evaluator.core", "policy_engine.errors", "policy_engine.adapters.ledger"} <= names
    assert not any("__init__" in name for name in names)


PLANTS = {
    "from-init": (
        "evaluator/__init__.py",
        "from ..adapters import ledger\n",
        "policy_engine/evaluator/__init__.py (core) imports policy_engine.adapters",
    ),
    "relative-deep": (
        "render/prompt.py",
        "from ..cli import main\n",
        "policy_engine/render/prompt.py (core) imports policy_engine.cli",
    ),
    "absolute-lazy": (
        "policy.py",
        "def _late():\n    import policy_engine.adapters.gate\n",
        "policy_engine/policy.py (core) imports policy_engine.adapters.gate",
    ),
    "import-module": (
        "tokens/counter.py",
        "import importlib\n_m = importlib.import_module('policy_engine.adapters.ledger')\n",
        "policy_engine/tokens/counter.py (core) imports policy_engine.adapters.ledger",
    ),
    "import-module-relative": (
        "packs/registry.py",
        "from importlib import import_module\n_m = import_module('..cli', __package__)\n",
        "policy_engine/packs/registry.py (core) imports policy_engine.cli",
    ),
    "dunder-import": (
        "adapters/gate.py",
        "_m = __import__('policy_engine.cli.main')\n",
        "policy_engine/adapters/gate.py (adapters) imports policy_engine.cli.main",
    ),
}


@pytest.mark.parametrize("kind", sorted(PLANTS))
def test_a_planted_violation_is_caught(kind: str, tmp_path: Path) -> None:
    copy = tmp_path / "policy_engine"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__", "*.json", "*.lark"))
    assert _offences(copy) == []
    relative, line, expected = PLANTS[kind]
    target = copy / relative
    target.write_text(target.read_text(encoding="utf-8") + "\n" + line, encoding="utf-8")
    found = _offences(copy)
    assert any(offence.startswith(expected) for offence in found), found
