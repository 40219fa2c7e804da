"""The shipped default rules, compiled ahead of time (``default.policy.pickle``), so a cold
`policy eval` with the default rules never loads the rule language: importing the parser,
Lark and the syntax tree's classes, loading the parser table and parsing cost about 70 ms,
most of what a cold start spends beyond tiktoken.

The file's first line records the sha256 of what the policy was compiled from: the rule
file, this module and the source of every module that parses and checks it (the rule
language, the policy model and its conditions, the errors), and the names of the templates beside the rules.
When they are not the installed ones (an edited rule file, a changed checker) the file is
ignored and the rules are compiled as usual: slower, the same policy, nothing written. The pickle holds the
policy without its template document (attached on loading, as the compiler does) and with
the rule file's path as a placeholder (the installed path goes in on loading), so it is the
same on every machine. tests/dsl/test_prebuilt.py proves the shipped file is what compiling
the rules gives; ``python -m policy_engine.rules.prebuilt`` rewrites it after a change.

Unpickling runs code named by the file, so only this package's own file is ever loaded, as
Lark's parser table (dsl/grammar.lalr) is.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import pickle
import sys
from pathlib import Path
from typing import Any

#: the rules folder (this package's)
HERE = Path(__file__).parent
DEFAULT = HERE / "default.policy"
FILE = HERE / "default.policy.pickle"
_PATH_ID = "default.policy"


def _package_root() -> Path:
    """``policy_engine/``, where the package was imported from (installed or the checkout;
    this folder is its ``rules/``)."""
    import policy_engine

    return Path(policy_engine.__file__).parent


def _sources(root: Path) -> list[Path]:
    """Every file whose content can change the compiled policy: the rules, this module
    (how it is saved), the rule language's modules and grammar, the policy model and the
    errors."""
    dsl = root / "dsl"
    return [
        DEFAULT,
        HERE / "prebuilt.py",
        *sorted(dsl.glob("*.py")),
        dsl / "grammar.lark",
        root / "policy.py",
        root / "conditions.py",
        root / "errors.py",
    ]


def header() -> dict[str, Any]:
    """What a compiled file must have been made from to be used."""
    from policy_engine.render.template import user_template_names

    h = hashlib.sha256()
    root = _package_root()
    for path in _sources(root):
        h.update(path.relative_to(root).as_posix().encode() + b"\0")
        h.update(path.read_bytes() + b"\0")
    return {
        "sources_sha256": h.hexdigest(),
        "templates": user_template_names(HERE),
        "python": f"{sys.version_info.major}.{sys.version_info.minor}",
    }


class _Pickler(pickle.Pickler):
    def __init__(self, file: io.BytesIO, path: str) -> None:
        super().__init__(file, protocol=5)
        self._path = path

    def persistent_id(self, obj: Any) -> str | None:
        return _PATH_ID if type(obj) is str and obj == self._path else None


class _Unpickler(pickle.Unpickler):
    def __init__(self, file: io.BytesIO, path: str) -> None:
        super().__init__(file)
        self._path = path

    def persistent_load(self, pid: Any) -> str:
        if pid != _PATH_ID:
            raise pickle.UnpicklingError(f"unknown placeholder {pid!r}")
        return self._path


def compiled_bytes() -> bytes:
    """The shipped file's content: the header line, then the compiled policy."""
    from policy_engine.dsl import load_policy

    policy = dataclasses.replace(load_policy(DEFAULT), template_spec=None)
    out = io.BytesIO()
    out.write(json.dumps(header(), sort_keys=True).encode("utf-8") + b"\n")
    _Pickler(out, str(DEFAULT)).dump(policy)
    return out.getvalue()


def load_default() -> Any:
    """The default rules' policy (what ``load_policy(default_rules_path())`` returns) from
    the compiled file, or None when there is no current one (then compile the rules)."""
    from policy_engine.errors import RuleCheckError
    from policy_engine.render.template import find_template

    try:
        data = FILE.read_bytes()
    except OSError:
        return None
    first, _, saved = data.partition(b"\n")
    try:
        if json.loads(first) != header():
            return None
    except (ValueError, OSError):
        return None
    try:
        policy = _Unpickler(io.BytesIO(saved), str(DEFAULT)).load()
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, IndexError, TypeError, ValueError):
        return None  # a damaged file: compile instead
    try:
        spec = find_template(policy.template, HERE)
    except RuleCheckError:
        return None  # compiling reports it
    return dataclasses.replace(policy, template_spec=spec) if spec is not None else policy


def main() -> int:
    """Rewrite the compiled default rules (run after changing them or the rule language)."""
    target = Path(__file__).resolve().with_name(FILE.name)  # the source tree's copy
    target.write_bytes(compiled_bytes())
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
