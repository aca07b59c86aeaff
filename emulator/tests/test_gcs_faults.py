"""storage-testbench's retry-test faults on session PUTs, and the server that keeps nothing of a cut request."""

from __future__ import annotations

import base64
import hashlib
import http.client
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import google_crc32c
import pytest
import requests
import urllib3
from redivis_emulator import Fault, RedivisEmulator, parse_fault_spec
from redivis_emulator.fault_specs import fault_from_mapping

from emulator.tests.conftest import (
    CLI_ADMIN,
    TABLE,
    TIMEOUT,
    UNIT,
    put_chunk,
    running_cli,
    status_query,
    table_path,
)

NewSession = Callable[..., dict[str, Any]]


def md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def crc_b64(data: bytes) -> str:
    return base64.b64encode(google_crc32c.Checksum(data).digest()).decode()


def wait_until(condition: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def session_puts(emu: RedivisEmulator) -> list[Any]:
    return [r for r in emu.requests if r.origin == "session"]


# -- status on the Nth request, or after N bytes ------------------------------------------------


def test_status_on_the_nth_session_put(emu: RedivisEmulator, new_session: NewSession) -> None:
    data = os.urandom(3 * UNIT)
    session = new_session(len(data))
    emu.add_fault(Fault("status", origin="session", method="PUT", status=503, nth=2))
    assert put_chunk(session["url"], data[:UNIT], 0, len(data)).status_code == 308
    assert put_chunk(session["url"], data[UNIT : 2 * UNIT], UNIT, len(data)).status_code == 503
    assert emu.sessions[session["id"]].held == UNIT
    assert put_chunk(session["url"], data[UNIT:], UNIT, len(data)).status_code == 200


def test_status_after_bytes_keeps_whole_units_before_the_mark(
    emu: RedivisEmulator, new_session: NewSession
) -> None:
    data = os.urandom(4 * UNIT)
    session = new_session(len(data))
    emu.add_fault(Fault("status", origin="session", status=503, after_bytes=2 * UNIT + 100))
    response = put_chunk(session["url"], data, 0, len(data))
    assert response.status_code == 503
    assert response.json()["error"]["code"] == 503
    assert emu.sessions[session["id"]].held == 2 * UNIT
    # The rest of the body was read and dropped: the log counts all of it, the connection stays usable.
    assert session_puts(emu)[-1].body_bytes == 4 * UNIT
    assert status_query(session["url"], len(data)).headers["Range"] == f"bytes=0-{2 * UNIT - 1}"
    final = put_chunk(session["url"], data[2 * UNIT :], 2 * UNIT, len(data))
    assert final.json()["md5Hash"] == md5_b64(data)


def test_status_at_offset_like_return_503_after_256k(emu: RedivisEmulator, new_session: NewSession) -> None:
    """The mark is absolute: chunks before it pass, the chunk that reaches it is answered 503."""
    data = os.urandom(4 * UNIT)
    session = new_session(len(data))
    emu.add_fault(parse_fault_spec(f"status:status=503,origin=session,at_offset={3 * UNIT}"))
    assert put_chunk(session["url"], data[: 2 * UNIT], 0, len(data)).status_code == 308
    assert put_chunk(session["url"], data[2 * UNIT :], 2 * UNIT, len(data)).status_code == 503
    assert emu.sessions[session["id"]].held == 3 * UNIT


def test_status_after_bytes_on_a_server_that_keeps_nothing(
    emu: RedivisEmulator, new_session: NewSession
) -> None:
    data = os.urandom(4 * UNIT)
    session = new_session(len(data))
    put_chunk(session["url"], data[:UNIT], 0, len(data))
    emu.add_fault(Fault("status", status=503, after_bytes=2 * UNIT, keep_partial=False))
    assert put_chunk(session["url"], data[UNIT:], UNIT, len(data)).status_code == 503
    assert emu.sessions[session["id"]].held == UNIT
    assert session_puts(emu)[-1].body_bytes == 3 * UNIT


# -- reset after N bytes, and the two kinds of server --------------------------------------------


def test_reset_on_a_server_that_keeps_nothing_of_a_cut_request(tmp_path: Path) -> None:
    data = os.urandom(4 * UNIT)
    with RedivisEmulator(tables=[TABLE], data_dir=tmp_path, keep_partial_requests=False) as emu:
        session = requests.post(
            f"{emu.api_url}{table_path()}/resumableUpload",
            params={"size": len(data)},
            headers={"Authorization": f"Bearer {emu.token}"},
            timeout=TIMEOUT,
        ).json()
        assert emu.sessions[session["id"]].keep_partial_requests is False
        assert put_chunk(session["url"], data[:UNIT], 0, len(data)).status_code == 308
        emu.add_fault(Fault("reset", origin="session", after_bytes=2 * UNIT + 10))
        with pytest.raises(requests.ConnectionError):
            put_chunk(session["url"], data[UNIT:], UNIT, len(data))
        assert status_query(session["url"], len(data)).headers["Range"] == f"bytes=0-{UNIT - 1}"
        # The request log still says what arrived, as it does for the server that keeps part.
        assert session_puts(emu)[1].body_bytes == 2 * UNIT + 10
        assert session_puts(emu)[1].status is None
        assert put_chunk(session["url"], data[UNIT:], UNIT, len(data)).json()["md5Hash"] == md5_b64(data)


def test_keep_nothing_per_fault_and_per_session(emu: RedivisEmulator, new_session: NewSession) -> None:
    data = os.urandom(4 * UNIT)
    by_fault, by_session, default = new_session(len(data)), new_session(len(data)), new_session(len(data))
    emu.add_fault(Fault("reset", after_bytes=3 * UNIT, keep_partial=False))
    with pytest.raises(requests.ConnectionError):
        put_chunk(by_fault["url"], data, 0, len(data))
    assert emu.sessions[by_fault["id"]].held == 0
    emu.set_session_options(by_session["id"], keep_partial_requests=False)
    emu.add_fault(Fault("reset", after_bytes=3 * UNIT))
    with pytest.raises(requests.ConnectionError):
        put_chunk(by_session["url"], data, 0, len(data))
    assert emu.sessions[by_session["id"]].held == 0
    emu.add_fault(Fault("reset", after_bytes=3 * UNIT))
    with pytest.raises(requests.ConnectionError):
        put_chunk(default["url"], data, 0, len(data))
    assert emu.sessions[default["id"]].held == 3 * UNIT
    assert [r.body_bytes for r in session_puts(emu)] == [3 * UNIT] * 3


def _cut_by_the_client(url: str, total: int, sent: bytes) -> None:
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=TIMEOUT) as sock:
        head = f"PUT {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Range: bytes 0-{total - 1}/{total}\r\n"
        sock.sendall(f"{head}Content-Length: {total}\r\n\r\n".encode() + sent)


