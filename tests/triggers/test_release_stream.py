"""Release watchers on Airflow 3.3's acknowledged shared stream, driven by Airflow's own
``SharedStreamManager`` as the triggerer drives it: subscribe each watcher, bind each event it fires, and
confirm the events as stored when the test says so. The end-to-end test (tests/e2e/test_release_watcher.py)
runs them in a real triggerer."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow.triggers.shared_stream import SharedStreamManager

from airflow_provider_redivis.triggers import release as release_module
from tests.triggers.test_release_trigger import (
    DATASET,
    StateStore,
    dataset_gets,
    in_loop,
    make,
    release,
    until,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from redivis_emulator import RedivisEmulator

    from airflow_provider_redivis.triggers.release import RedivisDatasetReleaseTrigger


@dataclass
class Watching:
    """One subscribed watcher: what it fired and the persist seqs Airflow would confirm for them."""

    store: StateStore
    payloads: list[dict[str, Any]] = field(default_factory=list)
    seqs: list[int] = field(default_factory=list)

    def cursor(self) -> dict[str, Any]:
        (value,) = self.store.values.values()
        return dict(value)


@contextlib.asynccontextmanager
async def triggerer(
    *triggers: RedivisDatasetReleaseTrigger,
) -> AsyncIterator[tuple[SharedStreamManager, list[Watching]]]:
    """Run ``triggers`` as Airflow 3.3's trigger runner runs watchers with a shared stream key."""
    manager = SharedStreamManager(ack_timeout=60)
    watching = [Watching(trigger.asset_state_store) for trigger in triggers]  # type: ignore[arg-type]

    async def run(trigger_id: int, trigger: RedivisDatasetReleaseTrigger, seen: Watching) -> None:
        key = trigger.shared_stream_key()
        stream = manager.subscribe(trigger_id=trigger_id, trigger=trigger, key=key)
        try:
            async for event in trigger.filter_shared_stream(stream):
                seq = manager.bind_pending_event(trigger_id=trigger_id, key=key)  # no await in between
                seen.payloads.append(event.payload)
                assert seq is not None, "the stream is not in ack mode"
                seen.seqs.append(seq)
        finally:
            await manager.unsubscribe(trigger_id, key)

    tasks = [
        asyncio.create_task(run(i, t, w)) for i, (t, w) in enumerate(zip(triggers, watching, strict=True))
    ]
    try:
        yield manager, watching
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await manager.stop_all()


@in_loop
async def test_the_cursor_moves_only_once_airflow_confirms_the_events_stored(
    emulator: RedivisEmulator,
) -> None:
    await release()  # v1.0: the baseline
    first, second = make(StateStore()), make(StateStore())
    async with triggerer(first, second) as (manager, (a, b)):
        await until("both baselines", lambda: bool(a.store.values and b.store.values))
        assert a.cursor()["index"] == b.cursor()["index"] == 0
        await release()  # v2.0
        await until("both fired", lambda: len(a.payloads) == len(b.payloads) == 1)
        assert a.payloads[0]["tag"] == b.payloads[0]["tag"] == "v2.0"
        # Fired, not yet stored by Airflow: the cursors stay, with v2.0 in flight (a restart fires it again),
        # longer than the grace after which a trigger without the stream moves its cursor.
        await asyncio.sleep(release_module.COMMIT_GRACE + 1.0)
        for seen in (a, b):
            assert (seen.cursor()["index"], seen.cursor().get("firing")) == (0, ["v2.0"])
        manager.confirm_persisted(a.seqs + b.seqs)
        await until("both cursors stored", lambda: a.cursor()["index"] == b.cursor()["index"] == 1)
        for seen in (a, b):
            assert seen.cursor() == {"index": 1, "tag": "v2.0", "dataset": DATASET}
        assert len(a.payloads) == len(b.payloads) == 1  # and nothing fired twice


@in_loop
async def test_watchers_share_one_look_and_a_restart_after_the_confirmation_repeats_nothing(
    emulator: RedivisEmulator,
) -> None:
    await release()
    stores = [StateStore() for _ in range(3)]
    async with triggerer(*(make(s) for s in stores)) as (manager, watching):
        await until("the baselines", lambda: all(s.values for s in stores))
        producer_looks = dataset_gets(emulator)
        await asyncio.sleep(1.0)  # POLL is 0.1 s: about ten looks, one GET each for all three watchers
        looks = dataset_gets(emulator) - producer_looks
        assert 5 <= looks <= 12, looks
        await release()
        await until("all fired", lambda: all(len(w.payloads) == 1 for w in watching))
        manager.confirm_persisted([seq for w in watching for seq in w.seqs])
        await until("the cursors stored", lambda: all(w.cursor()["index"] == 1 for w in watching))
    # The triggerer restarts: the same stores, new triggers, nothing released meanwhile.
    async with triggerer(*(make(s) for s in stores)) as (_, again):
        await asyncio.sleep(1.0)
        assert all(w.payloads == [] for w in again)
        await release()
        await until("v3.0 fired", lambda: all([p["tag"] for p in w.payloads] == ["v3.0"] for w in again))
