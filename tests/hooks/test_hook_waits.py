"""RedivisHook.wait_for_upload: the one wait the operators use, against the emulator on 127.0.0.1."""

from __future__ import annotations

import itertools

import pytest
from redivis_emulator import Fault, RedivisEmulator

from airflow_provider_redivis.engine.status import UploadTarget
from airflow_provider_redivis.errors import RedivisConfigError, RedivisNotFoundError, WaitTimeoutError
from airflow_provider_redivis.hooks.redivis import RedivisHook
from airflow_provider_redivis.hooks.uploads import least_poll_interval
from tests.hooks.conftest import HookLog
from tests.triggers.emulated_uploads import create_upload, emulator_fixture

emulator = emulator_fixture(processing_delay=0.05)
slow_emulator = emulator_fixture(processing_delay=120.0)


def upload_gets(emu: RedivisEmulator) -> list[int | None]:
    return [
        r.status for r in emu.requests if r.origin == "api" and r.method == "GET" and "/uploads/" in r.path
    ]


def test_the_wait_survives_transient_errors_and_returns_the_completed_upload(
    emulator: RedivisEmulator,
) -> None:
    upload = create_upload("sales.csv")
    # redivis_default allows one attempt per call: each 503 reaches the wait itself.
    emulator.add_fault(Fault("status", method="GET", path_contains="/uploads/", status=503, times=2))
    done = RedivisHook().wait_for_upload(upload["uri"], poll_interval=0.05, timeout=20)
    assert done["status"] == "completed"
    assert done["uri"] == upload["uri"]
    statuses = upload_gets(emulator)
    assert statuses[:2] == [503, 503]
    assert statuses[-1] == 200


def test_a_failed_upload_is_returned_for_the_caller_to_judge(emulator: RedivisEmulator) -> None:
    emulator.add_fault(Fault("fail_processing", message="Row 7 has 3 columns, expected 2"))
    upload = create_upload("bad.csv")
    done = RedivisHook().wait_for_upload(
        UploadTarget(upload_uri=upload["uri"]), poll_interval=0.05, timeout=20
    )
    assert done["status"] == "failed"
    assert "Row 7 has 3 columns" in done["errorMessage"]


def test_the_deadline_raises_and_says_what_was_seen_last(slow_emulator: RedivisEmulator) -> None:
    upload = create_upload("slow.csv")
    target = UploadTarget(upload_uri=upload["uri"], upload_name="slow.csv")
    with pytest.raises(
        WaitTimeoutError, match=r"Gave up waiting for Redivis upload 'slow.csv'.*last seen status"
    ):
        RedivisHook().wait_for_upload(target, poll_interval=0.1, timeout=0.5)
    assert len(upload_gets(slow_emulator)) >= 2


def test_an_error_waiting_cannot_change_ends_the_wait_at_once(emulator: RedivisEmulator) -> None:
    upload = create_upload("gone.csv")
    RedivisHook(redivis_conn_id="redivis_setup").delete_upload(upload["uri"])
    with pytest.raises(RedivisNotFoundError, match="nothing left to wait for"):
        RedivisHook().wait_for_upload(upload["uri"], poll_interval=0.05, timeout=20)
    assert len(upload_gets(emulator)) == 1


@pytest.mark.parametrize("asked", [0.05, None], ids=["asked-for-less", "default"])
def test_the_wait_never_polls_faster_than_the_least_interval(
    slow_emulator: RedivisEmulator, monkeypatch: pytest.MonkeyPatch, hook_log: HookLog, asked: float | None
) -> None:
    monkeypatch.setenv("AIRFLOW__REDIVIS__MIN_POLL_INTERVAL", "0.3")
    upload = create_upload("slow.csv")
    hook = RedivisHook()
    log = hook_log(hook)
    with pytest.raises(WaitTimeoutError):
        hook.wait_for_upload(upload["uri"], poll_interval=asked, timeout=1.0)
    checks = [r.started_at for r in slow_emulator.requests if r.method == "GET" and "/uploads/" in r.path]
    gaps = [b - a for a, b in itertools.pairwise(checks)]
    # Every 0.3 s for 1 s, then one last look at the deadline; at 0.05 s it would be 20 checks.
    assert 3 <= len(checks) <= 5, gaps
    assert all(gap >= 0.29 for gap in gaps[:-1]), gaps
    warned = "poll_interval=0.05 s is below 0.3 s, the least interval of a wait that polls on its own"
    assert (warned in log.text) == (asked is not None)


def test_the_least_interval_is_30_s_unless_airflow_says_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW__REDIVIS__MIN_POLL_INTERVAL")
    assert least_poll_interval() == 30.0
    monkeypatch.setenv("AIRFLOW__REDIVIS__MIN_POLL_INTERVAL", "120")
    assert least_poll_interval() == 120.0
    monkeypatch.setenv("AIRFLOW__REDIVIS__MIN_POLL_INTERVAL", "0")
    with pytest.raises(RedivisConfigError, match=r"\[redivis\] min_poll_interval must be a positive number"):
        least_poll_interval()
