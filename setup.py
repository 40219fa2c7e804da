"""Ship the top-level ``rules/`` and ``schemas/`` folders inside the installed package
(as ``policy_engine.rules`` and ``policy_engine.schemas``) so `policy schema` and the
default rules work from a wheel, not only from a checkout. Everything else is in
pyproject.toml."""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["policy_engine", "policy_engine.*"])
    + ["policy_engine.rules", "policy_engine.schemas"],
    package_dir={
        "policy_engine.rules": "rules",
        "policy_engine.schemas": "schemas",
    },
)
