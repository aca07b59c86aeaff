"""Creating the upload after a lost answer, an expired session or a deleted upload: the job against the emulator.

A try whose request to create the upload lost its answer leaves the checkpoint in ``creating``; the
next try must find that upload and attach to it when it is provably this session's, and must never
adopt one that is not.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

import pytest
from redivis_emulator import Fault

from airflow_provider_redivis.engine import creation
from airflow_provider_redivis.engine.checkpoint import UploadPhase
from airflow_provider_redivis.errors import RedivisError, is_final
from tests.job_support import TABLE, MemoryStore, hook_for, md5_hex, run_job, write_random

if TYPE_CHECKING:
    from pathlib import Path

    from redivis_emulator import RedivisEmulator

    from airflow_provider_redivis.hooks.redivis import RedivisHook

SIZE = 3 * 1024 * 1024 + 17


def lose_every_answer_to_creating(
    emu: RedivisEmulator, hook: RedivisHook, store: MemoryStore, path: Path
) -> None:
    """A try whose every request to create the upload was handled by Redivis but lost its answer."""
    emu.add_fault(Fault("drop_response", origin="api", method="POST", path_contains="/uploads", times=None))
    with pytest.raises(RedivisError, match="lost its answer"):
        run_job(hook, store, path)
    emu.clear_faults()
    assert store.value is not None
    assert store.value["phase"] == UploadPhase.CREATING.value
    assert len(emu.list_uploads(TABLE)) == 1  # the first request created it


def test_a_worker_clock_minutes_ahead_still_attaches_to_the_upload_redivis_names(
    redivis_emulator: RedivisEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Ahead(datetime):
        @classmethod
        def now(cls, tz: object = None) -> datetime:  # type: ignore[override]
            return datetime.now(timezone.utc) + timedelta(minutes=5)

    monkeypatch.setattr(creation, "datetime", Ahead)  # the worker's clock, 5 minutes fast
    emu, store = redivis_emulator, MemoryStore()
    path = write_random(tmp_path / "data.csv", SIZE)
    with hook_for(emu, monkeypatch) as hook:
        lose_every_answer_to_creating(emu, hook, store, path)
        upload = run_job(hook, store, path)  # Redivis answers "already used by upload N"
    (only,) = emu.list_uploads(TABLE)
    assert upload["uri"] == only["uri"]
    assert store.value is not None
    assert store.value["phase"] == UploadPhase.CREATED.value
    assert md5_hex(emu.upload_bytes_path(TABLE, "data.csv")) == md5_hex(path)


def refuse_every_request_to_create(
    emu: RedivisEmulator, hook: RedivisHook, store: MemoryStore, path: Path
) -> None:
    """A try whose requests to create the upload were all refused (503): nothing was created."""
    emu.add_fault(
        Fault("status", origin="api", method="POST", path_contains="/uploads", status=503, times=None)
    )
    with pytest.raises(RedivisError, match="503"):
        run_job(hook, store, path)
    emu.clear_faults()
    assert store.value is not None
    assert store.value["phase"] == UploadPhase.CREATING.value
    assert emu.list_uploads(TABLE) == []


def expire_the_session(emu: RedivisEmulator, store: MemoryStore) -> None:
    assert store.value is not None
    emu.expire_session(store.value["session_id"])


def test_a_create_asked_again_after_the_session_expired_attaches_to_its_upload(
    redivis_emulator: RedivisEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    emu, store = redivis_emulator, MemoryStore()
    path = write_random(tmp_path / "data.csv", SIZE)
    with hook_for(emu, monkeypatch) as hook:
        lose_every_answer_to_creating(emu, hook, store, path)
        expire_the_session(emu, store)  # Redivis now answers 400 "expired", not "already used"
        upload = run_job(hook, store, path)
    (only,) = emu.list_uploads(TABLE)
    assert upload["uri"] == only["uri"]
    assert len(emu.sessions) == 1  # nothing sent again
    assert md5_hex(emu.upload_bytes_path(TABLE, "data.csv")) == md5_hex(path)


def test_a_session_that_expired_before_its_upload_was_made_is_sent_again(
    redivis_emulator: RedivisEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    emu, store = redivis_emulator, MemoryStore()
    path = write_random(tmp_path / "data.csv", SIZE)
    with hook_for(emu, monkeypatch) as hook:
        refuse_every_request_to_create(emu, hook, store, path)
        expire_the_session(emu, store)
        upload = run_job(hook, store, path)
    assert len(emu.sessions) == 2  # a new session, in the same try
    (only,) = emu.list_uploads(TABLE)
    assert upload["uri"] == only["uri"]
    assert md5_hex(emu.upload_bytes_path(TABLE, "data.csv")) == md5_hex(path)


def test_after_expiry_another_tasks_upload_under_the_name_is_never_adopted(
    redivis_emulator: RedivisEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    emu, store = redivis_emulator, MemoryStore()
    path = write_random(tmp_path / "data.csv", SIZE)
    (tmp_path / "other").mkdir()
    other = write_random(tmp_path / "other" / "data.csv", SIZE)  # same name and size, other bytes
    with hook_for(emu, monkeypatch) as hook:
        lose_every_answer_to_creating(emu, hook, store, path)
        (ours,) = emu.list_uploads(TABLE)
        hook.delete_upload(ours["uri"])  # someone deleted it since
        theirs = run_job(hook, MemoryStore(), other)  # another task takes the name
        expire_the_session(emu, store)
        with pytest.raises(RedivisError, match="did not create"):
            run_job(hook, store, path)
    (only,) = emu.list_uploads(TABLE)
    assert only["uri"] == theirs["uri"]
    assert md5_hex(emu.upload_bytes_path(TABLE, "data.csv")) == md5_hex(other)
    assert store.value is None  # clearing the task starts clean


def test_an_upload_deleted_while_being_created_ends_the_checkpoint(
    redivis_emulator: RedivisEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    emu, store = redivis_emulator, MemoryStore()
    path = write_random(tmp_path / "data.csv", SIZE)
    with hook_for(emu, monkeypatch) as hook:
        lose_every_answer_to_creating(emu, hook, store, path)
        (ours,) = emu.list_uploads(TABLE)
        hook.delete_upload(ours["uri"])
        # Redivis still says "already used by upload N", and N is gone: this try fails, saying why ...
        with pytest.raises(RedivisError) as failed:
            run_job(hook, store, path)
        assert store.value is None  # ... the checkpoint ends ...
        assert not is_final(failed.value)  # ... and Airflow's retry ...
        assert "was it deleted" in str(failed.value)
        upload = run_job(hook, store, path)  # ... starts clean
    assert len(emu.sessions) == 2  # through a new session
    (only,) = emu.list_uploads(TABLE)
    assert upload["uri"] == only["uri"]
    assert md5_hex(emu.upload_bytes_path(TABLE, "data.csv")) == md5_hex(path)


def test_an_upload_deleted_after_it_was_created_ends_the_checkpoint(
    redivis_emulator: RedivisEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    emu, store = redivis_emulator, MemoryStore()
    path = write_random(tmp_path / "data.csv", SIZE)
    with hook_for(emu, monkeypatch) as hook:
        created = run_job(hook, store, path)  # the try then failed before Airflow had its success
        assert store.value is not None
        assert store.value["phase"] == UploadPhase.CREATED.value
        hook.delete_upload(created["uri"])
        with pytest.raises(RedivisError) as failed:
            run_job(hook, store, path)
        assert store.value is None
        assert not is_final(failed.value)
        assert "was it deleted" in str(failed.value)
        upload = run_job(hook, store, path)
    (only,) = emu.list_uploads(TABLE)
    assert upload["uri"] == only["uri"] != created["uri"]
    assert md5_hex(emu.upload_bytes_path(TABLE, "data.csv")) == md5_hex(path)


def redivis_leaves_null(emu: RedivisEmulator, *fields: str) -> None:
    """From now on the upload under the name reads as Redivis may show a queued one: ``fields`` null."""
    resource = {**emu.get_upload(TABLE, "data.csv"), **dict.fromkeys(fields)}
    emu.add_fault(
        Fault(
            "status",
            origin="api",
            method="GET",
            path_contains="/uploads/data_csv",
            status=200,
            body=resource,
            times=None,
        )
    )


def test_an_upload_redivis_names_is_attached_to_with_size_and_hash_null(
    redivis_emulator: RedivisEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    emu, store = redivis_emulator, MemoryStore()
    path = write_random(tmp_path / "data.csv", SIZE)
    with hook_for(emu, monkeypatch) as hook:
        lose_every_answer_to_creating(emu, hook, store, path)
        redivis_leaves_null(emu, "size", "numBytes", "hash")
        upload = run_job(hook, store, path)  # "already used by upload N", and N is under the name
    (only,) = emu.list_uploads(TABLE)
    assert upload["uri"] == only["uri"]
    assert upload["size"] is None  # what the job saw


def test_an_upload_tied_by_its_md5_is_attached_to_with_size_null(
    redivis_emulator: RedivisEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    emu, store = redivis_emulator, MemoryStore()
    path = write_random(tmp_path / "data.csv", SIZE)
    with hook_for(emu, monkeypatch) as hook:
        lose_every_answer_to_creating(emu, hook, store, path)
        redivis_leaves_null(emu, "size", "numBytes")
        expire_the_session(emu, store)  # Redivis answers "expired": it names no upload
        upload = run_job(hook, store, path)
    (only,) = emu.list_uploads(TABLE)
    assert upload["uri"] == only["uri"]


def test_another_tasks_upload_of_the_same_size_is_not_adopted_when_its_hash_is_null(
    redivis_emulator: RedivisEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    emu, store = redivis_emulator, MemoryStore()
    path = write_random(tmp_path / "data.csv", SIZE)
    (tmp_path / "other").mkdir()
    other = write_random(tmp_path / "other" / "data.csv", SIZE)  # same name and size, other bytes
    with hook_for(emu, monkeypatch) as hook:
        refuse_every_request_to_create(emu, hook, store, path)  # this session made no upload
        theirs = run_job(hook, MemoryStore(), other)  # another task takes the name, after this session asked
        redivis_leaves_null(emu, "hash")
        expire_the_session(emu, store)
        with pytest.raises(RedivisError) as failed:
            run_job(hook, store, path)
    assert "nothing ties it to this task's session" in str(failed.value)
    assert "upload_name" in str(failed.value)
    assert not is_final(failed.value)  # the next try asks again
    assert store.value is not None
    assert store.value["phase"] == UploadPhase.CREATING.value  # not attached: no upload uri taken
    (only,) = emu.list_uploads(TABLE)
    assert only["uri"] == theirs["uri"]
    assert md5_hex(emu.upload_bytes_path(TABLE, "data.csv")) == md5_hex(other)
