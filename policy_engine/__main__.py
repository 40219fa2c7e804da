"""`python -m policy_engine` runs the `policy` command."""

from policy_engine.cli.main import entry

entry()
