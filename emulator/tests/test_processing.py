"""Upload processing: real row counts from delimited files, clear failures, table numRows by merge strategy."""

from __future__ import annotations

import gzip
import hashlib
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
from redivis_emulator import RedivisEmulator
from redivis_emulator.processing import DelimitedOptions, count_delimited_rows

from emulator.tests.conftest import TABLE, TIMEOUT, table_path

UploadBytes = Callable[..., dict[str, Any]]


def processed(emu: RedivisEmulator, upload_bytes: UploadBytes, data: bytes, **options: Any) -> dict[str, Any]:
    upload_bytes("f.csv", data, **options)
    return emu.wait_for_processing(TABLE, "f.csv", timeout=10)


def test_status_goes_queued_running_completed(tmp_path: Path) -> None:
    with (
        RedivisEmulator(tables=[TABLE], data_dir=tmp_path, processing_delay=0.3) as emu,
        requests.Session() as api,
    ):
        api.headers["Authorization"] = f"Bearer {emu.token}"
        api.post(
            f"{emu.api_url}{table_path()}/uploads",
            files={"metadata": (None, '{"name": "f.csv"}'), "data": ("f.csv", b"a\n1\n")},
            timeout=TIMEOUT,
        )
        seen: list[str | None] = []
        deadline = time.monotonic() + 10
        while not seen or seen[-1] not in ("completed", "failed"):
            assert time.monotonic() < deadline
            status = emu.get_upload(TABLE, "f.csv")["status"]
            if not seen or seen[-1] != status:
                seen.append(status)
            time.sleep(0.02)
        assert seen == ["queued", "running", "completed"]


def test_delimited_rows_size_and_hash_are_real(emu: RedivisEmulator, upload_bytes: UploadBytes) -> None:
    data = b"id,name\n" + b"".join(f"{i},n{i}\n".encode() for i in range(1000))
    upload = processed(emu, upload_bytes, data)
    assert upload["status"] == "completed"
    assert upload["numRows"] == 1000
    assert upload["size"] == len(data)
    assert upload["hash"] == hashlib.md5(data).hexdigest()
    assert upload["errorMessage"] is None


@pytest.mark.parametrize(
    ("data", "options", "rows"),
    [
        (b"a,b\n1,2\n3,4\n", {"hasHeaderRow": False}, 3),
        (b"a\tb\n1\t2\n", {}, 1),  # tab found by sniffing
        (b"a|b\n1|2\n3|4\n", {"delimiter": "|"}, 2),
        (b'a,b\n"1,5",2\n', {}, 1),  # a quoted delimiter
        (b"a,b\n'1,5',2\n", {"quoteCharacter": "'"}, 1),
        (b'a,b\n"say ""hi""",2\n', {}, 1),
        (b'a,b\n"say \\"hi\\"",2\n', {"escapeCharacter": "\\"}, 1),
        (b'a,b\n"two\nlines",2\n3,4\n', {"hasQuotedNewlines": True}, 2),
        (b"a,b,c\n1,2\n4,5,6\n", {"allowJaggedRows": True}, 2),
        (b"a,b\n1,2\n\n3,4\n", {}, 2),  # blank lines are no rows
        (b"a,b\r\n1,2\r\n", {}, 1),
        (b"a,b\n1,2,3\n4,5\n", {"skipBadRecords": True}, 1),
        (b"a,b\n", {}, 0),
    ],
)
def test_delimited_options(
    emu: RedivisEmulator, upload_bytes: UploadBytes, data: bytes, options: dict[str, Any], rows: int
) -> None:
    upload = processed(emu, upload_bytes, data, **options)
    assert upload["status"] == "completed", upload["errorMessage"]
    assert upload["numRows"] == rows


def test_skipped_bad_records_are_counted(emu: RedivisEmulator, upload_bytes: UploadBytes) -> None:
    upload = processed(emu, upload_bytes, b"a,b\n1,2,3\n4,5\n6\n", skipBadRecords=True)
    assert (upload["numRows"], upload["badRecordsCount"]) == (1, 2)


