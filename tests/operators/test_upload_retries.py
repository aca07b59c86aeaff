"""The upload operator in real Airflow (metadata database, ``dag.test()``, real retries) against the emulator.

Each test writes a DAG file into a fresh AIRFLOW_HOME's DAGs folder, runs it in a subprocess, and then
asks the emulator what it received and stored: the table must end up with the source's exact bytes,
in exactly one upload. The retry and resume tests run on both transports (``resumable_upload`` and
``temp_upload``): same engine, same checkpoint, same guarantees.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from pathlib import Path

import pytest
from redivis_emulator import Fault, RedivisEmulator

from airflow_provider_redivis.engine.protocol import CHUNK_UNIT
from tests.airflow.harness import AirflowHome, airflow2_python, redivis_connection

pytestmark = [pytest.mark.airflow, pytest.mark.slow]

TABLE = "test_owner.test_dataset.test_table"
CHUNK = 4 * CHUNK_UNIT  # 1 MiB: many chunks from a small file
#: Small limits so that a try gives up quickly once the network is gone.
CONN_EXTRA = {"max_attempts": 3, "max_retry_seconds": 20, "read_timeout": 2, "connect_timeout": 2}

DAG_TEMPLATE = '''
from __future__ import annotations

import json
import urllib.request
from datetime import datetime, timedelta

from airflow.providers.common.compat.sdk import DAG
from airflow_provider_redivis.operators.upload import RedivisResumableUploadOperator

ADMIN = {admin!r}
ADMIN_TOKEN = {admin_token!r}


def _admin(method, path, body=None):
    return _admin_of(ADMIN, ADMIN_TOKEN, method, path, body)


def _admin_of(admin, admin_token, method, path, body=None):
    request = urllib.request.Request(admin + path, method=method, data=None if body is None else json.dumps(body).encode())
    request.add_header("Content-Type", "application/json")
    request.add_header("X-Emulator-Admin-Token", admin_token)
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - the test's emulator on 127.0.0.1
        return json.loads(response.read() or b"null")


def between_tries(context):
    """Runs when try 1 has failed: {between_tries_doc}"""
{between_tries_body}


COMMON = dict(
    table={table!r},
    chunk_size={chunk},
    poll_interval=0.2,
    retries=1,
    retry_delay=timedelta(seconds=1),
    on_retry_callback=between_tries,
)

with DAG(dag_id={dag_id!r}, schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
    {task}
'''

CLEAR_FAULTS = "    _admin('DELETE', '/_emulator/faults')"
EXPIRE_SESSIONS = """    _admin('DELETE', '/_emulator/faults')
    for session_id in _admin('GET', '/_emulator/sessions'):
        _admin('POST', f'/_emulator/sessions/{session_id}/expire')"""


def write_source(path: Path, size: int) -> Path:
    path.write_bytes(os.urandom(size))
    return path


def md5_of(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


TRANSPORTS = ["resumable_upload", "temp_upload"]


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def emulator(tmp_path: Path):
    with RedivisEmulator(tables=[TABLE], data_dir=tmp_path / "emulator", processing_delay=0.05) as emu:
        yield emu


def upload_task(task_id: str, operator_kwargs: str, mapped_sources: list[str] | None = None) -> str:
    """The DAG file's expression for one upload task, mapped over ``mapped_sources`` when given."""
    if mapped_sources is None:
        return f"RedivisResumableUploadOperator(task_id={task_id!r}, **COMMON, {operator_kwargs})"
    return (
        f"RedivisResumableUploadOperator.partial(task_id={task_id!r}, **COMMON, {operator_kwargs})"
        f".expand(source={mapped_sources!r})"
    )


def write_upload_dag(
    home: AirflowHome,
    dag_id: str,
    admin: RedivisEmulator,
    tasks: list[str],
    *,
    between_tries: str,
    between_tries_doc: str,
) -> Path:
    """DAG_TEMPLATE with ``tasks`` (one expression each), its ``_admin`` on ``admin``'s emulator."""
    return home.write_dag(
        dag_id,
        DAG_TEMPLATE.format(
            admin=admin.base_url,
            admin_token=admin.admin_token,
            dag_id=dag_id,
            table=TABLE,
            chunk=CHUNK,
            between_tries_body=between_tries,
            between_tries_doc=between_tries_doc,
            task="\n    ".join(tasks),
        ),
    )


def run_dag(
    home: AirflowHome,
    emu: RedivisEmulator,
    *,
    dag_id: str = "upload_dag",
    operator_kwargs: str,
    between_tries: str = CLEAR_FAULTS,
    mapped_sources: list[str] | None = None,
    conn_extra: dict[str, object] | None = None,
    transport: str | None = None,
    **extra_env: str,
):
    if transport is not None:
        operator_kwargs += f", transport={transport!r}"
    dag_file = write_upload_dag(
        home,
        dag_id,
        emu,
        [upload_task("upload", operator_kwargs, mapped_sources)],
        between_tries=between_tries,
        between_tries_doc="change the world as the test needs",
    )
    connection = redivis_connection(emu.base_url, emu.token, **(conn_extra or CONN_EXTRA))
    return home.dag_test(dag_file, dag_id, connections={"redivis_default": connection}, **extra_env)


