"""Reading request bodies in bounded pieces: Content-Length or chunked, with the fault hooks.

The emulator never holds a body in memory (apart from small JSON bodies): every byte goes from
the socket into a caller's buffer, one piece at a time.
"""

from __future__ import annotations

import base64
import hashlib
import os
import queue
import threading
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

import google_crc32c

#: Cloud Storage keeps and accepts bytes in units of 256 KiB.
UNIT = 256 * 1024
#: How much of a body is read at once: large socket reads, a multiple of UNIT.
PIECE = 1024 * 1024
#: JSON bodies larger than this are refused.
MAX_JSON_BODY = 16 * 1024 * 1024
#: Kept for code that still asks: crc32c is always computed (``google-crc32c`` is a dependency).
HAS_CRC32C = True


class ClientDisconnected(Exception):
    """The client closed the connection (or it timed out) before the body was complete."""


class BodyCut(Exception):
    """A ``reset`` fault's cut point was reached: the handler resets the connection."""


class BodyError(Exception):
    """The body is malformed (bad chunked encoding, too large); answered with 400/413."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class BodyReader:
    """One request's body, read in pieces.

    ``cut_at``: raise :class:`BodyCut` once that many body bytes were read and more are asked for.
    ``pause_at`` and ``pause``: call ``pause()`` once, when that many body bytes were read.
    """

    def __init__(
        self,
        rfile: BinaryIO,
        *,
        content_length: int | None,
        chunked: bool,
        cut_at: int | None = None,
        pause_at: int | None = None,
        pause: Callable[[], None] | None = None,
    ) -> None:
        self._rfile = rfile
        self.length = None if chunked else (content_length or 0)
        self._chunked = chunked
        self._chunk_left = 0
        self._finished = (not chunked) and self.length == 0
        self._eof = False
        self.bytes_read = 0
        self.cut_at = cut_at
        self._pause_at = pause_at
        self._pause = pause

    def pause_after(self, count: int, pause: Callable[[], None]) -> None:
        """Call ``pause()`` once, when ``count`` body bytes have been read (the ``stall`` fault)."""
        self._pause_at = count
        self._pause = pause

    @property
    def finished(self) -> bool:
        """The whole body has been read."""
        return self._finished

    def _raw_readinto(self, view: memoryview) -> int:
        try:
            n = self._rfile.readinto(view)  # type: ignore[attr-defined]
        except (TimeoutError, ConnectionError, OSError) as exc:
            self._eof = True
            raise ClientDisconnected(str(exc)) from exc
        return n or 0

    def _readline(self) -> bytes:
        try:
            line = self._rfile.readline(1024)
        except (TimeoutError, ConnectionError, OSError) as exc:
            raise ClientDisconnected(str(exc)) from exc
        if not line:
            raise ClientDisconnected("connection closed inside a chunked body")
        return line

    def _next_chunk(self) -> None:
        """Chunked transfer coding: read the next chunk-size line (and the trailer after the last)."""
        line = self._readline()
        size_text = line.split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise BodyError(f"Malformed chunked body: chunk size line {line[:40]!r}.") from None
        if size == 0:
            while self._readline() not in (b"\r\n", b"\n"):
                pass
            self._finished = True
        self._chunk_left = size

    def _end_chunk(self) -> None:
        if self._readline() not in (b"\r\n", b"\n"):
            raise BodyError("Malformed chunked body: chunk data is not followed by CRLF.")

    def readinto(self, view: memoryview) -> int:
        """Fill up to ``len(view)`` bytes; 0 once the body is over.

        Returns fewer bytes than asked when the body, a chunk, or a fault's mark ends first. A
        connection closed mid-body returns what arrived, then raises ClientDisconnected.
        """
        if self._eof:
            raise ClientDisconnected("connection closed before the body was complete")
        want = len(view)
        if want == 0:
            return 0
        if self._pause_at is not None and self.bytes_read >= self._pause_at and self._pause is not None:
            pause, self._pause = self._pause, None
            pause()
        if self.cut_at is not None:
            if self.bytes_read >= self.cut_at:
                if self._finished:
                    return 0
                raise BodyCut()
            want = min(want, self.cut_at - self.bytes_read)
        if self._pause_at is not None and self._pause is not None and self.bytes_read < self._pause_at:
            want = min(want, self._pause_at - self.bytes_read)
        if self._finished:
            return 0
        if self._chunked:
            if self._chunk_left == 0:
                self._next_chunk()
                if self._finished:
                    return 0
            want = min(want, self._chunk_left)
        else:
            want = min(want, (self.length or 0) - self.bytes_read)
        n = self._raw_readinto(view[:want])
        self.bytes_read += n
        if n < want:
            self._eof = True
            if n == 0:
                raise ClientDisconnected("connection closed before the body was complete")
            return n
        if self._chunked:
            self._chunk_left -= n
            if self._chunk_left == 0:
                self._end_chunk()
        elif self.bytes_read >= (self.length or 0):
            self._finished = True
        return n

    def read_all(self, limit: int = MAX_JSON_BODY) -> bytes:
        """The whole (small) body; BodyError 413 beyond ``limit``."""
        if self.length is not None and self.length > limit:
            raise BodyError(f"Request body of {self.length} bytes is larger than {limit}.", status=413)
        out = bytearray()
        buf = bytearray(min(PIECE, max(1, limit + 1)))
        view = memoryview(buf)
        while True:
            n = self.readinto(view)
            if n == 0:
                return bytes(out)
            out += view[:n]
            if len(out) > limit:
                raise BodyError(f"Request body is larger than {limit} bytes.", status=413)

    def drain(self) -> None:
        """Read and discard the rest, so the connection can serve the next request."""
        buf = bytearray(PIECE)
        view = memoryview(buf)
        saved_cut, self.cut_at = self.cut_at, None
        try:
            while self.readinto(view):
                pass
        finally:
            self.cut_at = saved_cut


class Digests:
    """md5 and crc32c, updated in order over kept bytes."""

    def __init__(self) -> None:
        self.md5 = hashlib.md5()  # noqa: S324 - Cloud Storage's object checksum, not security
        self.crc = google_crc32c.Checksum()

    def update(self, data: bytes | bytearray | memoryview) -> None:
        self.md5.update(data)
        self.crc.update(bytes(data))  # the C extension takes only read-only buffers

    def copy(self) -> Digests:
        other = Digests.__new__(Digests)
        other.md5 = self.md5.copy()
        other.crc = self.crc.copy()
        return other

    @property
    def md5_hex(self) -> str:
        return self.md5.hexdigest()

    @property
    def md5_base64(self) -> str:
        return base64.b64encode(self.md5.digest()).decode("ascii")

    @property
    def crc32c_base64(self) -> str:
        """Base64 of the big-endian 4-byte CRC32C, as Cloud Storage writes it."""
        return base64.b64encode(self.crc.digest()).decode("ascii")


class InlineHasher:
    """Hash on the reading thread, reusing one buffer: for small chunks."""

    def __init__(self, digests: Digests) -> None:
        self.digests = digests
        self._view = memoryview(bytearray(PIECE))

    def acquire(self) -> memoryview:
        return self._view

    def submit(self, buffer: memoryview, data: memoryview | None) -> None:
        if data is not None and len(data):
            self.digests.update(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


class ThreadedHasher:
    """Hash on a helper thread while the next piece is read and written (md5 releases the GIL).

    Pieces are hashed in the order submitted; a buffer returns to the pool once hashed, so the
    memory in use stays at ``count`` pieces whatever the chunk size.
    """

    def __init__(self, digests: Digests, count: int = 4) -> None:
        self.digests = digests
        self._free: queue.SimpleQueue[memoryview] = queue.SimpleQueue()
        for _ in range(count):
            self._free.put(memoryview(bytearray(PIECE)))
        self._work: queue.Queue[tuple[memoryview, memoryview] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="redivis-emulator-md5", daemon=True)
        self._closed = False
        self._error: BaseException | None = None
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._work.get()
            try:
                if item is None:
                    return
                buffer, data = item
                try:
                    if self._error is None:
                        self.digests.update(data)
                except BaseException as exc:  # reported by close(): a wrong md5 must not be committed
                    self._error = exc
                finally:
                    self._free.put(buffer)
            finally:
                self._work.task_done()

    def acquire(self) -> memoryview:
        return self._free.get()

    def submit(self, buffer: memoryview, data: memoryview | None) -> None:
        if data is None or not len(data):
            self._free.put(buffer)
        else:
            self._work.put((buffer, data))

    def flush(self) -> None:
        self._work.join()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._work.put(None)
            self._thread.join()
        if self._error is not None:
            raise RuntimeError("hashing the received bytes failed") from self._error


#: Chunks at least this large are hashed on a helper thread.
THREADED_HASH_MIN = 8 * PIECE


def write_all(fh: BinaryIO, data: memoryview | bytes) -> None:
    """FileIO.write may write less than asked; loop until all of it is on disk."""
    view = memoryview(data)
    while view:
        written = fh.write(view)
        if written is None or written <= 0:
            raise OSError("could not write to the emulator's data directory")
        view = view[written:]


def stream_body_to_file(body: BodyReader, path: Path) -> tuple[int, Digests]:
    """Copy the whole body into ``path`` piece by piece, hashing as it goes. Removes the file on failure."""
    digests = Digests()
    size = 0
    buf = bytearray(PIECE)
    view = memoryview(buf)
    try:
        with open(path, "wb", buffering=0) as fh:
            while True:
                n = body.readinto(view)
                if n == 0:
                    break
                piece = view[:n]
                write_all(fh, piece)
                digests.update(piece)
                size += n
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return size, digests


def hash_file_range(fh: BinaryIO, digests: Digests, start: int, end: int) -> None:
    """Feed bytes [start, end) of an open file into ``digests``."""
    fh.seek(start)
    left = end - start
    while left > 0:
        data = fh.read(min(PIECE, left))
        if not data:
            raise OSError(f"stored file is shorter than {end} bytes")
        digests.update(data)
        left -= len(data)


def floor_unit(offset: int) -> int:
    return offset - offset % UNIT


def file_size(path: Path) -> int:
    return os.stat(path).st_size
