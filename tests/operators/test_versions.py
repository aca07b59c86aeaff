"""The recurring-load operators against the emulator: open the next version, release it, wait for it."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

import pytest
from airflow.providers.common.compat.sdk import AirflowFailException
from redivis_emulator import Fault

from airflow_provider_redivis.errors import RedivisConfigError, RedivisError
from airflow_provider_redivis.hooks.redivis import RedivisHook
from airflow_provider_redivis.operators.versions import (
    RedivisCreateNextVersionOperator,
    RedivisReleaseVersionOperator,
)
from tests.triggers.emulated_uploads import TABLE, create_upload, emulator_fixture

if TYPE_CHECKING:
    from redivis_emulator import RedivisEmulator

DATASET = "test_owner.test_dataset"

emulator = emulator_fixture(processing_delay=0.05)
slow_emulator = emulator_fixture(processing_delay=120.0)
#: A release takes about a second: long enough for a second try to find it under way.
steady_emulator = emulator_fixture(processing_delay=0.5)


def setup_hook() -> RedivisHook:
    return RedivisHook(redivis_conn_id="redivis_setup")


def create_next(**kwargs: Any) -> dict[str, Any]:
    return RedivisCreateNextVersionOperator(task_id="open", dataset=DATASET, **kwargs).execute({})


def release(**kwargs: Any) -> dict[str, Any]:
    kwargs.setdefault("poll_interval", 0.05)
    kwargs.setdefault("timeout", 20)
    return RedivisReleaseVersionOperator(task_id="release", dataset=DATASET, **kwargs).execute({})


def release_everything() -> None:
    """Release the dataset's next version so that it has none."""
    hook = setup_hook()
    hook.release_version(DATASET)
    deadline = time.monotonic() + 10
    while not hook.get_version(DATASET, "v1.0").get("isReleased"):
        assert time.monotonic() < deadline, "the emulator did not finish the release"
        time.sleep(0.02)


def version_posts(emu: RedivisEmulator) -> list[Any]:
    return [r for r in emu.requests if r.method == "POST" and r.path.endswith("/versions")]


def api_calls(emu: RedivisEmulator) -> list[tuple[str, str]]:
    """The API requests the emulator received (what counts against the token's budget), in order."""
    return [
        (r.method, r.path.removeprefix(f"/api/v1/datasets/{DATASET}"))
        for r in emu.requests
        if r.origin == "api" and r.path.startswith("/api/v1/")
    ]


# -- RedivisCreateNextVersionOperator --------------------------------------------------------------


def test_creates_the_next_version_when_there_is_none(emulator: RedivisEmulator) -> None:
    release_everything()
    emulator.clear_requests()
    result = create_next()
    assert api_calls(emulator) == [("POST", "/versions")]  # one request: no look first
    assert result["created"] is True
    assert result["tag"] == "v2.0"
    assert result["isReleased"] is False
    assert result["dataset"] == DATASET
    json.dumps(result)  # goes to XCom
    assert setup_hook().get_dataset(DATASET)["nextVersion"]["tag"] == "v2.0"


def test_existing_next_version_is_returned_with_if_not_exists(emulator: RedivisEmulator) -> None:
    existing = setup_hook().get_version(DATASET, "next")
    emulator.clear_requests()
    result = create_next()
    assert result["created"] is False
    assert result["uri"] == existing["uri"]
    # Redivis refused a second next version; the refusal is when to look.
    assert api_calls(emulator) == [("POST", "/versions"), ("GET", "/versions/next")]
    assert [r.status for r in version_posts(emulator)] == [409]
    assert setup_hook().get_version(DATASET, "next")["uri"] == existing["uri"]  # nothing was created


def test_existing_next_version_fails_clearly_without_if_not_exists(emulator: RedivisEmulator) -> None:
    with pytest.raises(AirflowFailException, match=r"already has an unreleased next version \(v1\.0\)"):
        create_next(if_not_exists=False)
    assert [r.status for r in version_posts(emulator)] == [409]  # refused: nothing was created


def test_next_version_opened_between_look_and_create_is_reused(emulator: RedivisEmulator) -> None:
    # The first look sees no next version (as if someone opened it a moment later); the create gets 409.
    emulator.add_fault(
        Fault(
            "status",
            method="GET",
            path_contains="/datasets/test_owner.test_dataset",
            status=200,
            body={"kind": "dataset", "nextVersion": None},
            times=1,
        )
    )
    result = create_next()
    assert result["created"] is False
    assert [r.status for r in version_posts(emulator)] == [409]


def test_lost_answer_to_create_finds_the_version_it_made(emulator: RedivisEmulator) -> None:
    release_everything()
    emulator.add_fault(Fault("drop_response", method="POST", path_contains="/versions"))
    result = create_next()
    assert result["created"] is True
    assert result["tag"] == "v2.0"
    assert len(version_posts(emulator)) == 1  # looked instead of posting again


