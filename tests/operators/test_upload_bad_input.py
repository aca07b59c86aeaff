"""Bad input gets a clear error and costs nothing: no session opened, no byte sent, no upload created.

Construction-time checks run without Airflow's database; execution-time ones run in real Airflow
(``dag.test()``), several failing tasks in one DAG run.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from airflow_provider_redivis.emulator import ALL_SCOPES, RedivisEmulator
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
    ],
)
def test_bad_arguments_fail_when_the_dag_is_parsed(kwargs: dict[str, object], message: str) -> None:
    arguments: dict[str, object] = {"task_id": "upload", "source": "/data/x.csv", "table": TABLE, **kwargs}
    with pytest.raises(RedivisConfigError, match=message):
        RedivisResumableUploadOperator(**arguments)  # type: ignore[arg-type]


def test_templated_table_is_checked_when_it_renders() -> None:
    op = RedivisResumableUploadOperator(task_id="upload", source="/x.csv", table="{{ params.table }}")
    assert op.table == "{{ params.table }}"


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
        "no_data_edit": (
            {"source": str(good), "table": TABLE, "redivis_conn_id": "redivis_readonly"},
            "data.edit",
        ),
    }
    with RedivisEmulator(
        tokens={"test-token": ALL_SCOPES, "readonly-token": ["data.overview", "data.metadata"]},
        tables=[TABLE],
        data_dir=tmp_path / "emulator",
    ) as emu:
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
        refused = [r for r in emu.requests if r.origin == "api" and r.path.endswith("/resumableUpload")]
        assert len(refused) == 2, [(r.path, r.status) for r in refused]
        assert emu.bytes_received("session") == 0
        assert emu.list_uploads(TABLE) == []
        assert emu.sessions == {}
