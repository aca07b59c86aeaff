"""``python -m redivis_emulator``: first line is the base URL, flags work, SIGTERM stops it."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from emulator.tests.conftest import CLI_ADMIN, TIMEOUT, running_cli, table_path


def test_cli_serves_until_sigterm(tmp_path: Path) -> None:
    log = tmp_path / "stderr.log"
    args = ["--token", "abc", "--table", "me.sales.daily", "--data-dir", str(tmp_path / "data")]
    args += ["--fault", "status:status=503,method=GET,path_contains=/users/me"]
    with running_cli(*args, log=log) as (proc, base):
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", base)
        auth = {"Authorization": "Bearer abc"}
        table = requests.get(f"{base}/api/v1{table_path('me.sales.daily')}", headers=auth, timeout=TIMEOUT)
        assert table.status_code == 200
        assert table.json()["name"] == "daily"
        assert requests.get(f"{base}/api/v1/users/me", headers=auth, timeout=TIMEOUT).status_code == 503
        # Only the tokens given are accepted.
        other = {"Authorization": "Bearer test-token"}
        assert (
            requests.get(
                f"{base}/api/v1{table_path('me.sales.daily')}", headers=other, timeout=TIMEOUT
            ).status_code
            == 401
        )
        health = requests.get(f"{base}/_emulator/health", headers=CLI_ADMIN, timeout=TIMEOUT).json()
        assert health["sessionBaseUrl"] != base
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        assert proc.stdout is not None
        assert proc.stdout.read() == ""  # nothing after the URL and the admin token, and never an API token
    assert "abc" not in log.read_text()


def test_cli_stops_on_sigint_and_scopes_tokens(tmp_path: Path) -> None:
    with running_cli("--token", "ro=data.overview,data.data", "--table", "a.b.c", log=tmp_path / "err") as (
        proc,
        base,
    ):
        auth = {"Authorization": "Bearer ro"}
        url = f"{base}/api/v1{table_path('a.b.c')}"
        assert requests.get(url, headers=auth, timeout=TIMEOUT).status_code == 200
        write = requests.post(f"{url}/resumableUpload", params={"size": 1}, headers=auth, timeout=TIMEOUT)
        assert write.json()["error"] == "insufficient_scope"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0


@pytest.mark.parametrize(
    "args",
    [
        ["--fault", "explode"],
        ["--table", "not-a-reference"],
        ["--port", "-5"],
        ["--rate-limit", "100"],
        ["--rate-limit", "0/100"],
        ["--rate-limit", "100/0"],
        ["--rate-limit-retry-after", "soon"],
    ],
)
def test_cli_refuses_bad_arguments(args: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "redivis_emulator", *args],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.strip()


def test_the_emulator_does_not_import_airflow() -> None:
    code = (
        "import sys, redivis_emulator, redivis_emulator.__main__\n"
        "bad = [m for m in sys.modules if m == 'airflow' or m.startswith('airflow.')]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