def run_dag_per_emulator(
    home: AirflowHome,
    tasks: list[tuple[RedivisEmulator, str]],
    *,
    mapped_sources: list[list[str]] | None = None,
    dag_id: str = "per_emulator_dag",
    conn_extra: dict[str, object] | None = None,
):
    """One DAG run, an upload task per ``(emulator, operator kwargs)``: task ``upload_<i>`` on connection
    ``redivis_<i>``, against its own emulator (so that faults and counts stay its own). A scenario per task
    costs one Airflow process, not one each; were a task retried, every emulator's faults are cleared.
    With ``mapped_sources``, task ``i`` is mapped over ``mapped_sources[i]``."""
    calls = [
        upload_task(
            f"upload_{i}",
            f"redivis_conn_id='redivis_{i}', {kwargs}",
            None if mapped_sources is None else mapped_sources[i],
        )
        for i, (_, kwargs) in enumerate(tasks)
    ]
    clear_all = "\n".join(
        f"    _admin_of({emu.base_url!r}, {emu.admin_token!r}, 'DELETE', '/_emulator/faults')"
        for emu, _ in tasks
    )
    dag_file = write_upload_dag(
        home,
        dag_id,
        tasks[0][0],
        calls,
        between_tries=clear_all,
        between_tries_doc="clear every emulator's faults",
    )
    connections = {
        f"redivis_{i}": redivis_connection(emu.base_url, emu.token, **(conn_extra or CONN_EXTRA))
        for i, (emu, _) in enumerate(tasks)
    }
    return home.dag_test(dag_file, dag_id, connections=connections)


def assert_one_exact_upload(emu: RedivisEmulator, name: str, source: Path) -> None:
    uploads = [u for u in emu.list_uploads(TABLE) if u["name"] == name]
    assert len(uploads) == 1, uploads
    assert uploads[0]["status"] == "completed", uploads[0]
    assert md5_of(emu.upload_bytes_path(TABLE, name)) == md5_of(source)


def drop_everything_after(fraction: float, size: int) -> Fault:
    """Every request to the session from ``fraction`` of the file on is cut, until try 1 has failed."""
    return Fault("reset", origin="session", at_offset=int(size * fraction), times=None)


def _interrupted_resume(
    home: AirflowHome, emu: RedivisEmulator, tmp_path: Path, store: str, transport: str
) -> str:
    size = 20 * CHUNK + 4321
    source = write_source(tmp_path / "sales.csv", size)
    emu.add_fault(drop_everything_after(0.6, size))
    result = run_dag(
        home, emu, operator_kwargs=f"source={str(source)!r}, upload_type='stream'", transport=transport
    )
    assert result.succeeded, result.output[-6000:]
    assert "Resuming Redivis upload session" in result.output
    assert f"of {size}" in result.output
    assert f"Checkpoints for this upload are kept in {store}" in result.output
    assert emu.bytes_received("session") <= size + CHUNK
    assert_one_exact_upload(emu, "sales.csv", source)
    # Nothing secret stays behind: the token is nowhere in the database, the session URL is in no XCom.
    database = home.database_text()
    assert emu.token not in database
    session_url = next(iter(emu.sessions.values())).url
    assert session_url not in repr(home.query("SELECT * FROM xcom"))
    assert emu.token not in result.output
    assert emu.authorization_seen("session") == 0  # the token never went to the session URL's origin
    secret = session_url.split("/upload/resumable/", 1)[1]
    assert secret not in result.output  # the session URL is a credential: never logged whole
    # Progress at a readable pace: bytes, percent, rate and ETA.
    assert re.search(r"Uploaded [\d.]+ of [\d.]+ MiB \(\d+%\) at [\d.]+ MiB/s, ETA", result.output)
    # XCom: the session id and the offset as they advanced, and the upload as the result.
    xcoms = {key: value for key, value in home.query("SELECT key, value FROM xcom")}
    assert set(xcoms) >= {"redivis_session_id", "redivis_offset", "return_value"}
    assert str(size) in str(xcoms["redivis_offset"])
    assert "completed" in str(xcoms["return_value"])
    return result.output


def test_retry_resumes_after_the_network_drops_at_60_percent_airflow3(
    tmp_path: Path, emulator: RedivisEmulator, transport: str
) -> None:
    home = AirflowHome(tmp_path / "airflow")
    _interrupted_resume(home, emulator, tmp_path, "the task state store", transport)
    # The checkpoint is deleted once the upload is done.
    assert home.query("SELECT * FROM task_state_store") == []


