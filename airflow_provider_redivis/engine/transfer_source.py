"""The source as a transfer reads it: positional reads two threads can share, request bodies streamed from
it, and the last request's crc32c computed ahead, on a thread, while earlier bytes are on the wire.

Plain Python, no Airflow. The last request states the whole source's hash (``x-goog-hash``), so its bytes
must be hashed before it is sent. Hashing them at that moment would leave the link idle; hashed while the
request before it streams, and joined to the rest with :func:`~airflow_provider_redivis.engine.checksums.crc32c_combine`,
they cost no time on the wire.
"""

from __future__ import annotations

import threading
from typing import IO, TYPE_CHECKING

import google_crc32c

from airflow_provider_redivis.engine.checksums import SourceChecksums, source_ended
from airflow_provider_redivis.errors import SourceChangedError

if TYPE_CHECKING:
    from collections.abc import Iterator

#: Bytes read from the source per write to the socket.
BLOCK = 1024 * 1024


class SharedReader:
    """Positional reads of one seekable source, safe from two threads (the sender and the tail hash)."""

    def __init__(self, reader: IO[bytes]) -> None:
        self._reader = reader
        self._lock = threading.Lock()

    def read_at(self, offset: int, length: int) -> bytes:
        with self._lock:
            self._reader.seek(offset)
            return self._reader.read(length)

    def check_no_growth(self, total: int) -> None:
        # Shrinking shows as a short read while a body is sent; growth shows past the announced end.
        if self.read_at(total, 1):
            raise SourceChangedError(
                f"The source grew past its {total} bytes while being read. Nothing was created; run the task "
                "again once the file is complete."
            )


class RequestBody:
    """``length`` bytes of the source from ``offset``, read block by block as ``requests`` sends them.

    An iterable with a length: ``requests`` sends it as one body of that length. Each block is hashed as
    it goes out; memory is one block whatever the request size. A short read means the source shrank.
    """

    def __init__(self, source: SharedReader, offset: int, length: int, checksums: SourceChecksums) -> None:
        self._source = source
        self._offset = offset
        self._length = length
        self._checksums = checksums
        #: Bytes handed to the socket so far: what a cut request got on its way.
        self.sent = 0

    def __len__(self) -> int:
        return self._length

    def __iter__(self) -> Iterator[bytes]:
        position, end = self._offset, self._offset + self._length
        while position < end:
            block = self._source.read_at(position, min(BLOCK, end - position))
            if not block:
                raise source_ended(position, end)
            self._checksums.update(position, block)
            position += len(block)
            yield block
            self.sent += len(block)


class BytesBody:
    """A request body read ahead (a stream of unknown size), sent block by block so what went out is counted."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self.sent = 0

    def __len__(self) -> int:
        return len(self._data)

    def __iter__(self) -> Iterator[memoryview]:
        view = memoryview(self._data)
        for start in range(0, len(view), BLOCK):
            block = view[start : start + BLOCK]
            yield block
            self.sent += len(block)


class TailHash:
    """crc32c of the source's bytes ``start``..``end``, computed on a thread of its own."""

    def __init__(self, source: SharedReader, start: int, end: int) -> None:
        self.start = start
        self.end = end
        self._source = source
        self._hashed = 0
        self._crc: int | None = None
        self._error: BaseException | None = None
        self._cancelled = threading.Event()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="redivis-tail-hash", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        crc, position = 0, self.start
        try:
            while position < self.end:
                if self._cancelled.is_set():
                    return
                piece = self._source.read_at(position, min(BLOCK, self.end - position))
                if not piece:
                    raise source_ended(position, self.end)
                crc = google_crc32c.extend(crc, piece)
                position += len(piece)
                self._hashed = position - self.start
            self._crc = crc
        except BaseException as exc:  # handed to the sender, which raises it in its own thread
            self._error = exc
        finally:
            self._done.set()

    def result(self, wait_if_left: int) -> int | None:
        """The crc32c, waiting for it only if at most ``wait_if_left`` bytes are still to hash; else None."""
        if not self._done.is_set() and self.end - self.start - self._hashed > wait_if_left:
            return None
        self._done.wait()
        if self._error is not None:
            raise self._error
        return self._crc

    def cancel(self) -> None:
        self._cancelled.set()
        self._thread.join()
