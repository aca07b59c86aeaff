"""RedivisDatasetReleaseTrigger: a Redivis dataset's releases as events, for an ``AssetWatcher``.

It fires once for each newly released version of the dataset, oldest first. Where it has reached is
its cursor: the ``index`` (Redivis's zero-based ordinal of a version) of the last version it fired for.
On Airflow 3.3+ the cursor lives in the watched asset's ``asset_state_store`` (the metadata database),
so a triggerer restart neither repeats a version nor misses one released while it was down: the first
look after the restart lists what came after the cursor. Without a store (Airflow 3.0-3.2, or a trigger
run outside a watcher) the cursor lives in memory only, and a restart takes the current version as its
baseline again; the docs say so.

The cursor moves past fired versions only once Airflow has stored their events. On Airflow 3.3 the
triggerer says so: the watchers of a dataset run on an acknowledged shared stream (``release_stream``).
Elsewhere (``run``) the cursor moves :data:`COMMIT_GRACE` seconds after the events are handed over, which
the triggerer stores within about a second. Either way a triggerer that stops in between fires the
versions again after the restart (nothing is missed); before they go out the cursor records them as in
flight (``firing``), so such a restart says which versions' DAG runs may repeat.
"""

from __future__ import annotations

import asyncio
import re
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import TriggerEvent

from airflow_provider_redivis.assets import dataset_uri
from airflow_provider_redivis.errors import RedivisConfigError
from airflow_provider_redivis.hooks.redivis import RedivisHook
from airflow_provider_redivis.hooks.uploads import least_poll_interval
from airflow_provider_redivis.references import validate_dataset_reference
from airflow_provider_redivis.triggers.release_poll import watching

try:  # Airflow 3: triggers an AssetWatcher can hold
    from airflow.triggers.base import BaseEventTrigger
except ImportError:  # Airflow 2 has no event-driven scheduling; the class still imports there
    from airflow.triggers.base import BaseTrigger as BaseEventTrigger  # type: ignore[assignment]

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Hashable

    from airflow.providers.common.compat.sdk import Asset
    from airflow.triggers.shared_stream import SharedStreamProducer

    from airflow_provider_redivis.hooks.versions import ReleaseCheck

#: Seconds between handing events to the triggerer and moving the cursor past them (see the module doc).
COMMIT_GRACE = 5.0
DEFAULT_POLL_INTERVAL = 60.0
_VERSION_TAG = re.compile(r":(next|current|sample|v\d+[._]\d+)(:|$)", re.IGNORECASE)


