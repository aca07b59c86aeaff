"""The ``airflow`` marker follows what a test uses, and a test that starts Airflow unmarked is stopped.

The helpers below are handed to the tests through ``HELPERS`` (a dict, which the scan does not
follow), so that these tests themselves reach no Airflow and stay in ``./dev/test --fast``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.airflow import marking
from tests.airflow.harness import AirflowHome


def _makes_a_home(root: Path) -> AirflowHome:
    return AirflowHome(root)


def _through_a_helper(root: Path) -> object:
    return _makes_a_home(root)


def _in_a_lambda(root: Path) -> object:
    return (lambda: _through_a_helper(root))()


def _no_airflow(root: Path) -> object:
    return root / "airflow"


HELPERS = {
    "direct": _makes_a_home,
    "helper": _through_a_helper,
    "lambda": _in_a_lambda,
    "none": _no_airflow,
}


@pytest.mark.parametrize("name", ["direct", "helper", "lambda"])
def test_a_starter_is_found_through_the_tests_own_helpers(name: str) -> None:
    assert marking.reaches_airflow(HELPERS[name])


def test_code_that_names_no_starter_is_not_marked() -> None:
    assert not marking.reaches_airflow(HELPERS["none"])
    assert not marking.reaches_airflow(len)  # not the tests' code: never followed


@dataclass
class FakeTest:
    nodeid: str
    marks: list[str] = field(default_factory=list)

    def get_closest_marker(self, name: str) -> object | None:
        return name if name in self.marks else None


def test_starting_airflow_in_an_unmarked_test_fails_and_says_how_to_mark_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(marking, "current_test", FakeTest("tests/test_x.py::test_y"))
    with pytest.raises(RuntimeError, match=r"test_y starts Airflow \(an AIRFLOW_HOME\) but is not marked"):
        HELPERS["direct"](tmp_path)


def test_a_marked_test_may_start_airflow(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(marking, "current_test", FakeTest("tests/test_x.py::test_y", ["airflow"]))
    home = HELPERS["direct"](tmp_path)
    assert home.dags.is_dir()  # constructed; nothing migrated, nothing run


def test_this_module_runs_in_the_fast_loop(request: pytest.FixtureRequest) -> None:
    assert request.node.get_closest_marker("airflow") is None
