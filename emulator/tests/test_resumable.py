"""Cloud Storage's resumable-session rules, one by one, over HTTP on 127.0.0.1."""

from __future__ import annotations

import base64
import hashlib
import os
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import google_crc32c
import pytest
import requests
from redivis_emulator import RedivisEmulator

from emulator.tests.conftest import TABLE, TIMEOUT, UNIT, put_chunk, status_query, table_path

NewSession = Callable[..., dict[str, Any]]


def md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def crc32c_b64(data: bytes) -> str:
    return base64.b64encode(google_crc32c.Checksum(data).digest()).decode()


def stored(emu: RedivisEmulator, session_id: str) -> bytes:
    return emu.sessions[session_id].path.read_bytes()


def test_session_url_is_on_another_origin_and_unguessable(
    emu: RedivisEmulator, new_session: NewSession
) -> None:
    session = new_session(10)
    assert session["kind"] == "resumableUpload"
    url = urlsplit(session["url"])
    assert f"{url.scheme}://{url.netloc}" == emu.session_base_url != emu.base_url
    token = url.path.rsplit("/", 1)[-1]
    assert len(token) >= 40
    assert session["id"] not in session["url"]


def test_status_query_before_any_byte_is_308_without_range(new_session: NewSession) -> None:
    session = new_session(3 * UNIT)
    response = status_query(session["url"], 3 * UNIT)
    assert response.status_code == 308
    assert "Range" not in response.headers
    assert response.content == b""


def test_intermediate_chunk_is_308_with_range(emu: RedivisEmulator, new_session: NewSession) -> None:
    data = os.urandom(3 * UNIT)
    session = new_session(len(data))
    response = put_chunk(session["url"], data[: 2 * UNIT], 0, len(data))
    assert response.status_code == 308
    assert response.headers["Range"] == f"bytes=0-{2 * UNIT - 1}"
    assert emu.sessions[session["id"]].held == 2 * UNIT


@pytest.mark.parametrize("total", ["known", "unknown"])
def test_status_query_reports_what_is_held(new_session: NewSession, total: str) -> None:
    data = os.urandom(3 * UNIT)
    session = new_session(len(data))
    put_chunk(session["url"], data[:UNIT], 0, len(data) if total == "known" else None)
    response = status_query(session["url"], len(data) if total == "known" else None)
    assert response.status_code == 308
    assert response.headers["Range"] == f"bytes=0-{UNIT - 1}"
    assert response.content == b""


def test_final_chunk_completes_with_metadata(emu: RedivisEmulator, new_session: NewSession) -> None:
    data = os.urandom(2 * UNIT + 12345)
    session = new_session(len(data))
    assert put_chunk(session["url"], data[: 2 * UNIT], 0, len(data)).status_code == 308
    response = put_chunk(session["url"], data[2 * UNIT :], 2 * UNIT, len(data))
    assert response.status_code == 200
    metadata = response.json()
    assert metadata["size"] == str(len(data))
    assert metadata["md5Hash"] == md5_b64(data)
    assert metadata["crc32c"] == crc32c_b64(data)
    assert stored(emu, session["id"]) == data
    info = emu.sessions[session["id"]]
    assert info.complete
    assert info.md5 == hashlib.md5(data).hexdigest()


def test_completed_session_answers_200_to_later_queries_and_puts(new_session: NewSession) -> None:
    data = os.urandom(UNIT + 1)
    session = new_session(len(data))
    first = put_chunk(session["url"], data, 0, len(data)).json()
    later_query = status_query(session["url"], len(data))
    assert later_query.status_code == 200
    assert later_query.json() == first
    later_put = put_chunk(session["url"], data[UNIT:], UNIT, len(data))
    assert later_put.status_code == 200
    assert later_put.json() == first