class RedivisDatasetReleaseTrigger(BaseEventTrigger):
    """Fire once per newly released version of a Redivis dataset, in release order.

    The event payload: ``{"dataset": "owner.dataset", "dataset_uri", "dataset_url", "tag" (like "v1.2"),
    "index", "version_uri", "released_at" (ISO 8601 UTC, or None when Redivis gives no time)}``.

    :param dataset: ``owner.dataset``.
    :param redivis_conn_id: the Airflow connection.
    :param poll_interval: seconds between looks (one GET of the dataset each), at least
        ``[redivis] min_poll_interval``. Watchers of one dataset on one connection share their looks.
    :param fire_on_existing: on first deployment, fire for the versions released before it too (default:
        take the current version as the baseline and fire only for later ones).
    """

    def __init__(
        self,
        dataset: str,
        redivis_conn_id: str = RedivisHook.default_conn_name,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        fire_on_existing: bool = False,
    ) -> None:
        super().__init__()
        self.dataset = validate_dataset_reference(dataset)
        if _VERSION_TAG.search(self.dataset):
            raise RedivisConfigError(
                f"Watch the dataset itself, without a version tag: {dataset!r} names one version, which is "
                "never released again. Write 'owner.dataset'."
            )
        if not poll_interval > 0:
            raise RedivisConfigError(
                f"poll_interval must be a positive number of seconds, got {poll_interval!r}."
            )
        self.redivis_conn_id = redivis_conn_id
        self.poll_interval = float(poll_interval)
        self.fire_on_existing = bool(fire_on_existing)
        self._memory_cursor: int | None = None
        self._tag: str | None = None  # the tag of the version at the cursor, when known

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "dataset": self.dataset,
                "redivis_conn_id": self.redivis_conn_id,
                "poll_interval": self.poll_interval,
                "fire_on_existing": self.fire_on_existing,
            },
        )

    @property
    def cursor_key(self) -> str:
        """The key of the cursor in the watched asset's state store."""
        return f"redivis_release_cursor:{self.redivis_conn_id}:{self.dataset}"

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Airflow 3.0-3.2 (no shared streams), and a trigger run outside a triggerer's watcher."""
        cursor = await self._start()
        async with watching(
            self.redivis_conn_id, self.dataset, poll_interval=self._interval(), cursor=cursor
        ) as watcher:
            while True:
                try:
                    check = await watcher.next_check()
                except Exception as exc:
                    self._look_failed(exc)
                    continue
                watcher.cursor, fired = await self._take(watcher.cursor, check)
                for version in fired:
                    yield TriggerEvent(release_payload(self.dataset, check, version))
                if fired:
                    # Moved only once the triggerer has surely stored the events: see the module doc.
                    await asyncio.sleep(COMMIT_GRACE)
                    await self.store_cursor(watcher.cursor, str(fired[-1].get("tag")))

    # -- Airflow 3.3: the acknowledged shared stream (release_stream.py) ---------------------------

    def shared_stream_key(self) -> Hashable:
        from airflow_provider_redivis.triggers.release_stream import stream_key

        return stream_key(self.redivis_conn_id, self.dataset)

    @classmethod
    def create_shared_stream_producer(cls, kwargs: dict[str, Any]) -> SharedStreamProducer:
        from airflow_provider_redivis.triggers.release_stream import ReleaseLooks

        return ReleaseLooks(kwargs)

    async def filter_shared_stream(self, shared_stream: AsyncIterator[Any]) -> AsyncIterator[TriggerEvent]:
        from airflow_provider_redivis.triggers import release_stream

        cursor = await self._start()
        subscriber = release_stream.join(self, cursor, self._tag, self._interval())
        self.log.info(
            "%s: on the triggerer's acknowledged shared stream, the cursor moves once Airflow has stored "
            "the events",
            self.dataset,
        )
        try:
            async for look in shared_stream:
                subscriber.took_look()  # first: before anything else can happen (release_stream's doc)
                if look.error is not None:
                    self._look_failed(look.error)
                if look.check is None:
                    continue
                if subscriber.cursor is None:  # the baseline, stored at once
                    subscriber.cursor, _ = await self._take(None, look.check)
                    subscriber.stored = (subscriber.cursor, None)
                    continue
                if look.after is None or look.after > subscriber.cursor:
                    continue  # made before this watcher joined: the next look lists from its cursor
                fired = [v for v in look.check.new_versions if int(v["index"]) > subscriber.cursor]
                if not fired:
                    continue
                entry = subscriber.fire(look, fired)
                await subscriber.write()  # in flight before they go out; confirmed in ReleaseLooks.advance
                for version in fired:
                    yield TriggerEvent(release_payload(self.dataset, look.check, version))
                entry.handed_over = True  # resumed after the last yield: the runner took every event
        finally:
            release_stream.leave(subscriber)

    # -- what a look means -----------------------------------------------------------------------

    def _interval(self) -> float:
        return max(self.poll_interval, least_poll_interval())

    async def _start(self) -> int | None:
        cursor = await self._load_cursor()
        if cursor is None and self.fire_on_existing:
            cursor = -1  # every released version is new
        self.log.info(
            "Watching the releases of %s: a look every %.3g s; %s",
            self.dataset,
            self._interval(),
            f"firing for versions past index {cursor}"
            if cursor is not None
            else "the current version is the baseline",
        )
        return cursor

    def _look_failed(self, exc: Exception) -> None:
        self.log.warning("Looking at %s's releases failed; looking again later: %s", self.dataset, exc)

    async def _take(self, cursor: int | None, check: ReleaseCheck) -> tuple[int, list[dict[str, Any]]]:
        """The cursor after ``check`` and the versions to fire for, oldest first. A first look sets (and
        stores) the baseline; versions to fire for are recorded in the store as in flight first."""
        if cursor is None:
            baseline = -1 if check.current_index is None else check.current_index
            self.log.info("Baseline for %s: version index %s", self.dataset, baseline)
            await self.store_cursor(baseline, None)
            return baseline, []
        fired = [v for v in check.new_versions if int(v["index"]) > cursor]
        if not fired:
            return cursor, []
        await self.store_cursor(cursor, self._tag, firing=[str(v.get("tag")) for v in fired])
        return int(fired[-1]["index"]), fired

    # -- the cursor ------------------------------------------------------------------------------

    def _accessors(self) -> list[Any]:
        """The state-store accessors of the watched assets (Airflow 3.3+ injects the store)."""
        store = getattr(self, "asset_state_store", None)
        if store is None:
            return []
        # One accessor per watched asset; the store only offers the single one without naming the asset.
        found = [*getattr(store, "_by_name", {}).values(), *getattr(store, "_by_uri", {}).values()]
        return found or [store]

    async def _load_cursor(self) -> int | None:
        stored: list[dict[str, Any]] = []
        for accessor in self._accessors():
            value = await accessor.aget(self.cursor_key)
            if isinstance(value, dict) and isinstance(value.get("index"), int):
                stored.append(value)
        if not stored:
            return self._memory_cursor
        # Assets of one watcher are written together; if one write was lost, the furthest is the truth.
        furthest = max(stored, key=lambda value: int(value["index"]))
        self._tag = furthest.get("tag")
        if firing := furthest.get("firing"):
            self.log.warning(
                "The triggerer stopped after firing for %s version(s) %s and before it knew Airflow had "
                "stored them. They fire again now, so that none is lost: if Airflow had stored them, a DAG "
                "run for them repeats.",
                self.dataset,
                ", ".join(map(str, firing)),
            )
        return int(furthest["index"])

    async def store_cursor(self, index: int, tag: str | None, firing: list[str] | None = None) -> None:
        """Store the cursor in every watched asset's state store (and in memory)."""
        self._memory_cursor, self._tag = index, tag
        value: dict[str, Any] = {"index": index, "tag": tag, "dataset": self.dataset}
        if firing:
            value["firing"] = firing  # handed to the triggerer, not yet surely stored
        for accessor in self._accessors():
            await accessor.aset(self.cursor_key, value)


