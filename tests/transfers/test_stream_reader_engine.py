"""The stream reader under the real upload engine: memory stays at one request, cuts are resumed."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

from redivis_emulator import Fault, RedivisEmulator

from airflow_provider_redivis.engine.protocol import CHUNK_UNIT
from airflow_provider_redivis.hooks.redivis import RedivisHook
from airflow_provider_redivis.transfers.sql_streaming import temp_session
from airflow_provider_redivis.transfers.stream_reader import StreamReader

TABLE = "test_owner.test_dataset.test_table"
BLOCK = 1024 * 1024 + 17  # an odd block size, so requests and blocks never line up


def blocks(total: int) -> Iterator[bytes]:
    sent = 0
    index = 0
    while sent < total:
        size = min(BLOCK, total - sent)
        yield hashlib.sha256(str(index).encode()).digest() * (size // 32) + b"x" * (size % 32)
        sent += size
        index += 1


def test_24_mebibytes_stream_through_one_request_of_memory(
    redivis_conn: RedivisEmulator, task_context: dict
) -> None:
    total = 24 * 1024 * 1024 + 12345
    chunk = 4 * CHUNK_UNIT
    # Two cuts inside requests: the engine seeks back to what the server holds, within the request.
    redivis_conn.add_fault(Fault("reset", origin="session", at_offset=5 * 1024 * 1024 + 999, times=1))
    redivis_conn.add_fault(Fault("reset", origin="session", at_offset=18 * 1024 * 1024 + 5, times=1))
    hook = RedivisHook()
    temp_id, url = temp_session(hook, TABLE, "stream.bin")
    reader = StreamReader(blocks(total))
    session = hook.resumable_session(url, None, chunk_size=chunk)
    stored = session.upload(reader, 0, on_progress=lambda held, _total: reader.release(held))
    assert stored.size == total
    assert reader.peak_buffered <= chunk + 1 + BLOCK
    expected = hashlib.md5(b"".join(blocks(total))).hexdigest()
    upload = hook.create_upload(TABLE, name="stream.bin", upload_type="stream", temp_upload_id=temp_id)
    path = redivis_conn.upload_bytes_path(TABLE, upload["name"])
    assert hashlib.md5(path.read_bytes()).hexdigest() == expected
    assert len([r for r in redivis_conn.requests if r.faults]) == 2
