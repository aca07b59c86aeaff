"""What the UploadJob tests share: a checkpoint store in memory, and a hook on the emulator with a short budget.

The job is plain Python: these tests run it against the emulator over HTTP on 127.0.0.1, with the
checkpoint a dict (the stores themselves are tested in real Airflow elsewhere).
"""

from __future__ import annotations

import hashlib
import os
from typing import TYPE_CHECKING, Any

from airflow_provider_redivis.engine.job import UploadJob
from airflow_provider_redivis.engine.options import UploadSpec
from airflow_provider_redivis.engine.retry import RetryPolicy
from airflow_provider_redivis.engine.sources import LocalFileSource
from airflow_provider_redivis.hooks.redivis import RedivisHook

if TYPE_CHECKING:
    from pathlib import Path

    import pytest
    from redivis_emulator import RedivisEmulator

TABLE = "test_owner.test_dataset.test_table"
#: Gives up within a second once the network is gone, so a "try" ends quickly.
FAST = RetryPolicy(max_attempts=2, max_total_seconds=5, initial_wait=0.01, max_wait=0.05)


class MemoryStore:
    """A checkpoint store shared by the tries of one test, as the task state store is by a task's tries."""

    description = "a dict"
    keep_after_last_try = True

    def __init__(self, value: dict[str, Any] | None = None) -> None:
        self.value = value

    def load(self) -> Any:
        return self.value

    def save(self, value: dict[str, Any]) -> None:
        self.value = value

    def delete(self) -> None:
        self.value = None


def hook_for(
    emu: RedivisEmulator,
    monkeypatch: pytest.MonkeyPatch,
    token: str | None = None,
    conn_id: str = "redivis_job",
) -> RedivisHook:
    """A hook on the emulator through an Airflow connection in the environment, with token ``token``."""
    address = emu.base_url.removeprefix("http://")
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", f"redivis://:{token or emu.token}@{address}")
    return RedivisHook(conn_id, retry_policy=FAST)


def run_job(
    hook: RedivisHook, store: MemoryStore, path: Path, *, name: str = "data.csv", **spec: Any
) -> dict[str, Any]:
    """One try of the upload of ``path``: the job's result, or its exception."""
    job = UploadJob(
        hook, store, UploadSpec(table=TABLE, name=name, **spec), LocalFileSource(path), visibility_wait=1.0
    )
    return job.run().upload


def write_random(path: Path, size: int) -> Path:
    path.write_bytes(os.urandom(size))
    return path


def md5_hex(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()