def release_payload(dataset: str, check: ReleaseCheck, version: dict[str, Any]) -> dict[str, Any]:
    released_ms = version.get("releasedAt")
    released_at = (
        datetime.fromtimestamp(released_ms / 1000, tz=timezone.utc).isoformat()
        if isinstance(released_ms, (int, float)) and not isinstance(released_ms, bool)
        else None
    )
    return {
        "dataset": dataset,
        "dataset_uri": check.dataset.get("uri"),
        "dataset_url": check.dataset.get("url"),
        "tag": version.get("tag"),
        "index": version.get("index"),
        "version_uri": version.get("uri"),
        "released_at": released_at,
    }


def release_asset(
    dataset: str,
    *,
    redivis_conn_id: str = "redivis_default",
    poll_interval: float = 60.0,
    fire_on_existing: bool = False,
    name: str | None = None,
) -> Asset:
    """The asset of ``dataset``'s releases, watched by a :class:`RedivisDatasetReleaseTrigger` (Airflow 3).

    ``schedule=[release_asset("owner.dataset")]`` runs a DAG once per newly released version; the run's
    ``triggering_asset_events`` carry the version (``event.extra["payload"]["tag"]``).

    :param name: the asset's (and watcher's) name; default ``redivis_release__owner__dataset``.
    """
    try:
        from airflow.sdk import Asset, AssetWatcher
    except ImportError as exc:
        raise RedivisConfigError(
            "release_asset needs Airflow 3 (event-driven scheduling); on Airflow 2 wait for a release with "
            "RedivisReleaseSensor instead."
        ) from exc
    trigger = RedivisDatasetReleaseTrigger(
        dataset,
        redivis_conn_id=redivis_conn_id,
        poll_interval=poll_interval,
        fire_on_existing=fire_on_existing,
    )
    uri = dataset_uri(dataset)
    asset_name = name or "redivis_release__" + uri.split("://", 1)[1].replace("/", "__")
    return Asset(name=asset_name, uri=uri, watchers=[AssetWatcher(name=asset_name, trigger=trigger)])
