"""RedivisDatasetReleaseTrigger against the emulator over 127.0.0.1: versions released through the API,
the trigger's requests counted by the emulator. The asset state store is Airflow's (the triggerer's
supervisor writes it to the metadata database); here a dict stands in for it, and the end-to-end test
(tests/e2e/test_release_watcher.py) runs the real one."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import time
from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_redivis.errors import RedivisConfigError
from airflow_provider_redivis.hooks.redivis import RedivisHook
from airflow_provider_redivis.triggers import release as release_module
from airflow_provider_redivis.triggers import release_poll
from airflow_provider_redivis.triggers.release import RedivisDatasetReleaseTrigger
from tests.triggers.emulated_uploads import import_string

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Coroutine

    from redivis_emulator import RedivisEmulator

DATASET = "test_owner.test_dataset"
POLL = 0.1


class StateStore:
    """Stands in for the store the triggerer injects (``aget``/``aset`` of one watched asset)."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    async def aget(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    async def aset(self, key: str, value: Any) -> None:
        self.values[key] = value


def release_next() -> str:
    """Release the dataset's next version (making one first if it has none); returns its tag."""
    hook = RedivisHook(redivis_conn_id="redivis_setup")
    if hook.get_next_version(DATASET) is None:
        hook.create_next_version(DATASET)
    started = hook.release_version(DATASET)
    return str(hook.wait_for_release(DATASET, started, poll_interval=0.05, timeout=10)["tag"])


def dataset_gets(emu: RedivisEmulator) -> int:
    return sum(1 for r in emu.requests if r.method == "GET" and r.path.endswith("test_dataset"))


def version_lists(emu: RedivisEmulator) -> int:
    return sum(1 for r in emu.requests if r.method == "GET" and r.path.endswith("test_dataset/versions"))


async def until(what: str, probe: Callable[[], bool], limit: float = 10.0) -> None:
    deadline = time.monotonic() + limit
    while not probe():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def running(trigger: RedivisDatasetReleaseTrigger) -> AsyncIterator[list[dict[str, Any]]]:
    """Run the trigger (as the triggerer does) while the block runs; yields the payloads it fired."""
    payloads: list[dict[str, Any]] = []

    async def consume() -> None:
        async for event in trigger.run():
            payloads.append(event.payload)

    task = asyncio.create_task(consume())
    try:
        yield payloads
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await asyncio.sleep(0)


