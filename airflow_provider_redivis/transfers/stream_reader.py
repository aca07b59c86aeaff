"""A seekable file view over bytes being produced, for an upload whose total is unknown. Plain Python.

The upload engine (:meth:`ResumableSession.upload` with ``total=None``) reads each request into
memory, then one byte more to know whether it is the last. After a failed request it asks the server
what it holds and seeks back to that offset, never before the start of the request it is re-sending
(once the total is known it also peeks at the end, then seeks back). So this reader keeps the bytes
from the last offset the server acknowledged (:meth:`StreamReader.release`, fed by the engine's
``on_progress``) onwards: one request plus one produced block. A seek further back cannot be served
and says so.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

from airflow_provider_redivis.errors import RedivisError

if TYPE_CHECKING:
    from collections.abc import Iterator


class StreamRewindError(RedivisError):
    """The upload asked for bytes this stream no longer holds; only a new try (a new query) can help."""


class StreamReader(io.RawIOBase):
    """``read``/``seek``/``tell`` over ``blocks``, remembering bytes from the last released offset onwards.

    :param blocks: the bytes, in order (an encoder's generator); pulled only as reads need them.
    :param max_buffer: an upper bound on the bytes held, a guard against a caller that never seeks
        forward; exceeding it is a bug in the caller, reported as :class:`StreamRewindError`.
    """

    def __init__(self, blocks: Iterator[bytes], *, max_buffer: int = 128 * 1024 * 1024) -> None:
        super().__init__()
        self._blocks = blocks
        self._buffer = bytearray()
        self._base = 0  # stream offset of _buffer[0]
        self._position = 0
        self._exhausted = False
        self._max_buffer = max_buffer
        #: The largest number of bytes held at once: memory, as tests and benchmarks check it.
        self.peak_buffered = 0

    # -- io.RawIOBase ---------------------------------------------------------------------------

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    @property
    def produced(self) -> int:
        """Bytes pulled from the producer so far."""
        return self._base + len(self._buffer)

    @property
    def exhausted(self) -> bool:
        return self._exhausted

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_CUR:
            offset += self._position
        elif whence != io.SEEK_SET:
            raise io.UnsupportedOperation(
                "a stream of unknown length can only seek from its start or position"
            )
        if offset < self._base:
            raise StreamRewindError(
                f"The upload asked to go back to byte {offset}, but the stream keeps only the bytes from "
                f"{self._base} on (one request). The query's rows are not kept, so this try cannot continue; "
                "the task's next try runs the query again into a new upload session."
            )
        self._position = offset
        return offset

    def release(self, offset: int) -> None:
        """The server holds every byte before ``offset``: they are never asked for again; let them go.

        Called with each offset the server acknowledges (the engine's ``on_progress``).
        """
        drop = min(max(0, offset - self._base), len(self._buffer))
        if drop:
            del self._buffer[:drop]
            self._base += drop

    def _fill(self, upto: int) -> None:
        while self.produced < upto and not self._exhausted:
            try:
                block = next(self._blocks)
            except StopIteration:
                self._exhausted = True
                break
            self._buffer += block
            held = len(self._buffer)
            self.peak_buffered = max(self.peak_buffered, held)
            if held > self._max_buffer:
                raise StreamRewindError(
                    f"The stream holds {held} bytes without being asked to move on: more than max_buffer "
                    f"({self._max_buffer})."
                )

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            raise io.UnsupportedOperation("read the stream in bounded pieces: read(n)")
        self._fill(self._position + size)
        start = self._position - self._base
        with memoryview(self._buffer) as view:
            data = bytes(view[start : start + size])  # one copy, not a slice and then a copy
        self._position += len(data)
        return data

    def readinto(self, target: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self.read(len(target))
        target[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._buffer = bytearray()
        close = getattr(self._blocks, "close", None)
        if close is not None:
            close()
        super().close()
