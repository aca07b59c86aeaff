"""Fixtures for the emulator's own tests: an authenticated API client, sessions, chunk helpers, the CLI."""

from __future__ import annotations

import select
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests
from redivis_emulator import RedivisEmulator

TABLE = "test_owner.test_dataset.test_table"
UNIT = 256 * 1024
TIMEOUT = 10


def table_path(table: str = TABLE) -> str:
    """The API path of a table: the whole reference is one percent-encoded segment."""
    return f"/tables/{quote(table, safe='')}"


@pytest.fixture
def emu(redivis_emulator: RedivisEmulator) -> RedivisEmulator:
    """The plugin's fixture (the redivis-emulator pytest11 entry point loads it), under a short name."""
    return redivis_emulator


@pytest.fixture
def api(emu: RedivisEmulator) -> Iterator[requests.Session]:
    """Requests to the API origin, with the emulator's token."""
    with requests.Session() as session:
        session.headers["Authorization"] = f"Bearer {emu.token}"
        yield session


@pytest.fixture
def new_session(emu: RedivisEmulator, api: requests.Session) -> Callable[..., dict[str, Any]]:
    """Create a resumable session for ``size`` bytes: {"kind", "id", "url"}."""

    def create(size: int, table: str = TABLE) -> dict[str, Any]:
        response = api.post(
            f"{emu.api_url}{table_path(table)}/resumableUpload", params={"size": size}, timeout=TIMEOUT
        )
        assert response.status_code == 200, response.text
        return response.json()

    return create


def put_chunk(
    url: str, data: bytes, first: int, total: int | None, *, timeout: float | tuple[float, float] = TIMEOUT
) -> requests.Response:
    """One chunk PUT to a session URL, no token (the URL is its own credential)."""
    last = first + len(data) - 1
    return requests.put(
        url,
        data=data,
        headers={"Content-Range": f"bytes {first}-{last}/{'*' if total is None else total}"},
        timeout=timeout,
    )


def status_query(url: str, total: int | None) -> requests.Response:
    return requests.put(
        url,
        headers={"Content-Range": f"bytes */{'*' if total is None else total}", "Content-Length": "0"},
        timeout=TIMEOUT,
    )


@pytest.fixture
def upload_bytes(
    emu: RedivisEmulator, api: requests.Session, new_session: Callable[..., dict[str, Any]]
) -> Callable[..., dict[str, Any]]:
    """Send ``data`` through a session and create the upload ``name``; returns the upload resource."""

    def upload(name: str, data: bytes, table: str = TABLE, **options: Any) -> dict[str, Any]:
        session = new_session(len(data), table)
        # An empty object is completed by naming its total, Cloud Storage's way.
        response = put_chunk(session["url"], data, 0, len(data)) if data else status_query(session["url"], 0)
        assert response.status_code == 200, response.text
        created = api.post(
            f"{emu.api_url}{table_path(table)}/uploads",
            json={"name": name, "resumableUploadId": session["id"], **options},
            timeout=TIMEOUT,
        )
        assert created.status_code == 200, created.text
        return created.json()

    return upload


#: The admin token :func:`running_cli` gives the command line, and the header that carries it.
CLI_ADMIN_TOKEN = "cli-admin-token"
CLI_ADMIN = {"X-Emulator-Admin-Token": CLI_ADMIN_TOKEN}


@contextmanager
def running_cli(*args: str, log: Path, timeout: float = 20) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """``python -m redivis_emulator --port 0 --admin-token CLI_ADMIN_TOKEN ARGS``: (process, base URL
    from its first line); the second line, the admin token's header, is checked and read."""
    with open(log, "w") as stderr:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "redivis_emulator",
                "--port",
                "0",
                "--admin-token",
                CLI_ADMIN_TOKEN,
                *args,
            ],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
        try:
            assert proc.stdout is not None
            ready, _, _ = select.select([proc.stdout], [], [], timeout)
            assert ready, f"the emulator printed no base URL within {timeout} s: {log.read_text()}"
            base = proc.stdout.readline().strip()
            assert proc.stdout.readline().strip() == f"X-Emulator-Admin-Token: {CLI_ADMIN_TOKEN}"
            yield proc, base
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)
            if proc.stdout is not None:
                proc.stdout.close()
