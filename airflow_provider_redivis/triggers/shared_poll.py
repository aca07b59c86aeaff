"""Deferred waits on uploads of one table share their status checks: one listing per table per interval.

Every trigger of a triggerer runs in one event loop. The first :class:`RedivisUploadTrigger` waiting on an
upload of a table starts a :class:`TablePoller` for (connection, table); the ones after it join. The poller
checks all their uploads at once (:meth:`UploadsAPI.check_uploads`: one listing of the table, in a thread),
hands each waiter its upload's check, and ends when the last waiter leaves. The registry lives in memory
only: after a triggerer restart it is rebuilt as the triggers start again.

When the poller checks: for its first waiter, after :data:`FIRST_LOOK_GRACE` (or its ``poll_interval``,
if shorter); then after the shortest ``poll_interval`` of its waiters, 1.5x longer after each check up to the shortest ``max_poll_interval``; a waiter that joins starts
that backoff again. A waiter's deadline brings the next check forward, so it gets one last look. Checks are
never closer together than the shortest ``poll_interval``, nor sooner than a ``Retry-After`` allows.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from airflow_provider_redivis.engine.status import UploadCheck, UploadTarget, poll_intervals
from airflow_provider_redivis.hooks.redivis import RedivisHook

#: Seconds before the first look of a new poller. An upload that finished processing before its task
#: deferred would otherwise fire its trigger before the task's process has exited, and Airflow 3.3's
#: scheduler then fails the try it has just queued to resume ("finished with state success, but the task
#: instance's state attribute is queued"): the fleet proof saw it.
FIRST_LOOK_GRACE = 5.0

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

#: (connection id, table uri); a target whose table cannot be told is its own key and polls on its own.
PollerKey = tuple[str, object]

_POLLERS: dict[PollerKey, TablePoller] = {}


@dataclass(eq=False)
class Waiter:
    """One trigger's place at a poller: what it waits for, how often it asked to look, until when."""

    target: UploadTarget
    poll_interval: float
    max_poll_interval: float
    #: The trigger's deadline, as a UNIX timestamp.
    end_time: float
    poller: TablePoller | None = None
    checks: asyncio.Queue[UploadCheck | Exception] = field(default_factory=asyncio.Queue)

    async def next_check(self) -> UploadCheck:
        """The next check of this waiter's upload; an error that ends the wait (a 404, a 401) is raised."""
        check = await self.checks.get()
        if isinstance(check, Exception):
            raise check
        return check

    def next_check_in(self) -> float:
        """Seconds until the poller's next check, as planned now."""
        return self.poller.next_check_in() if self.poller is not None else 0.0


class TablePoller:
    """Checks the uploads its waiters wait for, all in one table, with one request where one will do."""

    def __init__(self, key: PollerKey, conn_id: str, table_uri: str | None, max_retry_seconds: float) -> None:
        self.key = key
        self.table_uri = table_uri
        self.loop = asyncio.get_running_loop()
        # One check retries within the connection's policy, but not past the poll cap: the schedule here
        # knows the deadlines.
        self.hook = RedivisHook(redivis_conn_id=conn_id, max_retry_seconds=max_retry_seconds)
        self.waiters: list[Waiter] = []
        self.checks_made = 0
        self._wake = asyncio.Event()
        self._intervals: Iterator[float] | None = None
        self._gap = 0.0
        self._last_start: float | None = None  # loop times of the last check's start and end
        self._last_end = 0.0
        self._not_before = 0.0  # loop time a Retry-After allows the next check
        self.task = self.loop.create_task(self._run(), name=f"redivis-shared-poll {key[1]}")

    def join(self, waiter: Waiter) -> None:
        waiter.poller = self
        self.waiters.append(waiter)
        if self._last_start is None and len(self.waiters) == 1:
            self._not_before = self.loop.time() + min(FIRST_LOOK_GRACE, waiter.poll_interval)
        # The backoff starts again: the newcomer is looked at as often as a trigger of its own would be.
        self._intervals = poll_intervals(self._first(), min(w.max_poll_interval for w in self.waiters))
        self._gap = self._first()
        self._wake.set()

    def leave(self, waiter: Waiter) -> None:
        self.waiters.remove(waiter)
        self._wake.set()

    def next_check_in(self) -> float:
        return max(0.0, self._due() - self.loop.time()) if self.waiters else 0.0

    def _first(self) -> float:
        return min(w.poll_interval for w in self.waiters)

    def _due(self) -> float:
        """Loop time of the next check."""
        if self._last_start is None:
            return self._not_before
        # As a trigger of its own did: the interval runs from the end of the last check.
        due = self._last_end + self._gap
        # A deadline after the last check's start earns a look at it; one before had its look.
        offset = self.loop.time() - time.time()
        deadlines = [w.end_time + offset for w in self.waiters if w.end_time + offset > self._last_start]
        due = min([due, *deadlines])
        return max(due, self._last_end + self._first(), self._not_before)

    async def _run(self) -> None:
        try:
            while self.waiters:
                delay = self._due() - self.loop.time()
                if delay > 0:
                    self._wake.clear()
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), delay)
                    continue
                await self._check()
        finally:
            # Nothing awaited since the last waiter left: a trigger starting now finds no poller and makes one.
            if _POLLERS.get(self.key) is self:
                del _POLLERS[self.key]
            self.hook.close()

    async def _check(self) -> None:
        self._last_start = self.loop.time()
        self.checks_made += 1
        targets = list(dict.fromkeys(w.target for w in self.waiters))
        results: dict[UploadTarget, UploadCheck | Exception]
        try:
            results = await asyncio.to_thread(self.hook.check_uploads, targets, self.table_uri)
        except Exception as exc:  # the connection cannot be read, say: every waiter's error event says so
            results = dict.fromkeys(targets, exc)
        self._last_end = self.loop.time()
        retry_after = [r.retry_after for r in results.values() if isinstance(r, UploadCheck)]
        self._not_before = self._last_end + max(retry_after, default=0.0)
        if self._intervals is not None:
            self._gap = next(self._intervals)
        for waiter in self.waiters:
            # A waiter that joined during the check waits for the next one, which its join brought forward.
            if waiter.target in results:
                waiter.checks.put_nowait(results[waiter.target])
        await asyncio.sleep(0)  # the waiters take their checks (and a finished one leaves) before the next


@contextlib.asynccontextmanager
async def waiting(
    conn_id: str, target: UploadTarget, *, poll_interval: float, max_poll_interval: float, end_time: float
) -> AsyncIterator[Waiter]:
    """Wait on ``target`` with every other trigger waiting on its table: ``await waiter.next_check()``."""
    table_uri = target.table_uri
    key: PollerKey = (conn_id, table_uri if table_uri is not None else target)
    poller = _POLLERS.get(key)
    if poller is None or poller.loop is not asyncio.get_running_loop():
        poller = _POLLERS[key] = TablePoller(key, conn_id, table_uri, max_retry_seconds=max_poll_interval)
    waiter = Waiter(target, poll_interval, max_poll_interval, end_time)
    poller.join(waiter)
    try:
        yield waiter
    finally:
        poller.leave(waiter)


def pollers() -> list[TablePoller]:
    """The pollers running now (for tests and debugging)."""
    return list(_POLLERS.values())
