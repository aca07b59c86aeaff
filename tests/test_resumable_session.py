"""The protocol engine against the emulator over 127.0.0.1: every failure ends with the exact bytes, once."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import pytest
import requests
from redivis_emulator import Fault, RedivisEmulator

from airflow_provider_redivis.engine.protocol import CHUNK_UNIT
from airflow_provider_redivis.engine.resumable import ResumableSession
from airflow_provider_redivis.engine.retry import RetryPolicy
from airflow_provider_redivis.errors import (
    ResumableSessionExpiredError,
    SourceChangedError,
    UploadIntegrityError,
    UploadInterruptedError,
)

TABLE = "test_owner.test_dataset.test_table"
CHUNK = 4 * CHUNK_UNIT  # 1 MiB
FAST = RetryPolicy(max_attempts=5, max_total_seconds=30, initial_wait=0.01, max_wait=0.05)


@pytest.fixture
def emulator(tmp_path: Path):
    with RedivisEmulator(tables=[TABLE], data_dir=tmp_path / "emulator") as emu:
        yield emu


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "source.bin"
    path.write_bytes(os.urandom(5 * CHUNK + 12345))
    return path


def new_session(emu: RedivisEmulator, size: int) -> dict[str, str]:
    response = requests.post(
        f"{emu.base_url}/api/v1/tables/{TABLE}/resumableUpload",
        params={"size": size},
        headers={"Authorization": f"Bearer {emu.token}"},
        timeout=10,
    )
    response.raise_for_status()
    return response.json()


def engine(
    emu: RedivisEmulator, session: dict[str, str], total: int | None, **kwargs: object
) -> ResumableSession:
    waits: list[float] = []
    engine = ResumableSession(
        requests.Session(),
        session["url"],
        total,
        chunk_size=kwargs.pop("chunk_size", CHUNK),  # type: ignore[arg-type]
        timeout=kwargs.pop("timeout", (5.0, 10.0)),  # type: ignore[arg-type]
        retry_policy=kwargs.pop("retry_policy", FAST),  # type: ignore[arg-type]
        sleep=waits.append,
    )
    engine.waits = waits  # type: ignore[attr-defined]
    return engine


def stored_md5(emu: RedivisEmulator, session_id: str) -> str:
    return hashlib.md5(Path(emu.sessions[session_id].path).read_bytes()).hexdigest()


def upload(emu: RedivisEmulator, src: Path, eng: ResumableSession, start: int = 0) -> dict:
    with open(src, "rb") as fh:
        return dict(eng.upload(fh, start).metadata)


def fired(emu: RedivisEmulator, kind: str) -> int:
    """How many requests a fault of ``kind`` hit: a fault test that never fired proves nothing."""
    return sum(kind in r.faults for r in emu.requests)


def assert_exact(emu: RedivisEmulator, session: dict[str, str], src: Path, metadata: dict) -> None:
    assert int(metadata["size"]) == src.stat().st_size
    assert stored_md5(emu, session["id"]) == hashlib.md5(src.read_bytes()).hexdigest()


def test_clean_upload_sends_each_byte_once(emulator: RedivisEmulator, source: Path) -> None:
    size = source.stat().st_size
    session = new_session(emulator, size)
    metadata = upload(emulator, source, engine(emulator, session, size))
    assert_exact(emulator, session, source, metadata)
    assert emulator.bytes_received("session") == size
    puts = [r for r in emulator.requests if r.origin == "session"]
    assert all(r.body_bytes % CHUNK_UNIT == 0 for r in puts[:-1])


def test_connection_reset_mid_chunk_resumes_from_what_the_server_kept(
    emulator: RedivisEmulator, source: Path
) -> None:
    size = source.stat().st_size
    session = new_session(emulator, size)
    emulator.add_fault(Fault("reset", origin="session", method="PUT", nth=2, after_bytes=CHUNK // 2 + 1000))
    metadata = upload(emulator, source, engine(emulator, session, size))
    assert_exact(emulator, session, source, metadata)
    assert fired(emulator, "reset") == 1
    # At most the part of the cut chunk that the server did not keep goes again.
    assert emulator.bytes_received("session") <= size + CHUNK


def test_503_on_a_chunk_is_followed_by_a_status_query(emulator: RedivisEmulator, source: Path) -> None:
    size = source.stat().st_size
    session = new_session(emulator, size)
    emulator.add_fault(Fault("status", origin="session", method="PUT", nth=3, status=503))
    metadata = upload(emulator, source, engine(emulator, session, size))
    assert_exact(emulator, session, source, metadata)
    assert fired(emulator, "status") == 1
    puts = [r for r in emulator.requests if r.origin == "session"]
    failed_at = next(i for i, r in enumerate(puts) if r.status == 503)
    assert puts[failed_at + 1].content_range == f"bytes */{size}"


def test_308_that_keeps_part_of_a_chunk_continues_from_the_server_range(
    emulator: RedivisEmulator, source: Path
) -> None:
    size = source.stat().st_size
    session = new_session(emulator, size)
    emulator.add_fault(Fault("partial", origin="session", method="PUT", nth=2, keep_bytes=CHUNK_UNIT))
    metadata = upload(emulator, source, engine(emulator, session, size))
    assert_exact(emulator, session, source, metadata)
    assert fired(emulator, "partial") == 1
    third = [r for r in emulator.requests if r.origin == "session"][2]
    assert third.content_range.startswith(f"bytes {CHUNK + CHUNK_UNIT}-")


def test_429_retry_after_is_honoured(emulator: RedivisEmulator, source: Path) -> None:
    size = source.stat().st_size
    session = new_session(emulator, size)
    emulator.add_fault(
        Fault("status", origin="session", method="PUT", nth=2, status=429, headers={"Retry-After": "3"})
    )
    eng = engine(emulator, session, size)
    metadata = upload(emulator, source, eng)
    assert_exact(emulator, session, source, metadata)
    assert fired(emulator, "status") == 1
    assert 3.0 in eng.waits  # type: ignore[attr-defined]


def test_stalled_request_past_the_read_timeout(emulator: RedivisEmulator, source: Path) -> None:
    size = source.stat().st_size
    session = new_session(emulator, size)
    emulator.add_fault(Fault("stall", origin="session", method="PUT", nth=2, seconds=2.0))
    metadata = upload(emulator, source, engine(emulator, session, size, timeout=(2.0, 0.5)))
    assert_exact(emulator, session, source, metadata)
    assert fired(emulator, "stall") == 1


def test_resume_from_a_later_offset_in_a_new_engine(emulator: RedivisEmulator, source: Path) -> None:
    """What a new try does: ask the server, then send only the rest, hashing the prefix locally."""
    size = source.stat().st_size
    session = new_session(emulator, size)
    emulator.add_fault(Fault("reset", origin="session", method="PUT", nth=3, after_bytes=0, times=None))
    with pytest.raises(UploadInterruptedError, match="Gave up"):
        upload(emulator, source, engine(emulator, session, size))
    emulator.clear_faults()
    before = emulator.bytes_received("session")
    second = engine(emulator, session, size)
    held = second.query_status().offset
    assert held == 2 * CHUNK
    metadata = upload(emulator, source, second, start=held)
    assert_exact(emulator, session, source, metadata)
    assert emulator.bytes_received("session") - before == size - held


def test_unknown_total_sends_star_until_the_end(emulator: RedivisEmulator, source: Path) -> None:
    size = source.stat().st_size
    session = new_session(emulator, size)
    metadata = upload(emulator, source, engine(emulator, session, None))
    assert_exact(emulator, session, source, metadata)
    ranges = [r.content_range for r in emulator.requests if r.origin == "session"]
    assert ranges[0].endswith("/*")
    assert ranges[-1].endswith(f"/{size}")


def test_expired_session_is_a_distinct_error(emulator: RedivisEmulator, source: Path) -> None:
    size = source.stat().st_size
    session = new_session(emulator, size)
    emulator.expire_session(session["id"])
    with pytest.raises(ResumableSessionExpiredError):
        upload(emulator, source, engine(emulator, session, size))


def test_bytes_that_differ_when_sent_again_fail_the_integrity_check(
    emulator: RedivisEmulator, tmp_path: Path
) -> None:
    """A reader that changes under a re-sent range: the server's crc32c is not the source's, nothing is accepted."""
    data = bytearray(os.urandom(3 * CHUNK))
    size = len(data)
    session = new_session(emulator, size)
    emulator.add_fault(Fault("partial", origin="session", method="PUT", nth=1, keep_bytes=CHUNK_UNIT))

    class Shifty(io.BytesIO):
        """Changes bytes the server did not keep just before they are sent again."""

        def seek(self, pos: int, whence: int = 0) -> int:
            if pos == CHUNK_UNIT:  # the re-send after the partial 308 starts here
                self.getbuffer()[CHUNK_UNIT : CHUNK_UNIT + 10] = b"X" * 10
            return super().seek(pos, whence)

    eng = engine(emulator, session, size)
    with pytest.raises(UploadIntegrityError, match="crc32c"):
        eng.upload(Shifty(bytes(data)), 0)


def test_source_shorter_than_announced(emulator: RedivisEmulator, tmp_path: Path) -> None:
    path = tmp_path / "short.bin"
    path.write_bytes(os.urandom(CHUNK + 100))
    session = new_session(emulator, CHUNK + 5000)
    with pytest.raises(SourceChangedError, match="changed while being read"):
        upload(emulator, path, engine(emulator, session, CHUNK + 5000))


def test_source_longer_than_announced(emulator: RedivisEmulator, tmp_path: Path) -> None:
    path = tmp_path / "long.bin"
    path.write_bytes(os.urandom(CHUNK + 100))
    session = new_session(emulator, CHUNK + 50)
    with pytest.raises(SourceChangedError):
        upload(emulator, path, engine(emulator, session, CHUNK + 50))


def test_bounded_when_the_server_never_recovers(emulator: RedivisEmulator, source: Path) -> None:
    size = source.stat().st_size
    session = new_session(emulator, size)
    emulator.add_fault(Fault("status", origin="session", method="PUT", status=503, times=None))
    eng = engine(emulator, session, size)
    with pytest.raises(UploadInterruptedError, match="Gave up"):
        upload(emulator, source, eng)
    assert len([r for r in emulator.requests if r.origin == "session"]) <= 5 * 6


def test_cancel_stops_between_chunks_and_leaves_the_session_resumable(
    emulator: RedivisEmulator, source: Path
) -> None:
    """What on_kill does: the request in flight ends, nothing more is sent, the next try resumes."""
    size = source.stat().st_size
    session = new_session(emulator, size)
    eng = engine(emulator, session, size)
    seen: list[int] = []

    class CancelAfterFirstChunk(io.FileIO):
        def read(self, n: int = -1) -> bytes:
            if seen:
                eng.cancel()
            seen.append(n)
            return super().read(n)

    with CancelAfterFirstChunk(str(source), "rb") as fh, pytest.raises(InterruptedError):
        eng.upload(fh, 0)
    held = engine(emulator, session, size).query_status().offset
    assert 0 < held < size
    metadata = upload(emulator, source, engine(emulator, session, size), start=held)
    assert_exact(emulator, session, source, metadata)


# -- proof: the final request states the source's hash; the answer is verified --------------------


def crc32c_b64(data: bytes) -> str:
    import base64

    import google_crc32c

    return base64.b64encode(google_crc32c.Checksum(data).digest()).decode()


def test_the_final_request_carries_the_sources_crc32c(emulator: RedivisEmulator, source: Path) -> None:
    size = source.stat().st_size
    session = new_session(emulator, size)
    metadata = upload(emulator, source, engine(emulator, session, size))
    assert_exact(emulator, session, source, metadata)
    puts = [r for r in emulator.requests if r.origin == "session"]
    assert puts[-1].headers.get("x-goog-hash") == f"crc32c={crc32c_b64(source.read_bytes())}"
    assert all("x-goog-hash" not in r.headers for r in puts[:-1])


def test_default_requests_are_sized_from_the_rate_and_stay_in_256_kib_units(
    emulator: RedivisEmulator, tmp_path: Path
) -> None:
    path = tmp_path / "big.bin"
    path.write_bytes(os.urandom(40 * 1024 * 1024 + 5))
    size = path.stat().st_size
    session = new_session(emulator, size)
    metadata = upload(emulator, path, engine(emulator, session, size, chunk_size=None))
    assert_exact(emulator, session, path, metadata)
    puts = [r for r in emulator.requests if r.origin == "session"]
    assert puts[0].body_bytes == 32 * 1024 * 1024
    assert all(r.body_bytes % CHUNK_UNIT == 0 for r in puts[:-1])
    assert [r.body_bytes for r in puts[1:]] == [
        size - 32 * 1024 * 1024
    ]  # the rest, hashed while the first went


# -- edge cases ------------------------------------------------------------------------------------


def test_zero_byte_source_of_unknown_total_completes(emulator: RedivisEmulator, tmp_path: Path) -> None:
    path = tmp_path / "empty.bin"
    path.write_bytes(b"")
    session = new_session(emulator, 0)
    eng = engine(emulator, session, None)
    metadata = upload(emulator, path, eng)
    assert int(metadata.get("size", 0)) == 0
    ranges = [r.content_range for r in emulator.requests if r.origin == "session"]
    assert ranges == ["bytes */0"]


def test_a_308_that_keeps_nothing_new_is_retried_with_backoff(
    emulator: RedivisEmulator, source: Path
) -> None:
    size = source.stat().st_size
    session = new_session(emulator, size)
    emulator.add_fault(Fault("partial", origin="session", method="PUT", nth=2, keep_bytes=0, times=2))
    eng = engine(emulator, session, size)
    metadata = upload(emulator, source, eng)
    assert_exact(emulator, session, source, metadata)
    assert fired(emulator, "partial") == 2
    waits = eng.waits  # type: ignore[attr-defined]
    assert len(waits) == 2
    assert all(w > 0 for w in waits)


def test_retry_after_counts_against_the_retry_budget(emulator: RedivisEmulator, source: Path) -> None:
    """A server that asks for 250 s under a 10 s budget: the engine gives up at once instead of sleeping."""
    size = source.stat().st_size
    session = new_session(emulator, size)
    emulator.add_fault(
        Fault(
            "status", origin="session", method="PUT", status=503, headers={"Retry-After": "250"}, times=None
        )
    )
    budget = RetryPolicy(max_attempts=5, max_total_seconds=10, initial_wait=0.01, max_wait=0.05)
    eng = engine(emulator, session, size, retry_policy=budget)
    with pytest.raises(UploadInterruptedError, match="Gave up"):
        upload(emulator, source, eng)
    assert eng.waits == []  # type: ignore[attr-defined]


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _assert_url_nowhere(exc: BaseException, secret: str) -> None:
    import traceback

    text = "".join(traceback.format_exception(exc))
    assert secret not in text
    seen: BaseException | None = exc
    while seen is not None:  # the whole chain, printed or suppressed
        assert secret not in str(seen)
        assert secret not in repr(seen)
        seen = seen.__cause__ or seen.__context__


def test_a_refused_connection_leaves_the_session_url_out_of_the_error() -> None:
    secret = "upload_id=SECRET-SESSION-TOKEN-123"
    url = f"http://127.0.0.1:{_closed_port()}/upload/resumable/abc?{secret}"
    eng = ResumableSession(
        requests.Session(), url, 10, chunk_size=CHUNK, retry_policy=FAST, sleep=lambda _: None
    )
    with pytest.raises(UploadInterruptedError, match="ConnectionError") as info:
        eng.upload(io.BytesIO(b"0123456789"), 0)
    _assert_url_nowhere(info.value, secret)
    _assert_url_nowhere(info.value, "/upload/resumable/abc")
    with pytest.raises(UploadInterruptedError) as info:
        eng.query_status()
    _assert_url_nowhere(info.value, secret)


def test_a_connect_timeout_leaves_the_session_url_out_of_the_error() -> None:
    import socket

    # A listener that never accepts, its backlog filled: the kernel drops the next SYN, so connect times out.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(8):
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
            fillers.append(filler)
        secret = "upload_id=SECRET-SESSION-TOKEN-456"
        url = f"http://127.0.0.1:{port}/upload/resumable/xyz?{secret}"
        policy = RetryPolicy(max_attempts=2, max_total_seconds=5, initial_wait=0.01, max_wait=0.01)
        eng = ResumableSession(
            requests.Session(),
            url,
            10,
            chunk_size=CHUNK,
            timeout=(0.3, 0.3),
            retry_policy=policy,
            sleep=lambda _: None,
        )
        with pytest.raises(UploadInterruptedError, match="Timeout") as info:
            eng.upload(io.BytesIO(b"0123456789"), 0)
        _assert_url_nowhere(info.value, secret)
        _assert_url_nowhere(info.value, "/upload/resumable/xyz")
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


@pytest.mark.slow
def test_a_last_request_whose_hash_is_not_ready_sends_all_but_a_short_tail_first(
    emulator: RedivisEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The link never waits for a long read: when hashing ahead lags, all but 8 MiB goes first."""
    import threading
    import time
    import types

    import google_crc32c

    from airflow_provider_redivis.engine import transfer_source

    def slow_extend(crc: int, data: bytes) -> int:
        time.sleep(0.5)  # hashing ahead that cannot keep up, as on a slow disk
        return google_crc32c.extend(crc, data)

    monkeypatch.setattr(transfer_source, "google_crc32c", types.SimpleNamespace(extend=slow_extend))
    MiB = 1024 * 1024
    path = tmp_path / "big.bin"
    path.write_bytes(os.urandom(80 * MiB + 5))
    size = path.stat().st_size
    session = new_session(emulator, size)
    with open(path, "rb") as fh:
        stored = engine(emulator, session, size, chunk_size=None).upload(fh, 0)
    assert stored.size == size
    puts = [r.body_bytes for r in emulator.requests if r.origin == "session"]
    assert puts == [32 * MiB, 40 * MiB, 8 * MiB + 5]
    assert_exact(emulator, session, path, dict(stored.metadata))
    assert not [
        t for t in threading.enumerate() if t.name == "redivis-tail-hash"
    ]  # cancelled, not left running
