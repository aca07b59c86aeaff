"""RedivisHook.wait_for_upload: the one wait the operators use, against the emulator on 127.0.0.1."""

from __future__ import annotations

import pytest
from redivis_emulator import Fault, RedivisEmulator

from airflow_provider_redivis.errors import RedivisNotFoundError, WaitTimeoutError
from airflow_provider_redivis.hooks.redivis import RedivisHook
from airflow_provider_redivis.upload_status import UploadTarget
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
