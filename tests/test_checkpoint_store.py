"""Where checkpoints live: the Variable fallback's key (unique, within 250 characters, masked), and
BackgroundWriter (saves that never hold the transfer up, and never overtake a later write)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import pytest

from airflow_provider_redivis.checkpoint_store import variable_key
from airflow_provider_redivis.engine.background_writer import BackgroundWriter
from airflow_provider_redivis.errors import StoreTimeoutError

#: Airflow's Variable key column (VARCHAR(250)) on PostgreSQL and MySQL.
MAX_VARIABLE_KEY = 250


def test_key_fits_in_airflows_variable_column_whatever_the_ids() -> None:
    key = variable_key("d" * 250, "manual__" + "r" * 242, "g." * 125, 123_456)
    assert len(key) <= MAX_VARIABLE_KEY


def test_key_names_a_word_airflows_masker_hides() -> None:
    # Airflow 2.11's DEFAULT_SENSITIVE_FIELDS include "secret": the UI shows the value as '***'.
    assert "secret" in variable_key("dag", "run", "task", -1)


def test_keys_differ_when_any_part_differs_even_past_the_readable_cut() -> None:
    base = ("d" * 100, "r" * 100, "t" * 100, 1)
    keys = {
        variable_key(*base),
        variable_key("d" * 100 + "x", *base[1:]),
        variable_key(base[0], "r" * 100 + "x", *base[2:]),
        variable_key(*base[:2], "t" * 100 + "x", base[3]),
        variable_key(*base[:3], 2),
    }
    assert len(keys) == 5


def test_a_slow_store_does_not_hold_up_the_caller_and_only_the_newest_value_waits() -> None:
    release = threading.Event()
    written: list[int] = []

    def slow_write(value: int) -> None:
        release.wait(5)
        written.append(value)

    writer = BackgroundWriter(slow_write, "checkpoint")
    started = time.monotonic()
    for value in range(100):
        writer.submit(value)
    assert time.monotonic() - started < 1.0  # nobody waited for the store
    release.set()
    writer.close()
    assert written[-1] == 99
    assert len(written) <= 3  # the one in flight, perhaps one more, and the newest


def test_close_waits_for_the_last_write() -> None:
    written: list[int] = []

    def write(value: int) -> None:
        time.sleep(0.2)
        written.append(value)

    with BackgroundWriter(write, "checkpoint") as writer:
        writer.submit(1)
    assert written == [1]


def test_a_failed_write_is_logged_and_the_next_one_still_goes(caplog: pytest.LogCaptureFixture) -> None:
    written: list[int] = []

    def flaky(value: int) -> None:
        if value == 1:
            raise ConnectionError("api-server restarting")
        written.append(value)

    with caplog.at_level(logging.WARNING), BackgroundWriter(flaky, "upload checkpoint") as writer:
        writer.submit(1)
        time.sleep(0.2)
        writer.submit(2)
    assert written == [2]
    assert any(
        "Could not save the upload checkpoint (ConnectionError)" in r.getMessage() for r in caplog.records
    )


def _close_in_a_thread(close: Callable[[], None], release: threading.Event) -> list[BaseException]:
    """``close()`` on a thread of its own, so that a close that never returns fails the test, not hangs it."""
    raised: list[BaseException] = []
    done = threading.Event()

    def run() -> None:
        try:
            close()
        except BaseException as exc:
            raised.append(exc)
        finally:
            done.set()

    threading.Thread(target=run, daemon=True).start()
    try:
        assert done.wait(10), "close() still waits for a store that never answers"
    finally:
        release.set()
    return raised


def test_close_gives_up_on_a_hung_write_and_says_what_happened(caplog: pytest.LogCaptureFixture) -> None:
    release = threading.Event()
    writer = BackgroundWriter(
        lambda _value: release.wait(30), "upload checkpoint", close_timeout=0.3, advice=" Check the store."
    )
    writer.submit(1)
    with caplog.at_level(logging.ERROR):
        raised = _close_in_a_thread(writer.close, release)
    assert [type(exc) for exc in raised] == [StoreTimeoutError]
    message = (
        "Saving the upload checkpoint did not finish within 0.3 s: the store it writes to does not answer."
    )
    assert str(raised[0]) == message + " Check the store."
    assert any(message in r.getMessage() and r.levelno == logging.ERROR for r in caplog.records)


def test_a_hung_write_does_not_hide_the_error_already_on_its_way(caplog: pytest.LogCaptureFixture) -> None:
    release = threading.Event()

    def fail_with_a_hung_write() -> None:
        with BackgroundWriter(
            lambda _value: release.wait(30), "upload checkpoint", close_timeout=0.3
        ) as writer:
            writer.submit(1)
            raise ConnectionError("the transfer failed")

    with caplog.at_level(logging.ERROR):
        raised = _close_in_a_thread(fail_with_a_hung_write, release)
    assert [type(exc) for exc in raised] == [ConnectionError]
    assert any("did not finish within 0.3 s" in r.getMessage() for r in caplog.records)
