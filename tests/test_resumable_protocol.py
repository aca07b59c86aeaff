"""The protocol's pure functions: requests built, responses read, no network."""

from __future__ import annotations

import base64
import hashlib

import pytest

from airflow_provider_redivis.errors import RedivisAPIError, RedivisConfigError, ResumableSessionExpiredError
from airflow_provider_redivis.resumable import (
    CHUNK_UNIT,
    StreamingMD5,
    _TransientSessionError,
    content_range,
    held_bytes_from_range,
    interpret_response,
    redact_session_url,
    status_query_range,
    validate_chunk_size,
)


@pytest.mark.parametrize(
    ("first", "last", "total", "expected"),
    [
        (0, 262143, 1000000, "bytes 0-262143/1000000"),
        (262144, 524287, None, "bytes 262144-524287/*"),
        (0, 0, 1, "bytes 0-0/1"),
    ],
)
def test_content_range(first: int, last: int, total: int | None, expected: str) -> None:
    assert content_range(first, last, total) == expected


def test_status_query_range_known_and_unknown_total() -> None:
    assert status_query_range(2000000) == "bytes */2000000"
    assert status_query_range(None) == "bytes */*"


@pytest.mark.parametrize(
    ("header", "held"),
    [(None, 0), ("", 0), ("bytes=0-0", 1), ("bytes=0-42", 43), ("bytes=0-262143", 262144)],
)
def test_held_bytes_from_range(header: str | None, held: int) -> None:
    assert held_bytes_from_range(header) == held


@pytest.mark.parametrize("header", ["bytes=5-10", "bytes=0-x", "items=0-4"])
def test_unreadable_range_is_an_error(header: str) -> None:
    with pytest.raises(RedivisAPIError, match="unreadable Range"):
        held_bytes_from_range(header)


def test_308_without_range_means_nothing_held() -> None:
    status = interpret_response(308, {}, b"")
    assert (status.complete, status.offset) == (False, 0)


def test_308_range_decides_even_below_what_was_sent() -> None:
    assert interpret_response(308, {"Range": "bytes=0-262143"}, b"").offset == CHUNK_UNIT


@pytest.mark.parametrize("code", [200, 201])
def test_final_answer_carries_metadata(code: int) -> None:
    status = interpret_response(code, {}, b'{"size": "10", "md5Hash": "abc"}')
    assert status.complete
    assert status.offset == 10
    assert status.metadata["md5Hash"] == "abc"


@pytest.mark.parametrize("code", [404, 410])
def test_gone_session_is_its_own_error(code: int) -> None:
    with pytest.raises(ResumableSessionExpiredError, match="from byte 0"):
        interpret_response(code, {}, b"")


@pytest.mark.parametrize("code", [408, 429, 500, 502, 503, 504])
def test_transient_statuses_ask_for_a_status_query(code: int) -> None:
    with pytest.raises(_TransientSessionError) as info:
        interpret_response(code, {"Retry-After": "7"}, b"")
    assert info.value.status == code
    assert info.value.retry_after == 7.0


@pytest.mark.parametrize("code", [400, 401, 403, 409, 411, 413])
def test_other_client_errors_are_final(code: int) -> None:
    with pytest.raises(RedivisAPIError) as info:
        interpret_response(code, {}, b"bad chunk")
    assert info.value.status == code


def test_streaming_md5_hashes_each_byte_once() -> None:
    data = bytes(range(256)) * 4096
    digest = StreamingMD5()
    digest.update(0, data[:300_000])
    digest.update(262_144, data[262_144:600_000])  # a re-sent range overlapping what was hashed
    digest.update(600_000, data[600_000:])
    assert digest.hexdigest() == hashlib.md5(data).hexdigest()
    assert digest.base64() == base64.b64encode(hashlib.md5(data).digest()).decode()


def test_streaming_md5_refuses_a_gap() -> None:
    digest = StreamingMD5()
    digest.update(0, b"abc")
    with pytest.raises(ValueError, match="only 3 bytes"):
        digest.update(5, b"x")


@pytest.mark.parametrize("size", [CHUNK_UNIT, 64 * CHUNK_UNIT, 4096 * CHUNK_UNIT])
def test_chunk_sizes_in_256_kib_units_are_accepted(size: int) -> None:
    assert validate_chunk_size(size) == size


@pytest.mark.parametrize("size", [0, -CHUNK_UNIT, 1000, CHUNK_UNIT + 1, 8 * 1024**3, 1.5, "1024", True])
def test_bad_chunk_sizes_are_refused_with_a_suggestion(size: object) -> None:
    with pytest.raises(RedivisConfigError, match="chunk_size"):
        validate_chunk_size(size)


def test_redacted_session_url_keeps_no_credential() -> None:
    url = "https://storage.example.com/upload/resumable/abcdefghijklmnopqrstuvwxyz0123456789?upload_id=SECRET123"
    shown = redact_session_url(url)
    assert "SECRET123" not in shown
    assert "0123456789" not in shown
    assert shown.startswith("https://storage.example.com/upload/")
