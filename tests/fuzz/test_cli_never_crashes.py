"""The fuzzing harness: every kind of input, hostile or one mutation from valid, through the
CLI in process. Whatever it is given, the CLI answers with a documented exit code, never 70
("this is a bug"), never a traceback, and within a bounded time.

Profiles (POLICY_ENGINE_FUZZ): ``quick`` (local default, 300 cases per input kind), ``ci``
(the default when CI=true: 2,900 per kind, about 20,000 in all), ``thorough`` (30,000 per
kind, 210,000 in all: run it locally before a release).
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from policy_engine.cli.exit_codes import ExitCode
from policy_engine.cli.main import main
from tests.fuzz.inputs import KINDS, Invocation

PER_KIND = {"quick": 300, "ci": 2_900, "thorough": 30_000}
PROFILE = os.environ.get("POLICY_ENGINE_FUZZ") or ("ci" if os.environ.get("CI") == "true" else "quick")
ALLOWED = {int(c) for c in ExitCode if c is not ExitCode.INTERNAL}
TIME_BOUND_S = 10


class Hang(Exception):
    pass


def _alarm(signum: int, frame: object) -> None:
    raise Hang()


def run_in_process(invocation: Invocation) -> tuple[int, str, str]:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        for name, data in invocation.files.items():
            (directory / name).write_bytes(data)
        out, err = io.StringIO(), io.StringIO()
        previous = signal.signal(signal.SIGALRM, _alarm)
        signal.alarm(TIME_BOUND_S)
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                code = main(invocation.args(directory))
        except Hang:
            pytest.fail(f"hang: policy {' '.join(invocation.args(directory))[:300]} ran past {TIME_BOUND_S} s")
        finally:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, previous)
    return code, out.getvalue(), err.getvalue()


@pytest.mark.fuzz
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_cli_answers_every_input_with_a_documented_exit_code(kind: str) -> None:
    @settings(
        max_examples=PER_KIND[PROFILE],
        deadline=None,
        derandomize=PROFILE != "thorough",
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )
    @given(KINDS[kind])
    def check(invocation: Invocation) -> None:
        code, _out, err = run_in_process(invocation)
        assert code in ALLOWED, f"exit {code}: {err[-2000:]}"
        assert "Traceback" not in err and "internal error" not in err, err[-2000:]

    check()
