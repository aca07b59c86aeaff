"""Release watchers on Airflow 3.3's acknowledged shared stream: one look at a dataset for all its watchers
in a triggerer, and each watcher's cursor moved only once Airflow confirms it stored the events fired.

Airflow 3.3 runs a ``BaseEventTrigger`` whose ``shared_stream_key`` is not None on a shared stream: one
producer per key (here: connection and dataset) yields raw events, every subscribed trigger turns them
into its own events in ``filter_shared_stream``, and the producer's ``advance`` is called for a raw event
once every trigger has moved past it (pulled the next one) and Airflow has stored the events it derived.
So:

- :class:`ReleaseLooks` (the producer) yields a :class:`Look` per ``poll_interval``: one ``GET`` of the
  dataset (and a listing only when something new was released) from the lowest cursor among the watchers,
  which :func:`join` registers. After a look that found a release it yields an empty follow-up look, so
  that the watchers move past the release at once rather than a poll interval later.
- A watcher fires for the versions past its own cursor and notes the cursor that firing reached.
- ``advance`` stores those cursors for the looks Airflow confirmed, and only when every watcher accepted
  them: after a failure the cursor stays behind and the versions fire again (never lost).

What remains is Airflow's own at-least-once window: a triggerer that stops after Airflow stored an event
and before the confirmation reached the trigger (one state sync, about a second) fires it again after the
restart. Airflow 3.0 to 3.2 have no shared streams and run ``RedivisDatasetReleaseTrigger.run`` instead.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow.triggers.shared_stream import SharedStreamProducer

from airflow_provider_redivis.hooks.redivis import RedivisHook
from airflow_provider_redivis.hooks.uploads import least_poll_interval

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Hashable, Sequence

    from airflow.triggers.shared_stream import AdvanceItem

    from airflow_provider_redivis.hooks.versions import ReleaseCheck
    from airflow_provider_redivis.triggers.release import RedivisDatasetReleaseTrigger

#: Seconds between a look that found a release and its empty follow-up (see the module doc).
FOLLOW_UP = 0.5


def stream_key(conn_id: str, dataset: str) -> Hashable:
    return ("redivis-release", conn_id, dataset)


@dataclass(frozen=True)
class Look:
    """A raw event: look ``number`` at the dataset, its answer or its failure; neither for a follow-up."""

    number: int
    check: ReleaseCheck | None = None
    error: Exception | None = None


@dataclass(eq=False)
class Subscriber:
    """A watcher on the stream: how often it asked to look, where it has fired up to, what to store."""

    trigger: RedivisDatasetReleaseTrigger
    cursor: int | None
    poll_interval: float
    #: Look number -> (index, tag) to store as the cursor once Airflow has stored that look's events.
    to_store: dict[int, tuple[int, str | None]] = field(default_factory=dict)


_SUBSCRIBERS: dict[Hashable, list[Subscriber]] = {}


def join(trigger: RedivisDatasetReleaseTrigger, cursor: int | None, poll_interval: float) -> Subscriber:
    subscriber = Subscriber(trigger, cursor, poll_interval)
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
        self.looks_made = 0

    async def open_stream(self) -> AsyncIterator[tuple[Any, Any]]:
        hook = RedivisHook(redivis_conn_id=self.conn_id)
        number = 0
        try:
            while True:
                subscribers = await self._subscribers()
                after = min((s.cursor for s in subscribers if s.cursor is not None), default=None)
                try:
                    check = await asyncio.to_thread(hook.releases_after, self.dataset, after)
                    look = Look(number, check=check)
                except Exception as exc:  # every watcher logs it and keeps watching
                    look = Look(number, error=exc)
                self.looks_made += 1
                yield look, number
                number += 1
                if look.check is not None and look.check.new_versions:
                    await asyncio.sleep(FOLLOW_UP)
                    yield Look(number), number
                    number += 1
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
        for item in batch:
            stored = {s: s.to_store.pop(item.broker_payload, None) for s in _SUBSCRIBERS.get(self.key, [])}
            if not item.outcome.is_clean:
                continue  # a watcher failed or none listened: cursors stay, the versions fire again later
            for subscriber, cursor in stored.items():
                if cursor is not None:
                    await subscriber.trigger.store_cursor(*cursor)
