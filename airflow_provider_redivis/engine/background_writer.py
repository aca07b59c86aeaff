"""Saves that never stand in the bytes' way: the newest of a series of writes, on a thread of its own.

Plain Python. The upload job hands it checkpoint and XCom saves while the transfer streams.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Generic, TypeVar

from airflow_provider_redivis.errors import StoreTimeoutError

if TYPE_CHECKING:
    from collections.abc import Callable

T = TypeVar("T")

log = logging.getLogger(__name__)

#: How long :meth:`BackgroundWriter.close` waits for the last write: past Airflow 3's own retries of one
#: call to its API server (5 tries, waits of up to 90 s between them), far short of forever.
CLOSE_TIMEOUT = 300.0


class BackgroundWriter(Generic[T]):
    """Runs the newest of a series of writes on a thread of its own, so a slow store never holds bytes up.

    Each value supersedes the one before (a later offset), so a value that arrives while a write is in
    flight replaces any that waits. A failed write is logged and skipped: the server's offset, not the
    checkpoint's, is what a resume trusts. :meth:`close` waits for the last write, so a synchronous
    write after it is never overtaken; a write that does not end within ``close_timeout`` seconds (a
    store that hangs) is logged and raised as :class:`StoreTimeoutError`, with ``advice`` appended.
    """

    def __init__(
        self, write: Callable[[T], None], what: str, *, close_timeout: float = CLOSE_TIMEOUT, advice: str = ""
    ) -> None:
        self._write = write
        self._what = what
        self._close_timeout = close_timeout
        self._advice = advice
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
        """Wait for the last write; raise :class:`StoreTimeoutError` if it outlasts ``close_timeout``."""
        hung = self._finish()
        if hung is not None:
            raise StoreTimeoutError(hung)

    def __enter__(self) -> BackgroundWriter[T]:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self._finish()  # an error is on its way out already: a hung store is logged, not raised over it

    def _finish(self) -> str | None:
        """Stop after the last write and wait for it; what to tell the user if it did not end in time."""
        with self._wake:
            self._closed = True
            self._wake.notify()
        self._thread.join(self._close_timeout)
        if not self._thread.is_alive():
            return None
        message = (
            f"Saving the {self._what} did not finish within {self._close_timeout:g} s: the store it writes to "
            f"does not answer.{self._advice}"
        )
        log.error("%s", message)
        return message

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
