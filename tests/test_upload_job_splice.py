"""``checksum=None`` never splices: bytes an earlier try sent are proven by a hash of the whole object.

The fingerprint (size, mtime, first and last MiB) cannot see a change in the middle of a file that keeps
its mtime. A resumed try re-hashes the source as it is now, states the hash on its last request, and
compares it with the server's: a splice of two versions is refused, and the next try starts over.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pytest
from redivis_emulator import Fault

from airflow_provider_redivis.engine.sources import FINGERPRINT_SPAN, LocalFileSource
from airflow_provider_redivis.errors import UploadIntegrityError, UploadInterruptedError
from tests.job_support import TABLE, MemoryStore, hook_for, md5_hex, run_job, write_random

if TYPE_CHECKING:
    from pathlib import Path

    from redivis_emulator import RedivisEmulator

    from airflow_provider_redivis.hooks.redivis import RedivisHook

MIB = 1024 * 1024
SIZE = 6 * MIB + 12345
CUT_AT = int(SIZE * 0.6)


def _first_try_cut_at_60_percent(
    emu: RedivisEmulator, hook: RedivisHook, store: MemoryStore, path: Path
) -> int:
    emu.add_fault(Fault("reset", origin="session", at_offset=CUT_AT, times=None))
    with pytest.raises(UploadInterruptedError):
        run_job(hook, store, path, checksum=None, chunk_size=MIB)
    emu.clear_faults()
    (info,) = emu.sessions.values()
    assert 2 * MIB < info.held < SIZE  # the earlier try left bytes for the next to resume from
    return int(info.held)


def _change_the_middle_keeping_the_fingerprint(path: Path) -> None:
    before = LocalFileSource(path).fingerprint()
    stat = os.stat(path)
    with open(path, "r+b") as fh:
        fh.seek(2 * MIB)
        old = fh.read(100)
        fh.seek(2 * MIB)
        fh.write(bytes(b ^ 0xFF for b in old))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert LocalFileSource(path).fingerprint() == before  # the fingerprint cannot see it


def test_a_change_in_the_middle_is_never_spliced_under_checksum_none(
    redivis_emulator: RedivisEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert SIZE > 2 * FINGERPRINT_SPAN + 2 * MIB
    emu, store = redivis_emulator, MemoryStore()
    path = write_random(tmp_path / "data.csv", SIZE)
    with hook_for(emu, monkeypatch) as hook:
        _first_try_cut_at_60_percent(emu, hook, store, path)
        _change_the_middle_keeping_the_fingerprint(path)

        with pytest.raises(UploadIntegrityError, match="run the task again"):
            run_job(hook, store, path, checksum=None, chunk_size=MIB)
        assert emu.list_uploads(TABLE) == []  # nothing created from the spliced object
        assert store.value is None  # the next try starts a new session

        upload = run_job(hook, store, path, checksum=None, chunk_size=MIB)
    assert upload["name"] == "data.csv"
    assert md5_hex(emu.upload_bytes_path(TABLE, "data.csv")) == md5_hex(path)


def test_an_unchanged_source_still_resumes_under_checksum_none(
    redivis_emulator: RedivisEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    emu, store = redivis_emulator, MemoryStore()
    path = write_random(tmp_path / "data.csv", SIZE)
    with hook_for(emu, monkeypatch) as hook:
        held = _first_try_cut_at_60_percent(emu, hook, store, path)
        received = emu.bytes_received("session")
        upload = run_job(hook, store, path, checksum=None, chunk_size=MIB)
    assert upload["name"] == "data.csv"
    assert emu.bytes_received("session") - received == SIZE - held  # only the rest was sent
    assert len(emu.sessions) == 1
    assert md5_hex(emu.upload_bytes_path(TABLE, "data.csv")) == md5_hex(path)


def test_a_server_without_hashes_cannot_prove_an_earlier_tries_bytes(
    redivis_emulator: RedivisEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    emu, store = redivis_emulator, MemoryStore()
    path = write_random(tmp_path / "data.csv", SIZE)
    with hook_for(emu, monkeypatch) as hook:
        _first_try_cut_at_60_percent(emu, hook, store, path)
        (session_id,) = emu.sessions
        emu.set_session_options(session_id, reported_hashes=())

        with pytest.raises(UploadIntegrityError, match="reports no hash"):
            run_job(hook, store, path, checksum=None, chunk_size=MIB)
        assert emu.list_uploads(TABLE) == []
        assert store.value is None

        # A new session: every byte is sent by this try.
        run_job(hook, store, path, checksum=None, chunk_size=MIB)
    assert len(emu.sessions) == 2
    assert md5_hex(emu.upload_bytes_path(TABLE, "data.csv")) == md5_hex(path)
