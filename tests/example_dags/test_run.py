"""The example DAGs, unchanged, in real Airflow (``dag.test()``, a migrated metadata database) against the emulator.

Each test copies an example DAG file into a fresh AIRFLOW_HOME, points it at the emulator with the
``REDIVIS_EXAMPLE_*`` variables and the ``redivis_default`` connection, runs it, and then asks the
emulator what it holds: every upload completed with the source's exact bytes, the version released.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from redivis_emulator import RedivisEmulator

from dev.demo import write_csv
from tests.airflow.harness import REPO, AirflowHome, airflow2_python, redivis_connection
from tests.airflow.marking import airflow_starting, starts_airflow

pytestmark = [pytest.mark.airflow, pytest.mark.slow]

EXAMPLE_DAGS = REPO / "example_dags"
DATASET = "demo_owner.demo_dataset"
TABLE_NAME = "daily_sales"
TABLE = f"{DATASET}.{TABLE_NAME}"
MIB = 2**20


def md5_of(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def data_rows(path: Path) -> int:
    return path.read_bytes().count(b"\n") - 1  # minus the header


@pytest.fixture
def emulator(tmp_path: Path):
    with RedivisEmulator(data_dir=tmp_path / "emulator", processing_delay=0.05) as emu:
        yield emu


def install_example(home: AirflowHome, file_name: str, replacements: dict[str, str] | None = None) -> Path:
    """Copy an example DAG into the DAGs folder, with literal ``replacements`` (each must be found)."""
    source = (EXAMPLE_DAGS / file_name).read_text()
    for old, new in (replacements or {}).items():
        assert old in source, f"{file_name} no longer contains {old!r}"
        source = source.replace(old, new)
    target = home.dags / file_name
    target.write_text(source)
    return target


def run_example(
    home: AirflowHome, emu: RedivisEmulator, dag_file: Path, dag_id: str, **env: str
) -> tuple[bool, str]:
    connection = redivis_connection(emu.base_url, emu.token, max_attempts=3, read_timeout=30)
    result = home.dag_test(dag_file, dag_id, connections={"redivis_default": connection}, timeout=360, **env)
    assert emu.token not in result.output
    return result.succeeded, result.output


def released_version(emu: RedivisEmulator) -> dict | None:
    response = requests.get(
        f"{emu.base_url}/api/v1/datasets/{DATASET}/versions/current",
        headers={"Authorization": f"Bearer {emu.token}"},
        timeout=10,
    )
    return response.json() if response.status_code == 200 else None


def day_files(folder: Path, sizes: dict[str, int], seed: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return [write_csv(folder / name, size, seed + i) for i, (name, size) in enumerate(sizes.items())]


def assert_uploaded_exactly(emu: RedivisEmulator, files: list[Path]) -> None:
    uploads = {u["name"]: u for u in emu.list_uploads(TABLE)}
    assert sorted(uploads) == sorted(p.name for p in files)
    for path in files:
        assert uploads[path.name]["status"] == "completed", uploads[path.name]
        assert md5_of(emu.upload_bytes_path(TABLE, path.name)) == md5_of(path), path.name


def airflow_interpreters() -> list:
    return [
        pytest.param(sys.executable, id="airflow3"),
        pytest.param(
            airflow2_python(),
            id="airflow2",
            marks=pytest.mark.skipif(
                airflow2_python() is None,
                reason="set REDIVIS_TEST_AIRFLOW2_PYTHON to an interpreter with Airflow 2.11 (dev/test does)",
            ),
        ),
    ]


@pytest.mark.parametrize("python", airflow_interpreters())
def test_daily_load_uploads_every_file_waits_and_releases(
    tmp_path: Path, emulator: RedivisEmulator, python: str
) -> None:
    emulator.create_table(TABLE, merge_strategy="replace")
    # One file of two 16 MiB chunks, and two small ones: three mapped uploads, three deferred waits.
    files = day_files(
        tmp_path / "incoming", {"a_sales.csv": 17 * MIB, "b_sales.csv": 300 * 1024, "c_sales.csv": 2048}
    )
    home = AirflowHome(tmp_path / "airflow", python=python)
    ok, output = run_example(
        home,
        emulator,
        install_example(home, "redivis_daily_load.py"),
        "redivis_daily_load",
        REDIVIS_EXAMPLE_DATASET=DATASET,
        REDIVIS_EXAMPLE_TABLE=TABLE_NAME,
        REDIVIS_EXAMPLE_FILES_DIR=str(tmp_path / "incoming"),
    )
    assert ok, output[-8000:]
    assert_uploaded_exactly(emulator, files)
    # No fault: every byte crossed once.
    assert emulator.bytes_received("session") == sum(p.stat().st_size for p in files)
    version = released_version(emulator)
    assert version is not None
    assert version["isReleased"] is True
    assert emulator.get_table(TABLE)["uploadMergeStrategy"] == "replace"
    # Redivis parsed every row of every file (header excluded).
    uploads = {u["name"]: u for u in emulator.list_uploads(TABLE)}
    assert {name: int(u["numRows"]) for name, u in uploads.items()} == {p.name: data_rows(p) for p in files}


def test_daily_reload_on_the_next_day_replaces_rather_than_doubles(
    tmp_path: Path, emulator: RedivisEmulator
) -> None:
    emulator.create_table(TABLE, merge_strategy="replace")
    incoming = tmp_path / "incoming"
    home = AirflowHome(tmp_path / "airflow")
    dag_file = install_example(home, "redivis_daily_load.py")
    env = {
        "REDIVIS_EXAMPLE_DATASET": DATASET,
        "REDIVIS_EXAMPLE_TABLE": TABLE_NAME,
        "REDIVIS_EXAMPLE_FILES_DIR": str(incoming),
    }
    day_files(incoming, {"full_export.csv": 200 * 1024}, seed=1)
    ok, output = run_example(home, emulator, dag_file, "redivis_daily_load", **env)
    assert ok, output[-8000:]

    # The next day's full export: same name, more rows. A second version, the same table.
    second = day_files(incoming, {"full_export.csv": 260 * 1024}, seed=2)
    ok, output = run_example(home, emulator, dag_file, "redivis_daily_load", **env)
    assert ok, output[-8000:]
    version = released_version(emulator)
    assert version is not None
    assert version["tag"] != "v1.0", version
    # replace: the table holds the day's export once, not both days' rows.
    assert emulator.get_table(TABLE)["numRows"] == data_rows(second[0])


def test_daily_load_refuses_an_append_table_before_sending_anything(
    tmp_path: Path, emulator: RedivisEmulator
) -> None:
    emulator.create_table(TABLE, merge_strategy="append")
    day_files(tmp_path / "incoming", {"full_export.csv": 4096})
    home = AirflowHome(tmp_path / "airflow")
    ok, output = run_example(
        home,
        emulator,
        install_example(home, "redivis_daily_load.py"),
        "redivis_daily_load",
        REDIVIS_EXAMPLE_DATASET=DATASET,
        REDIVIS_EXAMPLE_TABLE=TABLE_NAME,
        REDIVIS_EXAMPLE_FILES_DIR=str(tmp_path / "incoming"),
    )
    assert not ok
    assert "doubles its rows" in output
    assert emulator.list_uploads(TABLE) == []
    assert emulator.bytes_received("session") == 0
    assert released_version(emulator) is None


def test_object_storage_example_uploads_from_an_object_storage_path(
    tmp_path: Path, emulator: RedivisEmulator
) -> None:
    emulator.create_table(TABLE)
    (source,) = day_files(tmp_path / "bucket", {"sales.csv": 3 * MIB})
    home = AirflowHome(tmp_path / "airflow")
    ok, output = run_example(
        home,
        emulator,
        install_example(home, "redivis_upload_from_object_storage.py"),
        "redivis_upload_from_object_storage",
        REDIVIS_EXAMPLE_DATASET=DATASET,
        REDIVIS_EXAMPLE_TABLE=TABLE_NAME,
        REDIVIS_EXAMPLE_SOURCE_URL=source.as_uri(),
    )
    assert ok, output[-8000:]
    assert_uploaded_exactly(emulator, [source])


def test_minimal_example_uploads_its_file(tmp_path: Path, emulator: RedivisEmulator) -> None:
    emulator.create_table(TABLE)
    (source,) = day_files(tmp_path / "exports", {"sales.csv": 100 * 1024})
    home = AirflowHome(tmp_path / "airflow")
    dag_file = install_example(home, "redivis_minimal_upload.py", {"/data/exports/sales.csv": str(source)})
    ok, output = run_example(home, emulator, dag_file, "redivis_minimal_upload")
    assert ok, output[-8000:]
    assert_uploaded_exactly(emulator, [source])


@starts_airflow
def run_demo(tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """``./dev/demo`` without the venv setup: the same script, in this interpreter (it migrates a metadata
    database and runs the daily-load DAG with ``dag.test()``)."""
    airflow_starting("dev/demo.py")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PYTEST"))}
    env.update(TMPDIR=str(tmp_path), PYTHONPATH=str(REPO), NO_PROXY="*")
    return subprocess.run(
        [sys.executable, str(REPO / "dev" / "demo.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=tmp_path,
    )


def test_demo_resumes_after_the_network_cut_and_releases(tmp_path: Path) -> None:
    proc = run_demo(tmp_path)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-8000:]
    assert "Resuming Redivis upload session" in output
    assert "whole 256 KiB units" in output  # why the resume byte is not the cut byte
    assert "try 1 failed: Airflow retries it" in output
    assert "3 of 3 completed; stored bytes match the sources (md5)" in output
    assert "released (" in output
    assert "Demo passed" in output
    # On success the demo removes what it wrote.
    assert not any(tmp_path.glob("redivis-demo-*"))
