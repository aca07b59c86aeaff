"""The admin API's guards: the per-run admin token, JSON bodies only, the Host check on every origin,
and credentials redacted in what the admin API serves."""

from __future__ import annotations

import http.client
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from redivis_emulator import ADMIN_TOKEN_HEADER, AdminClient, AdminError, RedivisEmulator

from emulator.tests.conftest import TIMEOUT, running_cli, table_path

ADMIN_ROUTES = [
    ("GET", "health", None),
    ("GET", "requests", None),
    ("DELETE", "requests", None),
    ("GET", "sessions", None),
    ("GET", "settings", None),
    ("POST", "settings", {"sessionDialect": "xml"}),
    ("GET", "uploads", None),
    ("GET", "faults", None),
    ("POST", "faults", {"kind": "status", "status": 503}),
    ("DELETE", "faults", None),
    ("POST", "tables", {"table": "x.y.z"}),
    ("GET", "rate-limit", None),
    ("POST", "rate-limit", {"limit": 5, "intervalSeconds": 10}),
    ("DELETE", "rate-limit", None),
]


def raw_request(
    url: str, method: str, path: str, headers: dict[str, str], body: bytes | None = None
) -> tuple[int, bytes]:
    """A request whose Host header is exactly what ``headers`` says (or absent when it says nothing)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=TIMEOUT)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        for name, value in headers.items():
            conn.putheader(name, value)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


# -- the admin token ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "route", "body"), ADMIN_ROUTES)
@pytest.mark.parametrize("token", [None, "wrong", ""])
def test_every_admin_route_needs_the_admin_token(
    emu: RedivisEmulator, method: str, route: str, body: object, token: str | None
) -> None:
    headers = {} if token is None else {ADMIN_TOKEN_HEADER: token}
    response = requests.request(
        method, f"{emu.base_url}/_emulator/{route}", json=body, headers=headers, timeout=TIMEOUT
    )
    assert response.status_code == 401, response.text
    assert ADMIN_TOKEN_HEADER in response.json()["error"]["message"]
    # Nothing happened.
    assert emu.faults.snapshot() == []
    assert emu.session_settings["sessionDialect"] == "json"
    assert emu.rate_limit is None


@pytest.mark.parametrize(("method", "route", "body"), ADMIN_ROUTES)
def test_every_admin_route_answers_with_the_admin_token(
    emu: RedivisEmulator, method: str, route: str, body: object
) -> None:
    response = requests.request(
        method, f"{emu.base_url}/_emulator/{route}", json=body, headers=emu.admin_headers, timeout=TIMEOUT
    )
    assert response.status_code == 200, response.text


def test_the_admin_token_is_random_per_run_and_settable(tmp_path: Path) -> None:
    with RedivisEmulator() as one, RedivisEmulator() as two:
        assert one.admin_token != two.admin_token
        assert len(one.admin_token) >= 24
        # Another emulator's token opens nothing here.
        foreign = requests.get(f"{one.base_url}/_emulator/health", headers=two.admin_headers, timeout=TIMEOUT)
        assert foreign.status_code == 401
    with RedivisEmulator(admin_token="chosen") as emu:
        assert emu.admin_headers == {"X-Emulator-Admin-Token": "chosen"}
    with pytest.raises(ValueError, match="admin_token"):
        RedivisEmulator(admin_token=" ")


def test_python_methods_need_no_token(emu: RedivisEmulator) -> None:
    from redivis_emulator import Fault

    emu.add_fault(Fault("status", status=503))
    assert [f.kind for f in emu.faults.snapshot()] == ["status"]
    emu.clear_faults()
    assert emu.requests == []


def test_admin_client_sends_the_token_and_json(emu: RedivisEmulator) -> None:
    admin = emu.admin_client()
    assert emu.admin_token not in repr(admin)
    assert admin.health()["ok"] is True
    assert admin.add_fault({"kind": "status", "status": 503, "method": "GET"})["kind"] == "status"
    assert [f["kind"] for f in admin.get("faults")] == ["status"]
    admin.clear_faults()
    assert emu.faults.snapshot() == []
    assert admin.create_table("a.b.c")["name"] == "c"
    with pytest.raises(AdminError) as refused:
        AdminClient(emu.base_url, "wrong").health()
    assert refused.value.status == 401


# -- JSON bodies only ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    [None, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"],
)
def test_an_admin_body_must_be_json(emu: RedivisEmulator, content_type: str | None) -> None:
    """What a web page can send without a CORS preflight is refused, and changes nothing."""
    headers = dict(emu.admin_headers)
    if content_type is not None:
        headers["Content-Type"] = content_type
    status, body = raw_request(
        emu.base_url,
        "POST",
        "/_emulator/faults",
        {"Host": urlsplit(emu.base_url).netloc, **headers},
        json.dumps({"kind": "status", "status": 503}).encode(),
    )
    assert status == 415, body
    assert emu.faults.snapshot() == []


def test_json_with_a_charset_and_bodiless_posts_are_accepted(emu: RedivisEmulator, new_session) -> None:  # type: ignore[no-untyped-def]
    response = requests.post(
        f"{emu.base_url}/_emulator/faults",
        data=json.dumps({"kind": "status", "status": 503}),
        headers={**emu.admin_headers, "Content-Type": "application/json; charset=utf-8"},
        timeout=TIMEOUT,
    )
    assert response.status_code == 200, response.text
    emu.clear_faults()
    session = new_session(10)
    expired = requests.post(
        f"{emu.base_url}/_emulator/sessions/{session['id']}/expire",
        headers=emu.admin_headers,
        timeout=TIMEOUT,
    )
    assert expired.status_code == 200, expired.text


# -- the Host check ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    ["evil.example:{port}", "evil.example", "127.0.0.1", "127.0.0.1:1", "localhost.evil.example:{port}", ""],
)
@pytest.mark.parametrize("where", ["api", "session", "admin"])
def test_a_foreign_host_is_refused_on_every_origin(
    emu: RedivisEmulator, new_session, host: str, where: str
) -> None:  # type: ignore[no-untyped-def]
    session = new_session(10)
    seen = len(emu.requests)
    base, path = {
        "api": (emu.base_url, f"/api/v1{table_path()}"),
        "session": (emu.session_base_url, urlsplit(session["url"]).path),
        "admin": (emu.base_url, "/_emulator/faults"),
    }[where]
    port = urlsplit(base).port
    headers = {"Authorization": f"Bearer {emu.token}", **emu.admin_headers}
    if host:
        headers["Host"] = host.format(port=port)
    status, body = raw_request(
        base, "PUT" if where == "session" else "GET", path, headers, b"" if where == "session" else None
    )
    assert status == 400, body
    assert b"is not this emulator's" in body
    assert len(emu.requests) == seen  # refused before anything was read, logged or handled
    assert emu.faults.snapshot() == []


@pytest.mark.parametrize("name", ["127.0.0.1", "localhost", "LOCALHOST", "[::1]"])
def test_loopback_names_are_accepted(emu: RedivisEmulator, name: str) -> None:
    port = urlsplit(emu.base_url).port
    status, body = raw_request(
        emu.base_url, "GET", "/_emulator/health", {"Host": f"{name}:{port}", **emu.admin_headers}
    )
    assert status == 200, body
    status, _ = raw_request(
        emu.base_url,
        "GET",
        f"/api/v1{table_path()}",
        {"Host": f"{name}:{port}", "Authorization": f"Bearer {emu.token}"},
    )
    assert status == 200


def test_allowed_hosts_adds_names(tmp_path: Path) -> None:
    with RedivisEmulator(tables=["a.b.c"], allowed_hosts=["builder.internal"]) as emu:
        port = urlsplit(emu.base_url).port
        ok, _ = raw_request(
            emu.base_url,
            "GET",
            "/_emulator/health",
            {"Host": f"builder.internal:{port}", **emu.admin_headers},
        )
        other, _ = raw_request(
            emu.base_url, "GET", "/_emulator/health", {"Host": f"other.internal:{port}", **emu.admin_headers}
        )
    assert (ok, other) == (200, 400)


# -- redaction -----------------------------------------------------------------------------------------


def test_recorded_credentials_are_redacted_where_served(emu: RedivisEmulator, new_session) -> None:  # type: ignore[no-untyped-def]
    session = new_session(10)
    # A token sent where it does not belong (the session origin) is recorded, and still redacted.
    requests.put(
        session["url"],
        data=b"x" * 10,
        headers={
            "Authorization": f"Bearer {emu.token}",
            "Cookie": "sid=secret-cookie",
            "Content-Range": "bytes 0-9/10",
        },
        timeout=TIMEOUT,
    )
    served = requests.get(f"{emu.base_url}/_emulator/requests", headers=emu.admin_headers, timeout=TIMEOUT)
    assert served.status_code == 200
    assert emu.token not in served.text
    assert "secret-cookie" not in served.text
    records = served.json()
    assert len(records) == 2
    assert all(r["headers"]["authorization"] == "<redacted>" for r in records)
    assert [r["hasAuthorization"] for r in records] == [True, True]
    assert emu.authorization_seen("session") == 1
    # In the process, the test tool still sees what arrived; a repr never shows it.
    assert emu.requests[0].headers["authorization"] == f"Bearer {emu.token}"
    assert emu.token not in repr(emu.requests)


# -- the command line ----------------------------------------------------------------------------------


def test_cli_prints_a_random_admin_token_next_to_the_base_url(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "redivis_emulator", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        base = proc.stdout.readline().strip()
        header, _, token = proc.stdout.readline().strip().partition(": ")
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", base)
        assert header == ADMIN_TOKEN_HEADER
        assert len(token) >= 24
        assert AdminClient(base, token).health()["ok"] is True
        assert requests.get(f"{base}/_emulator/health", timeout=TIMEOUT).status_code == 401
    finally:
        proc.terminate()
        proc.wait(10)


def test_cli_admin_token_and_allow_host(tmp_path: Path) -> None:
    with running_cli("--allow-host", "builder.internal", log=tmp_path / "err") as (_proc, base):
        port = urlsplit(base).port
        from emulator.tests.conftest import CLI_ADMIN

        status, _ = raw_request(
            base, "GET", "/_emulator/health", {"Host": f"builder.internal:{port}", **CLI_ADMIN}
        )
        assert status == 200


def test_the_console_script_is_installed() -> None:
    script = shutil.which("redivis-emulator", path=str(Path(sys.executable).parent))
    assert script is not None, "pip install -e ./emulator installs the redivis-emulator command"
    result = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0
    assert "--admin-token" in result.stdout


def test_a_proxy_in_front_is_accepted_once_allowed(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The benchmarks' link proxy forwards the client's Host (its own address): allowed by name, and only then."""
    import socket

    from redivis_emulator import RedivisEmulator

    with RedivisEmulator(data_dir=tmp_path / "e") as emu:
        port = emu.base_url.rsplit(":", 1)[1]
        with socket.create_connection(("127.0.0.1", int(port)), timeout=5) as conn:
            conn.sendall(b"GET /api/v1/users/me HTTP/1.1\r\nHost: 127.0.0.1:1\r\nConnection: close\r\n\r\n")
            assert b" 400 " in conn.recv(200)
        emu.allow_hosts("127.0.0.1:1")
        with socket.create_connection(("127.0.0.1", int(port)), timeout=5) as conn:
            request = f"GET /api/v1/users/me HTTP/1.1\r\nHost: 127.0.0.1:1\r\nAuthorization: Bearer {emu.token}\r\nConnection: close\r\n\r\n"
            conn.sendall(request.encode())
            assert b" 200 " in conn.recv(200)
