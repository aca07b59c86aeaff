"""What holds for every test path (tests/ and the emulator's emulator/tests/).

``dev/test`` sets REDIVIS_REQUIRE_ALL_TESTS=1: there a skipped test is a failure, so a missing
dependency or interpreter can never pass for a green run.
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


def pytest_configure(config: pytest.Config) -> None:
    # ./dev/proofs runs these, one at a time, and ./dev/test leaves them out: they load the machine with
    # many processes (a fleet of task processes) and time themselves against it, so neither they nor a
    # test beside them may share the cores with another run.
    config.addinivalue_line("markers", "solo: a timed proof that runs alone (./dev/proofs, not ./dev/test)")
