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
from airflow_provider_redivis.triggers.release import RedivisDatasetReleaseTrigger
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


class GatedStore(StateStore):
    """A state store whose reads or writes can be held (``reads``/``writes`` cleared) or made to fail."""

    def __init__(self, cursor: dict[str, Any] | None = None) -> None:
        super().__init__()
        if cursor is not None:
            self.values[make().cursor_key] = {**cursor, "dataset": DATASET}
        self.reads, self.writes = asyncio.Event(), asyncio.Event()
        self.reads.set()
        self.writes.set()
        self.fail = False

    async def aget(self, key: str, default: Any = None) -> Any:
        await self.reads.wait()
        return await super().aget(key, default)

    async def aset(self, key: str, value: Any) -> None:
        await self.writes.wait()
        if self.fail:
            raise OSError("the state store is down")
        await super().aset(key, value)


@dataclass
class Watching:
    """One subscribed watcher: what it fired, the persist seqs Airflow would confirm, how it ended."""

    store: StateStore
    task: asyncio.Task[None] | None = None
    payloads: list[dict[str, Any]] = field(default_factory=list)
    seqs: list[int] = field(default_factory=list)
    error: BaseException | None = None
    #: Held (cleared), the runner waits between taking an event and binding it, as Airflow's runner awaits
    #: its log line there; ``taken`` counts the events it took.
    before_bind: asyncio.Event | None = None
    taken: int = 0

    def cursor(self) -> dict[str, Any]:
        (value,) = self.store.values.values()
        return dict(value)


@dataclass
class Triggerer:
    """Airflow 3.3's trigger runner, as far as it runs watchers with a shared stream key."""

    manager: SharedStreamManager
    watching: list[Watching] = field(default_factory=list)

    def start(self, trigger: RedivisDatasetReleaseTrigger) -> Watching:
        seen = Watching(trigger.asset_state_store)  # type: ignore[arg-type]
        seen.task = asyncio.create_task(self._run(len(self.watching), trigger, seen))
        self.watching.append(seen)
        return seen

    async def _run(self, trigger_id: int, trigger: RedivisDatasetReleaseTrigger, seen: Watching) -> None:
        key = trigger.shared_stream_key()
        stream = self.manager.subscribe(trigger_id=trigger_id, trigger=trigger, key=key)
        try:
            async for event in trigger.filter_shared_stream(stream):
                seen.taken += 1
                if seen.before_bind is not None:
                    await seen.before_bind.wait()
                seq = self.manager.bind_pending_event(trigger_id=trigger_id, key=key)
                seen.payloads.append(event.payload)
                if seq is not None:  # None: the stream already failed this watcher on the look
                    seen.seqs.append(seq)
        except Exception as exc:  # the trigger fails, as the runner fails it
            seen.error = exc
        finally:
            await self.manager.unsubscribe(trigger_id, key)

    def confirm(self, *seqs: int) -> None:
        self.manager.confirm_persisted(seqs)


@contextlib.asynccontextmanager
async def triggerer(
    *triggers: RedivisDatasetReleaseTrigger, ack_timeout: float = 60
) -> AsyncIterator[tuple[SharedStreamManager, list[Watching]]]:
    """Run ``triggers`` as Airflow 3.3's trigger runner runs watchers with a shared stream key."""
    async with running_triggerer(ack_timeout=ack_timeout) as runner:
        for trigger in triggers:
            runner.start(trigger)
        yield runner.manager, runner.watching


@contextlib.asynccontextmanager
async def running_triggerer(ack_timeout: float = 60) -> AsyncIterator[Triggerer]:
    runner = Triggerer(SharedStreamManager(ack_timeout=ack_timeout))
    try:
        yield runner
    finally:
        for seen in runner.watching:
            assert seen.task is not None
            seen.task.cancel()
        for seen in runner.watching:
            assert seen.task is not None
            with contextlib.suppress(asyncio.CancelledError):
                await seen.task
        await runner.manager.stop_all()


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


async def fire_two(runner: Triggerer) -> Watching:
    """A watcher on v1.0 that has fired v2.0 and v3.0, neither confirmed yet."""
    await release()
    a = runner.start(make(StateStore()))
    await until("the baseline", lambda: bool(a.store.values))
    await release()
    await until("v2.0 fired", lambda: len(a.payloads) == 1)
    await release()
    await until("v3.0 fired", lambda: len(a.payloads) == 2)
    return a


