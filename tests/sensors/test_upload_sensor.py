"""RedivisUploadSensor against the emulator over 127.0.0.1: its poke, its modes, its deferral round trip."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import subprocess
import sys
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest
from airflow.providers.common.compat.sdk import (
    AirflowFailException,
    AirflowSensorTimeout,
    AirflowSkipException,
    PokeReturnValue,
    TaskDeferred,
)
from redivis_emulator import Fault

from airflow_provider_redivis.errors import RedivisConfigError, RedivisError
from airflow_provider_redivis.sensors.upload import RedivisUploadSensor, upload_target_from
from airflow_provider_redivis.triggers.upload import RedivisUploadTrigger
from tests.triggers.emulated_uploads import TABLE, create_upload, import_string

if TYPE_CHECKING:
    from redivis_emulator import RedivisEmulator

URI = "/tables/test_owner.test_dataset:1.test_table:abc/uploads/42"


def sensor(**kwargs: Any) -> RedivisUploadSensor:
    kwargs.setdefault("task_id", "wait")
    kwargs.setdefault("poke_interval", 0.05)
    kwargs.setdefault("timeout", 20)
    return RedivisUploadSensor(**kwargs)


def by_name(name: str, **kwargs: Any) -> RedivisUploadSensor:
    return sensor(table=TABLE, upload_name=name, **kwargs)


# -- arguments ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        {"uri": URI, "name": "a.csv", "status": "completed"},  # the upload operator's result
        str({"uri": URI, "name": "a.csv", "numRows": None}),  # that result through a non-native template
        json.dumps({"uri": URI}),
        URI,
        f"  {URI}  ",
    ],
    ids=["dict", "python-repr", "json", "uri", "padded-uri"],
)
def test_upload_is_read_from_the_operator_result_in_any_rendering(value: object) -> None:
    target = upload_target_from(value)
    assert target.upload_uri == URI
    assert target.table is None
    if isinstance(value, dict) or "a.csv" in str(value):
        assert target.upload_name == "a.csv"
        assert target.describe() == f"'a.csv' ({URI})"


@pytest.mark.parametrize(
    "value", [{}, {"uri": None}, "", "{not a dict", "{'name': 'a.csv'}", 42, None], ids=repr
)
def test_an_upload_without_uri_is_refused_with_what_to_give(value: object) -> None:
    with pytest.raises(RedivisConfigError, match="a dict with 'uri'"):
        upload_target_from(value)


def test_give_the_upload_one_way() -> None:
    with pytest.raises(RedivisConfigError, match="not both"):
        sensor(upload={"uri": URI}, table=TABLE)
    with pytest.raises(RedivisConfigError, match="needs table and upload_name"):
        sensor(table=TABLE)
    with pytest.raises(RedivisConfigError, match="not a Redivis table reference"):
        sensor(table="no-dots", upload_name="a.csv")
    # Templates are checked after rendering, not before.
    sensor(table="{{ params.table }}", upload_name="{{ ds }}.csv")
    sensor(upload="{{ ti.xcom_pull('upload') }}")


@pytest.mark.slow
def test_deferrable_default_follows_the_airflow_setting() -> None:
    code = (
        "from airflow_provider_redivis.sensors.upload import RedivisUploadSensor as S;"
        f"print(S(task_id='t', table={TABLE!r}, upload_name='a').deferrable)"
    )
    for setting, expected in (("True", "True"), ("False", "False")):
        env = {**os.environ, "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": setting}
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60, check=True
        )
        assert out.stdout.strip().splitlines()[-1] == expected


# -- poke --------------------------------------------------------------------------------------


def test_completed_upload_ends_the_wait_with_its_summary(emulator: RedivisEmulator) -> None:
    create_upload("sales.csv")
    emulator.wait_for_processing(TABLE, "sales.csv", timeout=10)
    result = by_name("sales.csv").poke({})
    assert isinstance(result, PokeReturnValue)
    assert result.is_done
    assert result.xcom_value["status"] == "completed"
    assert result.xcom_value["numRows"] == 3


def test_upload_given_as_the_operator_result(emulator: RedivisEmulator) -> None:
    upload = create_upload("sales.csv")
    emulator.wait_for_processing(TABLE, "sales.csv", timeout=10)
    result = sensor(upload=str({"uri": upload["uri"], "name": "sales.csv"})).poke({})
    assert isinstance(result, PokeReturnValue)
    assert result.xcom_value["uri"] == upload["uri"]


def test_queued_or_running_keeps_waiting(slow_emulator: RedivisEmulator) -> None:
    create_upload("slow.csv")
    assert by_name("slow.csv").poke({}) is False


def test_failed_upload_fails_at_once_with_redivis_message(emulator: RedivisEmulator) -> None:
    emulator.add_fault(Fault("fail_processing", message="Row 7 has 3 columns, expected 2"))
    create_upload("bad.csv")
    emulator.wait_for_processing(TABLE, "bad.csv", timeout=10)
    # AirflowFailException: Airflow fails the task without using its retries.
    with pytest.raises(AirflowFailException, match="Row 7 has 3 columns, expected 2"):
        by_name("bad.csv").poke({})


def test_transient_api_error_keeps_waiting(emulator: RedivisEmulator) -> None:
    create_upload("sales.csv")
    emulator.wait_for_processing(TABLE, "sales.csv", timeout=10)
    emulator.add_fault(Fault("status", method="GET", path_contains="/uploads/", status=503, times=1))
    wait = by_name("sales.csv")
    assert wait.poke({}) is False
    assert "answering with an error (HTTP 503" in (wait._last_seen or "")
    assert isinstance(wait.poke({}), PokeReturnValue)


def test_upload_not_created_yet_keeps_waiting(emulator: RedivisEmulator) -> None:
    wait = by_name("later.csv")
    assert wait.poke({}) is False
    assert "not created yet" in (wait._last_seen or "")


def test_waiting_by_name_checks_the_table_once_then_one_request_a_look(emulator: RedivisEmulator) -> None:
    wait = by_name("later.csv")
    for _ in range(3):
        assert wait.poke({}) is False
    paths = [r.path.removeprefix(f"/api/v1/tables/{TABLE}") for r in emulator.requests if r.origin == "api"]
    # The first 404 for the upload asks whether the table exists; once it has been seen, a 404 means "not yet".
    assert paths == ["/uploads/later_csv", "", "/uploads/later_csv", "/uploads/later_csv"]


def test_missing_table_fails_at_once(emulator: RedivisEmulator) -> None:
    with pytest.raises(AirflowFailException, match="404"):
        sensor(table="test_owner.test_dataset.nope", upload_name="a.csv").poke({})


def test_poke_mode_timeout_says_what_it_saw_last(slow_emulator: RedivisEmulator) -> None:
    create_upload("slow.csv")
    with pytest.raises(AirflowSensorTimeout) as caught:
        by_name("slow.csv", timeout=0.3, poke_interval=0.1, mode="poke").execute({})
    message = str(caught.value)
    assert "Gave up waiting for Redivis upload 'slow.csv'" in message
    assert "last seen status 'queued' at 20" in message or "last seen status 'running' at 20" in message


def test_poke_mode_never_polls_faster_than_the_least_interval(
    slow_emulator: RedivisEmulator, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AIRFLOW__REDIVIS__MIN_POLL_INTERVAL", "0.3")
    create_upload("slow.csv")
    wait = by_name("slow.csv", timeout=1.0, poke_interval=0.05, mode="poke")
    with pytest.raises(AirflowSensorTimeout):
        wait.execute({})
    pokes = [
        r.started_at for r in slow_emulator.requests if r.method == "GET" and r.path.endswith("/slow_csv")
    ]
    # A poke every 0.3 s for 1 s; at the 0.05 s asked for it would be 20.
    assert 3 <= len(pokes) <= 5, pokes
    assert all(b - a >= 0.29 for a, b in itertools.pairwise(pokes))
    assert wait.poke_interval == 0.3
    logged = "".join(capfd.readouterr())  # the task's log: structlog on Airflow 3 writes it to the console
    assert "poke_interval=0.05 s is below 0.3 s" in logged
    assert "Defer the wait (deferrable=True)" in logged


def test_a_deferred_sensor_keeps_the_interval_it_asked_for(
    slow_emulator: RedivisEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW__REDIVIS__MIN_POLL_INTERVAL", "30")
    create_upload("slow.csv")
    with pytest.raises(TaskDeferred) as deferred:
        by_name("slow.csv", deferrable=True, poke_interval=3, timeout=600).execute({})
    # Deferred waits on a table share one check: the least interval of a wait on its own does not apply.
    assert deferred.value.trigger.poll_interval == 3.0


# -- deferrable --------------------------------------------------------------------------------


def test_deferrable_defers_to_the_trigger_without_holding_a_slot(slow_emulator: RedivisEmulator) -> None:
    create_upload("slow.csv")
    wait = by_name("slow.csv", deferrable=True, poke_interval=3, timeout=600, max_poll_interval=30)
    with pytest.raises(TaskDeferred) as deferred:
        wait.execute({})
    trigger = deferred.value.trigger
    assert isinstance(trigger, RedivisUploadTrigger)
    _, kwargs = trigger.serialize()
    assert (kwargs["table"], kwargs["upload_name"]) == (TABLE, "slow.csv")
    assert (kwargs["poll_interval"], kwargs["max_poll_interval"], kwargs["timeout"]) == (3.0, 30.0, 600.0)
    assert deferred.value.method_name == "execute_complete"
    assert deferred.value.timeout is not None
    assert deferred.value.timeout > timedelta(seconds=600)  # a backstop behind the trigger's own deadline


def test_deferrable_returns_at_once_when_already_processed(emulator: RedivisEmulator) -> None:
    create_upload("sales.csv")
    emulator.wait_for_processing(TABLE, "sales.csv", timeout=10)
    result = by_name("sales.csv", deferrable=True).execute({})
    assert result["status"] == "completed"


def test_deferrable_failed_upload_with_soft_fail_skips(emulator: RedivisEmulator) -> None:
    emulator.add_fault(Fault("fail_processing", message="bad row"))
    create_upload("bad.csv")
    emulator.wait_for_processing(TABLE, "bad.csv", timeout=10)
    with pytest.raises(AirflowSkipException, match="bad row"):
        by_name("bad.csv", deferrable=True, soft_fail=True).execute({})


def test_deferral_round_trip_through_the_trigger(emulator: RedivisEmulator) -> None:
    """execute defers, the trigger runs (as the triggerer would), execute_complete takes its event."""
    wait = by_name("sales.csv", deferrable=True)
    with pytest.raises(TaskDeferred) as deferred:
        wait.execute({})  # not created yet: defer
    create_upload("sales.csv")
    classpath, kwargs = deferred.value.trigger.serialize()
    # As the triggerer does: import the class named by the classpath, build it from the kwargs.
    rebuilt = import_string(classpath)(**kwargs)

    async def first_event() -> Any:
        async for event in rebuilt.run():
            return event
        return None

    event = asyncio.run(asyncio.wait_for(first_event(), timeout=30))
    result = getattr(wait, deferred.value.method_name)({}, event.payload)
    assert result["status"] == "completed"
    assert result["name"] == "sales.csv"


@pytest.mark.parametrize(
    ("event", "raised", "text"),
    [
        (
            {
                "status": "error",
                "reason": "failed",
                "upload": {"status": "failed", "errorMessage": "x"},
                "message": "bad file",
            },
            AirflowFailException,
            "bad file",
        ),
        (
            {"status": "error", "reason": "rejected", "upload": None, "message": "401 token"},
            AirflowFailException,
            "401",
        ),
        (
            {
                "status": "error",
                "reason": "timeout",
                "upload": {"status": "running"},
                "message": "last seen running",
            },
            AirflowSensorTimeout,
            "last seen running",
        ),
        ({"status": "error", "reason": "error", "upload": None, "message": "boom"}, RedivisError, "boom"),
        # An event from an older trigger without 'reason' still fails clearly.
        (
            {"status": "error", "upload": {"status": "failed"}, "message": "failed upload"},
            AirflowFailException,
            "failed",
        ),
    ],
    ids=["failed", "rejected", "timeout", "error", "no-reason"],
)
def test_execute_complete_turns_each_event_into_the_right_failure(
    event: dict[str, Any], raised: type[Exception], text: str
) -> None:
    with pytest.raises(raised, match=text):
        by_name("a.csv").execute_complete({}, event)


def test_execute_complete_success_returns_the_summary() -> None:
    upload = {"uri": URI, "name": "a.csv", "status": "completed", "numRows": 3, "url": "https://x"}
    result = by_name("a.csv").execute_complete(
        {}, {"status": "success", "reason": "completed", "upload": upload, "message": "done"}
    )
    assert result["numRows"] == 3
    assert "url" not in result
