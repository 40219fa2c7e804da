"""Shared fixtures: paths to the sample data copied from the agent (tests/fixtures/shared)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT / "tests" / "fixtures" / "shared"
REGEN = os.environ.get("POLICY_ENGINE_REGEN_GOLDEN") == "1"

settings.register_profile("fast", max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("POLICY_ENGINE_HYPOTHESIS_PROFILE", "fast"))


@pytest.fixture(scope="session")
def shared() -> Path:
    return SHARED


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT
