"""The protocol's pure functions: requests built, answers read in both dialects, stored objects judged."""

from __future__ import annotations

import pytest

from airflow_provider_redivis.engine.protocol import (
    CHUNK_UNIT,
    FIRST_REQUEST_SIZE,
    MAX_CHUNK_SIZE,
    MAX_GROWTH,
    MAX_UNKNOWN_TOTAL_REQUEST_SIZE,
    TARGET_REQUEST_SECONDS,
    RequestSizer,
    SessionAnswerError,
    StoredObject,
    content_range,
    held_bytes_from_range,
    interpret_response,
    is_hash_refusal,
    redact_session_url,
    status_query_range,
    validate_chunk_size,
    verify_stored,
)
from airflow_provider_redivis.errors import (
    RedivisAPIError,
    RedivisConfigError,
    ResumableSessionExpiredError,
    UploadIntegrityError,
)

MiB = 1024 * 1024


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
def test_json_dialect_final_answer_is_read_from_the_body(code: int) -> None:
    status = interpret_response(code, {}, b'{"size": "10", "md5Hash": "abc", "crc32c": "AAAAAA=="}')
    assert status.complete
    assert status.offset == 10
    assert status.stored == StoredObject(
        size=10,
        hashes={"md5": "abc", "crc32c": "AAAAAA=="},
        metadata={"size": "10", "md5Hash": "abc", "crc32c": "AAAAAA=="},
    )


def test_xml_dialect_final_answer_is_read_from_the_headers() -> None:
    headers = {
        "X-Goog-Hash": "crc32c=n03x6A==,md5=Ojk9c3dhfxgoKVVHYwFbHQ==",
        "x-goog-stored-content-length": "3",
    }
    status = interpret_response(200, headers, b"")
    assert status.complete
    assert status.stored is not None
    assert status.stored.size == 3
    assert status.stored.hashes == {"crc32c": "n03x6A==", "md5": "Ojk9c3dhfxgoKVVHYwFbHQ=="}


@pytest.mark.parametrize(
    ("headers", "body"),
    [({}, b""), ({}, b"<html>ok</html>"), ({"x-goog-hash": "crc32c=AAAAAA=="}, b""), ({}, b'{"name": "x"}')],
)
def test_a_completing_answer_without_a_size_proves_nothing(headers: dict[str, str], body: bytes) -> None:
    status = interpret_response(200, headers, body)
    assert status.complete
    assert status.stored is not None
    assert status.stored.size is None
    assert status.offset == -1


@pytest.mark.parametrize("code", [404, 410])
def test_gone_session_is_its_own_error(code: int) -> None:
    with pytest.raises(ResumableSessionExpiredError, match="from byte 0"):
        interpret_response(code, {}, b"")


@pytest.mark.parametrize("code", [408, 429, 500, 502, 503, 504])
def test_transient_statuses_ask_for_a_status_query(code: int) -> None:
    with pytest.raises(SessionAnswerError) as info:
        interpret_response(code, {"Retry-After": "7"}, b"")
    assert info.value.status == code
    assert info.value.retry_after == 7.0


@pytest.mark.parametrize("code", [400, 401, 403, 409, 411, 413])
def test_other_client_errors_are_final(code: int) -> None:
    with pytest.raises(RedivisAPIError) as info:
        interpret_response(code, {}, b"bad chunk")
    assert info.value.status == code


@pytest.mark.parametrize("size", [CHUNK_UNIT, 64 * CHUNK_UNIT, 4096 * CHUNK_UNIT])
def test_chunk_sizes_in_256_kib_units_are_accepted(size: int) -> None:
    assert validate_chunk_size(size) == size


def test_no_chunk_size_means_sized_from_the_rate() -> None:
    assert validate_chunk_size(None) is None


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


def test_a_400_naming_the_hash_is_a_refusal_of_the_bytes() -> None:
    assert is_hash_refusal(
        400, b'{"error": {"message": "Provided CRC32C \\"abc\\" doesn\'t match calculated CRC32C"}}'
    )
    assert not is_hash_refusal(400, b"Bad Content-Range")
    assert not is_hash_refusal(503, b"md5")


# -- verify_stored: the size, and every hash both sides have -------------------------------------


def test_every_shared_hash_is_compared() -> None:
    stored = StoredObject(size=3, hashes={"crc32c": "C", "md5": "M"})
    assert verify_stored(stored, 3, {"crc32c": "C", "md5": "M"}, checksum="auto") == "size and crc32c and md5"
    with pytest.raises(UploadIntegrityError, match="md5"):
        verify_stored(stored, 3, {"crc32c": "C", "md5": "other"}, checksum="auto")
    with pytest.raises(UploadIntegrityError, match="crc32c"):
        verify_stored(stored, 3, {"crc32c": "other"}, checksum="auto")


def test_a_size_other_than_the_source_is_refused() -> None:
    with pytest.raises(UploadIntegrityError, match="stored 4 bytes but the source has 3"):
        verify_stored(StoredObject(size=4, hashes={"crc32c": "C"}), 3, {"crc32c": "C"}, checksum="auto")


