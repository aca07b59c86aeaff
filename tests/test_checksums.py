"""Checksums of the source: each byte hashed once, in Cloud Storage's encoding."""

from __future__ import annotations

import base64
import hashlib
import logging

import google_crc32c
import pytest

from airflow_provider_redivis.engine import checksums
from airflow_provider_redivis.engine.checksums import (
    SourceChecksums,
    algorithms_for,
    crc32c_combine,
    goog_hash_header,
    md5_of,
    parse_goog_hash,
    validate_checksum,
)
from airflow_provider_redivis.errors import RedivisConfigError, SourceChangedError

DATA = bytes(range(256)) * 4096


def crc32c_b64(data: bytes) -> str:
    return base64.b64encode(google_crc32c.Checksum(data).digest()).decode()


def test_each_byte_is_hashed_once_however_often_a_range_is_sent_again() -> None:
    sums = SourceChecksums(("crc32c", "md5"))
    sums.update(0, DATA[:300_000])
    sums.update(262_144, DATA[262_144:600_000])  # a re-sent range overlapping what was hashed
    sums.update(600_000, DATA[600_000:])
    assert sums.digests() == {
        "crc32c": crc32c_b64(DATA),
        "md5": base64.b64encode(hashlib.md5(DATA).digest()).decode(),
    }


def test_a_gap_is_refused() -> None:
    sums = SourceChecksums(("crc32c",))
    sums.update(0, b"abc")
    with pytest.raises(ValueError, match="only 3 bytes"):
        sums.update(5, b"x")


def test_crc32c_is_encoded_as_cloud_storage_reports_it() -> None:
    # Cloud Storage documents crc32c of "hello world" as yZRlqg== (big-endian, base64).
    sums = SourceChecksums(("crc32c",))
    sums.update(0, b"hello world")
    assert sums.digests()["crc32c"] == "yZRlqg=="


def read_at(data: bytes):
    return lambda offset, length: data[offset : offset + length]


def test_hash_range_reads_the_local_source() -> None:
    sums = SourceChecksums(("crc32c",))
    sums.hash_range(read_at(DATA), len(DATA))
    assert sums.digests()["crc32c"] == crc32c_b64(DATA)
    with pytest.raises(SourceChangedError, match="changed while being read"):
        SourceChecksums(("crc32c",)).hash_range(read_at(DATA[:10]), 20)


def test_md5_of_a_prefix() -> None:
    assert md5_of(read_at(DATA), 1000) == base64.b64encode(hashlib.md5(DATA[:1000]).digest()).decode()


@pytest.mark.parametrize("split", [0, 1, 7, 255, 4096, 300_001, len(DATA) - 1, len(DATA)])
def test_crc32c_of_two_parts_combines_to_the_whole(split: int) -> None:
    head, tail = DATA[:split], DATA[split:]
    combined = crc32c_combine(google_crc32c.value(head), google_crc32c.value(tail), len(tail))
    assert combined == google_crc32c.value(DATA)


def test_a_tail_hashed_apart_joins_the_running_checksum() -> None:
    sums = SourceChecksums(("crc32c",))
    sums.update(0, DATA[:1000])
    sums.append_crc32c(google_crc32c.value(DATA[1000:]), len(DATA) - 1000)
    assert sums.position == len(DATA)
    assert sums.digests()["crc32c"] == crc32c_b64(DATA)
    with pytest.raises(ValueError, match="crc32c-only"):
        SourceChecksums(("md5", "crc32c")).append_crc32c(0, 1)


def test_auto_is_crc32c_with_the_c_extension() -> None:
    assert checksums.crc32c_is_fast()
    assert algorithms_for("auto") == ("crc32c",)
    assert algorithms_for("crc32c") == ("crc32c",)
    assert algorithms_for("md5") == ("md5", "crc32c")
    assert algorithms_for(None) == ()


def test_auto_falls_back_to_md5_with_one_log_line(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(google_crc32c, "implementation", "python")
    monkeypatch.setattr(checksums, "_warned_no_c_extension", False)
    with caplog.at_level(logging.WARNING, logger=checksums.__name__):
        assert algorithms_for("auto") == ("md5",)
        assert algorithms_for("auto") == ("md5",)
    assert len([r for r in caplog.records if "md5 instead" in r.getMessage()]) == 1


@pytest.mark.parametrize("bad", ["sha256", "CRC32C", True, 0, ""])
def test_unknown_checksum_options_are_refused(bad: object) -> None:
    with pytest.raises(RedivisConfigError, match="checksum must be one of 'auto', 'crc32c', 'md5' or None"):
        validate_checksum(bad)


def test_goog_hash_header_round_trip() -> None:
    header = goog_hash_header({"md5": "M==", "crc32c": "C=="})
    assert header == "crc32c=C==,md5=M=="
    assert parse_goog_hash(header) == {"crc32c": "C==", "md5": "M=="}
    assert parse_goog_hash("crc32c=C==, md5=M==, other=x") == {"crc32c": "C==", "md5": "M=="}
    assert parse_goog_hash(None) == {}
