"""Fixtures for the SQL transfer: a PostgreSQL cluster of the session, SQLite files, a task context."""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.transfers.postgres_cluster import PostgresCluster, find_pg_bin


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    """Skips only when PostgreSQL's binaries are absent (dev/test turns that skip into a failure)."""
    bin_dir = find_pg_bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    cluster = PostgresCluster(bin_dir).start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def pg_conn(postgres: PostgresCluster, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("AIRFLOW_CONN_PG_TEST", json.dumps(postgres.airflow_connection()))
    return "pg_test"


@pytest.fixture
def sqlite_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "source.db"
    sqlite3.connect(path).close()
    monkeypatch.setenv("AIRFLOW_CONN_LITE_TEST", json.dumps({"conn_type": "sqlite", "host": str(path)}))
    return path


@dataclass
class FakeTI:
    task_id: str = "to_redivis"
    dag_id: str = "sql_dag"
    run_id: str = "manual__2026-12-02T00:00:00+00:00"
    map_index: int = -1
    try_number: int = 1
    xcoms: dict[str, Any] = field(default_factory=dict)

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcoms[key] = value


class DictStateStore:
    """Airflow 3.3's task state store, in memory: shared by every 'try' given the same instance."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def set(self, key: str, value: Any, *, retention: Any = None) -> None:
        self.values[key] = json.loads(json.dumps(value))

    def delete(self, key: str) -> None:
        self.values.pop(key, None)


@pytest.fixture
def task_context(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "tmp"))
    os.makedirs(tmp_path / "tmp", exist_ok=True)
    return {"ti": FakeTI(), "task_state_store": DictStateStore()}


@pytest.fixture
def redivis_conn(redivis_emulator: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    conn = {
        "conn_type": "redivis",
        "host": redivis_emulator.base_url,
        "password": redivis_emulator.token,
        "extra": {"max_attempts": 3, "max_retry_seconds": 10, "read_timeout": 5, "connect_timeout": 2},
    }
    monkeypatch.setenv("AIRFLOW_CONN_REDIVIS_DEFAULT", json.dumps(conn))
    return redivis_emulator