@in_loop
async def test_two_releases_before_the_first_is_confirmed_stay_in_flight_on_the_confirmed_cursor(
    emulator: RedivisEmulator,
) -> None:
    async with running_triggerer() as runner:
        a = await fire_two(runner)
        # Neither confirmed: a crash now must fire both again, so the cursor stays on v1.0 listing both.
        assert a.cursor() == {"index": 0, "tag": None, "dataset": DATASET, "firing": ["v2.0", "v3.0"]}
        runner.confirm(a.seqs[1])  # v3.0 stored first: v2.0 still is not, so the cursor stays
        await asyncio.sleep(0.5)  # several looks, each one more chance to store a cursor too far
        assert a.cursor()["index"] == 0
        runner.confirm(a.seqs[0])
        await until("the cursor on v3.0", lambda: a.cursor()["index"] == 2)
        assert a.cursor() == {"index": 2, "tag": "v3.0", "dataset": DATASET}


@in_loop
async def test_the_marker_sits_on_the_last_confirmed_version_and_lists_the_rest(
    emulator: RedivisEmulator,
) -> None:
    async with running_triggerer() as runner:
        a = await fire_two(runner)
        runner.confirm(a.seqs[0])
        await until("the cursor on v2.0", lambda: a.cursor()["index"] == 1)
        assert a.cursor() == {"index": 1, "tag": "v2.0", "dataset": DATASET, "firing": ["v3.0"]}


@in_loop
async def test_a_watcher_joining_behind_the_others_fires_every_version_past_its_cursor(
    emulator: RedivisEmulator,
) -> None:
    for _ in range(3):
        await release()  # v1.0-v3.0
    async with running_triggerer() as runner:
        ahead = runner.start(make(GatedStore({"index": 2, "tag": "v3.0"})))
        behind_store = GatedStore({"index": 0, "tag": "v1.0"})
        behind_store.reads.clear()  # subscribed, still loading its cursor: not yet among the watchers
        behind = runner.start(make(behind_store))
        await release()  # v4.0, seen by looks made from v3.0 on, which reach the late watcher too
        await until("v4.0 fired", lambda: [p["tag"] for p in ahead.payloads] == ["v4.0"])
        behind_store.reads.set()
        await until("the late watcher's versions", lambda: len(behind.payloads) >= 3)
        await asyncio.sleep(0.3)
        assert [p["tag"] for p in behind.payloads] == ["v2.0", "v3.0", "v4.0"]


@in_loop
async def test_an_ack_timeout_while_the_watcher_is_busy_keeps_the_cursor_before_the_unconfirmed_version(
    emulator: RedivisEmulator,
) -> None:
    await release()
    async with running_triggerer(ack_timeout=3.0) as runner:
        store = GatedStore()
        a = runner.start(make(store))
        await until("the baseline", lambda: bool(store.values))
        await release()
        await until("v2.0 fired", lambda: len(a.payloads) == 1)
        await release()
        await until("v3.0 fired", lambda: len(a.payloads) == 2)
        runner.confirm(a.seqs[1])  # v3.0's look resolves; v2.0's confirmation never comes
        store.writes.clear()
        await release()  # v4.0: the watcher is busy writing its marker while v2.0's look times out
        await asyncio.sleep(3.5)  # the ack timeout (a clock, nothing to wait on)
        assert a.error is None, "the watcher was not busy when the timeout failed it"
        store.writes.set()
        await until("the ack timeout reaches the watcher", lambda: a.error is not None)
        assert type(a.error).__name__ == "AckTimeout"
        await asyncio.sleep(0.3)
        assert a.cursor() == {
            "index": 0,
            "tag": None,
            "dataset": DATASET,
            "firing": ["v2.0", "v3.0", "v4.0"],
        }


@in_loop
async def test_a_failing_watcher_neither_moves_its_cursor_nor_holds_back_the_others(
    emulator: RedivisEmulator,
) -> None:
    await release()
    async with running_triggerer(ack_timeout=2.0) as runner:
        a, b = runner.start(make(StateStore())), runner.start(make(StateStore()))
        await until("the baselines", lambda: bool(a.store.values and b.store.values))
        await release()
        await until("both fired", lambda: len(a.payloads) == len(b.payloads) == 1)
        runner.confirm(*a.seqs)  # b's event is never confirmed: the ack timeout fails b
        await until("b failed", lambda: b.error is not None)
        # a's look counts as failed too (Airflow does not say whose); a's next look shows a was not.
        await until("a's cursor on v2.0", lambda: a.cursor()["index"] == 1)
        assert a.cursor() == {"index": 1, "tag": "v2.0", "dataset": DATASET}
        assert b.cursor() == {"index": 0, "tag": None, "dataset": DATASET, "firing": ["v2.0"]}


