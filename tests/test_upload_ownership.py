"""What ties an upload Redivis shows under a name to this session, and what proves it is another's."""

from __future__ import annotations

import base64
import hashlib
from datetime import datetime, timedelta, timezone

import pytest

from airflow_provider_redivis.engine.checkpoint import UploadCheckpoint
from airflow_provider_redivis.engine.ownership import already_used, refusal_of, unproven_of, used_by_of
from airflow_provider_redivis.errors import RedivisAPIError
from tests.test_checkpoint import make_checkpoint

MD5 = hashlib.md5(b"x" * 100).digest()
ASKED = datetime(2026, 5, 1, 12, 0, tzinfo=timezone.utc)


def checkpoint():  # type: ignore[no-untyped-def]
    return make_checkpoint(
        stored_md5=base64.b64encode(MD5).decode(),
        created_at=ASKED - timedelta(minutes=10),
        creating_since=ASKED,
    )


def upload(**changes: object) -> dict[str, object]:
    base: dict[str, object] = {
        "id": "1000007",
        "name": "f.csv",
        "size": 100,
        "hash": MD5.hex(),
        "createdAt": int((ASKED + timedelta(seconds=3)).timestamp() * 1000),
    }
    return {**base, **changes}


def ours(cp: UploadCheckpoint, resource: dict[str, object], used_by: str | None) -> bool:
    return refusal_of(cp, resource, used_by) is None and unproven_of(cp, resource, used_by) is None


def test_the_sessions_own_upload_is_recognised() -> None:
    assert ours(checkpoint(), upload(), None)
    assert ours(checkpoint(), upload(), "1000007")
    assert ours(checkpoint(), upload(hash=base64.b64encode(MD5).decode()), None)  # either encoding


@pytest.mark.parametrize(
    ("changes", "used_by", "why"),
    [
        ({"name": "g.csv"}, None, "name"),
        ({"size": 101}, None, "bytes"),
        ({"size": 101}, "1000007", "bytes"),
        ({"hash": hashlib.md5(b"other").hexdigest()}, None, "md5"),
        ({"hash": hashlib.md5(b"other").hexdigest()}, "1000007", "md5"),
        ({}, "1000008", "1000008"),
    ],
)
def test_anything_else_is_another_tasks(changes: dict[str, object], used_by: str | None, why: str) -> None:
    refusal = refusal_of(checkpoint(), upload(**changes), used_by)
    assert refusal is not None
    assert why in refusal


def test_a_late_commit_is_never_too_early() -> None:
    # Redivis's clock a little behind the worker's: within the skew it is still this session's.
    assert (
        refusal_of(
            checkpoint(), upload(createdAt=int((ASKED - timedelta(seconds=20)).timestamp() * 1000)), None
        )
        is None
    )


def test_an_upload_redivis_names_is_ours_whatever_the_clocks_say() -> None:
    # The worker's clock 5 minutes ahead of Redivis's: its "asked at" is after Redivis's "created at".
    ahead = checkpoint().advanced(creating_since=ASKED + timedelta(minutes=5))
    assert ours(ahead, upload(), "1000007")
    # With nothing else to tie it, that proves nothing either way: not adopted, not called another's.
    assert refusal_of(ahead, upload(), None) is None
    missing = unproven_of(ahead, upload(), None)
    assert missing is not None
    assert "before this session" in missing


def test_a_null_size_or_hash_contradicts_nothing_and_proves_nothing() -> None:
    # Named by Redivis: its own tie, whatever it leaves null.
    assert ours(checkpoint(), upload(size=None, hash=None), "1000007")
    # Not named: the md5 ties it; a null size takes nothing from that.
    assert ours(checkpoint(), upload(size=None), None)
    # Not named and no md5 on one side: one name and one size are not one upload.
    for cp, resource in (
        (checkpoint(), upload(hash=None)),
        (checkpoint().advanced(stored_md5=None), upload()),
    ):
        assert refusal_of(cp, resource, None) is None
        missing = unproven_of(cp, resource, None)
        assert missing is not None
        assert "md5" in missing


def test_already_used_answers_name_the_upload() -> None:
    exc = RedivisAPIError(400, "The resumable upload was already used by upload 1000007.")
    assert already_used(exc)
    assert used_by_of(exc) == "1000007"
    assert used_by_of(RedivisAPIError(400, "resumableUploadId already used")) is None
    assert already_used(RedivisAPIError(400, "resumableUploadId already used"))
    assert not already_used(RedivisAPIError(409, "An upload named 'f.csv' already exists"))
