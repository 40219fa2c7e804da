"""Shared fixtures: paths to the sample data copied from the agent (tests/fixtures/shared)."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from tests.pgcluster import PgCluster, find_bindir

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT / "tests" / "fixtures" / "shared"


def fresh_python(code: str) -> str:
    """What ``python -c code`` prints in a new interpreter on this checkout (for what only a
    fresh process shows: which modules an import pulls in, how a library was loaded)."""
    run = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=120,
        check=True,
    )
    return run.stdout


REGEN = os.environ.get("POLICY_ENGINE_REGEN_GOLDEN") == "1"

settings.register_profile(
    "fast", max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("thorough", max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("POLICY_ENGINE_HYPOTHESIS_PROFILE", "fast"))


@pytest.fixture
def msgspec_rent_paid() -> Iterator[None]:
    """The fast JSON readers, which start once msgspec's import has paid for itself
    (`msgspec_rent`), from the first document on; the rent is restored afterwards."""
    from policy_engine import msgspec_rent

    before = msgspec_rent._Rent.spent
    msgspec_rent._Rent.spent = msgspec_rent.RENT_LIMIT
    yield
    msgspec_rent._Rent.spent = before


@pytest.fixture(scope="session")
def shared() -> Path:
    return SHARED


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


# ---- ledger backends: SQLite in a temp dir, and a real PostgreSQL server started once per
# session (tests/pgcluster.py), one fresh database per test. Without PostgreSQL binaries or
# psycopg a local run skips the PostgreSQL cases; under CI (CI=true) it fails instead, so
# CI can never pass without having run them.

_names = itertools.count()


def _unavailable(why: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"PostgreSQL is required in CI: {why} (.ci/run installs it)", pytrace=False)
    pytest.skip(f"PostgreSQL not available locally: {why}")


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    try:
        import psycopg  # noqa: F401
        import psycopg_pool  # noqa: F401
    except ImportError:
        _unavailable("psycopg / psycopg_pool not installed (pip install -e '.[test,postgres]')")
    bindir = find_bindir()
    if bindir is None:
        _unavailable("no initdb/pg_ctl found (apt-get install postgresql)")
    cluster = PgCluster(bindir)  # type: ignore[arg-type]
    try:
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty ledger's URL on each backend."""
    if request.param == "sqlite":
        return str(tmp_path / "ledger.db")
    cluster: PgCluster = request.getfixturevalue("pg_cluster")
    return cluster.create_database(f"t{os.getpid()}_{next(_names)}")
