"""The temp-upload path (``tempUploads``, the official client's) over real HTTP, and its token policy.

The policy: a temp upload's URL is served by Redivis; the token goes with a request to it only when it
is on the API's own origin, never to any other origin, and never to the session URL it returns (a
Cloud Storage origin).
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from redivis_emulator import RedivisEmulator

from airflow_provider_redivis.errors import RedivisConfigError
from airflow_provider_redivis.hooks.redivis import RedivisHook
from tests.hooks.conftest import TABLE, TOKEN


def test_a_temp_upload_is_sent_and_created_without_the_token_reaching_cloud_storage(
    hook: RedivisHook, emulator: RedivisEmulator
) -> None:
    data = os.urandom(3 * 262_144 + 17)
    temp = hook.create_temp_upload(TABLE, len(data), "t.csv")
    assert temp["resumable"] is True
    assert hook.sends_token_to(temp["url"])  # on the API's origin: Redivis serves it
    session_url = hook.start_temp_upload_session(temp["url"], len(data))
    assert session_url.startswith(emulator.session_base_url)
    assert not hook.sends_token_to(session_url)
    hook.resumable_session(session_url, len(data), chunk_size=262_144).upload(io.BytesIO(data), 0)
    upload = hook.create_upload(TABLE, name="t.csv", upload_type="stream", temp_upload_id=temp["id"])
    assert upload["size"] == len(data)
    assert upload["hash"] == hashlib.md5(data).hexdigest()
    start = [r for r in emulator.requests if r.method == "POST" and r.path.startswith("/tempUploads/")]
    assert len(start) == 1
    assert start[
        0
    ].has_authorization  # the policy: the Redivis origin gets the token, as the official client sends it
    assert emulator.authorization_seen("session") == 0  # Cloud Storage's origin never does


class _Recorder(BaseHTTPRequestHandler):
    seen: list[dict[str, str]] = []
    location = ""

    def do_POST(self) -> None:
        type(self).seen.append({k.lower(): v for k, v in self.headers.items()})
        self.send_response(201)
        self.send_header("Location", self.location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def foreign_origin() -> Iterator[tuple[str, type[_Recorder]]]:
    """A server on another origin (another port of 127.0.0.1) that records the headers it gets."""
    handler = type("Recorder", (_Recorder,), {"seen": [], "location": ""})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


def test_a_temp_upload_url_on_another_origin_gets_no_token(
    hook: RedivisHook, foreign_origin: tuple[str, type[_Recorder]]
) -> None:
    base, handler = foreign_origin
    handler.location = f"{base}/upload/resumable/xyz"
    assert not hook.sends_token_to(f"{base}/tempUploads/abc")
    assert hook.start_temp_upload_session(f"{base}/tempUploads/abc", 10) == handler.location
    assert len(handler.seen) == 1
    assert "authorization" not in handler.seen[0]
    assert handler.seen[0]["x-goog-resumable"] == "start"
    assert handler.seen[0]["x-upload-content-length"] == "10"
    assert TOKEN not in repr(handler.seen)


def test_a_session_url_over_plain_http_to_a_remote_host_is_refused(
    hook: RedivisHook, foreign_origin: tuple[str, type[_Recorder]]
) -> None:
    base, handler = foreign_origin
    handler.location = "http://storage.example.com/upload/resumable/xyz"
    with pytest.raises(RedivisConfigError, match=r"over http:// to 'storage\.example\.com'"):
        hook.start_temp_upload_session(f"{base}/tempUploads/abc", 10)
