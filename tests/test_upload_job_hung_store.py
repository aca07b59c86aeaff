"""A checkpoint store that stops answering mid-transfer: the try ends, bounded and saying why; nothing is lost.

The store's saves from the checkpoint writer's thread hang (a metadata database or API server that
accepts a request and never answers). The transfer goes on regardless; at its end the job waits for
the save in flight only ``save_timeout`` seconds, then fails the try with a message that says what
happened. The next try, with the store answering again, asks Redivis and creates the upload once.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_redivis.engine.job import UploadJob
from airflow_provider_redivis.engine.options import UploadSpec
from airflow_provider_redivis.engine.protocol import CHUNK_UNIT
from airflow_provider_redivis.engine.sources import LocalFileSource
from airflow_provider_redivis.errors import StoreTimeoutError
from tests.job_support import TABLE, MemoryStore, hook_for, md5_hex, run_job, write_random

if TYPE_CHECKING:
    from pathlib import Path

    from redivis_emulator import RedivisEmulator


class HangingStore(MemoryStore):
    """Saves from any thread but the task's own hang until released, while ``hang`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.hang = True
        self.release = threading.Event()
        self.task_thread = threading.get_ident()  # the thread the try runs on: its own saves answer

    def save(self, value: dict[str, Any]) -> None:
        if self.hang and threading.get_ident() != self.task_thread:
            self.release.wait(60)
            return
        super().save(value)


def test_a_hung_checkpoint_save_ends_the_try_and_the_next_creates_the_upload(
    redivis_emulator: RedivisEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    emu, store = redivis_emulator, HangingStore()
    path = write_random(tmp_path / "data.csv", 12 * CHUNK_UNIT + 5)
    spec = UploadSpec(table=TABLE, name="data.csv", chunk_size=CHUNK_UNIT)
    outcome: list[BaseException | dict[str, Any]] = []
    with hook_for(emu, monkeypatch) as hook:
        job = UploadJob(hook, store, spec, LocalFileSource(path), visibility_wait=1.0, save_timeout=0.5)

        def first_try() -> None:
            store.task_thread = threading.get_ident()
            try:
                outcome.append(job.run().upload)
            except BaseException as exc:
                outcome.append(exc)

        task = threading.Thread(target=first_try, daemon=True)
        task.start()
        try:
            task.join(30)
            assert not task.is_alive(), "the try still waits for a store that never answers"
            (error,) = outcome
            assert isinstance(error, StoreTimeoutError), error
            assert "Saving the upload checkpoint did not finish within 0.5 s" in str(error)
            assert "the next try asks Redivis" in str(error)
            assert emu.list_uploads(TABLE) == []  # nothing created on a try that could not save its state
            store.hang = False
            upload = run_job(hook, store, path)
        finally:
            store.release.set()
    (only,) = emu.list_uploads(TABLE)
    assert upload["uri"] == only["uri"]
    assert md5_hex(emu.upload_bytes_path(TABLE, "data.csv")) == md5_hex(path)