def test_resent_bytes_are_ignored(emu: RedivisEmulator, new_session: NewSession) -> None:
    data = os.urandom(4 * UNIT)
    session = new_session(len(data))
    put_chunk(session["url"], data[: 2 * UNIT], 0, len(data))
    # Starts one unit before what is held: only the new unit is stored.
    response = put_chunk(session["url"], data[UNIT : 3 * UNIT], UNIT, len(data))
    assert response.headers["Range"] == f"bytes=0-{3 * UNIT - 1}"
    # Entirely old bytes change nothing.
    response = put_chunk(session["url"], data[:UNIT], 0, len(data))
    assert response.headers["Range"] == f"bytes=0-{3 * UNIT - 1}"
    final = put_chunk(session["url"], data[3 * UNIT :], 3 * UNIT, len(data))
    assert final.json()["md5Hash"] == md5_b64(data)
    assert stored(emu, session["id"]) == data


def test_resent_bytes_that_differ_are_ignored_too(emu: RedivisEmulator, new_session: NewSession) -> None:
    """What the server held first stays: a resent range never overwrites it."""
    data = os.urandom(2 * UNIT)
    session = new_session(len(data))
    put_chunk(session["url"], data[:UNIT], 0, len(data))
    changed = bytes(UNIT) + data[UNIT:]
    final = put_chunk(session["url"], changed, 0, len(data))
    assert final.json()["md5Hash"] == md5_b64(data)


def test_a_gap_is_refused_with_400_and_keeps_nothing(emu: RedivisEmulator, new_session: NewSession) -> None:
    data = os.urandom(3 * UNIT)
    session = new_session(len(data))
    put_chunk(session["url"], data[:UNIT], 0, len(data))
    response = put_chunk(session["url"], data[2 * UNIT :], 2 * UNIT, len(data))
    assert response.status_code == 400
    assert "gap" in response.json()["error"]["message"]
    assert emu.sessions[session["id"]].held == UNIT
    assert status_query(session["url"], len(data)).headers["Range"] == f"bytes=0-{UNIT - 1}"


def test_non_final_chunk_must_be_a_multiple_of_256_kib(emu: RedivisEmulator, new_session: NewSession) -> None:
    data = os.urandom(3 * UNIT)
    session = new_session(len(data))
    response = put_chunk(session["url"], data[: UNIT + 1], 0, len(data))
    assert response.status_code == 400
    assert "multiple of 262144" in response.json()["error"]["message"]
    assert emu.sessions[session["id"]].held == 0
    # Unknown total: every chunk is non-final.
    assert put_chunk(session["url"], data[: UNIT + 1], 0, None).status_code == 400


def test_the_last_chunk_may_have_any_size(new_session: NewSession) -> None:
    data = os.urandom(777)
    session = new_session(len(data))
    response = put_chunk(session["url"], data, 0, len(data))
    assert response.status_code == 200
    assert response.json()["size"] == "777"


def test_unknown_total_becomes_known_from_the_last_chunk(emu: RedivisEmulator, api: requests.Session) -> None:
    data = os.urandom(2 * UNIT + 99)
    # A session created for a size, then sent with '/*' until the end (a streaming client).
    session = api.post(
        f"{emu.api_url}{table_path()}/resumableUpload", params={"size": len(data)}, timeout=TIMEOUT
    ).json()
    assert put_chunk(session["url"], data[:UNIT], 0, None).status_code == 308
    assert put_chunk(session["url"], data[UNIT : 2 * UNIT], UNIT, None).status_code == 308
    final = put_chunk(session["url"], data[2 * UNIT :], 2 * UNIT, len(data))
    assert final.status_code == 200
    assert final.json()["md5Hash"] == md5_b64(data)


def test_unknown_total_then_empty_final_request_completes(emu: RedivisEmulator) -> None:
    """A temp-upload session with no declared size: the total is first learnt from `bytes */N`."""
    data = os.urandom(2 * UNIT)
    with requests.Session() as api:
        api.headers["Authorization"] = f"Bearer {emu.token}"
        temp = api.post(
            f"{emu.api_url}{table_path()}/tempUploads",
            json={"tempUploads": [{"size": len(data), "name": "s.bin", "resumable": True}]},
            timeout=TIMEOUT,
        ).json()["results"][0]
        start = api.post(temp["url"], headers={"x-goog-resumable": "start"}, timeout=TIMEOUT)
    url = start.headers["Location"]
    assert put_chunk(url, data, 0, None).status_code == 308
    done = status_query(url, len(data))
    assert done.status_code == 200
    # A tempUploads session speaks the XML API: the hashes come in x-goog-hash, the body is empty.
    assert done.headers["x-goog-hash"].endswith(f"md5={md5_b64(data)}")
    assert done.content == b""