def test_missing_dataset_fails_at_once(emulator: RedivisEmulator) -> None:
    with pytest.raises(AirflowFailException, match="404"):
        RedivisCreateNextVersionOperator(task_id="open", dataset="test_owner.nope").execute({})


def test_bad_dataset_reference_fails_at_parse_time() -> None:
    with pytest.raises(RedivisConfigError, match=r"owner\.dataset"):
        RedivisCreateNextVersionOperator(task_id="open", dataset="no_dot")
    RedivisCreateNextVersionOperator(task_id="open", dataset="{{ params.dataset }}")


# -- RedivisReleaseVersionOperator -----------------------------------------------------------------


def test_release_waits_until_released(emulator: RedivisEmulator) -> None:
    create_upload("sales.csv")
    emulator.wait_for_processing(TABLE, "sales.csv", timeout=10)
    emulator.clear_requests()
    result = release(release_notes="Daily load of 2026-11-24")
    # One request before the wait (no look first); then the polls of the version being released.
    calls = api_calls(emulator)
    assert calls[0] == ("POST", "/versions/next/release")
    assert all(call[0] == "GET" for call in calls[1:])
    assert result == {
        "uri": result["uri"],
        "tag": "v1.0",
        "status": "completed",
        "isReleased": True,
        "dataset": DATASET,
    }
    current = setup_hook().get_version(DATASET, "current")
    assert current["tag"] == "v1.0"
    assert current["releaseNotes"] == "Daily load of 2026-11-24"


def test_release_without_waiting_returns_the_started_release(emulator: RedivisEmulator) -> None:
    result = release(wait_for_release=False)
    assert result["status"] in ("queued", "running")
    assert result["isReleased"] is False


def test_release_blocked_while_an_upload_is_processing(slow_emulator: RedivisEmulator) -> None:
    create_upload("slow.csv")
    with pytest.raises(RedivisError, match="canRelease is false") as caught:
        release()
    assert "still queued or running, or after one has failed" in str(caught.value)
    # Redivis refused the release; the version, read after the refusal, says why.
    assert [r.status for r in slow_emulator.requests if r.path.endswith("/release")] == [400]
    assert setup_hook().get_version(DATASET, "next")["status"] is None  # no release started


def test_release_blocked_by_a_failed_upload(emulator: RedivisEmulator) -> None:
    emulator.add_fault(Fault("fail_processing", message="bad row"))
    create_upload("bad.csv")
    emulator.wait_for_processing(TABLE, "bad.csv", timeout=10)
    with pytest.raises(RedivisError, match="delete or replace any failed upload"):
        release()


def test_failed_release_fails_with_release_error_message(emulator: RedivisEmulator) -> None:
    emulator.add_fault(
        Fault(
            "fail_processing",
            path_contains="/release",
            message="Variable 'id' changed type from integer to string",
        )
    )
    with pytest.raises(AirflowFailException, match="Variable 'id' changed type from integer to string"):
        release()


def test_release_with_no_next_version_fails_clearly(emulator: RedivisEmulator) -> None:
    release_everything()
    with pytest.raises(AirflowFailException, match="no unreleased next version"):
        release()


def test_a_retry_waits_for_the_release_an_earlier_try_started(steady_emulator: RedivisEmulator) -> None:
    """The first try's release is under way (queued/running): the next try waits for it, posting nothing."""
    setup_hook().release_version(DATASET)
    steady_emulator.clear_requests()
    result = release()
    assert result["isReleased"] is True
    # Its own request was refused ("being released already"): it waited for the one under way.
    assert [r.status for r in steady_emulator.requests if r.path.endswith("/release")] == [400]
    assert result["tag"] == "v1.0"


def test_lost_answer_to_release_keeps_waiting_for_it(emulator: RedivisEmulator) -> None:
    emulator.add_fault(Fault("drop_response", method="POST", path_contains="/release"))
    result = release()
    assert result["isReleased"] is True
    assert len([r for r in emulator.requests if r.path.endswith("/release")]) == 1


def test_transient_errors_while_waiting_for_the_release_are_ridden_out(emulator: RedivisEmulator) -> None:
    # Version polls after the release call meet two 503s (the connection allows one attempt per call).
    emulator.add_fault(Fault("status", method="GET", path_contains="/versions/v1", status=503, times=2))
    result = release()
    assert result["isReleased"] is True
    polls = [r.status for r in emulator.requests if r.method == "GET" and "/versions/v1" in r.path]
    assert polls[:2] == [503, 503]


def test_release_timeout_says_the_release_goes_on(slow_emulator: RedivisEmulator) -> None:
    with pytest.raises(RedivisError, match=r"still 'queued' after 0 s\. It goes on in Redivis"):
        release(timeout=0.3)


def test_bad_arguments_fail_at_parse_time() -> None:
    with pytest.raises(RedivisConfigError, match="positive"):
        RedivisReleaseVersionOperator(task_id="r", dataset=DATASET, poll_interval=0)
    with pytest.raises(RedivisConfigError, match=r"owner\.dataset"):
        RedivisReleaseVersionOperator(task_id="r", dataset="a.b.c")