@pytest.mark.parametrize(
    ("data", "options", "message"),
    [
        (b"a,b\n1,2\n3,4,5\n", {}, "Row 2 (line 3) has 3 columns, expected 2"),
        (b"a,b,c\n1,2\n", {}, "allowJaggedRows"),
        (b"a,b\n1,2,3\n", {"allowJaggedRows": True}, "has 3 columns, expected 2"),
        (b'a,b\n"two\nlines",2\n', {}, "hasQuotedNewlines"),
        (b'a,b\n"never closed,2\n', {}, "could not be parsed"),
        (b'a,b\n"x"y,2\n', {}, "Line 2"),
        (b"a,b\n\xff\xfe,2\n", {}, "not UTF-8"),
    ],
)
def test_malformed_delimited_files_fail_clearly(
    emu: RedivisEmulator, upload_bytes: UploadBytes, data: bytes, options: dict[str, Any], message: str
) -> None:
    upload = processed(emu, upload_bytes, data, **options)
    assert upload["status"] == "failed"
    assert message in upload["errorMessage"]
    assert upload["numRows"] is None


def test_gzipped_delimited_file(emu: RedivisEmulator, upload_bytes: UploadBytes) -> None:
    upload_bytes("f.csv.gz", gzip.compress(b"a,b\n1,2\n3,4\n"))
    upload = emu.wait_for_processing(TABLE, "f.csv.gz")
    assert (upload["type"], upload["numRows"]) == ("delimited", 2)


def test_other_types_complete_with_real_size_and_hash(
    emu: RedivisEmulator, upload_bytes: UploadBytes
) -> None:
    data = os.urandom(5000)
    upload_bytes("blob.bin", data, type="stream")
    upload = emu.wait_for_processing(TABLE, "blob.bin")
    assert upload["status"] == "completed"
    assert upload["numRows"] is None
    assert (upload["size"], upload["hash"]) == (5000, hashlib.md5(data).hexdigest())


def test_ndjson_counts_lines(emu: RedivisEmulator, upload_bytes: UploadBytes) -> None:
    upload_bytes("f.ndjson", b'{"a": 1}\n{"a": 2}\n\n')
    upload = emu.wait_for_processing(TABLE, "f.ndjson")
    assert (upload["type"], upload["numRows"]) == ("ndjson", 2)


def test_append_adds_rows_of_completed_uploads(
    emu: RedivisEmulator, api: requests.Session, upload_bytes: UploadBytes
) -> None:
    upload_bytes("a.csv", b"x\n1\n2\n")
    upload_bytes("b.csv", b"x\n3\n")
    upload_bytes("bad.csv", b"x,y\n1\n")
    for name in ("a.csv", "b.csv", "bad.csv"):
        emu.wait_for_processing(TABLE, name)
    table = api.get(f"{emu.api_url}{table_path()}", timeout=TIMEOUT).json()
    assert table["uploadMergeStrategy"] == "append"
    assert table["numRows"] == 3


def test_replace_stacks_a_versions_uploads_and_drops_what_it_inherited(
    emu: RedivisEmulator, api: requests.Session, upload_bytes: UploadBytes
) -> None:
    daily = "test_owner.test_dataset.daily"
    emu.create_table(daily, merge_strategy="replace")
    upload_bytes("north.csv", b"x\n1\n2\n3\n", table=daily)
    upload_bytes("south.csv", b"x\n1\n2\n", table=daily)
    for name in ("north.csv", "south.csv"):
        emu.wait_for_processing(daily, name)
    assert emu.get_table(daily)["numRows"] == 5  # the uploads of one version stack

    datasets = f"{emu.api_url}/datasets/test_owner.test_dataset"
    api.post(f"{datasets}/versions/next/release", json={}, timeout=TIMEOUT).raise_for_status()
    deadline = time.monotonic() + 20
    while api.get(f"{datasets}/versions/current", timeout=TIMEOUT).status_code != 200:
        assert time.monotonic() < deadline, "the release never finished"
        time.sleep(0.05)
    api.post(f"{datasets}/versions", timeout=TIMEOUT).raise_for_status()
    assert emu.get_table(daily)["numRows"] == 5  # a new version starts with what it inherited
    upload_bytes("tuesday.csv", b"x\n1\n", table=daily)
    emu.wait_for_processing(daily, "tuesday.csv")
    assert emu.get_table(daily)["numRows"] == 1  # replace: the new version holds only its own uploads


def test_parser_streams_a_file_directly(tmp_path: Path) -> None:
    """The parser without HTTP: a few hundred thousand rows, counted exactly."""
    path = tmp_path / "big.csv"
    with open(path, "w", encoding="utf-8", newline="") as fh:
        fh.write("a,b,c\n")
        for i in range(200_000):
            fh.write(f"{i},{i * 2},row {i}\n")
    result = count_delimited_rows(path, DelimitedOptions())
    assert (result.num_rows, result.error) == (200_000, None)
