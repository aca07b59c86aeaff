"""Shared test configuration of the provider's tests (the rule on skips, for every test path, is in the
repository's own conftest.py).

A test that starts Airflow is marked ``airflow`` here, from what its function and fixtures use
(tests/airflow/marking.py), so that ``./dev/test --fast`` (``-m "not airflow"``) leaves out exactly those.

The ``redivis_emulator`` fixture comes from the redivis-emulator distribution's ``pytest11`` entry
point (``pip install -e ./emulator``; ``dev/setup-venvs`` does it).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator

import pytest

from tests.airflow import harness, marking

# The emulator enforces no rate limit unless a test sets one: waits that poll on their own may then poll as
# fast as a test needs. Tests of that floor set it themselves; subprocesses (Airflow runs) inherit this.
os.environ.setdefault("AIRFLOW__REDIVIS__MIN_POLL_INTERVAL", "0.01")
# The processes of a machine share a note of each token's request budget (request_budget.BudgetNote); the
# suite's go in a folder of this run's own, not the machine's, and its Airflow processes inherit it.
os.environ.setdefault("REDIVIS_BUDGET_NOTE_DIR", tempfile.mkdtemp(prefix="redivis-budget-notes-"))


@pytest.fixture(autouse=True)
def _budget_note_of_its_own(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each test's processes share a note of their own: the emulators of all tests use one token, and an
    emulator's port, which with the token names the note, is free again for another test (in another xdist
    worker) as soon as the emulator stops. Without this, one test's 429 closed another's budget for 30 s."""
    monkeypatch.setenv("REDIVIS_BUDGET_NOTE_DIR", str(tmp_path_factory.mktemp("budget-note")))


@pytest.hookimpl(tryfirst=True)  # before -m deselects by the marks
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    untrue = []
    for item in items:
        fixtures = getattr(item, "_fixtureinfo", None)
        used: list[object] = [getattr(item, "obj", None)]
        if fixtures is not None:
            used += [defs[-1].func for defs in fixtures.name2fixturedefs.values() if defs]
        if any(marking.reaches_airflow(obj) for obj in used):
            item.add_marker(pytest.mark.airflow)
            item.add_marker(pytest.mark.slow)  # an Airflow process alone takes seconds to start
        elif item.get_closest_marker("airflow") is not None:
            untrue.append(item.nodeid)
    if untrue:
        raise pytest.UsageError(
            "marked 'airflow', but neither the test nor its fixtures reach anything that starts Airflow "
            "(tests/airflow/marking.py): drop the mark, or declare the starter.\n  " + "\n  ".join(untrue)
        )
    if os.environ.get("PYTEST_XDIST_WORKER"):
        # Under xdist the long tests go first, so the run does not end waiting on one of them; every
        # worker sorts the same list the same way (xdist checks that the collections agree).
        items.sort(
            key=lambda item: (
                item.get_closest_marker("airflow") is None,
                item.get_closest_marker("slow") is None,
            )
        )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    marking.current_test = item
    try:
        return (yield)
    finally:
        marking.current_test = None


@pytest.fixture(scope="session", autouse=True)
def _airflow_db_templates(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The migrated metadata databases the harness copies: made once per run, shared by the xdist workers
    (their temporary folders sit side by side in the run's own)."""
    base = tmp_path_factory.getbasetemp()
    harness.TEMPLATE_ROOT = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "airflow-db"
