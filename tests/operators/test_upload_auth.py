"""A revoked token ends the task, but not the upload: once the token is fixed, clearing the task resumes it.

Real Airflow (``dag.test()``, a real retry, then ``airflow tasks clear`` and ``tasks test``) against the
emulator. Try 1 is cut at 60 %; try 2 sends the rest and meets a 401 from the API (the token revoked);
the cleared run, with the token working again, creates the upload from the same session.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tests.airflow.harness import AirflowHome, redivis_connection
from tests.operators.test_upload_retries import (
    CHUNK,
    CONN_EXTRA,
    assert_one_exact_upload,
    drop_everything_after,
    run_dag,
    write_source,
)

if TYPE_CHECKING:
    from pathlib import Path

    from redivis_emulator import RedivisEmulator

pytestmark = [pytest.mark.airflow, pytest.mark.slow]

LOGICAL_DATE = "2026-03-04T05:06:07+00:00"
RUN_ID = f"manual__{LOGICAL_DATE}"
REVOKE_THE_TOKEN = """    _admin('DELETE', '/_emulator/faults')
    _admin('POST', '/_emulator/faults', {'kind': 'status', 'origin': 'api', 'status': 401, 'times': None})"""


def test_a_401_keeps_the_checkpoint_and_the_cleared_task_resumes(
    tmp_path: Path, redivis_emulator: RedivisEmulator
) -> None:
    emu = redivis_emulator
    size = 12 * CHUNK + 77
    source = write_source(tmp_path / "sales.csv", size)
    emu.add_fault(drop_everything_after(0.6, size))
    home = AirflowHome(tmp_path / "airflow")
    result = run_dag(
        home,
        emu,
        operator_kwargs=f"source={str(source)!r}, upload_type='stream'",
        between_tries=REVOKE_THE_TOKEN,
        REDIVIS_TEST_LOGICAL_DATE=LOGICAL_DATE,
    )
    assert not result.succeeded
    assert "Redivis API error 401" in result.output, result.output[-6000:]
    assert len(home.query("SELECT * FROM task_state_store")) == 1  # the checkpoint is still there
    assert "clearing the task resumes" in result.output

    # The token is fixed; the user clears the task and it runs again.
    emu.clear_faults()
    connections = {"redivis_default": redivis_connection(emu.base_url, emu.token, **CONN_EXTRA)}
    cleared = home.cli("tasks", "clear", "upload_dag", "-t", "^upload$", "-y", connections=connections)
    assert cleared.returncode == 0, cleared.output[-3000:]
    again = home.cli("tasks", "test", "upload_dag", "upload", RUN_ID, connections=connections)
    assert again.returncode == 0, again.output[-6000:]
    assert len(emu.sessions) == 1  # the same session: nothing sent twice
    assert emu.bytes_received("session") <= size + CHUNK
    assert_one_exact_upload(emu, "sales.csv", source)
    assert home.query("SELECT * FROM task_state_store") == []
