"""Airflow 3.3's connection Test button, through a real ``airflow api-server`` and its REST API.

The button (in the connection list) posts the stored connection back to ``POST /api/v2/connections/test``
with ``port: Number(port)``: an empty port becomes ``0``. Airflow 3.3.2 compares that with the stored
port (empty, NULL) and, since the two differ and the password is the masked ``***``, answers
400 "Bad Request" before any provider code runs. So the README teaches the port in the port field
(8765 for the emulator, 443 for redivis.com); the hook drops 443/80 for their scheme, and reads 0 as no
port. These tests send exactly what the UI sends (the browser run is ``scripts/ui_connection_test.sh``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from redivis_emulator import RedivisEmulator

from tests.e2e.deployment import AirflowDeployment

pytestmark = [pytest.mark.airflow, pytest.mark.slow]

TOKEN = "ui-test-token"
README = Path(__file__).resolve().parents[2] / "README.md"
#: The README's emulator connection: ``export AIRFLOW_CONN_REDIVIS_DEFAULT='{...}'   # the emulator``.
README_EMULATOR_CONNECTION = re.compile(r"AIRFLOW_CONN_REDIVIS_DEFAULT='(\{[^']*\})'\s+# the emulator")


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedivisEmulator]:
    with RedivisEmulator(tokens=[TOKEN], data_dir=tmp_path_factory.mktemp("emulator")) as emu:
        yield emu


@pytest.fixture(scope="module")
def api_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowDeployment]:
    # Airflow disables the Test button unless [core] test_connection says Enabled.
    deployment = AirflowDeployment(
        tmp_path_factory.mktemp("airflow"),
        services=("api-server",),
        env={"AIRFLOW__CORE__TEST_CONNECTION": "Enabled"},
    )
    with deployment:
        yield deployment


def save_as_the_form_does(api: AirflowDeployment, conn_id: str, **fields: Any) -> dict[str, Any]:
    """``POST /api/v2/connections`` with the body the Add Connection form sends (empty fields left out)."""
    body = {"connection_id": conn_id, "conn_type": "redivis", "password": TOKEN, **fields}
    return dict(api.api("POST", "/api/v2/connections", body))


def press_test(api: AirflowDeployment, stored: dict[str, Any]) -> tuple[int, Any]:
    """The body the list's Test button builds from the stored connection (Airflow 3.3.2's UI)."""
    body = {
        "connection_id": stored["connection_id"],
        "conn_type": stored["conn_type"],
        "description": stored.get("description") or "",
        "extra": stored.get("extra") or "{}",
        "host": stored.get("host") or "",
        "login": stored.get("login") or "",
        "password": stored.get("password") or "",  # the masked "***"
        "port": int(stored.get("port") or 0),  # Number(null) is 0 in the browser
        "schema": stored.get("schema") or "",
    }
    return api._request("POST", "/api/v2/connections/test", body)


@pytest.mark.parametrize(
    "layout",
    [
        pytest.param({"host": "http://127.0.0.1"}, id="url-host-and-port-field"),
        pytest.param({"host": "127.0.0.1"}, id="bare-host-and-port-field"),
    ],
)
def test_the_connection_the_readme_teaches_tests_green(
    api_server: AirflowDeployment, emulator: RedivisEmulator, layout: dict[str, str]
) -> None:
    port = urlsplit(emulator.base_url).port
    conn_id = f"redivis_ui_{layout['host'].replace(':', '').replace('/', '').replace('.', '_')}"
    stored = save_as_the_form_does(api_server, conn_id, port=port, **layout)
    assert stored["password"] == "***"  # what the list holds, and what the button sends back

    status, answer = press_test(api_server, stored)

    assert status == 200, answer
    assert answer["status"] is True, answer
    assert answer["message"] == f"Connected to {emulator.base_url}/api/v1 as emulator_user."


def readme_emulator_connection(port: int, readme: str | None = None) -> dict[str, Any]:
    """The host and port the README teaches for the emulator, with its port 8765 swapped for ``port``."""
    (taught,) = README_EMULATOR_CONNECTION.findall(readme if readme is not None else README.read_text())
    fields = json.loads(taught)
    layout: dict[str, Any] = {"host": fields["host"].replace(":8765", f":{port}")}
    if fields.get("port") is not None:
        layout["port"] = port if int(fields["port"]) == 8765 else int(fields["port"])
    return layout


def test_the_readme_emulator_connection_tests_green(
    api_server: AirflowDeployment, emulator: RedivisEmulator
) -> None:
    # Typed into the form as the README shows it, then tested with the list's button. The README once
    # taught "host": "http://127.0.0.1:8765" without a port: that answered 400 (see the last test).
    layout = readme_emulator_connection(int(urlsplit(emulator.base_url).port or 0))
    stored = save_as_the_form_does(api_server, "redivis_ui_readme", **layout)

    status, answer = press_test(api_server, stored)

    assert (status, answer.get("status")) == (200, True), answer


def test_only_what_was_typed_reaches_the_hook(
    api_server: AirflowDeployment, emulator: RedivisEmulator
) -> None:
    # What the form saves when only the read timeout was typed: every other extra null.
    extra = {
        k: None
        for k in (
            "connect_timeout",
            "max_attempts",
            "max_retry_seconds",
            "verify",
            "scheme",
            "rate_limit_interval",
        )
    }
    extra["read_timeout"] = 30
    stored = save_as_the_form_does(
        api_server,
        "redivis_ui_extras",
        host="http://127.0.0.1",
        port=urlsplit(emulator.base_url).port,
        extra=json.dumps(extra),
    )
    status, answer = press_test(api_server, stored)
    assert (status, answer["status"]) == (200, True), answer


def test_a_port_only_inside_the_host_is_refused_by_airflow_before_the_provider_runs(
    api_server: AirflowDeployment, emulator: RedivisEmulator
) -> None:
    # The layout the README used to teach, and what the README's troubleshooting table explains: Airflow
    # 3.3.2 sees port 0 against a stored empty port and answers 400. If a later Airflow stops doing that,
    # this test fails and the README's advice can be relaxed.
    stored = save_as_the_form_does(api_server, "redivis_ui_port_in_host", host=emulator.base_url)
    assert stored["port"] is None
    before = len(emulator.requests)

    status, answer = press_test(api_server, stored)

    assert status == 400, answer
    assert "differs from the stored connection" in json.dumps(answer)
    assert len(emulator.requests) == before  # the hook never ran
