"""Fixtures for the hook tests: Airflow connections from environment variables, the hook's log lines."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import pytest

TOKEN = "hook-test-token-4f9c2a"
#: The hook logs through Airflow's logger (stdlib logging on 2.x, structlog on 3.x); tests route it to
#: this stdlib logger so caplog sees every line, debug included, on both.
HOOK_TEST_LOGGER = "tests.hooks.redivis_hook"

MakeConnection = Callable[..., str]
HookLog = Callable[[Any], pytest.LogCaptureFixture]


@pytest.fixture
def make_connection(monkeypatch: pytest.MonkeyPatch) -> MakeConnection:
    """Define an Airflow connection through ``AIRFLOW_CONN_<ID>``, as a URI or as JSON fields."""
    counter = iter(range(1_000_000))

    def make(uri: str | None = None, **fields: Any) -> str:
        conn_id = f"redivis_test_{next(counter)}"
        if uri is not None:
            value = uri
        else:
            fields.setdefault("conn_type", "redivis")
            if isinstance(fields.get("extra"), dict):
                fields["extra"] = json.dumps(fields["extra"])
            value = json.dumps(fields)
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", value)
        return conn_id

    return make


@pytest.fixture
def hook_log(caplog: pytest.LogCaptureFixture) -> HookLog:
    """``hook_log(hook)`` sends that hook's log lines, debug included, to the returned caplog."""
    caplog.set_level(logging.DEBUG, logger=HOOK_TEST_LOGGER)

    def attach(hook: Any) -> pytest.LogCaptureFixture:
        hook._log = logging.getLogger(HOOK_TEST_LOGGER)
        return caplog

    return attach
