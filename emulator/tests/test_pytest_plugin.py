"""The ``redivis_emulator`` fixture, used as a test suite would use it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import requests
from redivis_emulator import RedivisEmulator

from emulator.tests.conftest import TABLE, TIMEOUT, table_path


def test_fixture_gives_a_running_emulator_with_one_table(redivis_emulator: RedivisEmulator) -> None:
    assert redivis_emulator.running
    assert redivis_emulator.token == "test-token"
    assert redivis_emulator.base_url.startswith("http://127.0.0.1:")
    response = requests.get(
        f"{redivis_emulator.api_url}{table_path(TABLE)}",
        headers={"Authorization": "Bearer test-token"},
        timeout=TIMEOUT,
    )
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("how", "args", "conftest"),
    [
        ("entry point", [], None),
        ("-p as well", ["-p", "redivis_emulator.pytest_plugin"], None),
        ("pytest_plugins as well", [], 'pytest_plugins = ["redivis_emulator.pytest_plugin"]\n'),
    ],
)
def test_plugin_loads_once_and_stops_the_emulator(
    tmp_path: Path, how: str, args: list[str], conftest: str | None
) -> None:
    """The pytest11 entry point loads it; naming it again (-p, pytest_plugins) does not load it twice."""
    if conftest is not None:
        (tmp_path / "conftest.py").write_text(conftest)
    (tmp_path / "test_uses_fixture.py").write_text(
        "import requests\n"
        "SEEN = []\n"
        "def test_one(redivis_emulator):\n"
        "    SEEN.append(redivis_emulator)\n"
        "    assert redivis_emulator.get_table('test_owner.test_dataset.test_table')['name'] == 'test_table'\n"
        "def test_two():\n"
        "    assert not SEEN[0].running\n"
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            *args,
            "-p",
            "no:cacheprovider",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 0, f"{how}: {result.stdout[-3000:]}"
    assert "2 passed" in result.stdout