def in_loop(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test in a fresh event loop, as a triggerer runs its triggers."""

    @functools.wraps(test)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        asyncio.run(asyncio.wait_for(test(*args, **kwargs), 60))

    return wrapper


async def release() -> str:
    """:func:`release_next` off the event loop, so that the trigger keeps looking meanwhile."""
    return await asyncio.to_thread(release_next)


def make(store: StateStore | None = None, **kwargs: Any) -> RedivisDatasetReleaseTrigger:
    trigger = RedivisDatasetReleaseTrigger(DATASET, poll_interval=POLL, **kwargs)
    trigger.asset_state_store = store  # type: ignore[assignment]
    return trigger


@pytest.fixture(autouse=True)
def short_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    # The grace stands for a triggerer's store round; here events are "stored" as they are yielded.
    monkeypatch.setattr(release_module, "COMMIT_GRACE", 0.05)


def test_serialize_round_trip() -> None:
    trigger = RedivisDatasetReleaseTrigger("Test_Owner.test_dataset", poll_interval=45, fire_on_existing=True)
    classpath, kwargs = trigger.serialize()
    again = import_string(classpath)(**kwargs)
    assert again.serialize() == (classpath, kwargs)
    assert kwargs["poll_interval"] == 45.0
    assert kwargs["fire_on_existing"] is True


@pytest.mark.parametrize("dataset", ["test_owner.test_dataset:next", "test_owner.test_dataset:v1_2", "nodot"])
def test_a_dataset_with_a_version_tag_or_no_owner_is_refused(dataset: str) -> None:
    with pytest.raises(RedivisConfigError):
        RedivisDatasetReleaseTrigger(dataset)


@in_loop
async def test_fires_once_per_release_and_not_for_what_existed_before(emulator: RedivisEmulator) -> None:
    assert await release() == "v1.0"  # released before the trigger was deployed: no event for it
    store = StateStore()
    async with running(make(store)) as payloads:
        await until("the baseline", lambda: bool(store.values))
        assert next(iter(store.values.values()))["index"] == 0
        assert await release() == "v2.0"
        await until("the event for v2.0", lambda: len(payloads) >= 1)
        gets = dataset_gets(emulator)
        await until("three more looks", lambda: dataset_gets(emulator) >= gets + 3)
        assert [p["tag"] for p in payloads] == ["v2.0"]
        assert await release() == "v3.0"
        await until("the event for v3.0", lambda: len(payloads) >= 2)
        await until("three more looks", lambda: dataset_gets(emulator) >= gets + 6)
    assert [p["tag"] for p in payloads] == ["v2.0", "v3.0"]
    event = payloads[0]
    assert event["dataset"] == DATASET
    assert event["dataset_uri"].startswith("/datasets/test_owner.test_dataset")
    assert event["dataset_url"].startswith(emulator.base_url)
    assert event["index"] == 1
    assert event["released_at"] is not None
    assert event["released_at"].endswith("+00:00")


@in_loop
async def test_catches_up_on_releases_made_while_it_was_not_running(emulator: RedivisEmulator) -> None:
    await release()
    store = StateStore()
    async with running(make(store)):
        await until("the baseline", lambda: bool(store.values))
    # The triggerer is down: two releases.
    assert [await release(), await release()] == ["v2.0", "v3.0"]
    async with running(make(store)) as payloads:
        await until("two events", lambda: len(payloads) >= 2)
        await until("the cursor past both", lambda: next(iter(store.values.values()))["index"] == 2)
        gets = dataset_gets(emulator)
        await until("two more looks", lambda: dataset_gets(emulator) >= gets + 2)
    assert [p["tag"] for p in payloads] == ["v2.0", "v3.0"]
    # Started again with the cursor past both: nothing fires again.
    async with running(make(store)) as payloads:
        gets = dataset_gets(emulator)
        await until("three looks", lambda: dataset_gets(emulator) >= gets + 3)
    assert payloads == []


@in_loop
async def test_a_stop_before_the_cursor_moved_fires_again_instead_of_missing(
    emulator: RedivisEmulator, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The one window that repeats (docs/releases.md): the triggerer stops after handing an event over and
    before the cursor moves. Nothing is lost, and the log names the versions whose run may repeat."""
    monkeypatch.setattr(release_module, "COMMIT_GRACE", 30.0)  # the stop comes inside the grace
    await release()
    store = StateStore()
    async with running(make(store)) as payloads:
        await until("the baseline", lambda: bool(store.values))
        await release()
        await until("the event", lambda: len(payloads) == 1)
    # Not moved (the event may not have been stored), and v2.0 recorded as in flight.
    (stored,) = store.values.values()
    assert (stored["index"], stored["tag"], stored["firing"]) == (0, None, ["v2.0"])
    capsys.readouterr()
    monkeypatch.setattr(release_module, "COMMIT_GRACE", 0.05)
    async with running(make(store)) as payloads:
        await until("the event again", lambda: len(payloads) == 1)
        await until("the cursor moved", lambda: next(iter(store.values.values()))["index"] == 1)
    assert payloads[0]["tag"] == "v2.0"
    said = capsys.readouterr().out
    assert "firing for test_owner.test_dataset version(s) v2.0" in said, said[-3000:]
    assert "a DAG run for them repeats" in said
    assert "firing" not in next(iter(store.values.values()))


@in_loop
async def test_fire_on_existing_fires_for_every_released_version(emulator: RedivisEmulator) -> None:
    await release()
    await release()
    async with running(make(StateStore(), fire_on_existing=True)) as payloads:
        await until("two events", lambda: len(payloads) >= 2)
    assert [p["tag"] for p in payloads] == ["v1.0", "v2.0"]


@in_loop
async def test_a_quiet_look_is_one_request_and_watchers_of_a_dataset_share_it(
    emulator: RedivisEmulator,
) -> None:
    await release()
    released = len(emulator.requests)  # what the release itself asked of the API
    stores = [StateStore() for _ in range(5)]
    triggers = [make(store) for store in stores]
    async with contextlib.AsyncExitStack() as stack:
        runs = [await stack.enter_async_context(running(t)) for t in triggers]
        await until("every baseline", lambda: all(s.values for s in stores))
        assert len(release_poll.pollers()) == 1
        poller = release_poll.pollers()[0]
        await until("ten looks", lambda: poller.checks_made >= 10)
        made, quiet = poller.checks_made, emulator.requests[released:]
        gets = sum(1 for r in quiet if r.method == "GET" and r.path.endswith("test_dataset"))
        # Five watchers: one GET of the dataset per look (the looks made, and the one that may be in
        # flight), where each watcher alone would have made its own; and no listing of the versions.
        assert made <= gets <= made + 1
        assert len([r for r in quiet if r.origin == "api"]) == gets  # nothing else: no listing
        emulator.clear_requests()
        await release()
        await until("every watcher fired", lambda: all(len(r) == 1 for r in runs))
        # The release is seen with one listing of the versions for all five.
        assert version_lists(emulator) == 1
    # The poller ends with its last watcher (after the look it may have had in flight).
    await asyncio.wait_for(poller.task, 5)
    assert release_poll.pollers() == []


@in_loop
async def test_looks_are_spaced_by_the_poll_interval(emulator: RedivisEmulator) -> None:
    trigger = RedivisDatasetReleaseTrigger(DATASET, poll_interval=0.5)
    trigger.asset_state_store = None  # type: ignore[assignment]
    async with running(trigger):
        await asyncio.sleep(0)
        poller = release_poll.pollers()[0]
        await until("three looks", lambda: poller.checks_made >= 3)
    times = [r.started_at for r in emulator.requests if r.path.endswith("test_dataset")]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert gaps
    assert min(gaps) >= 0.45
