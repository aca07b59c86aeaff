"""A new token between tries loses only the sealed session URL: the next try attaches, or resumes through a
new session only when the bytes were still on their way.

The job against the emulator, which accepts both tokens (the old one revoked would change nothing here:
the new try never sends it).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from redivis_emulator import Fault, RedivisEmulator

from airflow_provider_redivis.engine.checkpoint import UploadPhase
from airflow_provider_redivis.errors import RedivisError, UploadInterruptedError
from tests.job_support import TABLE, MemoryStore, hook_for, md5_hex, run_job, write_random

if TYPE_CHECKING:
    from collections.abc import Iterator

OLD, NEW = "old-token", "new-token"
MIB = 1024 * 1024
SIZE = 5 * MIB + 321


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[RedivisEmulator]:
    with RedivisEmulator(tokens=[OLD, NEW], tables=[TABLE], data_dir=tmp_path / "emulator") as emu:
        yield emu


def _one_upload(emu: RedivisEmulator, path: Path) -> dict[str, object]:
    (upload,) = emu.list_uploads(TABLE)
    assert md5_hex(emu.upload_bytes_path(TABLE, str(upload["name"]))) == md5_hex(path)
    return upload


def test_an_upload_created_under_the_old_token_is_attached_to(
    emulator: RedivisEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, store = write_random(tmp_path / "data.csv", SIZE), MemoryStore()
    with hook_for(emulator, monkeypatch, OLD) as hook:
        created = run_job(hook, store, path)  # then the try failed before Airflow had its success
    assert store.value is not None
    assert store.value["phase"] == UploadPhase.CREATED.value

    with hook_for(emulator, monkeypatch, NEW) as hook:
        attached = run_job(hook, store, path)
    assert attached["uri"] == created["uri"]
    assert _one_upload(emulator, path)["uri"] == created["uri"]


def test_a_creation_whose_answer_was_lost_under_the_old_token_is_attached_to(
    emulator: RedivisEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, store = write_random(tmp_path / "data.csv", SIZE), MemoryStore()
    emulator.add_fault(
        Fault("drop_response", origin="api", method="POST", path_contains="/uploads", times=None)
    )
    with hook_for(emulator, monkeypatch, OLD) as hook, pytest.raises(RedivisError, match="lost its answer"):
        run_job(hook, store, path)
    emulator.clear_faults()
    assert store.value is not None
    assert store.value["phase"] == UploadPhase.CREATING.value

    with hook_for(emulator, monkeypatch, NEW) as hook:
        attached = run_job(hook, store, path)
    assert attached["uri"] == _one_upload(emulator, path)["uri"]
    assert len(emulator.sessions) == 1  # nothing sent again


def test_bytes_on_their_way_go_again_through_a_new_session_saying_why(
    emulator: RedivisEmulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    path, store = write_random(tmp_path / "data.csv", SIZE), MemoryStore()
    emulator.add_fault(Fault("reset", origin="session", at_offset=3 * MIB, times=None))
    with hook_for(emulator, monkeypatch, OLD) as hook, pytest.raises(UploadInterruptedError):
        run_job(hook, store, path, chunk_size=MIB)
    emulator.clear_faults()

    caplog.set_level(logging.WARNING, logger="airflow_provider_redivis.engine.job")
    with hook_for(emulator, monkeypatch, NEW) as hook:
        run_job(hook, store, path, chunk_size=MIB)
    assert "sealed with another token" in caplog.text
    assert len(emulator.sessions) == 2
    _one_upload(emulator, path)


def test_bytes_proven_under_the_old_token_are_not_sent_again(
    emulator: RedivisEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, store = write_random(tmp_path / "data.csv", SIZE), MemoryStore()
    # Every byte sent and proven; creating the upload is refused (a 503 outlasting the retries).
    emulator.add_fault(
        Fault("status", origin="api", method="POST", path_contains="/uploads", status=503, times=None)
    )
    with hook_for(emulator, monkeypatch, OLD) as hook, pytest.raises(RedivisError, match="503"):
        run_job(hook, store, path)
    emulator.clear_faults()
    assert store.value is not None
    assert emulator.list_uploads(TABLE) == []
    # As the checkpoint stood between the proof and the first request to create the upload.
    store.value = {**store.value, "phase": UploadPhase.TRANSFERRED.value, "creating_since": None}

    with hook_for(emulator, monkeypatch, NEW) as hook:
        run_job(hook, store, path)
    assert len(emulator.sessions) == 1
    _one_upload(emulator, path)
