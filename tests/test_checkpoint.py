"""The checkpoint format: a round trip, and what a new try refuses to resume from."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from airflow_provider_redivis.engine.checkpoint import (
    CheckpointUnreadableError,
    UploadCheckpoint,
    UploadPhase,
)
from airflow_provider_redivis.engine.sources import SourceFingerprint


def make_checkpoint(**changes: object) -> UploadCheckpoint:
    base = UploadCheckpoint(
        table="owner.ds:next.t",
        upload_name="f.csv",
        session_id="sess-1",
        session_url="http://127.0.0.1:1/upload/resumable/xyz?upload_id=SECRET",
        total_size=100,
        fingerprint=SourceFingerprint(size=100, modified="123", edges_sha256="ab" * 32),
        offset=40,
    )
    return base.advanced(**changes)


def test_round_trip_through_json() -> None:
    cp = make_checkpoint(phase=UploadPhase.CREATED, upload_uri="/tables/x/uploads/1")
    assert UploadCheckpoint.from_json(cp.to_json()) == cp


def test_json_is_plain_values_only() -> None:
    import json

    text = json.dumps(make_checkpoint().to_json())
    assert "sess-1" in text


def test_repr_hides_the_session_url() -> None:
    assert "SECRET" not in repr(make_checkpoint())


@pytest.mark.parametrize(
    "raw",
    [None, [], "x", {"format": 99}, {"format": 1}, {**make_checkpoint().to_json(), "phase": "exploded"}],
)
def test_unreadable_checkpoints_are_refused(raw: object) -> None:
    with pytest.raises(CheckpointUnreadableError):
        UploadCheckpoint.from_json(raw)  # type: ignore[arg-type]


def test_session_expires_with_a_margin_before_24_hours() -> None:
    created = datetime(2026, 1, 1, tzinfo=timezone.utc)
    cp = make_checkpoint(created_at=created)
    assert not cp.session_expired(created + timedelta(hours=23))
    assert cp.session_expired(created + timedelta(hours=23, minutes=45))
