"""Bytes stream through the emulator: a 256 MiB upload costs its process a few MiB, not the upload's size."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from emulator.tests.conftest import CLI_ADMIN, TIMEOUT, running_cli, table_path

psutil = pytest.importorskip("psutil")

MIB = 1024 * 1024
TOTAL = 256 * MIB
HALF = TOTAL // 2
#: Generous: buffers are a few MiB; the rest is allocator noise. Far below the 256 MiB sent.
MAX_GROWTH = 48 * MIB


class Source:
    """Deterministic bytes made on the fly (the client holds one MiB too), hashed as they go."""

    def __init__(self) -> None:
        self.block = os.urandom(MIB)
        self.md5 = hashlib.md5()

    def piece(self, index: int) -> bytes:
        data = index.to_bytes(8, "big") + self.block[8:]
        self.md5.update(data)
        return data

    def pieces(self, first: int, count: int) -> Iterator[bytes]:
        for index in range(first, first + count):
            yield self.piece(index)


class Sized:
    """A file-like body with a length, so requests sends Content-Length instead of chunks."""

    def __init__(self, pieces: Iterator[bytes], length: int) -> None:
        self._pieces = pieces
        self._length = length
        self._buffer = b""

    def __len__(self) -> int:
        return self._length

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buffer) < size:
            piece = next(self._pieces, None)
            if piece is None:
                break
            self._buffer += piece
        if size < 0:
            size = len(self._buffer)
        out, self._buffer = self._buffer[:size], self._buffer[size:]
        return out


@pytest.mark.slow
def test_a_256_mib_upload_does_not_grow_the_emulator(tmp_path: Path) -> None:
    with running_cli("--table", "o.d.t", "--data-dir", str(tmp_path / "data"), log=tmp_path / "err") as (
        proc,
        base,
    ):
        process = psutil.Process(proc.pid)
        auth = {"Authorization": "Bearer test-token"}
        session = requests.post(
            f"{base}/api/v1{table_path('o.d.t')}/resumableUpload",
            params={"size": TOTAL},
            headers=auth,
            timeout=TIMEOUT,
        ).json()
        # Warm up: one small request so that lazily allocated structures exist before the baseline.
        requests.put(session["url"], headers={"Content-Range": f"bytes */{TOTAL}"}, timeout=TIMEOUT)
        baseline = process.memory_info().rss
        peak = baseline
        done = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not done.wait(0.05):
                peak = max(peak, process.memory_info().rss)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        source = Source()
        try:
            # First half with chunked transfer coding, second half with Content-Length.
            first = requests.put(
                session["url"],
                data=source.pieces(0, HALF // MIB),
                headers={"Content-Range": f"bytes 0-{HALF - 1}/{TOTAL}"},
                timeout=(10, 120),
            )
            assert first.status_code == 308, first.text
            assert first.headers["Range"] == f"bytes=0-{HALF - 1}"
            second = requests.put(
                session["url"],
                data=Sized(source.pieces(HALF // MIB, HALF // MIB), HALF),
                headers={"Content-Range": f"bytes {HALF}-{TOTAL - 1}/{TOTAL}"},
                timeout=(10, 120),
            )
        finally:
            done.set()
            sampler.join(5)
        assert second.status_code == 200, second.text
        assert second.json()["size"] == str(TOTAL)
        sessions = requests.get(f"{base}/_emulator/sessions", headers=CLI_ADMIN, timeout=TIMEOUT).json()
        assert sessions[session["id"]]["md5"] == source.md5.hexdigest()
        assert peak - baseline < MAX_GROWTH, f"RSS grew by {(peak - baseline) / MIB:.1f} MiB"