@pytest.mark.parametrize(("keep", "held"), [(True, 2 * UNIT), (False, 0)])
def test_a_request_the_client_cuts(
    emu: RedivisEmulator, new_session: NewSession, keep: bool, held: int
) -> None:
    data = os.urandom(4 * UNIT)
    session = new_session(len(data))
    emu.set_session_options(session["id"], keep_partial_requests=keep)
    _cut_by_the_client(session["url"], len(data), data[: 2 * UNIT + 500])
    wait_until(lambda: bool(session_puts(emu)) and session_puts(emu)[-1].duration > 0)
    assert session_puts(emu)[-1].body_bytes == 2 * UNIT + 500
    assert emu.sessions[session["id"]].held == held


# -- stall ---------------------------------------------------------------------------------------


def test_stall_at_offset_like_stall_for_ns_after_nk(emu: RedivisEmulator, new_session: NewSession) -> None:
    data = os.urandom(4 * UNIT)
    session = new_session(len(data))
    emu.add_fault(parse_fault_spec(f"stall:seconds=1,at_offset={3 * UNIT},origin=session"))
    assert put_chunk(session["url"], data[: 2 * UNIT], 0, len(data)).status_code == 308  # before the mark
    with pytest.raises(requests.ReadTimeout):
        put_chunk(session["url"], data[2 * UNIT :], 2 * UNIT, len(data), timeout=(5, 0.3))
    assert not emu.sessions[session["id"]].complete  # paused mid-body
    wait_until(lambda: emu.sessions[session["id"]].complete)