def test_total_that_differs_from_the_session_size_is_refused(new_session: NewSession) -> None:
    data = os.urandom(UNIT)
    session = new_session(len(data))
    response = put_chunk(session["url"], data, 0, len(data) + 1)
    assert response.status_code == 400
    assert "differs" in response.json()["error"]["message"]


def test_content_length_must_match_content_range(new_session: NewSession) -> None:
    session = new_session(2 * UNIT)
    response = requests.put(
        session["url"],
        data=os.urandom(UNIT),
        headers={"Content-Range": f"bytes 0-{2 * UNIT - 1}/{2 * UNIT}"},
        timeout=TIMEOUT,
    )
    assert response.status_code == 400
    assert "does not match" in response.json()["error"]["message"]


def test_malformed_content_range_is_400(new_session: NewSession) -> None:
    session = new_session(UNIT)
    response = requests.put(
        session["url"], data=b"x", headers={"Content-Range": "bytes=0-0/1"}, timeout=TIMEOUT
    )
    assert response.status_code == 400


def test_chunked_transfer_encoding_body(emu: RedivisEmulator, new_session: NewSession) -> None:
    data = os.urandom(3 * UNIT + 5)
    session = new_session(len(data))

    def pieces() -> Iterator[bytes]:
        for start in range(0, len(data), 100_000):
            yield data[start : start + 100_000]

    response = requests.put(
        session["url"],
        data=pieces(),
        headers={"Content-Range": f"bytes 0-{len(data) - 1}/{len(data)}"},
        timeout=TIMEOUT,
    )
    assert response.status_code == 200
    assert response.json()["md5Hash"] == md5_b64(data)
    assert emu.requests[-1].headers["transfer-encoding"] == "chunked"


def test_chunked_body_longer_than_its_range_is_refused(emu: RedivisEmulator, new_session: NewSession) -> None:
    session = new_session(2 * UNIT)
    response = requests.put(
        session["url"],
        data=iter([os.urandom(UNIT), b"extra"]),
        headers={"Content-Range": f"bytes 0-{UNIT - 1}/{2 * UNIT}"},
        timeout=TIMEOUT,
    )
    assert response.status_code == 400
    assert emu.sessions[session["id"]].held == 0


def test_put_without_content_range_is_the_whole_object(new_session: NewSession) -> None:
    data = os.urandom(1000)
    session = new_session(len(data))
    response = requests.put(session["url"], data=data, timeout=TIMEOUT)
    assert response.status_code == 200
    assert response.json()["md5Hash"] == md5_b64(data)


def test_unknown_session_is_404(emu: RedivisEmulator) -> None:
    response = status_query(f"{emu.session_base_url}/upload/resumable/not-a-session", 10)
    assert response.status_code == 404


def test_expired_session_is_404(emu: RedivisEmulator, new_session: NewSession) -> None:
    data = os.urandom(2 * UNIT)
    session = new_session(len(data))
    put_chunk(session["url"], data[:UNIT], 0, len(data))
    emu.expire_session(session["id"])
    assert emu.sessions[session["id"]].expired
    assert status_query(session["url"], len(data)).status_code == 404
    assert put_chunk(session["url"], data[UNIT:], UNIT, len(data)).status_code == 404


def test_session_expires_after_its_ttl(tmp_path: Any) -> None:
    with RedivisEmulator(tables=[TABLE], data_dir=tmp_path, session_ttl=0.3) as emu:
        session = requests.post(
            f"{emu.api_url}{table_path()}/resumableUpload",
            params={"size": 10},
            headers={"Authorization": f"Bearer {emu.token}"},
            timeout=TIMEOUT,
        ).json()
        assert status_query(session["url"], 10).status_code == 308
        deadline = time.monotonic() + 5
        while status_query(session["url"], 10).status_code != 404:
            assert time.monotonic() < deadline, "the session never expired"
            time.sleep(0.1)


