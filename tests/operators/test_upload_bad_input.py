"""Bad input gets a clear error and costs nothing: no session opened, no byte sent, no upload created.

Construction-time checks run without Airflow's database; execution-time ones run in real Airflow
(``dag.test()``), several failing tasks in one DAG run.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import requests
from redivis_emulator import ALL_SCOPES, RedivisEmulator

from airflow_provider_redivis.errors import RedivisConfigError
from airflow_provider_redivis.operators.upload import RedivisResumableUploadOperator
from tests.airflow.harness import AirflowHome, redivis_connection

TABLE = "test_owner.test_dataset.test_table"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"table": "not-a-table"}, "is not a Redivis table reference"),
        ({"table": "owner.dataset"}, "is not a Redivis table reference"),
        ({"table": ""}, "non-empty string"),
        ({"chunk_size": 1000}, "multiple of 256 KiB"),
        ({"chunk_size": 3 * 1024**3}, "between 256 KiB and 1 GiB"),
        ({"chunk_size": 0}, "multiple of 256 KiB"),
        ({"upload_type": "excel97"}, "is not a Redivis upload type"),
        ({"upload_name": "a/b.csv"}, "slash or a control character"),
        ({"upload_name": "bad\nname.csv"}, "slash or a control character"),
        ({"upload_name": "x" * 300}, "at most 255"),
        ({"upload_name": "  "}, "non-empty string"),
        ({"if_exists": "overwrite"}, "if_exists must be one of"),
        ({"poll_interval": 0}, "must be positive"),
        ({"delimiter": "||"}, "delimiter must be one character"),
        ({"metadata": "{'a': 1}"}, "metadata must be a mapping of variable names"),
        ({"has_header_row": "yes"}, "has_header_row must be True, False or None"),
    ],
)
def test_bad_arguments_fail_when_the_dag_is_parsed(kwargs: dict[str, object], message: str) -> None:
    arguments: dict[str, object] = {"task_id": "upload", "source": "/data/x.csv", "table": TABLE, **kwargs}
    with pytest.raises(RedivisConfigError, match=message):
        RedivisResumableUploadOperator(**arguments)  # type: ignore[arg-type]


def test_templated_table_is_checked_when_it_renders() -> None:
    op = RedivisResumableUploadOperator(task_id="upload", source="/x.csv", table="{{ params.table }}")
    assert op.table == "{{ params.table }}"


def test_templated_options_are_checked_when_they_render() -> None:
    op = RedivisResumableUploadOperator(
        task_id="upload",
        source="/x.csv",
        table=TABLE,
        metadata="{{ params.meta }}",
        delimiter="{{ params.d }}",
    )
    assert (op.metadata, op.delimiter) == ("{{ params.meta }}", "{{ params.d }}")


OPTIONS_DAG = """
from __future__ import annotations

from datetime import datetime, timedelta

from airflow.providers.common.compat.sdk import DAG
from airflow_provider_redivis.operators.upload import RedivisResumableUploadOperator

PARAMS = {{"meta": {{"a": {{"label": "Column A"}}}}, "delimiter": "||"}}

with DAG(dag_id="upload_options", schedule=None, start_date=datetime(2026, 1, 1), catchup=False, params=PARAMS) as dag:
    common = dict(source={source!r}, table={table!r}, retries=2, retry_delay=timedelta(seconds=0))
    # A dict rendered by a template is Python text, not JSON.
    RedivisResumableUploadOperator(
        task_id="metadata_as_python_text", upload_name="m.csv", metadata="{{{{ params.meta }}}}", **common
    )
    RedivisResumableUploadOperator(
        task_id="two_character_delimiter", upload_name="d.csv", delimiter="{{{{ params.delimiter }}}}", **common
    )
    RedivisResumableUploadOperator(
        task_id="metadata_as_json", upload_name="j.csv", metadata="{{{{ params.meta | tojson }}}}", **common
    )
"""


@pytest.mark.airflow
@pytest.mark.slow
def test_upload_options_are_checked_rendered_before_the_first_byte(tmp_path: Path) -> None:
    """A rendered option Redivis would refuse fails the task at once, naming it, with nothing sent; a
    template that renders JSON text (``| tojson``) goes to Redivis as the object it stands for."""
    source = tmp_path / "rows.csv"
    source.write_bytes(b"a,b\n1,2\n" * 1000)
    with RedivisEmulator(tables=[TABLE], data_dir=tmp_path / "emulator") as emu:
        home = AirflowHome(tmp_path / "airflow")
        dag_file = home.write_dag("upload_options", OPTIONS_DAG.format(source=str(source), table=TABLE))
        result = home.dag_test(
            dag_file,
            "upload_options",
            connections={"redivis_default": redivis_connection(emu.base_url, emu.token)},
        )
        assert not result.succeeded
        assert "metadata must be a mapping of variable names to their metadata" in result.output
        assert "end it with '| tojson'" in result.output
        assert "delimiter must be one character" in result.output
        tries = dict(home.query("SELECT task_id, try_number FROM task_instance WHERE state = 'failed'"))
        assert tries == {
            "metadata_as_python_text": 1,
            "two_character_delimiter": 1,
        }  # no retry: it cannot help
        # Only the task whose options are good asked for a session and sent bytes, once.
        sessions = [r for r in emu.requests if r.path.endswith("/resumableUpload")]
        assert len(sessions) == 1
        assert emu.bytes_received("session") == source.stat().st_size
        (upload,) = emu.list_uploads(TABLE)
        assert (upload["name"], upload["metadata"]) == ("j.csv", {"a": {"label": "Column A"}})


BAD_INPUT_DAG = """
from __future__ import annotations