def test_retry_resumes_on_airflow2_with_the_variable_store(
    tmp_path: Path, emulator: RedivisEmulator, transport: str
) -> None:
    python = airflow2_python()
    if python is None:
        pytest.skip("set REDIVIS_TEST_AIRFLOW2_PYTHON to an interpreter with Airflow 2.11 (dev/test does)")
    home = AirflowHome(tmp_path / "airflow2", python=python)
    _interrupted_resume(home, emulator, tmp_path, "an Airflow Variable", transport)
    # The fallback Variable is deleted once the upload is done.
    assert home.query("SELECT key FROM variable") == []


# Factories, not Fault objects: a fault counts its matches, so each test needs a fresh one.
NETWORK_FAULTS = {
    "connection reset": lambda: Fault(
        "reset", origin="session", method="PUT", nth=3, after_bytes=CHUNK // 2 + 777
    ),
    "503 on a chunk": lambda: Fault("status", origin="session", method="PUT", nth=3, status=503),
    "308 keeping part": lambda: Fault(
        "partial", origin="session", method="PUT", nth=2, keep_bytes=CHUNK_UNIT
    ),
    "429 with Retry-After": lambda: Fault(
        "status", origin="session", method="PUT", nth=2, status=429, headers={"Retry-After": "1"}
    ),
    "stall past the read timeout": lambda: Fault("stall", origin="session", method="PUT", nth=2, seconds=4.0),
}


def test_network_faults_leave_the_exact_bytes_once(tmp_path: Path, transport: str) -> None:
    """Every fault in one DAG run: an upload task per fault, each against an emulator of its own."""
    size = 6 * CHUNK + 99
    with contextlib.ExitStack() as stack:
        cases = []
        for i, (what, make_fault) in enumerate(NETWORK_FAULTS.items()):
            emu = stack.enter_context(
                RedivisEmulator(tables=[TABLE], data_dir=tmp_path / f"emulator{i}", processing_delay=0.05)
            )
            fault = make_fault()
            emu.add_fault(fault)
            cases.append((what, fault, emu, write_source(tmp_path / f"f{i}.csv", size)))
        result = run_dag_per_emulator(
            AirflowHome(tmp_path / "airflow"),
            [
                (emu, f"source={str(source)!r}, upload_type='stream', transport={transport!r}")
                for _, _, emu, source in cases
            ],
        )
        assert result.succeeded, result.output[-6000:]
        for what, fault, emu, source in cases:
            assert any(fault.kind in r.faults for r in emu.requests), f"the {what} fault never fired"
            assert_one_exact_upload(emu, source.name, source)
            assert emu.bytes_received("session") <= size + CHUNK, what


def test_session_expiring_between_tries_starts_a_new_one(
    tmp_path: Path, emulator: RedivisEmulator, transport: str
) -> None:
    size = 10 * CHUNK
    source = write_source(tmp_path / "g.csv", size)
    emulator.add_fault(drop_everything_after(0.5, size))
    result = run_dag(
        AirflowHome(tmp_path / "airflow"),
        emulator,
        operator_kwargs=f"source={str(source)!r}, upload_type='stream'",
        transport=transport,
        between_tries=EXPIRE_SESSIONS,
    )
    assert result.succeeded, result.output[-6000:]
    assert "Starting a new upload session from byte 0" in result.output
    assert "gone on the server" in result.output
    assert_one_exact_upload(emulator, "g.csv", source)


def test_source_changed_between_tries_is_uploaded_whole_and_new(
    tmp_path: Path, emulator: RedivisEmulator, transport: str
) -> None:
    size = 10 * CHUNK
    source = write_source(tmp_path / "h.csv", size)
    replacement = tmp_path / "replacement.bin"
    replacement.write_bytes(os.urandom(size + 5000))
    rewrite = f"    _admin('DELETE', '/_emulator/faults')\n    import shutil\n    shutil.copyfile({str(replacement)!r}, {str(source)!r})"
    emulator.add_fault(drop_everything_after(0.5, size))
    result = run_dag(
        AirflowHome(tmp_path / "airflow"),
        emulator,
        operator_kwargs=f"source={str(source)!r}, upload_type='stream'",
        transport=transport,
        between_tries=rewrite,
    )
    assert result.succeeded, result.output[-6000:]
    assert "the source changed since the last try" in result.output
    # No splice: the table holds the new file, whole.
    assert_one_exact_upload(emulator, "h.csv", replacement)