def test_cancelled_session_is_gone(new_session: NewSession) -> None:
    session = new_session(10)
    assert requests.delete(session["url"], timeout=TIMEOUT).status_code == 499
    assert status_query(session["url"], 10).status_code == 410


def test_a_token_sent_to_the_session_origin_is_recorded(
    emu: RedivisEmulator, new_session: NewSession
) -> None:
    session = new_session(10)
    requests.put(
        session["url"],
        data=b"0123456789",
        headers={"Content-Range": "bytes 0-9/10", "Authorization": f"Bearer {emu.token}"},
        timeout=TIMEOUT,
    )
    assert emu.authorization_seen("session") == 1
    assert emu.sessions[session["id"]].authorization_seen
    status_query(session["url"], 10)
    assert emu.authorization_seen("session") == 1


def test_session_paths_are_not_served_on_the_api_origin(
    emu: RedivisEmulator, new_session: NewSession
) -> None:
    session = new_session(10)
    path = urlsplit(session["url"]).path
    response = requests.put(emu.base_url + path, data=b"0123456789", timeout=TIMEOUT)
    assert response.status_code == 404


def test_bytes_are_recorded_per_request(emu: RedivisEmulator, new_session: NewSession) -> None:
    data = os.urandom(2 * UNIT + 3)
    session = new_session(len(data))
    put_chunk(session["url"], data[: 2 * UNIT], 0, len(data))
    put_chunk(session["url"], data[UNIT:], UNIT, len(data))
    puts = [r for r in emu.requests if r.origin == "session"]
    assert [r.body_bytes for r in puts] == [2 * UNIT, UNIT + 3]
    assert [r.status for r in puts] == [308, 200]
    assert puts[1].content_range == f"bytes {UNIT}-{len(data) - 1}/{len(data)}"
    assert puts[1].session_id == session["id"]
    assert emu.bytes_received("session") == 3 * UNIT + 3


def test_upload_from_a_completed_session(
    emu: RedivisEmulator, api: requests.Session, new_session: NewSession
) -> None:
    data = b"a,b\n1,2\n3,4\n"
    session = new_session(len(data))
    put_chunk(session["url"], data, 0, len(data))
    created = api.post(
        f"{emu.api_url}{table_path()}/uploads",
        json={"name": "t.csv", "type": "delimited", "resumableUploadId": session["id"]},
        timeout=TIMEOUT,
    )
    assert created.status_code == 200
    upload = created.json()
    assert upload["status"] == "queued"
    assert upload["size"] == len(data)
    assert upload["hash"] == hashlib.md5(data).hexdigest()
    assert emu.upload_bytes_path(TABLE, "t.csv").read_bytes() == data
    # The session's bytes can make one upload only.
    again = api.post(
        f"{emu.api_url}{table_path()}/uploads",
        json={"name": "u.csv", "resumableUploadId": session["id"]},
        timeout=TIMEOUT,
    )
    assert again.status_code == 400
    assert "already used" in again.json()["error"]["message"]


def test_upload_from_an_incomplete_session_is_refused(
    emu: RedivisEmulator, api: requests.Session, new_session: NewSession
) -> None:
    data = os.urandom(2 * UNIT)
    session = new_session(len(data))
    put_chunk(session["url"], data[:UNIT], 0, len(data))
    created = api.post(
        f"{emu.api_url}{table_path()}/uploads",
        json={"name": "t.bin", "resumableUploadId": session["id"]},
        timeout=TIMEOUT,
    )
    assert created.status_code == 400
    assert f"holds {UNIT} of {2 * UNIT} bytes" in created.json()["error"]["message"]
    assert emu.list_uploads(TABLE) == []


def test_resumable_upload_needs_a_size_and_an_empty_body(emu: RedivisEmulator, api: requests.Session) -> None:
    url = f"{emu.api_url}{table_path()}/resumableUpload"
    assert api.post(url, timeout=TIMEOUT).status_code == 400
    assert api.post(url, params={"size": "ten"}, timeout=TIMEOUT).status_code == 400
    assert api.post(url, params={"size": 10}, data=b"{}", timeout=TIMEOUT).status_code == 400
