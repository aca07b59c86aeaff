"""Whose upload is it? Real Airflow (``dag.test()``, real retries, a cleared run) against the emulator.

- Two mapped tasks whose files share a name (``east/sales.csv``, ``west/sales.csv``): at most one upload
  under the name; the other task fails, says why and what to do, and clearing it never adopts the
  other's upload.
- A creation request that commits late (its answer lost, the upload not yet visible by name) is
  attached to, not posted into a final failure.
- Below Airflow 3.3 the Variable checkpoint goes when the task ends for good, is named within 250
  characters with a word Airflow masks, holds the session URL only sealed, and stale ones are swept.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from redivis_emulator import Fault, RedivisEmulator

from tests.airflow.harness import AirflowHome, airflow2_python, redivis_connection
from tests.operators.test_upload_retries import (
    CHUNK,
    CONN_EXTRA,
    TABLE,
    TRANSPORTS,
    assert_one_exact_upload,
    md5_of,
    run_dag,
    write_source,
)

pytestmark = [pytest.mark.airflow, pytest.mark.slow]

LOGICAL_DATE = "2026-03-04T05:06:07+00:00"
#: dag.test names the run after its run_after, which the runner sets to the logical date.
RUN_ID = f"manual__{LOGICAL_DATE}"


@pytest.fixture
def emulator(tmp_path: Path):
    with RedivisEmulator(tables=[TABLE], data_dir=tmp_path / "emulator", processing_delay=0.05) as emu:
        yield emu


def _states(home: AirflowHome) -> dict[int, str]:
    return {int(i): str(s) for i, s in home.query("SELECT map_index, state FROM task_instance")}


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_colliding_default_names_never_adopt_the_other_tasks_upload(
    tmp_path: Path, emulator: RedivisEmulator, transport: str
) -> None:
    for region in ("east", "west"):
        (tmp_path / region).mkdir()
    east = write_source(tmp_path / "east" / "sales.csv", 3 * CHUNK + 11)
    west = write_source(tmp_path / "west" / "sales.csv", 3 * CHUNK + 11)
    # Both tasks pass the existence check: the second task, seeing the first one's claim on the name, asks
    # Redivis, and the answer is 404 as if the first upload were not there yet (the race of two tasks
    # running side by side). The first task asks nothing by name: the table's listing showed no such name.
    emulator.add_fault(
        Fault("status", method="GET", origin="api", path_contains="/uploads/sales_csv", status=404)
    )
    home = AirflowHome(tmp_path / "airflow")
    first = run_dag(
        home,
        emulator,
        operator_kwargs="upload_type='stream'",
        mapped_sources=[str(east), str(west)],
        transport=transport,
        REDIVIS_TEST_LOGICAL_DATE=LOGICAL_DATE,
    )
    assert not first.succeeded
    assert "that this task did not create" in first.output, first.output[-6000:]
    assert "upload_name" in first.output
    assert "ti.map_index" in first.output
    uploads = emulator.list_uploads(TABLE)
    assert [u["name"] for u in uploads] == ["sales.csv"]
    winner = east if md5_of(emulator.upload_bytes_path(TABLE, "sales.csv")) == md5_of(east) else west
    assert sorted(_states(home).values()) == ["failed", "success"]

    # The user clears the failed task and runs it again, in the same run: it must not adopt the other's upload.
    loser = next(index for index, state in _states(home).items() if state == "failed")
    emulator.clear_faults()
    connections = {"redivis_default": redivis_connection(emulator.base_url, emulator.token, **CONN_EXTRA)}
    cleared = home.cli("tasks", "clear", "upload_dag", "-t", "^upload$", "-y", connections=connections)
    assert cleared.returncode == 0, cleared.output[-3000:]
    again = home.cli(
        "tasks", "test", "upload_dag", "upload", RUN_ID, "--map-index", str(loser), connections=connections
    )
    assert "attaching" not in again.output, again.output[-6000:]
    assert "already has an upload named 'sales.csv'" in again.output, again.output[-6000:]
    # One upload under the name, the winner's bytes, nothing overwritten; no checkpoint left.
    assert_one_exact_upload(emulator, "sales.csv", winner)
    assert home.query("SELECT * FROM task_state_store") == []


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_creation_that_commits_late_is_attached_not_failed(
    tmp_path: Path, emulator: RedivisEmulator, transport: str
) -> None:
    size = 3 * CHUNK + 10
    source = write_source(tmp_path / "late.csv", size)
    # Try 1's request to create the upload is handled but its answer is lost; the upload does not show
    # under its name for the next two looks, so the next request meets "already used".
    emulator.add_fault(Fault("drop_response", origin="api", method="POST", path_contains="/uploads"))
    emulator.add_fault(
        Fault("status", origin="api", method="GET", path_contains="/uploads/late_csv", status=404, times=2)
    )
    result = run_dag(
        AirflowHome(tmp_path / "airflow"),
        emulator,
        operator_kwargs=f"source={str(source)!r}, upload_type='stream'",
        between_tries="    pass",
        transport=transport,
    )
    assert result.succeeded, result.output[-6000:]
    assert "already used" in result.output  # Redivis's answer was met, and understood
    assert "attaching" in result.output
    assert_one_exact_upload(emulator, "late.csv", source)


AIRFLOW2_SNAPSHOT = """    import json
    from airflow.models.variable import Variable as VariableModel
    from airflow.utils.log.secrets_masker import should_hide_value_for_key
    from airflow.utils.session import create_session
    from airflow.api_connexion.schemas.variable_schema import variable_schema, variable_collection_schema
    with create_session() as session:
        rows = session.query(VariableModel).all()
        snapshot = [
            {{
                "key": v.key,
                "hidden_by_ui": should_hide_value_for_key(v.key),
                "value": v.val,
                "rest_api_get": json.dumps(variable_schema.dump(v)),
                "rest_api_list": json.dumps(variable_collection_schema.dump({{"variables": [v], "total_entries": 1}})),
            }}
            for v in rows
        ]
    with open({path!r}, "w") as out:
        json.dump(snapshot, out)"""


def _airflow2_home(tmp_path: Path) -> AirflowHome:
    python = airflow2_python()
    if python is None:
        pytest.skip("set REDIVIS_TEST_AIRFLOW2_PYTHON to an interpreter with Airflow 2.11 (dev/test does)")
    return AirflowHome(tmp_path / "airflow2", python=python)


def test_airflow2_variable_checkpoint_is_masked_short_and_gone_after_the_last_try(
    tmp_path: Path, emulator: RedivisEmulator
) -> None:
    home = _airflow2_home(tmp_path)
    size = 8 * CHUNK
    source = write_source(tmp_path / "doomed.csv", size)
    # Every try is cut at half the file: the task runs out of retries.
    emulator.add_fault(Fault("reset", origin="session", at_offset=size // 2, times=None))
    snapshot = tmp_path / "between_tries.json"
    long_id = "a_dag_with_a_name_as_long_as_airflow_allows_" * 5
    result = run_dag(
        home,
        emulator,
        dag_id=long_id[:200],
        operator_kwargs=f"source={str(source)!r}, upload_type='stream'",
        between_tries=AIRFLOW2_SNAPSHOT.format(path=str(snapshot)),
    )
    assert not result.succeeded
    # Between the tries the checkpoint was there, as Airflow 2.11's UI and REST API would show it.
    rows = json.loads(snapshot.read_text())
    assert len(rows) == 1, rows
    row = rows[0]
    assert len(row["key"]) <= 250
    assert row["hidden_by_ui"] is True  # the UI shows '***' for it
    session_url = next(iter(emulator.sessions.values())).url
    secret = session_url.rsplit("/", 1)[1]
    for shown in (row["value"], row["rest_api_get"], row["rest_api_list"]):
        assert secret not in shown  # sealed: the REST API shows ciphertext, never the URL
    assert "session_url_sealed" in row["value"]
    assert secret not in result.output
    assert emulator.token not in result.output
    # The last try failed: nothing is left behind.
    assert "this was the task's last try" in result.output
    assert home.query("SELECT key FROM variable") == []


def test_airflow2_stale_checkpoints_are_swept_by_the_next_upload(
    tmp_path: Path, emulator: RedivisEmulator
) -> None:
    home = _airflow2_home(tmp_path)
    home.migrate()
    old = {"format": 1, "created_at": "2026-01-01T00:00:00+00:00", "session_url": "http://x/secret"}
    fresh = {"format": 2, "created_at": "2999-01-01T00:00:00+00:00"}
    rows = [
        (
            "redivis_upload_checkpoint__old_dag__manual__2026__upload__-1",
            json.dumps(old),
        ),  # a killed try's, old format
        ("redivis_upload_secret__old_dag__upload__3__" + "0" * 32, json.dumps(old)),
        ("redivis_upload_secret__live_dag__upload__-1__" + "1" * 32, json.dumps(fresh)),  # a running task's
        ("unrelated_variable", "keep me"),
    ]
    with sqlite3.connect(home.root / "airflow.db") as db:
        db.executemany("INSERT INTO variable (key, val, is_encrypted) VALUES (?, ?, 0)", rows)
    source = write_source(tmp_path / "next.csv", 2 * CHUNK)
    result = run_dag(home, emulator, operator_kwargs=f"source={str(source)!r}, upload_type='stream'")
    assert result.succeeded, result.output[-6000:]
    assert "Deleted 2 upload checkpoint Variable(s)" in result.output
    assert sorted(k for (k,) in home.query("SELECT key FROM variable")) == [
        "redivis_upload_secret__live_dag__upload__-1__" + "1" * 32,
        "unrelated_variable",
    ]


def test_a_failure_after_the_upload_is_done_is_retried_into_success(
    tmp_path: Path, emulator: RedivisEmulator
) -> None:
    """Found by the load proof: try 1 created the upload, then its result could not be saved (the API server
    was away). The checkpoint must outlive that: try 2 attaches to the upload instead of meeting a conflict."""
    source = write_source(tmp_path / "after.csv", 2 * CHUNK + 5)
    after_execute = (
        "post_execute=lambda context, result=None: "
        "(_ for _ in ()).throw(RuntimeError('the API server is away')) if context['ti'].try_number == 1 else None"
    )
    home = AirflowHome(tmp_path / "airflow")
    result = run_dag(
        home, emulator, operator_kwargs=f"source={str(source)!r}, upload_type='stream', {after_execute}"
    )
    assert result.succeeded, result.output[-6000:]
    assert "the API server is away" in result.output
    assert "was created by an earlier try; attaching to it" in result.output
    assert_one_exact_upload(emulator, "after.csv", source)
    assert home.query("SELECT * FROM task_state_store") == []  # gone with the task's success
