"""Watchers of one dataset share their looks at it: one GET of the dataset per interval, however many.

Every trigger of a triggerer runs in one event loop. The first trigger watching a dataset (a
``RedivisReleaseWaitTrigger``, or a ``RedivisDatasetReleaseTrigger`` where Airflow has no shared streams:
3.3 runs those on ``release_stream``) starts a :class:`DatasetPoller` for (connection, dataset); the ones
after it join.
The poller asks :meth:`~airflow_provider_redivis.hooks.versions.VersionsAPI.releases_after` (one GET of
the dataset; a listing of its versions only when something new was released) from the lowest cursor
among its watchers, hands every watcher the same answer, and ends when the last watcher leaves. Looks
are never closer together than the shortest ``poll_interval`` among the watchers, which are floored by
``[redivis] min_poll_interval``; all of them spend the one request budget of their token (the hook's).
The registry is in memory only: after a triggerer restart it is rebuilt as the watchers start again.

A deferred task's wait (``first_look_after``) holds a new poller's first look for a moment, as the upload
waits do (``shared_poll.FIRST_LOOK_GRACE``): a wait that fired before its task's process had exited would
meet Airflow 3.3's scheduler failing the resumption it had just queued.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from airflow_provider_redivis.hooks.redivis import RedivisHook

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from airflow_provider_redivis.hooks.versions import ReleaseCheck

#: (connection id, dataset reference as given).
PollerKey = tuple[str, str]

_POLLERS: dict[PollerKey, DatasetPoller] = {}


@dataclass(eq=False)
class Watcher:
    """One trigger's place at a poller: how often it asked to look and the index it has fired up to."""

    poll_interval: float
    #: The last version index this watcher fired for (or took as its baseline); None: not known yet.
    cursor: int | None
    checks: asyncio.Queue[ReleaseCheck | Exception] = field(default_factory=asyncio.Queue)

    async def next_check(self) -> ReleaseCheck:
        """The next look at the dataset; a failed look is raised (the watcher logs it and waits on)."""
        check = await self.checks.get()
        if isinstance(check, Exception):
            raise check
        return check


class DatasetPoller:
    """Looks at one dataset for all its watchers, at the pace of the most eager one."""

    def __init__(self, key: PollerKey) -> None:
        self.key = key
        self.loop = asyncio.get_running_loop()
        self.hook = RedivisHook(redivis_conn_id=key[0])
        self.watchers: list[Watcher] = []
        self.checks_made = 0
        self._wake = asyncio.Event()
        self._last_end: float | None = None
        #: No look before this loop time (a deferred task's first-look grace; see the module doc).
        self._not_before = self.loop.time()
        self.task = self.loop.create_task(self._run(), name=f"redivis-release-poll {key[1]}")

    def join(self, watcher: Watcher, first_look_after: float = 0.0) -> None:
        if self._last_end is None and not self.watchers:
            self._not_before = self.loop.time() + first_look_after
        self.watchers.append(watcher)
        self._wake.set()

    def leave(self, watcher: Watcher) -> None:
        self.watchers.remove(watcher)
        self._wake.set()

    def _due(self) -> float:
        if self._last_end is None:
            return self._not_before
        return self._last_end + min(w.poll_interval for w in self.watchers)

    async def _run(self) -> None:
        try:
            while self.watchers:
                delay = self._due() - self.loop.time()
                if delay > 0:
                    self._wake.clear()
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), delay)
                    continue
                await self._check()
        finally:
            if _POLLERS.get(self.key) is self:
                del _POLLERS[self.key]
            self.hook.close()

    async def _check(self) -> None:
        cursors = [w.cursor for w in self.watchers]
        # A watcher without a cursor only needs the current index; the others, what came after theirs.
        after = min((c for c in cursors if c is not None), default=None)
        result: ReleaseCheck | Exception
        try:
            result = await asyncio.to_thread(self.hook.releases_after, self.key[1], after)
        except Exception as exc:  # every watcher logs it and keeps watching
            result = exc
        self._last_end = self.loop.time()
        self.checks_made += 1  # looks answered (or failed): a look in flight is not counted yet
        for watcher in self.watchers:
            watcher.checks.put_nowait(result)
        await asyncio.sleep(0)


@contextlib.asynccontextmanager
async def watching(
    conn_id: str, dataset: str, *, poll_interval: float, cursor: int | None, first_look_after: float = 0.0
) -> AsyncIterator[Watcher]:
    """Watch ``dataset`` with every other watcher of it: ``await watcher.next_check()``.

    :param first_look_after: seconds a poller this watcher starts waits before its first look.
    """
    key: PollerKey = (conn_id, dataset)
    poller = _POLLERS.get(key)
    if poller is None or poller.loop is not asyncio.get_running_loop():
        poller = _POLLERS[key] = DatasetPoller(key)
    watcher = Watcher(poll_interval, cursor)
    poller.join(watcher, first_look_after)
    try:
        yield watcher
    finally:
        poller.leave(watcher)


def pollers() -> list[DatasetPoller]:
    """The pollers running now (for tests and debugging)."""
    return list(_POLLERS.values())
