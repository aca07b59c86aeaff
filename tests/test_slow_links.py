"""Slow and stalled links: a session PUT's body is sent under the read timeout, never the connect timeout.

Scaled down so the tests stay fast: a 0.5-1 s connect timeout against a 10 s read timeout proves the
rule a 10 s connect timeout and a 60 s read timeout would, on a link of a few Mbit/s instead of 0.5.
The emulator's ``stall`` fault pauses a request mid-body; ``benchmarks.linkproxy`` models a slow link.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import requests
from redivis_emulator import Fault, RedivisEmulator

from airflow_provider_redivis.engine.resumable import ResumableSession
from airflow_provider_redivis.engine.retry import RetryPolicy
from airflow_provider_redivis.errors import UploadInterruptedError
from benchmarks.linkproxy import LinkProxy

TABLE = "test_owner.test_dataset.test_table"
MiB = 1024 * 1024
#: One attempt: a cut request fails the upload instead of being resumed, so a cut cannot hide.
ONE_ATTEMPT = RetryPolicy(max_attempts=1, max_total_seconds=30)


@pytest.fixture
def emulator(tmp_path: Path):
    with RedivisEmulator(tables=[TABLE], data_dir=tmp_path / "emulator") as emu:
        yield emu


def new_session(emu: RedivisEmulator, size: int) -> dict[str, str]:
    response = requests.post(
        f"{emu.base_url}/api/v1/tables/{TABLE}/resumableUpload",
        params={"size": size},
        headers={"Authorization": f"Bearer {emu.token}"},
        timeout=10,
    )
    response.raise_for_status()
    return response.json()


def send_whole(url: str, source: Path, timeout: tuple[float, float]) -> dict:
    """The source in one request (``chunk_size`` = its size), on a fresh ``requests`` session."""
    size = source.stat().st_size
    session = ResumableSession(
        requests.Session(), url, size, chunk_size=size, timeout=timeout, retry_policy=ONE_ATTEMPT
    )
    with open(source, "rb") as fh:
        return dict(session.upload(fh, 0).metadata)


def assert_sent_once(emu: RedivisEmulator, session: dict[str, str], source: Path, metadata: dict) -> None:
    size = source.stat().st_size
    assert int(metadata["size"]) == size
    stored = Path(emu.sessions[session["id"]].path).read_bytes()
    assert hashlib.md5(stored).hexdigest() == hashlib.md5(source.read_bytes()).hexdigest()
    puts = [r for r in emu.requests if r.origin == "session" and r.method == "PUT"]
    assert [r.status for r in puts] == [200], "the request was cut and sent again"
    assert emu.bytes_received("session") == size


def test_a_pause_mid_body_longer_than_the_connect_timeout_is_waited_out(
    emulator: RedivisEmulator, tmp_path: Path
) -> None:
    """The server stops reading for 3 s, 1 MiB into a 24 MiB body: more than the 1 s connect timeout, less
    than the 10 s read timeout. Sent under the connect timeout, the body was cut after 1 s."""
    source = tmp_path / "source.bin"
    source.write_bytes(os.urandom(24 * MiB))  # far more than the socket buffers hold while the server pauses
    session = new_session(emulator, source.stat().st_size)
    emulator.add_fault(Fault("stall", origin="session", method="PUT", after_bytes=MiB, seconds=3.0))
    metadata = send_whole(session["url"], source, timeout=(1.0, 10.0))
    assert sum("stall" in r.faults for r in emulator.requests) == 1
    assert_sent_once(emulator, session, source, metadata)


def test_a_pause_longer_than_the_read_timeout_still_fails_the_request(
    emulator: RedivisEmulator, tmp_path: Path
) -> None:
    """The read timeout still bounds a stalled body: a link that takes nothing for longer is given up on."""
    source = tmp_path / "source.bin"
    source.write_bytes(os.urandom(24 * MiB))
    session = new_session(emulator, source.stat().st_size)
    emulator.add_fault(Fault("stall", origin="session", method="PUT", after_bytes=MiB, seconds=4.0))
    with pytest.raises(UploadInterruptedError, match="Gave up sending the source") as failed:
        send_whole(session["url"], source, timeout=(5.0, 1.0))
    assert "raise the connection's read_timeout extra (now 1 s)" in str(failed.value)


def test_a_link_slower_than_a_block_per_connect_timeout_carries_the_body(
    emulator: RedivisEmulator, tmp_path: Path
) -> None:
    """12 Mbit/s moves a 1 MiB block in 0.7 s, longer than a 0.5 s connect timeout: the same ratio as a
    0.5 Mbit/s link (17 s a block) against the default 10 s. Every byte goes once, in one request."""
    source = tmp_path / "source.bin"
    source.write_bytes(os.urandom(8 * MiB))
    session = new_session(emulator, source.stat().st_size)
    upstream = urlsplit(emulator.session_base_url)
    with LinkProxy((upstream.hostname or "127.0.0.1", upstream.port or 80), mbit=12, delay=0.0) as link:
        proxied = urlsplit(link.url)
        emulator.allow_hosts(proxied.netloc)  # requests through the proxy name it in their Host header
        url = urlunsplit(urlsplit(session["url"])._replace(netloc=proxied.netloc))
        metadata = send_whole(url, source, timeout=(0.5, 10.0))
    assert_sent_once(emulator, session, source, metadata)