# -- broken answer ---------------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", ["json", "xml"])
def test_broken_answer_finalizes_then_cuts_after_the_status_line(
    emu: RedivisEmulator, new_session: NewSession, dialect: str
) -> None:
    data = os.urandom(2 * UNIT + 1)
    session = new_session(len(data))
    emu.set_session_options(session["id"], dialect=dialect)
    fault = emu.add_fault(Fault("broken_answer", origin="session"))
    # A chunk that does not complete the object is not matched.
    assert put_chunk(session["url"], data[:UNIT], 0, len(data)).status_code == 308
    assert fault.matched == 0
    # http.client (under requests and urllib3) reads a status line followed by the end of the connection as
    # an answer with no headers and an empty body: a 200 without metadata, which only a status query can
    # confirm (the engine asks one; tests/test_resumable_session.py).
    cut = put_chunk(session["url"], data[UNIT:], UNIT, len(data))
    assert (cut.status_code, cut.content) == (200, b"")
    assert set(cut.headers) <= {"Server", "Date"}  # what http.server writes with the status line
    assert emu.sessions[session["id"]].complete
    record = session_puts(emu)[-1]
    assert (record.status, record.faults) == (200, ("broken_answer",))
    done = status_query(session["url"], len(data))
    assert done.status_code == 200
    if dialect == "json":
        assert done.json()["md5Hash"] == md5_b64(data)
    else:
        assert done.headers["x-goog-stored-content-length"] == str(len(data))


def test_broken_answer_cut_in_the_body(emu: RedivisEmulator, new_session: NewSession) -> None:
    data = os.urandom(1000)
    session = new_session(len(data))
    emu.add_fault(Fault("broken_answer", answer_bytes=10))
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        put_chunk(session["url"], data, 0, len(data))
    assert emu.sessions[session["id"]].complete
    # What arrives: the status, every header (Content-Length of the whole JSON), then 10 bytes of it.
    emu.add_fault(Fault("broken_answer", answer_bytes=10))
    with requests.put(
        session["url"], headers={"Content-Range": "bytes */1000"}, timeout=TIMEOUT, stream=True
    ) as cut:
        assert cut.status_code == 200
        assert cut.headers["Content-Type"].startswith("application/json")
        assert int(cut.headers["Content-Length"]) > 10
        with pytest.raises(urllib3.exceptions.ProtocolError) as exc_info:
            cut.raw.read()
    incomplete = exc_info.value.args[1]
    assert isinstance(incomplete, http.client.IncompleteRead)
    assert len(incomplete.partial) == 10


def test_broken_answer_with_a_short_body_like_broken_stream_final_chunk(
    emu: RedivisEmulator, new_session: NewSession
) -> None:
    data = os.urandom(1000)
    session = new_session(len(data))
    emu.add_fault(parse_fault_spec("broken_answer:answer_bytes=12,short_body=true"))
    response = put_chunk(session["url"], data, 0, len(data))
    assert response.status_code == 200
    assert len(response.content) == 12
    with pytest.raises(ValueError):  # noqa: PT011 - the JSON is cut
        response.json()
    assert response.content == status_query(session["url"], len(data)).content[:12]
    assert emu.sessions[session["id"]].complete


# -- 200 without metadata, 200 before the last byte ---------------------------------------------


