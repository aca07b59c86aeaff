"""The session URL as the checkpoint stores hold it: sealed under a key from the connection's token."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest
from cryptography.fernet import Fernet, InvalidToken

from airflow_provider_redivis.engine.checkpoint import UploadCheckpoint, UploadPhase
from airflow_provider_redivis.engine.sealing import _CONTEXT, ITERATIONS, SealBrokenError, SessionUrlSeal
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


def test_each_session_url_gets_its_own_salt_and_a_slow_key() -> None:
    url = make_checkpoint().session_url
    assert url is not None
    first, second = SessionUrlSeal("token-1").seal(url), SessionUrlSeal("token-1").seal(url)
    scheme, iterations, salt, _ = first.split("$")
    assert (scheme, int(iterations)) == ("pbkdf2-sha256", ITERATIONS)
    assert salt != second.split("$")[2]  # the same URL and token, another key
    # The key is not the old unsalted SHA-256 of the token.
    legacy = Fernet(base64.urlsafe_b64encode(hashlib.sha256(_CONTEXT + b"token-1").digest()))
    with pytest.raises(InvalidToken):
        legacy.decrypt(first.split("$")[3].encode())
    # A checkpoint keeps its salt when saved again, by the try that made it or the next one that opened it.
    seal = SessionUrlSeal("token-1")
    assert seal.seal(url).split("$")[2] == seal.seal(url).split("$")[2]
    reader = SessionUrlSeal("token-1")
    assert reader.open(second) == url
    assert reader.seal(url).split("$")[2] == second.split("$")[2]


def test_a_value_sealed_before_the_salted_key_is_still_opened() -> None:
    url = "https://storage.example/upload/resumable/abc?upload_id=SECRET"
    legacy = Fernet(base64.urlsafe_b64encode(hashlib.sha256(_CONTEXT + b"token-1").digest()))
    assert SessionUrlSeal("token-1").open(legacy.encrypt(url.encode()).decode()) == url


@pytest.mark.parametrize("iterations", ["0", str(100 * ITERATIONS), "many"])
def test_a_stored_value_cannot_ask_for_endless_work(iterations: str) -> None:
    scheme, _, salt, token = SessionUrlSeal("token-1").seal("https://x.example/u").split("$")
    with pytest.raises(SealBrokenError):
        SessionUrlSeal("token-1").open("$".join((scheme, iterations, salt, token)))


def test_a_format_1_checkpoint_is_still_read() -> None:
    old = make_checkpoint().to_json()
    old["format"] = 1
    del old["transport"], old["stored_md5"]
    assert UploadCheckpoint.from_json(old).transport == "resumable_upload"
