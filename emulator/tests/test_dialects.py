"""The two answer dialects of a finished object, and the client's x-goog-hash on the final request."""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import google_crc32c
import pytest
import requests
from redivis_emulator import RedivisEmulator

from emulator.tests.conftest import TABLE, TIMEOUT, UNIT, status_query, table_path

NewSession = Callable[..., dict[str, Any]]


def md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def crc_b64(data: bytes) -> str:
    return base64.b64encode(google_crc32c.Checksum(data).digest()).decode()


def put(
    url: str, data: bytes, first: int, total: int, headers: dict[str, str] | None = None
) -> requests.Response:
    return requests.put(
        url,
        data=data,
        headers={"Content-Range": f"bytes {first}-{first + len(data) - 1}/{total}", **(headers or {})},
        timeout=TIMEOUT,
    )


def assert_xml_object(response: requests.Response, data: bytes) -> None:
    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["x-goog-hash"] == f"crc32c={crc_b64(data)},md5={md5_b64(data)}"
    assert response.headers["x-goog-stored-content-length"] == str(len(data))
    assert response.headers["x-goog-stored-content-encoding"] == "identity"
    assert int(response.headers["x-goog-generation"]) > 0
    assert response.headers["x-goog-metageneration"] == "1"
    assert response.headers["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'


def assert_json_object(response: requests.Response, data: bytes) -> None:
    assert response.status_code == 200
    resource = response.json()
    assert resource["size"] == str(len(data))
    assert resource["md5Hash"] == md5_b64(data)
    assert resource["crc32c"] == crc_b64(data)
    assert resource["kind"] == "storage#object"
    assert int(resource["generation"]) > 0
    assert not any(name.lower().startswith("x-goog-") for name in response.headers)


# -- dialects ----------------------------------------------------------------------------------


def test_json_is_the_default_and_status_queries_answer_alike(
    emu: RedivisEmulator, new_session: NewSession
) -> None:
    data = os.urandom(UNIT + 17)
    session = new_session(len(data))
    assert emu.sessions[session["id"]].dialect == "json"
    final = put(session["url"], data, 0, len(data))
    assert_json_object(final, data)
    later = status_query(session["url"], len(data))
    assert_json_object(later, data)
    assert later.json() == final.json()
    assert emu.sessions[session["id"]].crc32c == crc_b64(data)


def test_xml_dialect_for_the_whole_emulator(tmp_path: Path) -> None:
    data = os.urandom(2 * UNIT + 5)
    with RedivisEmulator(tables=[TABLE], data_dir=tmp_path, session_dialect="xml") as emu:
        session = requests.post(
            f"{emu.api_url}{table_path()}/resumableUpload",
            params={"size": len(data)},
            headers={"Authorization": f"Bearer {emu.token}"},
            timeout=TIMEOUT,
        ).json()
        assert put(session["url"], data[: 2 * UNIT], 0, len(data)).status_code == 308
        final = put(session["url"], data[2 * UNIT :], 2 * UNIT, len(data))
        assert_xml_object(final, data)
        # A status query and a resent chunk on the completed session answer the same way.
        later = status_query(session["url"], len(data))
        assert_xml_object(later, data)
        assert later.headers["x-goog-generation"] == final.headers["x-goog-generation"]
        assert_xml_object(put(session["url"], data[2 * UNIT :], 2 * UNIT, len(data)), data)


def test_dialect_per_session_from_python_and_from_the_admin_api(
    emu: RedivisEmulator, new_session: NewSession
) -> None:
    data = os.urandom(1000)
    by_python, by_admin, untouched = new_session(len(data)), new_session(len(data)), new_session(len(data))
    assert emu.set_session_options(by_python["id"], dialect="xml").dialect == "xml"
    answered = requests.post(
        f"{emu.base_url}/_emulator/sessions/{by_admin['id']}",
        json={"dialect": "xml"},
        headers=emu.admin_headers,
        timeout=TIMEOUT,
    )
    assert answered.status_code == 200
    assert answered.json()["dialect"] == "xml"
    assert_xml_object(put(by_python["url"], data, 0, len(data)), data)
    assert_xml_object(put(by_admin["url"], data, 0, len(data)), data)
    assert_json_object(put(untouched["url"], data, 0, len(data)), data)
    # Switching a completed session changes how it answers from then on.
    emu.set_session_options(by_python["id"], dialect="json")
    assert_json_object(status_query(by_python["url"], len(data)), data)
    bad = requests.post(
        f"{emu.base_url}/_emulator/sessions/{by_admin['id']}",
        json={"dialect": "yaml"},
        headers=emu.admin_headers,
        timeout=TIMEOUT,
    )
    assert bad.status_code == 400
    missing = requests.post(
        f"{emu.base_url}/_emulator/sessions/nope", json={}, headers=emu.admin_headers, timeout=TIMEOUT
    )
    assert missing.status_code == 404


def test_defaults_for_new_sessions_change_from_python_and_the_admin_api(
    emu: RedivisEmulator, new_session: NewSession
) -> None:
    settings = f"{emu.base_url}/_emulator/settings"
    assert requests.get(settings, headers=emu.admin_headers, timeout=TIMEOUT).json() == {
        "sessionDialect": "json",
        "tempSessionDialect": "xml",
        "keepPartialRequests": True,
    }
    before = new_session(10)
    changed = requests.post(
        settings,
        json={"sessionDialect": "xml", "keepPartialRequests": False},
        headers=emu.admin_headers,
        timeout=TIMEOUT,
    )
    assert changed.json()["sessionDialect"] == "xml"
    after = new_session(10)
    assert (emu.sessions[before["id"]].dialect, emu.sessions[after["id"]].dialect) == ("json", "xml")
    assert emu.sessions[after["id"]].keep_partial_requests is False
    emu.configure_sessions(session_dialect="json", keep_partial_requests=True)
    last = new_session(10)
    assert emu.sessions[last["id"]].dialect == "json"
    assert (
        requests.post(
            settings, json={"dialect": "xml"}, headers=emu.admin_headers, timeout=TIMEOUT
        ).status_code
        == 400
    )


def _temp_session(emu: RedivisEmulator, size: int, *, declare: bool = True) -> str:
    with requests.Session() as api:
        api.headers["Authorization"] = f"Bearer {emu.token}"
        temp = api.post(
            f"{emu.api_url}{table_path()}/tempUploads",
            json={"tempUploads": [{"size": size, "name": "t.bin", "resumable": True}]},
            timeout=TIMEOUT,
        ).json()["results"][0]
        start = api.post(
            temp["url"],
            headers={
                "x-goog-resumable": "start",
                **({"x-upload-content-length": str(size)} if declare else {}),
            },
            timeout=TIMEOUT,
        )
    assert start.status_code == 201
    return start.headers["Location"]


def test_temp_upload_sessions_speak_xml_unless_told(emu: RedivisEmulator) -> None:
    data = os.urandom(UNIT + 3)
    url = _temp_session(emu, len(data))
    assert_xml_object(put(url, data, 0, len(data)), data)
    emu.configure_sessions(temp_session_dialect="json")
    url = _temp_session(emu, len(data))
    assert_json_object(put(url, data, 0, len(data)), data)


# -- the client's hash on the final request ----------------------------------------------------


@pytest.mark.parametrize("dialect", ["json", "xml"])
@pytest.mark.parametrize("which", ["both", "crc32c", "md5"])
def test_a_matching_hash_finalizes(
    emu: RedivisEmulator, new_session: NewSession, dialect: str, which: str
) -> None:
    data = os.urandom(2 * UNIT + 9)
    session = new_session(len(data))
    emu.set_session_options(session["id"], dialect=dialect)
    items = {"crc32c": f"crc32c={crc_b64(data)}", "md5": f"md5={md5_b64(data)}"}
    goog_hash = ",".join(items.values()) if which == "both" else items[which]
    assert put(session["url"], data[: 2 * UNIT], 0, len(data)).status_code == 308
    final = put(session["url"], data[2 * UNIT :], 2 * UNIT, len(data), {"x-goog-hash": goog_hash})
    (assert_xml_object if dialect == "xml" else assert_json_object)(final, data)
    assert emu.sessions[session["id"]].complete


@pytest.mark.parametrize("dialect", ["json", "xml"])
def test_a_mismatching_hash_is_400_and_makes_no_object(
    emu: RedivisEmulator, api: requests.Session, new_session: NewSession, dialect: str
) -> None:
    data = os.urandom(2 * UNIT + 9)
    other = b"x" + data[1:]
    session = new_session(len(data))
    emu.set_session_options(session["id"], dialect=dialect)
    put(session["url"], data[: 2 * UNIT], 0, len(data))
    wrong = f"crc32c={crc_b64(other)},md5={md5_b64(data)}"
    response = put(session["url"], data[2 * UNIT :], 2 * UNIT, len(data), {"x-goog-hash": wrong})
    assert response.status_code == 400
    if dialect == "xml":
        assert response.headers["Content-Type"].startswith("application/xml")
        assert b"<Code>BadDigest</Code>" in response.content
        assert crc_b64(data).encode() in response.content
    else:
        error = response.json()["error"]
        assert error["code"] == 400
        assert error["errors"][0]["reason"] == "invalid"
        assert (
            error["message"]
            == f'Provided CRC32C "{crc_b64(other)}" doesn\'t match calculated CRC32C "{crc_b64(data)}".'
        )
    info = emu.sessions[session["id"]]
    assert not info.complete
    assert info.held == len(data)  # the bytes stay, but no object is made
    assert info.failed is not None
    assert "CRC32C" in info.failed
    # The session is spent: every later request gets the same answer, and no upload can use it.
    again = status_query(session["url"], len(data))
    assert (again.status_code, again.content) == (400, response.content)
    created = api.post(
        f"{emu.api_url}{table_path()}/uploads",
        json={"name": "bad.bin", "resumableUploadId": session["id"]},
        timeout=TIMEOUT,
    )
    assert created.status_code == 400
    assert "made no object" in created.json()["error"]["message"]


def test_a_mismatching_md5_on_the_status_query_that_completes(emu: RedivisEmulator) -> None:
    """No declared size: the bytes arrive with '/*' and the status query naming the total completes."""
    data = os.urandom(UNIT)
    url = _temp_session(emu, len(data), declare=False)
    sent = requests.put(url, data=data, headers={"Content-Range": f"bytes 0-{UNIT - 1}/*"}, timeout=TIMEOUT)
    assert sent.status_code == 308
    response = requests.put(
        url,
        headers={
            "Content-Range": f"bytes */{len(data)}",
            "Content-Length": "0",
            "x-goog-hash": f"md5={md5_b64(b'other')}",
        },
        timeout=TIMEOUT,
    )
    assert response.status_code == 400
    assert b"<Code>BadDigest</Code>" in response.content  # a tempUploads session: xml
    assert b"MD5" in response.content
    [info] = emu.sessions.values()
    assert not info.complete
    assert info.failed is not None


def test_a_malformed_hash_is_400_and_keeps_nothing(emu: RedivisEmulator, new_session: NewSession) -> None:
    data = os.urandom(100)
    session = new_session(len(data))
    response = put(session["url"], data, 0, len(data), {"x-goog-hash": "sha1=abc"})
    assert response.status_code == 400
    assert "x-goog-hash" in response.json()["error"]["message"]
    assert emu.sessions[session["id"]].held == 0
    assert_json_object(put(session["url"], data, 0, len(data)), data)
