"""Uploads made in the emulator the way the provider makes them (resumable session, bytes, upload.post).

Shared by the trigger and sensor tests: both wait on uploads that really went through the API.
"""

from __future__ import annotations

import importlib
import json
from typing import TYPE_CHECKING, Any

import requests
from redivis_emulator import RedivisEmulator

from airflow_provider_redivis.hooks.redivis import RedivisHook

if TYPE_CHECKING:
    from collections.abc import Iterator

TABLE = "test_owner.test_dataset.test_table"
CSV = b"id,name\n1,alpha\n2,beta\n3,gamma\n"
#: No retries inside the hook, so that a transient error reaches the code under test.
NO_HOOK_RETRIES = {"max_attempts": 1, "read_timeout": 5, "connect_timeout": 5}


def import_string(classpath: str) -> Any:
    """What the triggerer does with a trigger's classpath."""
    module, _, name = classpath.rpartition(".")
    return getattr(importlib.import_module(module), name)


def connection_json(emu: RedivisEmulator, **extra: Any) -> str:
    conn: dict[str, Any] = {"conn_type": "redivis", "host": emu.base_url, "password": emu.token}
    if extra:
        conn["extra"] = json.dumps(extra)
    return json.dumps(conn)


def create_upload(
    name: str, data: bytes = CSV, table: str = TABLE, conn_id: str = "redivis_setup"
) -> dict[str, Any]:
    """Send ``data`` through a resumable session and create the upload; returns the upload resource."""
    hook = RedivisHook(redivis_conn_id=conn_id)
    session = hook.create_resumable_upload(table, len(data))
    answer = requests.put(
        session["url"],
        data=data,
        headers={"Content-Range": f"bytes 0-{len(data) - 1}/{len(data)}"},
        timeout=10,
    )
    assert answer.status_code in (200, 201), answer.text
    return hook.create_upload(table, name=name, upload_type="delimited", resumable_upload_id=session["id"])


def emulator_fixture(processing_delay: float) -> Any:
    """A function-scoped fixture: an emulator with one table, ``redivis_default`` pointing at it (no hook
    retries) and ``redivis_setup`` (default retries) for the test's own calls."""
    # pytest only here: DAG files under test import this module in an Airflow 2 environment without it.
    import pytest

    @pytest.fixture
    def fixture(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> Iterator[RedivisEmulator]:
        with RedivisEmulator(
            tables=[TABLE], data_dir=tmp_path / "emulator", processing_delay=processing_delay
        ) as emu:
            monkeypatch.setenv("AIRFLOW_CONN_REDIVIS_DEFAULT", connection_json(emu, **NO_HOOK_RETRIES))
            monkeypatch.setenv("AIRFLOW_CONN_REDIVIS_SETUP", connection_json(emu))
            yield emu

    return fixture
