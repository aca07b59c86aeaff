"""The hook paces itself inside Redivis's request budget: the emulator enforces the limit on 127.0.0.1.

A 429 is a wait, never a failure, and never spends the retry budget (max_attempts, max_retry_seconds are
for faults); every hook and thread of a process shares the token's one budget.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, urlencode

import pytest
import requests
from redivis_emulator import ALL_SCOPES, RedivisEmulator

from airflow_provider_redivis.engine.request_budget import BudgetWaitTimeoutError
from airflow_provider_redivis.hooks.redivis import RedivisHook
from tests.hooks.conftest import TABLE, TOKEN, MakeConnection, emulator_uri

LIMIT, INTERVAL = 6, 2.0


@pytest.fixture
def limited(tmp_path: Path) -> Iterator[RedivisEmulator]:
    with RedivisEmulator(
        tokens={TOKEN: ALL_SCOPES},
        tables=["test_owner.test_dataset.test_table"],
        data_dir=tmp_path / "emulator",
        rate_limit=(LIMIT, INTERVAL),
    ) as emu:
        yield emu


def connection(emu: RedivisEmulator, make_connection: MakeConnection, **extra: object) -> str:
    # One attempt per call: a 429 that reached the retry policy would fail the call at once.
    return make_connection(
        emulator_uri(emu) + "?" + urlencode({"max_attempts": 1, "rate_limit_interval": INTERVAL, **extra})
    )


def counts(emu: RedivisEmulator) -> tuple[int, int]:
    found = emu.rate_limit_counts()
    return found["allowed"], found["refused"]


def test_more_calls_than_the_limit_all_succeed_with_one_attempt_each(
    limited: RedivisEmulator, make_connection: MakeConnection
) -> None:
    calls = 3 * LIMIT
    started = time.monotonic()
    with RedivisHook(connection(limited, make_connection)) as hook:
        for _ in range(calls):
            assert hook.get_table(TABLE)["name"] == "test_table"
        budget = hook.request_budget
    allowed, refused = counts(limited)
    assert allowed == calls
    # Paced on what the answers said: a refusal at most where an interval's start could not be known.
    assert refused <= 1, f"{refused} of {calls + refused} requests were answered 429"
    assert budget.sent == calls + refused
    # 18 calls at 6 per 2 s need at least two intervals to have passed.
    assert time.monotonic() - started >= 2 * INTERVAL - 0.5


def test_threads_and_hooks_of_one_process_share_the_tokens_budget(
    limited: RedivisEmulator, make_connection: MakeConnection
) -> None:
    conn_id = connection(limited, make_connection)
    failures: list[BaseException] = []

    def work() -> None:
        try:
            with RedivisHook(conn_id) as hook:
                for _ in range(3):
                    hook.get_table(TABLE)
        except BaseException as exc:  # reported below
            failures.append(exc)

    threads = [threading.Thread(target=work) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(t.is_alive() for t in threads)
    assert failures == []
    allowed, refused = counts(limited)
    assert allowed == 18
    assert refused <= 2, f"{refused} of {allowed + refused} requests were answered 429"


def test_a_refusal_is_waited_out_not_failed(
    limited: RedivisEmulator, make_connection: MakeConnection
) -> None:
    # Another client of the token, unknown to this process's budget, spends the whole interval first.
    table_url = f"{limited.api_url}/tables/{quote(TABLE, safe='')}"
    for _ in range(LIMIT):
        assert requests.get(table_url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10).ok
    with RedivisHook(connection(limited, make_connection)) as hook:
        started = time.monotonic()
        assert hook.get_table(TABLE)["name"] == "test_table"
        waited = time.monotonic() - started
    assert counts(limited) == (LIMIT + 1, 1)  # one refusal, then the wait until its Retry-After
    assert 0.5 <= waited <= INTERVAL + 2


def test_a_wait_for_the_budget_past_its_deadline_says_so(
    limited: RedivisEmulator, make_connection: MakeConnection
) -> None:
    with RedivisHook(connection(limited, make_connection, rate_limit_interval=60)) as hook:
        hook.request_budget.refused(30.0)
        hook.budget_deadline = time.monotonic() + 0.2
        with pytest.raises(BudgetWaitTimeoutError, match="request budget"):
            hook.get_table(TABLE)
    assert counts(limited) == (0, 0)
