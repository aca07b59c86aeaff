"""Release watchers on Airflow 3.3's acknowledged shared stream: one look at a dataset for all its watchers
in a triggerer, and each watcher's cursor stored only past versions whose events Airflow confirmed stored.

Airflow 3.3 runs a ``BaseEventTrigger`` whose ``shared_stream_key`` is not None on a shared stream: one
producer per key (here: connection and dataset) yields raw events, every subscribed trigger turns them
into its own events in ``filter_shared_stream``, and the producer's ``advance`` is called, in order, for a
raw event once every trigger has moved past it (asked for the next one: its filter is done with it) and
Airflow has stored the events it derived. So:

- :class:`ReleaseLooks` (the producer) yields a :class:`Look` per ``poll_interval``: one ``GET`` of the
  dataset (and a listing only when something new was released) past ``after``, the lowest cursor among
  the watchers :func:`join` registered. A watcher whose cursor is below a look's ``after`` (it joined
  after the look was made) waits for the next look, which lists from its cursor.
- A watcher fires for the versions past its cursor and notes them as a :class:`Fired` of that look. The
  stored cursor sits on the last confirmed version; its ``firing`` lists every version fired since.
- ``advance`` marks a watcher's :class:`Fired` confirmed when every watcher accepted the look. If one did
  not (a watcher force-failed by the ack timeout, or leaving before it took the look), the outcome does
  not say which: the ``Fired`` is doubtful and the stored cursor stops before it, until the watcher takes
  a look from the stream after that advance, which proves it was not the one that failed (Airflow hands a
  failed watcher its failure instead of any further look). A failed watcher never stores past it.
- A look can also resolve when its watcher unsubscribes, cancelled after a ``yield`` and before Airflow's
  runner bound the event (the runner awaits its log line in between): that event may never have gone out.
  So a ``Fired`` counts only once the filter resumed after its last ``yield``; one that did not is dropped,
  and the stored cursor never passes it.

What remains is Airflow's own at-least-once window: a triggerer that stops after Airflow stored an event
and before the confirmation reached the producer (one state sync, about a second) fires it again after
the restart, as does a failed store write (logged). Airflow 3.0 to 3.2 have no shared streams and run
``RedivisDatasetReleaseTrigger.run`` instead.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from airflow.triggers.shared_stream import SharedStreamProducer

from airflow_provider_redivis.hooks.redivis import RedivisHook
from airflow_provider_redivis.hooks.uploads import least_poll_interval

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Hashable, Sequence

    from airflow.triggers.shared_stream import AdvanceItem

    from airflow_provider_redivis.hooks.versions import ReleaseCheck
    from airflow_provider_redivis.triggers.release import RedivisDatasetReleaseTrigger

#: Tells producers apart: look numbers restart in each, and a watcher outlives the group it started in.
_PRODUCERS = itertools.count()


def stream_key(conn_id: str, dataset: str) -> Hashable:
    return ("redivis-release", conn_id, dataset)


@dataclass(frozen=True)
class Look:
    """A raw event: look ``key`` (producer, number) at the versions past ``after``, or its failure."""

    key: tuple[int, int]
    after: int | None
    check: ReleaseCheck | None = None
    error: Exception | None = None


@dataclass(eq=False)
class Fired:
    """Versions a watcher fired for from one look; ``index``/``tag``: the last of them."""

    look: tuple[int, int]
    index: int
    tag: str | None
    tags: list[str]
    #: confirmed: Airflow stored the events; doubtful: a watcher failed on the look (see took_look);
    #: dropped: the look resolved before its events were all handed over (the watcher was cancelled).
    state: Literal["pending", "confirmed", "doubtful", "dropped"] = "pending"
    #: Set once the filter resumed after its last yield: the runner took (and bound) every event.
    handed_over: bool = False


@dataclass(eq=False)
class Subscriber:
    """A watcher on the stream: where it has fired up to, where its stored cursor is, what is in flight."""

    trigger: RedivisDatasetReleaseTrigger
    cursor: int | None
    poll_interval: float
    stored: tuple[int, str | None] | None = None  # the last confirmed (index, tag)
    fired: list[Fired] = field(default_factory=list)  # fired, not yet stored as confirmed; oldest first
    writing: asyncio.Lock = field(default_factory=asyncio.Lock)

    def took_look(self) -> None:
        """The watcher was handed a look: the stream did not fail it before (see the module doc)."""
        for entry in self.fired:
            if entry.state == "doubtful":
                entry.state = "confirmed"

    def fire(self, look: Look, versions: list[dict[str, Any]]) -> Fired:
        index, tag = int(versions[-1]["index"]), str(versions[-1].get("tag"))
        entry = Fired(look.key, index, tag, [str(v.get("tag")) for v in versions])
        self.fired.append(entry)
        self.cursor = index
        return entry

    async def write(self) -> None:
        """Store the last confirmed (index, tag), with every version fired since as in flight."""
        async with self.writing:  # one write at a time, each from the state as it is then
            while self.fired and self.fired[0].state == "confirmed":
                done = self.fired.pop(0)
                self.stored = (done.index, done.tag)
            if self.stored is not None:
                firing = [tag for entry in self.fired for tag in entry.tags]
                await self.trigger.store_cursor(*self.stored, firing=firing)


_SUBSCRIBERS: dict[Hashable, list[Subscriber]] = {}


def join(
    trigger: RedivisDatasetReleaseTrigger, cursor: int | None, tag: str | None, poll_interval: float
) -> Subscriber:
    stored = None if cursor is None else (cursor, tag)
    subscriber = Subscriber(trigger, cursor, poll_interval, stored=stored)
    key = stream_key(trigger.redivis_conn_id, trigger.dataset)
    _SUBSCRIBERS.setdefault(key, []).append(subscriber)
    return subscriber


def leave(subscriber: Subscriber) -> None:
    key = stream_key(subscriber.trigger.redivis_conn_id, subscriber.trigger.dataset)
    subscribers = _SUBSCRIBERS.get(key, [])
    if subscriber in subscribers:
        subscribers.remove(subscriber)
    if not subscribers:
        _SUBSCRIBERS.pop(key, None)


class ReleaseLooks(SharedStreamProducer):
    """Looks at one dataset for every watcher of it; stores their cursors as Airflow confirms events."""

    def __init__(self, kwargs: dict[str, Any]) -> None:
        self.conn_id = str(kwargs.get("redivis_conn_id") or RedivisHook.default_conn_name)
        self.dataset = str(kwargs["dataset"])
        self.key = stream_key(self.conn_id, self.dataset)
        self.producer = next(_PRODUCERS)

    async def open_stream(self) -> AsyncIterator[tuple[Any, Any]]:
        hook = RedivisHook(redivis_conn_id=self.conn_id)
        try:
            for number in itertools.count():
                subscribers = await self._subscribers()
                after = min((s.cursor for s in subscribers if s.cursor is not None), default=None)
                key = (self.producer, number)
                try:
                    look = Look(
                        key, after, check=await asyncio.to_thread(hook.releases_after, self.dataset, after)
                    )
                except Exception as exc:  # every watcher logs it and keeps watching
                    look = Look(key, after, error=exc)
                yield look, key
                interval = min(s.poll_interval for s in _SUBSCRIBERS.get(self.key) or subscribers)
                await asyncio.sleep(max(interval, least_poll_interval()))
        finally:
            hook.close()

    async def _subscribers(self) -> list[Subscriber]:
        """The watchers, once at least one has joined (the stream starts as the first one subscribes)."""
        # Polled, not an asyncio.Event: the registry outlives an event loop, and an Event binds to one.
        while not _SUBSCRIBERS.get(self.key):  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        return list(_SUBSCRIBERS[self.key])

    async def advance(self, batch: Sequence[AdvanceItem]) -> None:
        outcomes = {item.broker_payload: item.outcome.is_clean for item in batch}
        touched = []
        for subscriber in list(_SUBSCRIBERS.get(self.key, [])):
            for entry in subscriber.fired:
                if entry.look not in outcomes:
                    continue
                if not entry.handed_over:
                    # Cancelled between a yield and the runner binding the event: it may never have
                    # gone out, yet the look resolved when the watcher unsubscribed. Never stored past.
                    entry.state = "dropped"
                else:
                    entry.state = "confirmed" if outcomes[entry.look] else "doubtful"
            if subscriber.fired and subscriber.fired[0].state == "confirmed":
                touched.append(subscriber)  # the stored cursor can move (a doubtful look blocks it)
        for subscriber in touched:
            try:
                await subscriber.write()
            except Exception:  # that watcher's stored cursor falls behind (a restart repeats); others go on
                subscriber.trigger.log.exception(
                    "Storing the release cursor of %s failed; it stays behind, and a triggerer restart "
                    "fires the versions past it again",
                    subscriber.trigger.dataset,
                )
