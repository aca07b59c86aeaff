"""The CSV and Parquet encoders and the stream reader, without a database or a network."""

from __future__ import annotations

import csv
import datetime as dt
import io
import uuid
from decimal import Decimal
from typing import Any

import pytest

from airflow_provider_redivis.errors import RedivisConfigError
from airflow_provider_redivis.transfers.sql_encoding import (
    BLOCK_SIZE,
    EncodeStats,
    csv_blocks,
    to_text,
    validate_null_marker,
)
from airflow_provider_redivis.transfers.sql_parquet import parquet_blocks
from airflow_provider_redivis.transfers.stream_reader import StreamReader, StreamRewindError


class ListCursor:
    """A DB-API cursor over a list, fetchmany only; counts its fetches."""

    def __init__(self, columns: list[str], rows: list[tuple[Any, ...]]) -> None:
        self.description = [(name, None, None, None, None, None, None) for name in columns]
        self._rows = rows
        self._at = 0
        self.fetches = 0

    def fetchmany(self, size: int) -> list[tuple[Any, ...]]:
        self.fetches += 1
        batch = self._rows[self._at : self._at + size]
        self._at += len(batch)
        return batch


def encode(
    rows: list[tuple[Any, ...]], columns: list[str] | None = None, **kwargs: Any
) -> tuple[str, EncodeStats]:
    stats = EncodeStats()
    cursor = ListCursor(columns or [f"c{i}" for i in range(len(rows[0]) if rows else 1)], rows)
    data = b"".join(csv_blocks(cursor, fetch_size=kwargs.pop("fetch_size", 2), stats=stats, **kwargs))
    return data.decode("utf-8"), stats


def test_csv_quotes_as_rfc_4180_and_keeps_null_apart_from_empty_text() -> None:
    rows = [
        (1, "plain", None),
        (2, "", "a,b"),
        (3, 'say "hi"', "line\nbreak"),
        (4, "cr\rhere", "  spaced  "),
    ]
    text, stats = encode(rows, ["id", "name", "note"])
    assert text == (
        'id,name,note\n1,plain,\n2,"","a,b"\n3,"say ""hi""","line\nbreak"\n4,"cr\rhere",  spaced  \n'
    )
    assert stats.rows == 4
    assert stats.has_quoted_newlines
    assert stats.columns == ("id", "name", "note")
    assert stats.bytes == len(text.encode())
    parsed = list(csv.reader(io.StringIO(text, newline="")))
    assert parsed[1:] == [
        ["1", "plain", ""],
        ["2", "", "a,b"],
        ["3", 'say "hi"', "line\nbreak"],
        ["4", "cr\rhere", "  spaced  "],
    ]


def test_no_line_break_in_any_field_means_no_quoted_newlines() -> None:
    _, stats = encode([(1, "a"), (2, "b,c"), (3, 'q"')])
    assert not stats.has_quoted_newlines


def test_a_null_marker_is_written_unquoted_and_a_text_equal_to_it_quoted() -> None:
    text, _ = encode([(None, "NULL"), ("", None), (1.5, "x")], ["a", "b"], null_marker="NULL")
    assert text == 'a,b\nNULL,"NULL"\n"",NULL\n1.5,x\n'


@pytest.mark.parametrize("marker", ["a,b", 'q"', "\n", "x\x00"])
def test_a_null_marker_that_csv_would_have_to_quote_is_refused(marker: str) -> None:
    with pytest.raises(RedivisConfigError, match="null_marker"):
        validate_null_marker(marker)


def test_text_that_holds_the_placeholder_characters_is_still_written_exactly() -> None:
    rows = [("", "nul\x00inside"), ("\x01", "")]
    text, _ = encode(rows, ["a", "b"])
    assert text == 'a,b\n"",nul\x00inside\n\x01,""\n'


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, "true"),
        (False, "false"),
        (Decimal("0.0000000000"), "0.0000000000"),
        (Decimal("-1E-7"), "-0.0000001"),
        (Decimal("1E+3"), "1000"),
        (Decimal("NaN"), "NaN"),
        (dt.date(2026, 1, 31), "2026-01-31"),
        (dt.datetime(2026, 1, 31, 12, 34, 56, 123456), "2026-01-31 12:34:56.123456"),
        (
            dt.datetime(2026, 1, 31, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=2))),
            "2026-01-31 10:00:00+00:00",
        ),
        (dt.time(23, 59, 1), "23:59:01"),
        (dt.timedelta(days=1, seconds=1.5), "86401.5"),
        (b"\x00\xff", "AP8="),
        (memoryview(b"ab"), "YWI="),
        (uuid.UUID(int=1), "00000000-0000-0000-0000-000000000001"),
        ({"k": [1, "é"]}, '{"k":[1,"é"]}'),
        ([1, None], "[1,null]"),
        (7, 7),
        (2.5, 2.5),
        ("s", "s"),
        (None, None),
    ],
)
def test_values_become_text_the_documented_way(value: Any, expected: Any) -> None:
    assert to_text(value) == expected