def test_unreadable_checkpoint_starts_over_and_says_why(
    tmp_path: Path, emulator: RedivisEmulator, transport: str
) -> None:
    size = 8 * CHUNK
    source = write_source(tmp_path / "k.csv", size)
    # The execution API refuses state-store writes from a retry callback: damage the row in the database.
    damage = """    _admin('DELETE', '/_emulator/faults')
    import os, sqlite3
    path = os.environ['AIRFLOW__DATABASE__SQL_ALCHEMY_CONN'].removeprefix('sqlite:///')
    with sqlite3.connect(path) as db:
        changed = db.execute("UPDATE task_state_store SET value = '{\\"format\\": \\"from the future\\"}'").rowcount
    assert changed == 1, changed"""
    emulator.add_fault(drop_everything_after(0.5, size))
    result = run_dag(
        AirflowHome(tmp_path / "airflow"),
        emulator,
        operator_kwargs=f"source={str(source)!r}, upload_type='stream'",
        transport=transport,
        between_tries=damage,
    )
    assert result.succeeded, result.output[-6000:]
    assert "the checkpoint cannot be read" in result.output
    assert_one_exact_upload(emulator, "k.csv", source)


def test_lost_answer_to_upload_creation_attaches_instead_of_creating_twice(
    tmp_path: Path, emulator: RedivisEmulator, transport: str
) -> None:
    size = 3 * CHUNK + 10
    source = write_source(tmp_path / "i.csv", size)
    emulator.add_fault(Fault("drop_response", origin="api", method="POST", path_contains="/uploads"))
    result = run_dag(
        AirflowHome(tmp_path / "airflow"),
        emulator,
        operator_kwargs=f"source={str(source)!r}, upload_type='stream'",
        transport=transport,
    )
    assert result.succeeded, result.output[-6000:]
    assert "attaching" in result.output
    assert_one_exact_upload(emulator, "i.csv", source)


def test_failed_processing_fails_the_task_with_redivis_message(
    tmp_path: Path, emulator: RedivisEmulator
) -> None:
    source = tmp_path / "j.csv"
    source.write_text("a,b\n1,2\n")
    emulator.add_fault(Fault("fail_processing", message="Row 7 has 3 columns, expected 2"))
    result = run_dag(
        AirflowHome(tmp_path / "airflow"),
        emulator,
        operator_kwargs=f"source={str(source)!r}, has_header_row=True",
    )
    assert not result.succeeded
    assert "Row 7 has 3 columns, expected 2" in result.output
    uploads = emulator.list_uploads(TABLE)
    assert [u["status"] for u in uploads] == ["failed"]


def test_mapped_upload_resumes_only_the_file_that_failed(
    tmp_path: Path, emulator: RedivisEmulator, transport: str
) -> None:
    sizes = {"a.csv": 4 * CHUNK, "b.csv": 12 * CHUNK + 5, "c.csv": 3 * CHUNK + 1}
    sources = {name: write_source(tmp_path / name, size) for name, size in sizes.items()}
    # Only b.csv's session is cut after half its bytes.
    emulator.add_fault(
        Fault(
            "reset",
            origin="session",
            at_offset=6 * CHUNK,
            times=None,
            predicate=lambda request: request.session_size == sizes["b.csv"],
        )
    )
    result = run_dag(
        AirflowHome(tmp_path / "airflow"),
        emulator,
        operator_kwargs="upload_type='stream'",
        transport=transport,
        mapped_sources=[str(p) for p in sources.values()],
    )
    assert result.succeeded, result.output[-6000:]
    for name, path in sources.items():
        assert_one_exact_upload(emulator, name, path)
    assert result.output.count("Resuming Redivis upload session") == 1
    assert emulator.bytes_received("session") <= sum(sizes.values()) + CHUNK


@pytest.mark.parametrize("outcome", ["completed", "failed"])
def test_deferred_wait_for_processing(tmp_path: Path, emulator: RedivisEmulator, outcome: str) -> None:
    """deferrable=True: the operator hands the wait to the trigger and ends with Redivis's verdict."""
    source = tmp_path / "deferred.csv"
    source.write_text("a,b\n" + "".join(f"{i},{i * 2}\n" for i in range(1000)))
    if outcome == "failed":
        emulator.add_fault(Fault("fail_processing", message="Column b is not an integer on row 12"))
    dag_id = f"deferred_{outcome}"
    result = run_dag(
        AirflowHome(tmp_path / "airflow"),
        emulator,
        dag_id=dag_id,
        operator_kwargs=f"source={str(source)!r}, has_header_row=True, deferrable=True, upload_name='deferred.csv'",
    )
    home_output = result.output
    assert "Pausing task as DEFERRED" in home_output
    assert "RedivisUploadTrigger" in home_output
    if outcome == "completed":
        assert result.succeeded, home_output[-6000:]
        assert_one_exact_upload(emulator, "deferred.csv", source)
        assert emulator.list_uploads(TABLE)[0]["numRows"] == 1000
    else:
        assert not result.succeeded
        assert "Column b is not an integer on row 12" in home_output