@in_loop
async def test_a_failing_store_write_does_not_end_the_stream_for_the_others(
    emulator: RedivisEmulator,
) -> None:
    await release()
    async with running_triggerer() as runner:
        a, b = runner.start(make(StateStore())), runner.start(make(GatedStore()))
        await until("the baselines", lambda: bool(a.store.values and b.store.values))
        await release()
        await until("both fired", lambda: len(a.payloads) == len(b.payloads) == 1)
        b.store.fail = True  # type: ignore[attr-defined]
        runner.confirm(*a.seqs, *b.seqs)
        await until("a's cursor on v2.0", lambda: a.cursor()["index"] == 1)
        assert b.cursor()["index"] == 0  # behind: a restart repeats v2.0, nothing lost
        b.store.fail = False  # type: ignore[attr-defined]
        await release()
        await until("both fired v3.0", lambda: len(a.payloads) == len(b.payloads) == 2)
        assert a.error is None
        assert b.error is None
        runner.confirm(a.seqs[1], b.seqs[1])
        await until("both cursors on v3.0", lambda: a.cursor()["index"] == b.cursor()["index"] == 2)
        assert b.cursor() == {"index": 2, "tag": "v3.0", "dataset": DATASET}


@in_loop
async def test_a_stopping_group_stores_no_cursor_for_a_watcher_of_the_next_group(
    emulator: RedivisEmulator,
) -> None:
    await release()
    async with running_triggerer() as runner:
        store = GatedStore()
        a = runner.start(make(store))
        await until("the baseline", lambda: bool(store.values))
        await release()
        await until("v2.0 fired", lambda: len(a.payloads) == 1)
        fired_at = dataset_gets(emulator)  # the first group's look number, give or take one
        store.writes.clear()
        runner.confirm(*a.seqs)  # the first group's advance now waits on the store
        await until("30 more looks", lambda: dataset_gets(emulator) >= fired_at + 30)
        assert a.task is not None
        a.task.cancel()  # a leaves; its group stops, its advance still waiting on the store
        await until("the first group stopped", lambda: not runner.manager._groups)
        b = runner.start(make(GatedStore({"index": 1, "tag": "v2.0"})))
        started = dataset_gets(emulator)
        await until("the second group's looks", lambda: dataset_gets(emulator) >= started + 5)
        await release()  # v3.0: b fires it at a look number the first group also advances
        await until("v3.0 fired", lambda: len(b.payloads) == 1)
        store.writes.set()  # the first group's advance goes on, over looks of its own numbering
        with contextlib.suppress(asyncio.CancelledError):
            await a.task
        await asyncio.sleep(0.3)
        assert b.cursor() == {"index": 1, "tag": "v2.0", "dataset": DATASET, "firing": ["v3.0"]}
        runner.confirm(*b.seqs)
        await until("b's cursor on v3.0", lambda: b.cursor()["index"] == 2)


@in_loop
async def test_the_cursor_is_stored_without_waiting_for_another_look(emulator: RedivisEmulator) -> None:
    """Airflow resolves a look as soon as the watcher asks for the next one, not when that one comes."""
    await release()
    await release()  # v2.0, released before the watcher starts: its first look fires it
    store = GatedStore({"index": 0, "tag": "v1.0"})
    trigger = RedivisDatasetReleaseTrigger(DATASET, poll_interval=30.0)
    trigger.asset_state_store = store  # type: ignore[assignment]
    before = dataset_gets(emulator)
    async with running_triggerer() as runner:
        a = runner.start(trigger)
        await until("v2.0 fired", lambda: len(a.payloads) == 1)
        runner.confirm(*a.seqs)
        await until("the cursor on v2.0", lambda: a.cursor()["index"] == 1)
        assert dataset_gets(emulator) == before + 1  # the next look is 30 s away


@in_loop
async def test_a_watcher_cancelled_before_its_event_is_bound_stores_no_cursor_past_it(
    emulator: RedivisEmulator,
) -> None:
    """Airflow's runner awaits (its log line) between taking an event and binding it; a watcher cancelled
    there (triggerer shutdown, watcher removed) resolves the look on unsubscribing, clean, though the event
    never went out. Its cursor must not be stored past that version."""
    await release()
    store = StateStore()
    async with running_triggerer() as runner:
        seen = runner.start(make(store))
        seen.before_bind = asyncio.Event()
        await until("the baseline", lambda: bool(store.values))
        await release()  # v2.0
        await until("v2.0 taken, not bound", lambda: seen.taken == 1)
        assert seen.task is not None
        seen.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await seen.task
        await asyncio.sleep(0.5)  # the group stops and its pump drains what resolved
    assert seen.seqs == []
    assert seen.cursor()["index"] == 0, seen.cursor()
    assert seen.cursor().get("firing") == ["v2.0"]
