"""Shared test configuration.

``dev/test`` sets REDIVIS_REQUIRE_ALL_TESTS=1: there a skipped test is a failure, so a missing
dependency or interpreter can never pass for a green run.

The ``redivis_emulator`` fixture comes from the redivis-emulator distribution's ``pytest11`` entry
point (``pip install -e ./emulator``; ``dev/setup-venvs`` does it).
"""

from __future__ import annotations

import os

import pytest


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("REDIVIS_REQUIRE_ALL_TESTS") and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped, but dev/test requires every test to run: {report.longrepr}"


# The emulator enforces no rate limit unless a test sets one: waits that poll on their own may then poll as
# fast as a test needs. Tests of that floor set it themselves; subprocesses (Airflow runs) inherit this.
os.environ.setdefault("AIRFLOW__REDIVIS__MIN_POLL_INTERVAL", "0.01")
