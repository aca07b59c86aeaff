"""RedivisReleaseSensor against the emulator over 127.0.0.1: poked, and deferred (its trigger run in an
event loop as the triggerer runs it)."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import pytest
from airflow.providers.common.compat.sdk import AirflowSensorTimeout, TaskDeferred

from airflow_provider_redivis.errors import RedivisConfigError
from airflow_provider_redivis.sensors.release import RedivisReleaseSensor
from airflow_provider_redivis.triggers.release_wait import RedivisReleaseWaitTrigger
from tests.triggers.emulated_uploads import emulator_fixture, import_string
from tests.triggers.test_release_trigger import DATASET, release_next

if TYPE_CHECKING:
    from redivis_emulator import RedivisEmulator

emulator = emulator_fixture(processing_delay=0.05)


def test_poked_it_returns_the_first_release_after_the_given_tag(emulator: RedivisEmulator) -> None:
    release_next()
    release_next()
    sensor = RedivisReleaseSensor(task_id="wait", dataset=DATASET, after_tag="v1_0", poke_interval=0.01)
    release = sensor.execute({})
    assert release["tag"] == "v2.0"
    assert release["index"] == 1


def test_poked_without_a_new_release_it_times_out(emulator: RedivisEmulator) -> None:
    release_next()
    sensor = RedivisReleaseSensor(task_id="wait", dataset=DATASET, poke_interval=0.05, timeout=0.3)
    with pytest.raises(AirflowSensorTimeout):
        sensor.execute({})


def test_reschedule_without_after_tag_is_refused() -> None:
    with pytest.raises(RedivisConfigError, match="after_tag"):
        RedivisReleaseSensor(task_id="wait", dataset=DATASET, mode="reschedule")


def test_deferred_it_waits_in_the_triggerer_for_the_next_release(emulator: RedivisEmulator) -> None:
    release_next()
    sensor = RedivisReleaseSensor(task_id="wait", dataset=DATASET, deferrable=True, poke_interval=0.05)
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute({})
    trigger = deferred.value.trigger
    assert isinstance(trigger, RedivisReleaseWaitTrigger)
    assert trigger.after_index == 0  # v1.0 was current when it started
    classpath, kwargs = trigger.serialize()
    trigger = import_string(classpath)(**kwargs)

    async def wait() -> dict:
        events = []

        async def consume() -> None:
            events.extend([e.payload async for e in trigger.run()])

        task = asyncio.create_task(consume())
        await asyncio.sleep(0.2)
        assert events == []  # nothing new yet
        await asyncio.to_thread(release_next)
        await asyncio.wait_for(task, 10)
        assert len(events) == 1
        return events[0]

    event = asyncio.run(wait())
    assert sensor.execute_complete({}, event)["tag"] == "v2.0"


def test_a_deferred_wait_takes_its_first_look_after_its_task_has_had_time_to_exit(
    emulator: RedivisEmulator,
) -> None:
    """A release that lands while the task defers must not fire the trigger before the task's process has
    exited (Airflow 3.3's scheduler would fail the resumption it had just queued): the first look of a new
    poller waits min(FIRST_LOOK_GRACE, poll_interval)."""
    release_next()
    trigger = RedivisReleaseWaitTrigger(DATASET, after_index=-1, end_time=time.time() + 30, poll_interval=1.0)

    async def first_event() -> float:
        started = time.time()
        async for _event in trigger.run():
            break
        return started

    started = asyncio.run(first_event())
    looks = [
        r.started_at
        for r in emulator.requests
        if r.method == "GET" and r.path.endswith("test_dataset") and r.started_at >= started
    ]
    assert looks
    assert looks[0] - started >= 0.9, f"first look {looks[0] - started:.3f} s after the trigger started"