from datetime import datetime

from airflow.providers.common.compat.sdk import DAG
from airflow_provider_redivis.operators.upload import RedivisResumableUploadOperator

CASES = {cases!r}

with DAG(dag_id="bad_input", schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
    for task_id, kwargs in CASES.items():
        RedivisResumableUploadOperator(task_id=task_id, upload_type="stream", retries=2, **kwargs)
"""


@pytest.mark.airflow
@pytest.mark.slow
def test_bad_input_at_run_time_fails_fast_and_sends_nothing(tmp_path: Path) -> None:
    good = tmp_path / "good.csv"
    good.write_bytes(b"a,b\n1,2\n")
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    cases = {
        "missing_file": ({"source": str(tmp_path / "nope.csv"), "table": TABLE}, "does not exist"),
        "directory": ({"source": str(tmp_path), "table": TABLE}, "is a directory"),
        "fifo": ({"source": str(fifo), "table": TABLE}, "not a regular file"),
        "empty_file": ({"source": str(empty), "table": TABLE}, "is empty"),
        "unknown_table": ({"source": str(good), "table": "test_owner.test_dataset.no_such_table"}, "404"),
        "released_version": (
            {"source": str(good), "table": "test_owner.released_ds:current.t"},
            "is released and cannot change",
        ),
        "name_conflict": (
            {"source": str(good), "table": TABLE, "upload_name": "exists.csv"},
            "already has an upload",
        ),
        "no_data_edit": (
            {"source": str(good), "table": TABLE, "redivis_conn_id": "redivis_readonly"},
            "data.edit",
        ),
    }
    with RedivisEmulator(
        tokens={"test-token": ALL_SCOPES, "readonly-token": ["data.overview", "data.metadata"]},
        tables=[TABLE, "test_owner.released_ds.t"],
        data_dir=tmp_path / "emulator",
    ) as emu:
        release_next_version(emu, "test_owner.released_ds")
        create_upload(emu, TABLE, "exists.csv", b"a,b\n1,2\n")
        sessions_before, received_before = len(emu.sessions), emu.bytes_received("session")
        home = AirflowHome(tmp_path / "airflow")
        dag_file = home.write_dag(
            "bad_input", BAD_INPUT_DAG.format(cases={k: v[0] for k, v in cases.items()})
        )
        result = home.dag_test(
            dag_file,
            "bad_input",
            connections={
                "redivis_default": redivis_connection(emu.base_url, "test-token"),
                "redivis_readonly": redivis_connection(emu.base_url, "readonly-token"),
            },
        )
        assert not result.succeeded
        for task_id, (_kwargs, message) in cases.items():
            assert message in result.output, f"{task_id}: expected {message!r} in the task log"
        # Failed for good on the first try (retries=2): asking again would meet the same answer.
        refused = [
            r
            for r in emu.requests
            if r.origin == "api" and r.path.endswith("/resumableUpload") and r.status != 200
        ]
        assert len(refused) == 3, [
            (r.path, r.status) for r in refused
        ]  # unknown table, released, no data.edit
        assert emu.bytes_received("session") == received_before
        assert [u["name"] for u in emu.list_uploads(TABLE)] == ["exists.csv"]
        assert len(emu.sessions) == sessions_before


def api(emu: RedivisEmulator, method: str, path: str, **kwargs: object) -> requests.Response:
    response = requests.request(
        method,
        f"{emu.base_url}/api/v1{path}",
        headers={"Authorization": f"Bearer {emu.token}"},
        timeout=10,
        **kwargs,
    )
    response.raise_for_status()
    return response


def release_next_version(emu: RedivisEmulator, dataset: str) -> None:
    api(emu, "POST", f"/datasets/{dataset}/versions/next/release", json={"releaseNotes": "for the test"})
    deadline = time.monotonic() + 20
    url = f"{emu.base_url}/api/v1/datasets/{dataset}/versions/current"
    headers = {"Authorization": f"Bearer {emu.token}"}
    while requests.get(url, headers=headers, timeout=10).status_code != 200:  # 404 until released
        assert time.monotonic() < deadline, "the emulator did not release the version"
        time.sleep(0.05)


def create_upload(emu: RedivisEmulator, table: str, name: str, data: bytes) -> None:
    session = api(emu, "POST", f"/tables/{table}/resumableUpload", params={"size": len(data)}).json()
    requests.put(
        session["url"],
        data=data,
        headers={"Content-Range": f"bytes 0-{len(data) - 1}/{len(data)}"},
        timeout=10,
    )
    api(
        emu,
        "POST",
        f"/tables/{table}/uploads",
        json={"name": name, "type": "delimited", "resumableUploadId": session["id"]},
    )
