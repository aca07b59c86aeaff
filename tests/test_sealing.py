"""The session URL as the checkpoint stores hold it: sealed under a key from the connection's token."""

from __future__ import annotations

import json

import pytest

from airflow_provider_redivis.checkpoint import UploadCheckpoint, UploadPhase
from airflow_provider_redivis.sealing import SealBrokenError, SessionUrlSeal
from tests.test_checkpoint import make_checkpoint


def test_sealed_checkpoint_round_trips_and_shows_no_url() -> None:
    seal = SessionUrlSeal("token-1")
    checkpoint = make_checkpoint(transport="temp_upload", stored_md5="1B2M2Y8AsgTpgAmY7PhCfg==")
    stored = checkpoint.to_json(seal)
    assert "SECRET" not in json.dumps(stored)
    assert "session_url" not in stored
    assert UploadCheckpoint.from_json(stored, seal) == checkpoint


def test_another_token_loses_the_url_and_nothing_else() -> None:
    checkpoint = make_checkpoint(
        phase=UploadPhase.CREATED, upload_uri="/tables/x/uploads/7", stored_md5="1B2M2Y8AsgTpgAmY7PhCfg=="
    )
    stored = checkpoint.to_json(SessionUrlSeal("token-1"))
    with pytest.raises(SealBrokenError, match="token"):
        SessionUrlSeal("token-2").open(stored["session_url_sealed"])
    for seal in (SessionUrlSeal("token-2"), None):
        read = UploadCheckpoint.from_json(stored, seal)
        assert read == checkpoint.advanced(session_url=None)  # phase, session id, upload uri, md5: all there
    # Saved again by the new token's try: no URL, and still readable by either token.
    again = read.to_json(SessionUrlSeal("token-2"))
    assert "session_url_sealed" not in again
    assert UploadCheckpoint.from_json(again, SessionUrlSeal("token-1")) == read


def test_a_format_1_checkpoint_is_still_read() -> None:
    old = make_checkpoint().to_json()
    old["format"] = 1
    del old["transport"], old["stored_md5"]
    assert UploadCheckpoint.from_json(old).transport == "resumable_upload"
