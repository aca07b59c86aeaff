"""Request sizes when the link's rate collapses, against the emulator over 127.0.0.1.

A cut costs the request it cut when the server keeps nothing of it (storage-testbench's
``return-reset-connection``; the emulator's ``reset`` with ``keep_partial=False``). Sized for about 8 s
on the wire, that is about 8 s of sending, whatever the link: the request after a cut, and the last
request, must keep to the rate the link showed.

The link's rate is modelled by the clock (the one thing mocked): the engine's clock advances as the
uploading thread reads bytes to send, ``rate`` bytes a second. The bytes go over real HTTP.
"""

from __future__ import annotations

import io
import os
import threading
from pathlib import Path

import pytest
import requests
from redivis_emulator import Fault, RedivisEmulator

from airflow_provider_redivis.engine.protocol import (
    CHUNK_UNIT,
    FIRST_REQUEST_SIZE,
    MIN_ADAPTIVE_REQUEST_SIZE,
    TARGET_REQUEST_SECONDS,
)
from airflow_provider_redivis.engine.resumable import ResumableSession
from airflow_provider_redivis.engine.retry import RetryPolicy

TABLE = "test_owner.test_dataset.test_table"
MiB = 1024 * 1024
FAST = RetryPolicy(max_attempts=5, max_total_seconds=30, initial_wait=0.01, max_wait=0.05)


class LinkClock:
    """Seconds on a link of ``rate`` bytes/s: they pass as the uploading thread reads the bytes it sends."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.now = 0.0
        self.sender = threading.get_ident()  # the tail hash reads on a thread of its own: not link time

    def __call__(self) -> float:
        return self.now

    def open(self, path: Path) -> io.FileIO:
        clock = self

        class Timed(io.FileIO):
            def read(self, size: int = -1) -> bytes:
                data = super().read(size)
                if threading.get_ident() == clock.sender:
                    clock.now += len(data) / clock.rate
                return data

        return Timed(str(path), "rb")


@pytest.fixture
def emulator(tmp_path: Path):
    with RedivisEmulator(tables=[TABLE], data_dir=tmp_path / "emulator") as emu:
        yield emu


def upload(emu: RedivisEmulator, path: Path, clock: LinkClock, *, checksum: str | None) -> list[int]:
    """Send ``path`` with adaptive sizing; return the size of each session PUT that carried bytes."""
    size = path.stat().st_size
    response = requests.post(
        f"{emu.base_url}/api/v1/tables/{TABLE}/resumableUpload",
        params={"size": size},
        headers={"Authorization": f"Bearer {emu.token}"},
        timeout=10,
    )
    response.raise_for_status()
    session = ResumableSession(
        requests.Session(),
        response.json()["url"],
        size,
        checksum=checksum,
        timeout=(5.0, 10.0),
        retry_policy=FAST,
        sleep=lambda _seconds: None,
        clock=clock,
    )
    with clock.open(path) as reader:
        stored = session.upload(reader, 0)
    assert stored.size == size
    ranges = [r.content_range or "" for r in emu.requests if r.origin == "session" and r.method == "PUT"]
    return [request_size(text) for text in ranges if not text.startswith("bytes */")]


def request_size(content_range: str) -> int:
    """``bytes a-b/total`` carries b - a + 1 bytes."""
    first, _, last = content_range.removeprefix("bytes ").partition("/")[0].partition("-")
    return int(last) - int(first) + 1


def test_the_request_after_a_cut_keeps_to_the_rate_the_cut_request_saw(
    emulator: RedivisEmulator, tmp_path: Path
) -> None:
    """2 MiB/s: 8 s is 16 MiB. The first request (32 MiB) is cut 4 MiB in and kept nothing; the next one
    carried 32 MiB again, 16 s a try, however often the link cut it."""
    source = tmp_path / "source.bin"
    source.write_bytes(os.urandom(48 * MiB))
    emulator.add_fault(
        Fault("reset", origin="session", method="PUT", nth=1, after_bytes=4 * MiB, keep_partial=False)
    )
    rate = 2 * MiB
    sizes = upload(emulator, source, LinkClock(rate), checksum=None)
    assert sizes[0] == FIRST_REQUEST_SIZE
    assert sum("reset" in r.faults for r in emulator.requests) == 1
    assert sizes[1] <= rate * TARGET_REQUEST_SECONDS, sizes


def test_after_a_cut_a_slow_link_gets_requests_of_8_seconds_not_8_mib(
    emulator: RedivisEmulator, tmp_path: Path
) -> None:
    """0.5 Mbit/s (64 KiB/s): 8 s is 512 KiB, and 8 MiB (the floor of a link that never cut) is 2 minutes.
    Once a cut showed the link cuts, each request stays near 8 s, successes included."""
    source = tmp_path / "source.bin"
    source.write_bytes(os.urandom(4 * MiB))
    emulator.add_fault(
        Fault("reset", origin="session", method="PUT", nth=1, after_bytes=MiB, keep_partial=False)
    )
    rate = 64 * 1024
    sizes = upload(emulator, source, LinkClock(rate), checksum=None)
    assert sizes[0] == 4 * MiB  # the whole file: smaller than the first request
    after_cut = sizes[1:]
    assert max(after_cut) <= rate * TARGET_REQUEST_SECONDS < MIN_ADAPTIVE_REQUEST_SIZE, after_cut
    assert all(size % CHUNK_UNIT == 0 for size in after_cut[:-1])


def test_the_last_request_keeps_to_the_rate_like_every_other(
    emulator: RedivisEmulator, tmp_path: Path
) -> None:
    """At 2 MiB/s the first request (32 MiB) takes 16 s, so the next carries 16 MiB (8 s). The 40 MiB after
    the first request, hashed ahead as a possible last request, went as one: 20 s of sending."""
    source = tmp_path / "source.bin"
    source.write_bytes(os.urandom(FIRST_REQUEST_SIZE + 40 * MiB))
    rate = 2 * MiB
    sizes = upload(emulator, source, LinkClock(rate), checksum="auto")
    assert sizes[0] == FIRST_REQUEST_SIZE
    assert max(sizes[1:]) <= rate * TARGET_REQUEST_SECONDS, sizes