@pytest.mark.parametrize("dialect", ["json", "xml"])
def test_empty_200_on_the_final_request_finalizes(
    emu: RedivisEmulator, new_session: NewSession, dialect: str
) -> None:
    data = os.urandom(UNIT + 7)
    session = new_session(len(data))
    emu.set_session_options(session["id"], dialect=dialect)
    emu.add_fault(Fault("empty_200"))
    assert put_chunk(session["url"], data[:UNIT], 0, len(data)).status_code == 308  # not matched
    response = put_chunk(session["url"], data[UNIT:], UNIT, len(data))
    assert response.status_code == 200
    assert response.content == b""
    assert not any(name.lower().startswith("x-goog-") for name in response.headers)
    assert "Content-Type" not in response.headers
    assert emu.sessions[session["id"]].complete


def test_empty_200_without_finalizing_like_the_broken_server(
    emu: RedivisEmulator, new_session: NewSession
) -> None:
    """It answered 200 after the first 1 MiB of an 8 MiB file, and no object existed."""
    data = os.urandom(8 * 4 * UNIT)
    session = new_session(len(data))
    emu.add_fault(Fault("empty_200", finalize=False))
    response = put_chunk(session["url"], data[: 4 * UNIT], 0, len(data))
    assert (response.status_code, response.content) == (200, b"")
    info = emu.sessions[session["id"]]
    assert (info.held, info.complete) == (4 * UNIT, False)
    assert status_query(session["url"], len(data)).status_code == 308
    # Not on the final chunk: that variant only matches chunks that do not reach the end.
    emu.add_fault(Fault("empty_200", finalize=False))
    assert put_chunk(session["url"], data[4 * UNIT :], 4 * UNIT, len(data)).status_code == 200
    assert emu.sessions[session["id"]].complete


@pytest.mark.parametrize("dialect", ["json", "xml"])
def test_early_200_describes_what_is_held(
    emu: RedivisEmulator, new_session: NewSession, dialect: str
) -> None:
    data = os.urandom(4 * UNIT)
    session = new_session(len(data))
    emu.set_session_options(session["id"], dialect=dialect)
    emu.add_fault(Fault("early_200"))
    response = put_chunk(session["url"], data[: 2 * UNIT], 0, len(data))
    assert response.status_code == 200
    held = data[: 2 * UNIT]
    if dialect == "json":
        assert response.json()["size"] == str(len(held))
        assert response.json()["md5Hash"] == md5_b64(held)
    else:
        assert response.headers["x-goog-stored-content-length"] == str(len(held))
        assert response.headers["x-goog-hash"] == f"crc32c={crc_b64(held)},md5={md5_b64(held)}"
    assert not emu.sessions[session["id"]].complete
    assert status_query(session["url"], len(data)).headers["Range"] == f"bytes=0-{2 * UNIT - 1}"


# -- a lying server --------------------------------------------------------------------------------


def test_lie_about_the_hashes_in_json(emu: RedivisEmulator, new_session: NewSession) -> None:
    data = os.urandom(UNIT + 1)
    session = new_session(len(data))
    emu.add_fault(Fault("lie"))
    lied = put_chunk(session["url"], data, 0, len(data)).json()
    assert lied["md5Hash"] != md5_b64(data)
    assert lied["crc32c"] != crc_b64(data)
    assert len(base64.b64decode(lied["md5Hash"])) == 16
    assert len(base64.b64decode(lied["crc32c"])) == 4
    assert lied["size"] == str(len(data))
    assert emu.sessions[session["id"]].complete
    truth = status_query(session["url"], len(data)).json()
    assert (truth["md5Hash"], truth["crc32c"]) == (md5_b64(data), crc_b64(data))


