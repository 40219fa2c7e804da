"""`python -m policy_engine.cli` runs the `policy` command."""

from policy_engine.cli.main import entry

entry()