def test_an_empty_result_is_the_header_alone() -> None:
    text, stats = encode([], ["a", "b"])
    assert text == "a,b\n"
    assert stats.rows == 0


def test_blocks_are_about_a_mebibyte_and_memory_is_one_batch() -> None:
    rows = [(i, "x" * 100) for i in range(30_000)]
    cursor = ListCursor(["i", "s"], rows)
    blocks = list(csv_blocks(cursor, fetch_size=1000))
    assert len(blocks) >= 2
    assert all(len(b) < BLOCK_SIZE + 200 * 1000 for b in blocks)
    assert cursor.fetches == 31  # 30 batches and the empty one that ends it


def test_a_query_without_a_result_set_says_so() -> None:
    cursor = ListCursor([], [])
    cursor.description = None  # type: ignore[assignment]
    with pytest.raises(RedivisConfigError, match="returned no result set"):
        list(csv_blocks(cursor, fetch_size=10))


def test_parquet_round_trips_and_keeps_the_types() -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    pa = pytest.importorskip("pyarrow")
    rows = [
        (1, "a", Decimal("1.50"), dt.date(2026, 1, 1), None, b"\x00"),
        (2, None, Decimal("2.25"), None, 3.5, None),
        (3, "c\nd", None, dt.date(2026, 1, 3), None, b"z"),
    ]
    stats = EncodeStats()
    data = b"".join(
        parquet_blocks(ListCursor(["i", "s", "n", "d", "f", "raw"], rows), fetch_size=2, stats=stats)
    )
    table = pq.read_table(pa.BufferReader(data))
    assert table.column_names == ["i", "s", "n", "d", "f", "raw"]
    assert [tuple(r.values()) for r in table.to_pylist()] == rows
    assert stats.rows == 3
    assert stats.bytes == len(data)
    assert table.schema.field("f").type == pa.float64()  # all NULL in the first batch: typed by the second
    assert table.schema.field("n").type == pa.decimal128(3, 2)


def test_parquet_of_an_empty_result_has_the_columns_and_no_rows() -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    pa = pytest.importorskip("pyarrow")
    data = b"".join(parquet_blocks(ListCursor(["a", "b"], []), fetch_size=10))
    table = pq.read_table(pa.BufferReader(data))
    assert table.column_names == ["a", "b"]
    assert table.num_rows == 0


def test_parquet_names_a_column_whose_type_changes() -> None:
    pytest.importorskip("pyarrow")
    rows = [(1,), (2,), ("three",)]
    with pytest.raises(RedivisConfigError, match="Column 'x' changes type"):
        list(parquet_blocks(ListCursor(["x"], rows), fetch_size=2))


# -- the stream reader ---------------------------------------------------------------------------


def _blocks(data: bytes, size: int) -> Any:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def test_the_reader_serves_the_engines_pattern_within_one_request() -> None:
    data = bytes(range(256)) * 4096  # 1 MiB
    reader = StreamReader(_blocks(data, 10_000))
    request = 256 * 1024
    # The engine: seek to the offset, read a request, read one byte more to know whether it is the last.
    reader.seek(0)
    first = reader.read(request)
    assert first == data[:request]
    assert reader.read(1) == data[request : request + 1]
    # A failed request: the server kept half of it; seek back within the request.
    reader.release(request // 2)
    reader.seek(request // 2)
    assert reader.read(request) == data[request // 2 : request // 2 + request]
    assert reader.read(1)
    offset = request // 2 + request
    reader.release(offset)
    while True:
        reader.seek(offset)
        chunk = reader.read(request)
        if len(chunk) < request or not reader.read(1):
            # The last request: the engine peeks at the end, then seeks back to send the body.
            reader.seek(offset + len(chunk))
            assert reader.read(1) == b""
            reader.seek(offset)
            assert reader.read(len(chunk)) == chunk
            offset += len(chunk)
            break
        offset += len(chunk)
        reader.release(offset)
    assert offset == len(data)
    assert reader.peak_buffered <= request + 1 + 10_000
    with pytest.raises(StreamRewindError, match="go back to byte 0"):
        reader.seek(0)


def test_the_reader_pulls_blocks_only_as_reads_need_them() -> None:
    pulled = []

    def blocks() -> Any:
        for i in range(100):
            pulled.append(i)
            yield b"x" * 1000

    reader = StreamReader(blocks())
    reader.read(2500)
    assert pulled == [0, 1, 2]
    assert reader.tell() == 2500