@pytest.mark.parametrize(
    ("about", "size_lies", "md5_lies", "crc_lies"),
    [
        ("size", True, False, False),
        ("crc32c", False, False, True),
        ("md5+size", True, True, False),
    ],
)
def test_lie_about_chosen_fields_in_xml(
    emu: RedivisEmulator,
    new_session: NewSession,
    about: str,
    size_lies: bool,
    md5_lies: bool,
    crc_lies: bool,
) -> None:
    data = os.urandom(1000)
    session = new_session(len(data))
    emu.set_session_options(session["id"], dialect="xml")
    emu.add_fault(parse_fault_spec(f"lie:lie_about={about}"))
    response = put_chunk(session["url"], data, 0, len(data))
    assert response.status_code == 200
    assert (response.headers["x-goog-stored-content-length"] != "1000") is size_lies
    crc_item, md5_item = response.headers["x-goog-hash"].split(",")
    assert (md5_item != f"md5={md5_b64(data)}") is md5_lies
    assert (crc_item != f"crc32c={crc_b64(data)}") is crc_lies


# -- the three ways in -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("broken_answer:answer_bytes=5", {"kind": "broken_answer", "answer_bytes": 5}),
        ("empty_200:finalize=false", {"kind": "empty_200", "finalize": False}),
        ("empty_200", {"finalize": True}),
        ("early_200:origin=session,nth=2", {"kind": "early_200", "nth": 2}),
        ("lie", {"lie_about": "md5,crc32c"}),
        ("lie:lie_about=size+md5", {"lie_about": "size,md5"}),
        ("reset:after_bytes=10,keep_partial=false", {"keep_partial": False, "after_bytes": 10}),
        ("status:status=503,at_offset=262144", {"status": 503, "at_offset": 262144}),
        ("stall:seconds=2,at_offset=1024", {"seconds": 2.0, "at_offset": 1024}),
    ],
)
def test_parse_new_fault_specs(spec: str, expected: dict[str, Any]) -> None:
    fault = parse_fault_spec(spec).to_dict()
    assert {k: fault[k] for k in expected} == expected


@pytest.mark.parametrize(
    "spec",
    [
        "lie:lie_about=etag",
        "empty_200:finalize=maybe",
        "status:status=503,after_bytes=1,at_offset=2",
        "reset:lie_about=md5",
        "broken_answer:answer_bytes=-1",
    ],
)
def test_bad_new_fault_specs_are_rejected(spec: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the message varies by mistake
        parse_fault_spec(spec)


def test_new_faults_over_the_admin_api(emu: RedivisEmulator, new_session: NewSession) -> None:
    data = os.urandom(1000)
    session = new_session(len(data))
    added = requests.post(
        f"{emu.base_url}/_emulator/faults",
        json=[{"kind": "lie", "lie_about": "size"}, {"kind": "reset", "keep_partial": False, "nth": 5}],
        headers=emu.admin_headers,
        timeout=TIMEOUT,
    )
    assert added.status_code == 200
    assert [(f["kind"], f["lie_about"], f["keep_partial"]) for f in added.json()] == [
        ("lie", "size", None),
        ("reset", None, False),
    ]
    assert put_chunk(session["url"], data, 0, len(data)).json()["size"] == "1001"
    bad = requests.post(
        f"{emu.base_url}/_emulator/faults",
        json={"kind": "empty_200", "finalize": "no"},
        headers=emu.admin_headers,
        timeout=TIMEOUT,
    )
    assert bad.status_code == 400
    with pytest.raises(ValueError, match="true or false"):
        fault_from_mapping({"kind": "reset", "keep_partial": 0})


def test_cli_sets_the_session_defaults(tmp_path: Path) -> None:
    args = ["--table", TABLE, "--session-dialect", "xml", "--temp-session-dialect", "json"]
    args += ["--no-keep-partial-requests", "--fault", "early_200:origin=session"]
    with running_cli(*args, log=tmp_path / "err") as (_proc, base):
        settings = requests.get(f"{base}/_emulator/settings", headers=CLI_ADMIN, timeout=TIMEOUT).json()
        assert settings == {
            "sessionDialect": "xml",
            "tempSessionDialect": "json",
            "keepPartialRequests": False,
        }
        faults = requests.get(f"{base}/_emulator/faults", headers=CLI_ADMIN, timeout=TIMEOUT).json()
        assert [f["kind"] for f in faults] == ["early_200"]
