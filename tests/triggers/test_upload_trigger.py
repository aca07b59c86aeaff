"""RedivisUploadTrigger against the emulator over 127.0.0.1, its async run() driven by asyncio.run."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import TYPE_CHECKING, Any

import pytest
from redivis_emulator import Fault

from airflow_provider_redivis.engine.status import (
    BACKOFF_FACTOR,
    REASON_COMPLETED,
    REASON_ERROR,
    REASON_FAILED,
    REASON_REJECTED,
    REASON_TIMEOUT,
    poll_intervals,
)
from airflow_provider_redivis.triggers.upload import RedivisUploadTrigger
from tests.triggers.emulated_uploads import TABLE, create_upload, import_string

if TYPE_CHECKING:
    from redivis_emulator import RedivisEmulator

CLASSPATH = "airflow_provider_redivis.triggers.upload.RedivisUploadTrigger"


def run_trigger(trigger: RedivisUploadTrigger, limit: float = 30.0) -> list[Any]:
    """Every event the trigger yields, with a bound on how long that may take."""

    async def collect() -> list[Any]:
        return [event async for event in trigger.run()]

    async def bounded() -> list[Any]:
        return await asyncio.wait_for(collect(), timeout=limit)

    return asyncio.run(bounded())


def one_payload(trigger: RedivisUploadTrigger, limit: float = 30.0) -> dict[str, Any]:
    events = run_trigger(trigger, limit)
    assert len(events) == 1, events
    payload = events[0].payload
    assert set(payload) == {"status", "reason", "upload", "message"}
    return payload


def upload_gets(emu: RedivisEmulator) -> list[Any]:
    return [r for r in emu.requests if r.origin == "api" and r.method == "GET" and "/uploads/" in r.path]


# -- serialization ---------------------------------------------------------------------------


def test_serialize_round_trips_and_keeps_the_deadline() -> None:
    trigger = RedivisUploadTrigger(
        upload_uri="/tables/o.d:1.t:2/uploads/789", redivis_conn_id="conn", poll_interval=5, timeout=600
    )
    classpath, kwargs = trigger.serialize()
    assert classpath == CLASSPATH
    rebuilt = import_string(classpath)(**kwargs)
    assert rebuilt.serialize() == (classpath, kwargs)
    # A triggerer that restarts rebuilds the trigger from these kwargs: the deadline must not move.
    assert kwargs["end_time"] == pytest.approx(time.time() + 600, abs=5)
    assert kwargs["upload_uri"] == "/tables/o.d:1.t:2/uploads/789"
    assert kwargs["redivis_conn_id"] == "conn"


def test_serialize_round_trips_a_lookup_by_name() -> None:
    trigger = RedivisUploadTrigger(table=TABLE, upload_name="a.csv", poll_interval=1, timeout=10)
    classpath, kwargs = trigger.serialize()
    again = RedivisUploadTrigger(**kwargs).serialize()
    assert again == (classpath, kwargs)
    assert (kwargs["table"], kwargs["upload_name"], kwargs["upload_uri"]) == (TABLE, "a.csv", None)


def test_the_upload_operator_call_shape_is_accepted() -> None:
    trigger = RedivisUploadTrigger(
        upload_uri="/tables/x/uploads/1",
        redivis_conn_id="redivis_default",
        poll_interval=10.0,
        timeout=3600.0,
    )
    assert trigger.max_poll_interval == 60.0


def test_a_trigger_needs_an_upload() -> None:
    from airflow_provider_redivis.errors import RedivisConfigError

    with pytest.raises(RedivisConfigError, match="upload_name"):
        RedivisUploadTrigger(table=TABLE)
    with pytest.raises(RedivisConfigError, match="positive"):
        RedivisUploadTrigger(upload_uri="/tables/x/uploads/1", poll_interval=0)


def test_poll_intervals_grow_to_the_cap() -> None:
    values = list(itertools.islice(poll_intervals(2.0, 9.0), 8))
    assert values[0] == 2.0
    assert values[1] == 2.0 * BACKOFF_FACTOR
    assert all(b >= a for a, b in itertools.pairwise(values))
    assert values[-1] == 9.0
    assert max(values) == 9.0


# -- against the emulator ----------------------------------------------------------------------


def test_completed_upload_gives_one_success_event(emulator: RedivisEmulator) -> None:
    upload = create_upload("sales.csv")
    payload = one_payload(RedivisUploadTrigger(upload_uri=upload["uri"], poll_interval=0.05, timeout=20))
    assert payload["status"] == "success"
    assert payload["reason"] == REASON_COMPLETED
    assert payload["upload"]["status"] == "completed"
    assert payload["upload"]["uri"] == upload["uri"]
    assert payload["upload"]["numRows"] == 3
    assert "completed" in payload["message"]


def test_failed_upload_gives_an_error_event_with_redivis_message(emulator: RedivisEmulator) -> None:
    emulator.add_fault(Fault("fail_processing", message="Row 7 has 3 columns, expected 2"))
    upload = create_upload("bad.csv")
    payload = one_payload(RedivisUploadTrigger(upload_uri=upload["uri"], poll_interval=0.05, timeout=20))
    assert payload["status"] == "error"
    assert payload["reason"] == REASON_FAILED
    assert payload["upload"]["status"] == "failed"
    assert "Row 7 has 3 columns, expected 2" in payload["message"]


def test_transient_503s_while_waiting_are_survived(emulator: RedivisEmulator) -> None:
    upload = create_upload("sales.csv")
    # The connection allows one attempt per call, so each 503 reaches the trigger itself.
    emulator.add_fault(Fault("status", method="GET", path_contains="/uploads/", status=503, times=3))
    payload = one_payload(RedivisUploadTrigger(upload_uri=upload["uri"], poll_interval=0.05, timeout=20))
    assert payload["reason"] == REASON_COMPLETED, payload
    statuses = [r.status for r in upload_gets(emulator)]
    assert statuses[:3] == [503, 503, 503]
    assert statuses[-1] == 200


def test_timeout_says_what_it_saw_last_and_when(slow_emulator: RedivisEmulator) -> None:
    upload = create_upload("slow.csv")
    payload = one_payload(RedivisUploadTrigger(upload_uri=upload["uri"], poll_interval=0.1, timeout=0.6))
    assert payload["status"] == "error"
    assert payload["reason"] == REASON_TIMEOUT
    assert payload["upload"]["status"] in ("queued", "running")
    assert f"last seen status {payload['upload']['status']!r} at 20" in payload["message"]
    assert "after 1 s" in payload["message"] or "after 0 s" in payload["message"]


def test_timeout_while_the_api_keeps_failing_says_so(slow_emulator: RedivisEmulator) -> None:
    upload = create_upload("slow.csv")
    slow_emulator.add_fault(Fault("status", method="GET", path_contains="/uploads/", status=503, times=None))
    payload = one_payload(RedivisUploadTrigger(upload_uri=upload["uri"], poll_interval=0.1, timeout=0.6))
    assert payload["reason"] == REASON_TIMEOUT
    assert "answering with an error (HTTP 503" in payload["message"]
    assert len(upload_gets(slow_emulator)) >= 2  # it kept polling through the errors


def test_backoff_keeps_the_number_of_polls_down(slow_emulator: RedivisEmulator) -> None:
    upload = create_upload("slow.csv")
    # Polling every 0.05 s for 1.5 s would be 30 requests; growing by 1.5x to 0.4 s it is about 9.
    payload = one_payload(
        RedivisUploadTrigger(upload_uri=upload["uri"], poll_interval=0.05, max_poll_interval=0.4, timeout=1.5)
    )
    assert payload["reason"] == REASON_TIMEOUT
    assert 2 <= len(upload_gets(slow_emulator)) <= 12


def test_a_restarted_trigger_keeps_its_original_deadline(slow_emulator: RedivisEmulator) -> None:
    upload = create_upload("slow.csv")
    _, kwargs = RedivisUploadTrigger(upload_uri=upload["uri"], poll_interval=0.05, timeout=3600).serialize()
    kwargs["end_time"] = time.time() - 1  # the deadline passed while the triggerer was down
    payload = one_payload(RedivisUploadTrigger(**kwargs))
    assert payload["reason"] == REASON_TIMEOUT
    assert len(upload_gets(slow_emulator)) == 1  # one last look, then the timeout event


def test_waits_for_an_upload_created_later_by_name(emulator: RedivisEmulator) -> None:
    trigger = RedivisUploadTrigger(table=TABLE, upload_name="later.csv", poll_interval=0.05, timeout=20)

    async def scenario() -> list[Any]:
        waiting = asyncio.create_task(asyncio.wait_for(_collect(trigger), timeout=30))
        await asyncio.sleep(0.3)
        assert not waiting.done()
        await asyncio.to_thread(create_upload, "later.csv")
        return await waiting

    events = asyncio.run(scenario())
    assert len(events) == 1
    assert events[0].payload["reason"] == REASON_COMPLETED
    assert events[0].payload["upload"]["name"] == "later.csv"


def test_missing_table_is_rejected_at_once(emulator: RedivisEmulator) -> None:
    trigger = RedivisUploadTrigger(
        table="test_owner.test_dataset.no_such_table", upload_name="a.csv", poll_interval=0.05, timeout=20
    )
    payload = one_payload(trigger)
    assert payload["reason"] == REASON_REJECTED
    assert "404" in payload["message"]


def test_deleted_upload_is_rejected_with_what_happened(emulator: RedivisEmulator) -> None:
    upload = create_upload("gone.csv")
    emulator.wait_for_processing(TABLE, "gone.csv", timeout=10)
    from airflow_provider_redivis.hooks.redivis import RedivisHook

    RedivisHook(redivis_conn_id="redivis_setup").delete_upload(upload["uri"])
    payload = one_payload(RedivisUploadTrigger(upload_uri=upload["uri"], poll_interval=0.05, timeout=20))
    assert payload["reason"] == REASON_REJECTED
    assert "deleted" in payload["message"]


def test_bad_token_is_rejected_without_leaking_it(
    emulator: RedivisEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.triggers.emulated_uploads import connection_json

    upload = create_upload("a.csv")
    monkeypatch.setenv(
        "AIRFLOW_CONN_REDIVIS_WRONG", connection_json(emulator).replace(emulator.token, "wrong-tok3n")
    )
    payload = one_payload(
        RedivisUploadTrigger(
            upload_uri=upload["uri"], redivis_conn_id="redivis_wrong", poll_interval=0.05, timeout=20
        )
    )
    assert payload["reason"] == REASON_REJECTED
    assert "401" in payload["message"]
    assert "wrong-tok3n" not in str(payload)


def test_any_exception_becomes_the_one_error_event(emulator: RedivisEmulator) -> None:
    trigger = RedivisUploadTrigger(
        upload_uri="/tables/x/uploads/1", redivis_conn_id="no_such_connection", poll_interval=0.05, timeout=20
    )
    payload = one_payload(trigger)
    assert payload["status"] == "error"
    assert payload["reason"] == REASON_ERROR
    assert "no_such_connection" in payload["message"]


def test_the_event_loop_keeps_running_while_a_status_check_hangs(emulator: RedivisEmulator) -> None:
    upload = create_upload("sales.csv")
    emulator.wait_for_processing(TABLE, "sales.csv", timeout=10)
    emulator.add_fault(Fault("stall", method="GET", path_contains="/uploads/", seconds=1.0))
    trigger = RedivisUploadTrigger(upload_uri=upload["uri"], poll_interval=0.05, timeout=20)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    async def scenario() -> list[Any]:
        beat = asyncio.create_task(ticker())
        try:
            return await asyncio.wait_for(_collect(trigger), timeout=30)
        finally:
            beat.cancel()

    events = asyncio.run(scenario())
    assert events[0].payload["reason"] == REASON_COMPLETED
    # A blocking call would have frozen the loop for the whole second of the stall.
    assert ticks >= 10


async def _collect(trigger: RedivisUploadTrigger) -> list[Any]:
    return [event async for event in trigger.run()]
