"""Each fault kind does what it says, on the wire; matching counts as documented."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
import requests
from redivis_emulator import Fault, RedivisEmulator, RequestInfo, parse_fault_spec
from redivis_emulator.fault_specs import fault_from_mapping

from emulator.tests.conftest import TABLE, TIMEOUT, UNIT, put_chunk, status_query, table_path

NewSession = Callable[..., dict[str, Any]]


def raw_put(url: str, headers: dict[str, str], body: bytes) -> socket.socket:
    """Send a PUT by hand (headers and as much body as given), to see exactly how the server ends it."""
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=TIMEOUT)
    head = f"PUT {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    sock.sendall(head.encode() + body)
    return sock


def wait_until(condition: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


# -- reset -------------------------------------------------------------------------------------


def test_reset_is_a_real_tcp_reset_after_exactly_after_bytes(
    emu: RedivisEmulator, new_session: NewSession
) -> None:
    session = new_session(4 * UNIT)
    emu.add_fault(Fault("reset", origin="session", after_bytes=1000))
    sock = raw_put(
        session["url"],
        {"Content-Range": f"bytes 0-{4 * UNIT - 1}/{4 * UNIT}", "Content-Length": str(4 * UNIT)},
        os.urandom(5000),  # more than after_bytes, less than the body: the server cuts, not the client
    )
    with sock, pytest.raises(ConnectionResetError):
        # A FIN would read b"" here; only an RST raises ECONNRESET.
        sock.recv(1024)
    wait_until(lambda: bool(emu.requests) and emu.requests[-1].body_bytes == 1000)
    record = emu.requests[-1]
    assert record.status is None
    assert record.faults == ("reset",)


def test_reset_keeps_whole_256_kib_units_before_the_cut(
    emu: RedivisEmulator, new_session: NewSession
) -> None:
    data = os.urandom(4 * UNIT)
    session = new_session(len(data))
    emu.add_fault(Fault("reset", origin="session", method="PUT", after_bytes=2 * UNIT + 1000))
    with pytest.raises(requests.ConnectionError):
        put_chunk(session["url"], data, 0, len(data))
    response = status_query(session["url"], len(data))
    assert response.headers["Range"] == f"bytes=0-{2 * UNIT - 1}"
    assert emu.sessions[session["id"]].path.read_bytes() == data[: 2 * UNIT]
    final = put_chunk(session["url"], data[2 * UNIT :], 2 * UNIT, len(data))
    assert final.status_code == 200
    assert emu.sessions[session["id"]].md5 == hashlib.md5(data).hexdigest()


def test_reset_with_keep_bytes_keeps_exactly_that(emu: RedivisEmulator, new_session: NewSession) -> None:
    data = os.urandom(4 * UNIT)
    session = new_session(len(data))
    emu.add_fault(Fault("reset", origin="session", after_bytes=3 * UNIT, keep_bytes=1234))
    with pytest.raises(requests.ConnectionError):
        put_chunk(session["url"], data, 0, len(data))
    assert status_query(session["url"], len(data)).headers["Range"] == "bytes=0-1233"
    final = put_chunk(session["url"], data[1234:], 1234, len(data))
    assert final.status_code == 200
    assert emu.sessions[session["id"]].path.read_bytes() == data


def test_reset_at_offset_cuts_only_chunks_that_reach_it(
    emu: RedivisEmulator, new_session: NewSession
) -> None:
    data = os.urandom(6 * UNIT)
    session = new_session(len(data))
    emu.add_fault(Fault("reset", origin="session", at_offset=3 * UNIT + 500, times=None))
    assert put_chunk(session["url"], data[: 2 * UNIT], 0, len(data)).status_code == 308
    with pytest.raises(requests.ConnectionError):
        put_chunk(session["url"], data[2 * UNIT : 4 * UNIT], 2 * UNIT, len(data))
    # The status query carries no chunk: not cut.
    assert status_query(session["url"], len(data)).headers["Range"] == f"bytes=0-{3 * UNIT - 1}"
    with pytest.raises(requests.ConnectionError):
        put_chunk(session["url"], data[3 * UNIT :], 3 * UNIT, len(data))
    assert emu.sessions[session["id"]].held == 3 * UNIT
    emu.clear_faults()
    assert put_chunk(session["url"], data[3 * UNIT :], 3 * UNIT, len(data)).status_code == 200


def test_reset_before_upload_post_creates_nothing(emu: RedivisEmulator, api: requests.Session) -> None:
    emu.add_fault(Fault("reset", origin="api", method="POST", path_contains="/uploads"))
    with pytest.raises(requests.ConnectionError):
        api.post(f"{emu.api_url}{table_path()}/uploads", json={"name": "x.csv"}, timeout=TIMEOUT)
    assert emu.list_uploads(TABLE) == []


def test_reset_on_a_request_without_body_resets_before_handling(
    emu: RedivisEmulator, api: requests.Session
) -> None:
    emu.add_fault(Fault("reset", method="GET"))
    with pytest.raises(requests.ConnectionError):
        api.get(f"{emu.api_url}{table_path()}", timeout=TIMEOUT)
    assert api.get(f"{emu.api_url}{table_path()}", timeout=TIMEOUT).status_code == 200


# -- status ------------------------------------------------------------------------------------


def test_status_on_a_chunk_stores_nothing(emu: RedivisEmulator, new_session: NewSession) -> None:
    data = os.urandom(2 * UNIT)
    session = new_session(len(data))
    emu.add_fault(Fault("status", origin="session", status=503, headers={"Retry-After": "7"}))
    response = put_chunk(session["url"], data[:UNIT], 0, len(data))
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "7"
    assert response.json()["error"]["code"] == 503
    assert emu.sessions[session["id"]].held == 0
    # The body was read (drained) and counted, and the connection stays usable.
    assert emu.requests[-1].body_bytes == UNIT
    assert put_chunk(session["url"], data[:UNIT], 0, len(data)).status_code == 308


def test_status_on_the_api_uses_the_simple_error_shape(emu: RedivisEmulator, api: requests.Session) -> None:
    emu.add_fault(
        Fault("status", origin="api", status=429, headers={"Retry-After": "1"}, message="Slow down")
    )
    response = api.get(f"{emu.api_url}{table_path()}", timeout=TIMEOUT)
    assert response.status_code == 429
    assert response.json() == {"error": {"status": 429, "message": "Slow down"}}
    assert response.headers["Retry-After"] == "1"


def test_status_on_head_puts_the_error_in_the_header(emu: RedivisEmulator, api: requests.Session) -> None:
    emu.add_fault(Fault("status", method="HEAD", status=503))
    response = api.head(f"{emu.api_url}{table_path()}", timeout=TIMEOUT)
    assert response.status_code == 503
    payload = json.loads(unquote(response.headers["X-REDIVIS-ERROR-PAYLOAD"]))
    assert payload["error"]["status"] == 503


def test_status_with_a_custom_body(emu: RedivisEmulator, api: requests.Session) -> None:
    emu.add_fault(Fault("status", status=502, body="<html>bad gateway</html>"))
    response = api.get(f"{emu.api_url}{table_path()}", timeout=TIMEOUT)
    assert response.status_code == 502
    assert response.text == "<html>bad gateway</html>"


# -- partial -----------------------------------------------------------------------------------


def test_partial_keeps_part_of_the_chunk_and_says_so(emu: RedivisEmulator, new_session: NewSession) -> None:
    data = os.urandom(4 * UNIT)
    session = new_session(len(data))
    emu.add_fault(Fault("partial", keep_bytes=UNIT + 10))
    response = put_chunk(session["url"], data[: 2 * UNIT], 0, len(data))
    assert response.status_code == 308
    assert response.headers["Range"] == f"bytes=0-{UNIT + 9}"
    assert emu.requests[-1].body_bytes == 2 * UNIT
    final = put_chunk(session["url"], data[UNIT + 10 :], UNIT + 10, len(data))
    assert final.status_code == 200
    assert emu.sessions[session["id"]].path.read_bytes() == data


def test_partial_by_default_keeps_one_unit_less(emu: RedivisEmulator, new_session: NewSession) -> None:
    data = os.urandom(4 * UNIT)
    session = new_session(len(data))
    emu.add_fault(Fault("partial"))
    # Status queries carry no chunk and do not count as matches.
    assert status_query(session["url"], len(data)).status_code == 308
    response = put_chunk(session["url"], data, 0, len(data))
    assert response.status_code == 308  # even the final chunk: not all bytes are held
    assert response.headers["Range"] == f"bytes=0-{3 * UNIT - 1}"


# -- stall -------------------------------------------------------------------------------------


def test_stall_outlasts_the_read_timeout_but_the_bytes_are_kept(
    emu: RedivisEmulator, new_session: NewSession
) -> None:
    data = os.urandom(2 * UNIT)
    session = new_session(len(data))
    emu.add_fault(Fault("stall", origin="session", seconds=1.5))
    with pytest.raises(requests.ReadTimeout):
        put_chunk(session["url"], data[:UNIT], 0, len(data), timeout=(5, 0.3))
    # The stalled request was handled before it slept: a status query answers at once.
    started = time.monotonic()
    assert status_query(session["url"], len(data)).headers["Range"] == f"bytes=0-{UNIT - 1}"
    assert time.monotonic() - started < 1.0


def test_stall_after_bytes_pauses_mid_body(emu: RedivisEmulator, new_session: NewSession) -> None:
    data = os.urandom(2 * UNIT)
    session = new_session(len(data))
    emu.add_fault(Fault("stall", origin="session", after_bytes=1000, seconds=1.0))
    with pytest.raises(requests.ReadTimeout):
        put_chunk(session["url"], data[:UNIT], 0, len(data), timeout=(5, 0.3))
    # Nothing is committed while the request is paused mid-body.
    assert emu.sessions[session["id"]].held == 0
    # Afterwards the request finishes reading the body the client had already sent.
    wait_until(lambda: emu.sessions[session["id"]].held == UNIT)


# -- drop_response -----------------------------------------------------------------------------


def test_drop_response_after_upload_post_creates_the_upload(
    emu: RedivisEmulator, api: requests.Session, new_session: NewSession
) -> None:
    data = b"a,b\n1,2\n"
    session = new_session(len(data))
    put_chunk(session["url"], data, 0, len(data))
    emu.add_fault(Fault("drop_response", origin="api", method="POST", path_contains="/uploads"))
    with pytest.raises(requests.ConnectionError):
        api.post(
            f"{emu.api_url}{table_path()}/uploads",
            json={"name": "d.csv", "resumableUploadId": session["id"]},
            timeout=TIMEOUT,
        )
    uploads = emu.list_uploads(TABLE)
    assert [u["name"] for u in uploads] == ["d.csv"]
    assert emu.requests[-1].status is None
    assert emu.wait_for_processing(TABLE, "d.csv")["status"] == "completed"


def test_drop_response_on_a_chunk_keeps_the_bytes(emu: RedivisEmulator, new_session: NewSession) -> None:
    data = os.urandom(2 * UNIT)
    session = new_session(len(data))
    emu.add_fault(Fault("drop_response", origin="session"))
    with pytest.raises(requests.ConnectionError):
        put_chunk(session["url"], data[:UNIT], 0, len(data))
    assert status_query(session["url"], len(data)).headers["Range"] == f"bytes=0-{UNIT - 1}"


# -- fail_processing ---------------------------------------------------------------------------


def test_fail_processing_fails_the_next_upload(
    emu: RedivisEmulator, api: requests.Session, upload_bytes: Callable[..., dict[str, Any]]
) -> None:
    emu.add_fault(Fault("fail_processing", message="Row 7 has 3 columns, expected 2"))
    # Requests that start no processing do not use the fault up.
    assert api.get(f"{emu.api_url}{table_path()}", timeout=TIMEOUT).status_code == 200
    upload_bytes("bad.csv", b"a,b\n1,2\n")
    failed = emu.wait_for_processing(TABLE, "bad.csv")
    assert failed["status"] == "failed"
    assert failed["errorMessage"] == "Row 7 has 3 columns, expected 2"
    upload_bytes("good.csv", b"a,b\n1,2\n")
    assert emu.wait_for_processing(TABLE, "good.csv")["status"] == "completed"


# -- matching ----------------------------------------------------------------------------------


def test_nth_and_times(emu: RedivisEmulator, api: requests.Session) -> None:
    fault = emu.add_fault(Fault("status", method="GET", status=503, nth=2, times=2))
    statuses = [api.get(f"{emu.api_url}{table_path()}", timeout=TIMEOUT).status_code for _ in range(5)]
    assert statuses == [200, 503, 503, 200, 200]
    assert (fault.matched, fault.fired) == (3, 2)


def test_times_none_fires_until_cleared(emu: RedivisEmulator, api: requests.Session) -> None:
    emu.add_fault(Fault("status", method="GET", status=500, times=None))
    assert {api.get(f"{emu.api_url}{table_path()}", timeout=TIMEOUT).status_code for _ in range(4)} == {500}
    emu.clear_faults()
    assert api.get(f"{emu.api_url}{table_path()}", timeout=TIMEOUT).status_code == 200


def test_predicate_sees_the_session(emu: RedivisEmulator, new_session: NewSession) -> None:
    seen: list[RequestInfo] = []

    def only_big(info: RequestInfo) -> bool:
        seen.append(info)
        return info.session_size == 2 * UNIT

    emu.add_fault(Fault("status", origin="session", status=503, predicate=only_big, times=None))
    small, big = new_session(UNIT), new_session(2 * UNIT)
    assert put_chunk(small["url"], os.urandom(UNIT), 0, UNIT).status_code == 200
    assert put_chunk(big["url"], os.urandom(UNIT), 0, 2 * UNIT).status_code == 503
    assert seen[-1].session_id == big["id"]
    assert (seen[-1].chunk_first, seen[-1].chunk_last, seen[-1].session_held) == (0, UNIT - 1, 0)


def test_a_broken_predicate_matches_nothing(emu: RedivisEmulator, api: requests.Session) -> None:
    emu.add_fault(Fault("status", status=500, predicate=lambda info: 1 // 0 == 0))
    assert api.get(f"{emu.api_url}{table_path()}", timeout=TIMEOUT).status_code == 200


def test_one_transport_fault_per_request(emu: RedivisEmulator, api: requests.Session) -> None:
    emu.add_fault(Fault("status", status=503))
    second = emu.add_fault(Fault("status", status=504))
    assert api.get(f"{emu.api_url}{table_path()}", timeout=TIMEOUT).status_code == 503
    assert second.fired == 0
    assert api.get(f"{emu.api_url}{table_path()}", timeout=TIMEOUT).status_code == 504


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            "reset:after_bytes=1048576,method=PUT,origin=session,nth=3,times=1",
            {
                "kind": "reset",
                "after_bytes": 1048576,
                "method": "PUT",
                "origin": "session",
                "nth": 3,
                "times": 1,
            },
        ),
        (
            "status:status=503,header.Retry-After=2,times=none",
            {"status": 503, "headers": {"Retry-After": "2"}, "times": None},
        ),
        ("stall:seconds=2.5,path_contains=/uploads", {"seconds": 2.5, "path_contains": "/uploads"}),
        ("partial:keep_bytes=262144", {"keep_bytes": 262144}),
        ("drop_response", {"kind": "drop_response", "nth": 1, "times": 1}),
        ("fail_processing:message=Row 7 is bad", {"message": "Row 7 is bad"}),
        ("reset:at_offset=5000", {"at_offset": 5000, "after_bytes": None}),
    ],
)
def test_parse_fault_spec(spec: str, expected: dict[str, Any]) -> None:
    fault = parse_fault_spec(spec).to_dict()
    assert {k: fault[k] for k in expected} == expected


@pytest.mark.parametrize(
    "spec",
    [
        "explode",
        "reset:after_bytes=lots",
        "reset:nonsense=1",
        "status",
        "reset:origin=moon",
        "reset:after_bytes",
    ],
)
def test_bad_fault_specs_are_rejected(spec: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the message varies by mistake
        parse_fault_spec(spec)


def test_fault_from_json_rejects_unknown_fields() -> None:
    with pytest.raises(ValueError, match="Unknown fault field"):
        fault_from_mapping({"kind": "reset", "after": 1})
    assert fault_from_mapping({"kind": "status", "status": 503, "times": None}).times is None


# -- admin endpoints ---------------------------------------------------------------------------


def test_admin_endpoints_drive_faults_sessions_and_the_log(
    emu: RedivisEmulator, api: requests.Session, new_session: NewSession
) -> None:
    admin = f"{emu.base_url}/_emulator"
    http = requests.Session()
    http.headers.update(emu.admin_headers)
    added = http.post(
        f"{admin}/faults", json={"kind": "status", "status": 503, "method": "GET", "nth": 1}, timeout=TIMEOUT
    ).json()
    assert added[0]["kind"] == "status"
    assert api.get(f"{emu.api_url}{table_path()}", timeout=TIMEOUT).status_code == 503
    assert http.get(f"{admin}/faults", timeout=TIMEOUT).json()[0]["fired"] == 1
    assert http.delete(f"{admin}/faults", timeout=TIMEOUT).status_code == 200
    assert emu.faults.snapshot() == []

    session = new_session(10)
    sessions = http.get(f"{admin}/sessions", timeout=TIMEOUT).json()
    assert sessions[session["id"]]["held"] == 0
    expired = http.post(f"{admin}/sessions/{session['id']}/expire", timeout=TIMEOUT).json()
    assert expired["expired"] is True
    assert status_query(session["url"], 10).status_code == 404
    assert http.post(f"{admin}/sessions/nope/expire", timeout=TIMEOUT).status_code == 404

    log = http.get(f"{admin}/requests", timeout=TIMEOUT).json()
    assert [r["path"] for r in log][-1].startswith("/upload/resumable/")
    assert all(not r["path"].startswith("/_emulator") for r in log)
    assert http.get(f"{admin}/uploads", params={"table": TABLE}, timeout=TIMEOUT).json() == []
    assert http.post(f"{admin}/faults", json={"kind": "nope"}, timeout=TIMEOUT).status_code == 400
    http.delete(f"{admin}/requests", timeout=TIMEOUT)
    assert emu.requests == []


def test_admin_can_create_tables(emu: RedivisEmulator, api: requests.Session) -> None:
    created = requests.post(
        f"{emu.base_url}/_emulator/tables",
        json={"table": "someone.other.daily", "uploadMergeStrategy": "replace"},
        headers=emu.admin_headers,
        timeout=TIMEOUT,
    )
    assert created.status_code == 200
    table = api.get(f"{emu.api_url}{table_path('someone.other.daily')}", timeout=TIMEOUT).json()
    assert table["uploadMergeStrategy"] == "replace"
