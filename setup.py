"""Ship the top-level ``rules/`` and ``schemas/`` folders inside the installed package (as
``policy_engine.rules`` and ``policy_engine.schemas``) so `policy schema` and the default
rules work from a wheel, not only from a checkout. ``policy_engine/rules`` and
``policy_engine/schemas`` are symlinks to them, so the checkout itself imports the same
way (pytest, `python -m policy_engine` from the root) and an editable install in strict
mode gives type checkers a plain directory tree. Everything else is in pyproject.toml."""

from setuptools import find_packages, setup

setup(packages=find_packages(include=["policy_engine", "policy_engine.*"]))
