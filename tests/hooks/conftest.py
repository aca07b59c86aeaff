"""Fixtures for the hook tests: Airflow connections from environment variables, the emulator over
127.0.0.1, a hook pointed at it with tiny retry waits, and the hook's log lines."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from redivis_emulator import ALL_SCOPES, RedivisEmulator

from airflow_provider_redivis.engine.retry import RetryPolicy
from airflow_provider_redivis.hooks.redivis import RedivisHook

TOKEN = "hook-test-token-4f9c2a"
#: A token without data.edit: reads work, writes get 403 insufficient_scope.
READ_ONLY_TOKEN = "hook-read-only-token-91b3"
DATASET = "test_owner.test_dataset"
TABLE = "test_owner.test_dataset:next.test_table"
#: Retries as the defaults do them, with waits of about 10 ms.
FAST_RETRIES = RetryPolicy(max_attempts=4, max_total_seconds=20.0, initial_wait=0.01, max_wait=0.02)
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


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[RedivisEmulator]:
    with RedivisEmulator(
        tokens={
            TOKEN: ALL_SCOPES,
            READ_ONLY_TOKEN: ("public", "data.overview", "data.metadata", "data.data"),
        },
        tables=["test_owner.test_dataset.test_table"],
        data_dir=tmp_path / "emulator",
        processing_delay=0.01,
    ) as emu:
        yield emu


def emulator_uri(emu: RedivisEmulator, token: str = TOKEN) -> str:
    """``redivis://:TOKEN@127.0.0.1:PORT``: a loopback host without a scheme means http."""
    return f"redivis://:{token}@{emu.base_url.removeprefix('http://')}"


@pytest.fixture
def hook(emulator: RedivisEmulator, make_connection: MakeConnection) -> Iterator[RedivisHook]:
    with RedivisHook(make_connection(emulator_uri(emulator)), retry_policy=FAST_RETRIES) as h:
        yield h
