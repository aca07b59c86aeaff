"""The session URL as the checkpoint stores hold it: sealed under a key from the connection's token."""

from __future__ import annotations

import json

import pytest

from airflow_provider_redivis.checkpoint import CheckpointUnreadableError, UploadCheckpoint
from airflow_provider_redivis.sealing import SessionUrlSeal
from tests.test_checkpoint import make_checkpoint


def test_sealed_checkpoint_round_trips_and_shows_no_url() -> None:
    seal = SessionUrlSeal("token-1")
    checkpoint = make_checkpoint(transport="temp_upload", stored_md5="1B2M2Y8AsgTpgAmY7PhCfg==")
    stored = checkpoint.to_json(seal)
    assert "SECRET" not in json.dumps(stored)
    assert "session_url" not in stored
    assert UploadCheckpoint.from_json(stored, seal) == checkpoint


def test_another_token_cannot_open_it() -> None:
    stored = make_checkpoint().to_json(SessionUrlSeal("token-1"))
    with pytest.raises(CheckpointUnreadableError, match="token"):
        UploadCheckpoint.from_json(stored, SessionUrlSeal("token-2"))
    with pytest.raises(CheckpointUnreadableError):
        UploadCheckpoint.from_json(stored)


def test_a_format_1_checkpoint_is_still_read() -> None:
    old = make_checkpoint().to_json()
    old["format"] = 1
    del old["transport"], old["stored_md5"]
    assert UploadCheckpoint.from_json(old).transport == "resumable_upload"
