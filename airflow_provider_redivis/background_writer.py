"""Saves that never stand in the bytes' way: the newest of a series of writes, on a thread of its own.

Plain Python. The upload job hands it checkpoint and XCom saves while the transfer streams.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable

T = TypeVar("T")

log = logging.getLogger(__name__)


class BackgroundWriter(Generic[T]):
    """Runs the newest of a series of writes on a thread of its own, so a slow store never holds bytes up.

    Each value supersedes the one before (a later offset), so a value that arrives while a write is in
    flight replaces any that waits. A failed write is logged and skipped: the server's offset, not the
    checkpoint's, is what a resume trusts. :meth:`close` waits for the last write, so a synchronous
    write after it is never overtaken.
    """

    def __init__(self, write: Callable[[T], None], what: str) -> None:
        self._write = write
        self._what = what
        self._pending: list[T] = []
        self._closed = False
        self._wake = threading.Condition()
        self._thread = threading.Thread(target=self._run, name=f"redivis-{what}", daemon=True)
        self._thread.start()

    def submit(self, value: T) -> None:
        with self._wake:
            self._pending[:] = [value]
            self._wake.notify()

    def close(self) -> None:
        with self._wake:
            self._closed = True
            self._wake.notify()
        self._thread.join()

    def __enter__(self) -> BackgroundWriter[T]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._pending and not self._closed:
                    self._wake.wait()
                if not self._pending:
                    return
                value = self._pending.pop()
            try:
                self._write(value)
            except Exception as exc:
                log.warning("Could not save the %s (%s); the upload goes on", self._what, type(exc).__name__)
