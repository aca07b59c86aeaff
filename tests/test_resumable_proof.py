"""Nothing is taken as stored that was not proven: the engine against the emulator's two answer dialects,
honest and lying, and against the ways a completing answer goes wrong (no metadata, too early, cut short).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import requests
from redivis_emulator import Fault, RedivisEmulator

from airflow_provider_redivis.engine.protocol import CHUNK_UNIT
from airflow_provider_redivis.engine.resumable import ResumableSession
from airflow_provider_redivis.engine.retry import RetryPolicy
from airflow_provider_redivis.errors import UploadIntegrityError

TABLE = "test_owner.test_dataset.test_table"
CHUNK = 4 * CHUNK_UNIT  # 1 MiB
FAST = RetryPolicy(max_attempts=5, max_total_seconds=30, initial_wait=0.01, max_wait=0.05)
DIALECTS = ["json", "xml"]


@pytest.fixture
def emulator(tmp_path: Path):
    with RedivisEmulator(tables=[TABLE], data_dir=tmp_path / "emulator") as emu:
        yield emu


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "source.bin"
    path.write_bytes(os.urandom(5 * CHUNK + 12345))
    return path


def new_session(emu: RedivisEmulator, size: int, dialect: str, **options: object) -> dict[str, str]:
    response = requests.post(
        f"{emu.base_url}/api/v1/tables/{TABLE}/resumableUpload",
        params={"size": size},
        headers={"Authorization": f"Bearer {emu.token}"},
        timeout=10,
    )
    response.raise_for_status()
    session = response.json()
    emu.set_session_options(session["id"], dialect=dialect, **options)  # type: ignore[arg-type]
    return session


def send(emu: RedivisEmulator, src: Path, session: dict[str, str], **kwargs: object):
    size = src.stat().st_size
    engine = ResumableSession(
        requests.Session(),
        session["url"],
        size,
        chunk_size=CHUNK,
        timeout=(5.0, 10.0),
        retry_policy=FAST,
        sleep=lambda _: None,
        **kwargs,  # type: ignore[arg-type]
    )
    with open(src, "rb") as fh:
        return engine.upload(fh, 0)


def stored_exactly(emu: RedivisEmulator, session: dict[str, str], src: Path) -> bool:
    info = emu.sessions[session["id"]]
    return (
        info.complete
        and hashlib.md5(Path(info.path).read_bytes()).digest() == hashlib.md5(src.read_bytes()).digest()
    )


def fired(emu: RedivisEmulator, kind: str) -> int:
    return sum(kind in r.faults for r in emu.requests)


@pytest.mark.parametrize("dialect", DIALECTS)
def test_an_honest_answer_is_proven_by_size_and_crc32c(
    emulator: RedivisEmulator, source: Path, dialect: str
) -> None:
    session = new_session(emulator, source.stat().st_size, dialect)
    stored = send(emulator, source, session)
    assert stored.size == source.stat().st_size
    assert set(stored.hashes) == {"crc32c", "md5"}
    assert stored_exactly(emulator, session, source)
    last = [r for r in emulator.requests if r.origin == "session"][-1]
    assert last.status == 200
    if dialect == "xml":
        assert stored.metadata == {}  # the empty body: everything came from the headers


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize(("field", "checksum"), [("crc32c", "auto"), ("size", "auto"), ("md5", "md5")])
def test_a_server_reporting_other_bytes_is_refused(
    emulator: RedivisEmulator, source: Path, dialect: str, field: str, checksum: str
) -> None:
    session = new_session(emulator, source.stat().st_size, dialect)
    emulator.add_fault(Fault("lie", origin="session", lie_about=field))
    with pytest.raises(UploadIntegrityError, match="run the task again to start a new session"):
        send(emulator, source, session, checksum=checksum)
    assert fired(emulator, "lie") == 1


@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_server_that_reports_only_md5_is_verified_with_md5(
    emulator: RedivisEmulator, source: Path, dialect: str
) -> None:
    session = new_session(emulator, source.stat().st_size, dialect, reported_hashes=("md5",))
    stored = send(emulator, source, session)
    assert set(stored.hashes) == {"md5"}
    emulator.add_fault(Fault("lie", origin="session", lie_about="md5"))
    other = new_session(emulator, source.stat().st_size, dialect, reported_hashes=("md5",))
    with pytest.raises(UploadIntegrityError, match="md5"):
        send(emulator, source, other)


@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_server_that_reports_no_hash_fails_naming_the_option(
    emulator: RedivisEmulator, source: Path, dialect: str
) -> None:
    session = new_session(emulator, source.stat().st_size, dialect, reported_hashes=())
    with pytest.raises(UploadIntegrityError, match="checksum=None"):
        send(emulator, source, session)
    accepted = new_session(emulator, source.stat().st_size, dialect, reported_hashes=())
    stored = send(emulator, source, accepted, checksum=None)
    assert stored.size == source.stat().st_size


@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_bare_200_after_completion_is_confirmed_by_a_status_query(
    emulator: RedivisEmulator, source: Path, dialect: str
) -> None:
    session = new_session(emulator, source.stat().st_size, dialect)
    emulator.add_fault(Fault("empty_200", origin="session", finalize=True))
    stored = send(emulator, source, session)
    assert fired(emulator, "empty_200") == 1
    assert stored.size == source.stat().st_size
    last = [r for r in emulator.requests if r.origin == "session"][-1]
    assert last.content_range == f"bytes */{source.stat().st_size}"  # the status query that proved it


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("kind", ["empty_200", "early_200"])
def test_a_200_before_the_last_byte_is_not_success(
    emulator: RedivisEmulator, source: Path, dialect: str, kind: str
) -> None:
    """A GCS-compatible server once answered 200 with nothing after 1 MiB of 8: no object existed."""
    session = new_session(emulator, source.stat().st_size, dialect)
    emulator.add_fault(Fault(kind, origin="session", method="PUT", nth=1, finalize=False))
    send(emulator, source, session)
    assert fired(emulator, kind) == 1
    assert stored_exactly(emulator, session, source)  # the transfer went on to the end


@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_server_that_keeps_answering_200_early_ends_in_a_clear_error(
    emulator: RedivisEmulator, source: Path, dialect: str
) -> None:
    session = new_session(emulator, source.stat().st_size, dialect)
    emulator.add_fault(Fault("empty_200", origin="session", method="PUT", finalize=False, times=None))
    with pytest.raises(UploadIntegrityError):
        send(emulator, source, session)
    assert not emulator.sessions[session["id"]].complete


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("cut", [{}, {"answer_bytes": 20}, {"answer_bytes": 20, "short_body": True}])
def test_an_answer_cut_short_after_completion_is_confirmed(
    emulator: RedivisEmulator, source: Path, dialect: str, cut: dict[str, object]
) -> None:
    session = new_session(emulator, source.stat().st_size, dialect)
    emulator.add_fault(Fault("broken_answer", origin="session", **cut))  # type: ignore[arg-type]
    stored = send(emulator, source, session)
    assert fired(emulator, "broken_answer") == 1
    assert stored.size == source.stat().st_size
    assert stored.hashes


def test_bytes_other_than_the_stated_hash_are_refused_by_the_server(
    emulator: RedivisEmulator, tmp_path: Path
) -> None:
    """The final request states the source's crc32c; a server that received other bytes refuses to finish."""
    path = tmp_path / "changing.bin"
    data = bytearray(os.urandom(3 * CHUNK))
    path.write_bytes(data)
    session = new_session(emulator, len(data), "json")

    engine = ResumableSession(
        requests.Session(), session["url"], len(data), chunk_size=CHUNK, retry_policy=FAST
    )

    class Reader:
        """Hands out the original bytes while hashing, other bytes once the last request is sent."""

        def __init__(self) -> None:
            self.pos = 0
            self.reads_at_last: int = 0

        def seek(self, pos: int, whence: int = 0) -> int:
            self.pos = pos
            return pos

        def read(self, n: int = -1) -> bytes:
            end = len(data) if n < 0 else min(len(data), self.pos + n)
            chunk = bytes(data[self.pos : end])
            if self.pos >= 2 * CHUNK and n != 1:  # (a 1-byte read past the end checks for growth)
                self.reads_at_last += 1
                if self.reads_at_last > 1:  # the first read hashes; the second is the body
                    chunk = b"X" * len(chunk)
            self.pos = end
            return chunk

    with pytest.raises(UploadIntegrityError, match="refused the last request"):
        engine.upload(Reader(), 0)  # type: ignore[arg-type]
    info = emulator.sessions[session["id"]]
    assert not info.complete
    assert info.failed


def test_a_server_that_keeps_nothing_of_a_cut_request_costs_at_most_that_request(
    emulator: RedivisEmulator, source: Path
) -> None:
    size = source.stat().st_size
    session = new_session(emulator, size, "json", keep_partial_requests=False)
    emulator.add_fault(Fault("reset", origin="session", method="PUT", nth=3, after_bytes=CHUNK - 1000))
    send(emulator, source, session)
    assert stored_exactly(emulator, session, source)
    assert emulator.bytes_received("session") - size <= CHUNK
    assert emulator.bytes_received("session") - size == CHUNK - 1000  # all of the cut request went again