def test_a_server_that_reports_no_hash_fails_with_the_option_to_accept_it() -> None:
    with pytest.raises(UploadIntegrityError, match="checksum=None"):
        verify_stored(StoredObject(size=3), 3, {"crc32c": "C"}, checksum="auto")
    assert verify_stored(StoredObject(size=3), 3, {}, checksum=None) == "size"


def test_an_earlier_tries_bytes_need_a_hash_even_when_checksum_none_was_chosen() -> None:
    # The transfer hashes a checksum=None resume with crc32c and names the bytes an earlier try sent.
    with pytest.raises(UploadIntegrityError, match="earlier try sent the first 2 bytes"):
        verify_stored(StoredObject(size=3), 3, {"crc32c": "C"}, checksum="auto", earlier=2)
    stored = StoredObject(size=3, hashes={"crc32c": "C"})
    assert verify_stored(stored, 3, {"crc32c": "C"}, checksum="auto", earlier=2) == "size and crc32c"


def test_checksum_none_still_checks_the_size() -> None:
    with pytest.raises(UploadIntegrityError):
        verify_stored(StoredObject(size=2), 3, {}, checksum=None)


def test_no_hash_in_common_is_not_proof() -> None:
    with pytest.raises(UploadIntegrityError, match="only"):
        verify_stored(StoredObject(size=3, hashes={"md5": "M"}), 3, {"crc32c": "C"}, checksum="crc32c")


# -- RequestSizer ---------------------------------------------------------------------------------


def test_a_fixed_chunk_size_is_kept_whatever_the_rate() -> None:
    sizer = RequestSizer(4 * CHUNK_UNIT)
    sizer.record(4 * CHUNK_UNIT, 0.001)
    assert sizer.next_size() == 4 * CHUNK_UNIT


def test_adaptive_requests_grow_towards_the_target_time_at_most_fourfold() -> None:
    sizer = RequestSizer()
    assert sizer.next_size() == FIRST_REQUEST_SIZE
    sizer.record(FIRST_REQUEST_SIZE, 0.001)  # a fast link: 32 GB/s
    assert sizer.next_size() == min(MAX_CHUNK_SIZE, FIRST_REQUEST_SIZE * MAX_GROWTH)
    for _ in range(5):
        sizer.record(sizer.next_size(), 0.001)
    assert sizer.next_size() == MAX_CHUNK_SIZE


def test_adaptive_requests_aim_at_the_target_seconds() -> None:
    sizer = RequestSizer()
    rate = 10 * MiB  # bytes per second
    for _ in range(6):
        size = sizer.next_size()
        sizer.record(size, size / rate)
    assert sizer.next_size() == int(rate * TARGET_REQUEST_SECONDS) // CHUNK_UNIT * CHUNK_UNIT
    assert sizer.next_size() % CHUNK_UNIT == 0


def test_adaptive_requests_on_a_slow_link_keep_a_floor() -> None:
    sizer = RequestSizer()
    sizer.record(FIRST_REQUEST_SIZE, 100.0)
    assert sizer.next_size() == 8 * MiB


def test_a_cut_request_sizes_the_next_to_the_rate_it_saw_never_larger() -> None:
    sizer = RequestSizer()
    sizer.record_failure(6 * MiB, 3.0)  # 2 MiB/s: 8 s is 16 MiB
    assert sizer.next_size() == 16 * MiB
    sizer.record_failure(16 * MiB, 0.001)  # a fast moment does not grow a size a cut just set
    assert sizer.next_size() == 16 * MiB


def test_after_a_cut_requests_follow_the_rate_below_the_8_mib_floor() -> None:
    sizer = RequestSizer()
    sizer.record_failure(MiB, 16.0)  # 64 KiB/s (0.5 Mbit/s): 8 s is 512 KiB
    assert sizer.next_size() == 2 * CHUNK_UNIT
    sizer.record(2 * CHUNK_UNIT, 8.0)  # a request that got through does not go back to 8 MiB
    assert sizer.next_size() == 2 * CHUNK_UNIT


def test_a_failure_with_nothing_sent_keeps_the_size_and_a_fixed_size_stays() -> None:
    sizer = RequestSizer()
    sizer.record_failure(0, 5.0)  # a refused connection: nothing learned about the rate
    assert sizer.next_size() == FIRST_REQUEST_SIZE
    fixed = RequestSizer(4 * CHUNK_UNIT)
    fixed.record_failure(CHUNK_UNIT, 100.0)
    assert fixed.next_size() == 4 * CHUNK_UNIT


def test_a_short_last_request_does_not_resize() -> None:
    sizer = RequestSizer()
    sizer.record(CHUNK_UNIT, 10.0)
    assert sizer.next_size() == FIRST_REQUEST_SIZE


def test_unknown_totals_keep_requests_small_enough_to_hold_in_memory() -> None:
    sizer = RequestSizer(unknown_total=True)
    for _ in range(6):
        sizer.record(sizer.next_size(), 0.001)
    assert sizer.next_size() == MAX_UNKNOWN_TOTAL_REQUEST_SIZE
