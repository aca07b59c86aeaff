"""Rows from a DB-API cursor as CSV bytes, batch by batch. Plain Python, no Airflow import.

Also what both encoders share: :class:`EncodeStats`, the column names, and the JSON form of dict and
list values; the Parquet encoder, which uses them, is in ``sql_parquet.py``.

Each encoder is a generator of byte blocks: the caller writes them to a file (staged mode) or hands
them to the upload engine through :class:`~airflow_provider_redivis.transfers.stream_reader.StreamReader`
(streamed mode). Memory is one ``fetchmany`` batch plus one block, whatever the size of the result.

CSV, the way it is written (and what :class:`EncodeStats` tells the upload):

- a header row with the column names, ``,`` between fields, ``\\n`` after each row;
- RFC 4180 quoting: a field holding ``,``, ``"``, ``\\r`` or ``\\n`` is quoted and its quotes doubled;
- NULL: an empty unquoted field by default, or ``null_marker`` unquoted; an empty string is ``""``
  (quoted), and a text equal to the null marker is quoted too, so neither reads as NULL;
- values: int as is; float as Python's shortest round-trip form (``inf``, ``nan`` for the special
  values); Decimal in plain notation (``0.0000001``, never ``1E-7``); bool ``true``/``false``; date,
  time and timestamp in ISO 8601 with a space before the time; a timestamp with a time zone converted
  to UTC and written with ``+00:00``; bytes (bytea, BLOB) as base64; UUID as text; dict and list
  (json, arrays) as JSON; timedelta as a number of seconds; anything else as ``str(value)``.
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import io
import json
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from airflow_provider_redivis.errors import RedivisConfigError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

#: Bytes gathered before a block is handed on.
BLOCK_SIZE = 1024 * 1024
#: Stands in for an empty string (or a text equal to the null marker) while the C writer runs; every
#: occurrence is then replaced by the quoted form. A batch whose own text holds it is written slowly.
_SENTINEL_EMPTY = "\x00"
_SENTINEL_MARKER = "\x01"
_NATIVE = frozenset({str, int, float, type(None)})


@dataclass
class EncodeStats:
    """What the encoder learnt while writing: what the upload needs to tell Redivis."""

    rows: int = 0
    bytes: int = 0
    columns: tuple[str, ...] = ()
    #: A quoted field holds a line break: Redivis must be told (``hasQuotedNewlines``).
    has_quoted_newlines: bool = False
    #: ``\n`` bytes seen in COPY output (rows + header + line breaks inside fields).
    newlines: int = 0
    #: The rows the server says its COPY wrote (its command tag), when it says.
    server_rows: int | None = None

    def settle_copy(self) -> None:
        """After a COPY: the rows the server counted; any ``\n`` beyond one per line was inside a field."""
        if self.server_rows is not None and self.server_rows >= 0:
            self.rows = self.server_rows
        else:
            self.rows = max(0, self.newlines - 1)
        if self.newlines > self.rows + 1:
            self.has_quoted_newlines = True


def validate_null_marker(marker: object) -> str:
    if marker is None:
        return ""
    if not isinstance(marker, str) or any(ch in marker for ch in ',"\r\n\x00\x01'):
        raise RedivisConfigError(
            f"null_marker must be a string without a comma, quote, line break or control character; got {marker!r}."
        )
    return marker


# -- values ------------------------------------------------------------------------------------------


def _decimal(value: Decimal) -> str:
    if value.is_nan():
        return "NaN"
    if value.is_infinite():
        return "Infinity" if value > 0 else "-Infinity"
    return format(value, "f")


def _datetime(value: dt.datetime) -> str:
    if value.tzinfo is not None and value.utcoffset() is not None:
        value = value.astimezone(dt.timezone.utc)
    return value.isoformat(sep=" ")


def _bytes(value: bytes | bytearray | memoryview) -> str:
    return base64.b64encode(bytes(value)).decode("ascii")


def json_text(value: Any) -> str:
    """dict, list and tuple values (json, arrays) as compact JSON text, in CSV and Parquet alike."""
    return json.dumps(value, default=str, ensure_ascii=False, separators=(",", ":"))


_CONVERTERS: dict[type, Callable[[Any], Any]] = {
    bool: lambda v: "true" if v else "false",
    Decimal: _decimal,
    dt.datetime: _datetime,
    dt.date: lambda v: v.isoformat(),
    dt.time: lambda v: v.isoformat(),
    dt.timedelta: lambda v: repr(v.total_seconds()),
    bytes: _bytes,
    bytearray: _bytes,
    memoryview: _bytes,
    uuid.UUID: str,
    dict: json_text,
    list: json_text,
    tuple: json_text,
}


def to_text(value: Any) -> Any:
    """One value as the CSV writer takes it: None, str, int or float stay; everything else becomes text."""
    kind = type(value)
    if kind in _NATIVE:
        return value
    convert = _CONVERTERS.get(kind)
    if convert is None:
        for base, candidate in _CONVERTERS.items():
            if isinstance(value, base):
                return candidate(value)
        return str(value)
    return convert(value)


def column_names(description: Sequence[Sequence[Any]] | None) -> tuple[str, ...]:
    if not description:
        raise RedivisConfigError(
            "The query returned no result set (cursor.description is empty): give a query that returns rows, "
            "such as a SELECT."
        )
    return tuple(str(column[0]) for column in description)


# -- CSV -----------------------------------------------------------------------------------------------


class _CsvBatchWriter:
    def __init__(self, null_marker: str) -> None:
        self.null_marker = null_marker
        self.buffer = io.StringIO()
        self.writer = csv.writer(self.buffer, lineterminator="\n", quoting=csv.QUOTE_MINIMAL, strict=True)
        self.marker_quoted = '"' + null_marker + '"'

    def header(self, names: Sequence[str]) -> str:
        self.writer.writerow(names)
        return self._take()

    def _take(self) -> str:
        text = self.buffer.getvalue()
        self.buffer.seek(0)
        self.buffer.truncate()
        return text

    def batch(self, rows: Sequence[Sequence[Any]]) -> str:
        """The batch as CSV text: the C writer does the quoting, columns are converted only where needed."""
        columns = list(zip(*rows, strict=True))
        substituted = 0
        changed = False
        for index, column in enumerate(columns):
            kinds = set(map(type, column))
            converted: Sequence[Any] = column
            if not kinds <= _NATIVE:
                converted = [to_text(v) for v in column]
                kinds = set(map(type, converted))
            if str in kinds:
                empties = converted.count("")
                markers = converted.count(self.null_marker) if self.null_marker else 0
                if empties or markers:
                    substituted += empties + markers
                    converted = [self._shield(v) for v in converted]
            if self.null_marker and type(None) in kinds:
                converted = [self.null_marker if v is None else v for v in converted]
            if converted is not column:
                columns[index] = tuple(converted)
                changed = True
        self.writer.writerows(zip(*columns, strict=True) if changed else rows)
        text = self._take()
        if "\r" in text:
            return self._slow(rows)  # the C writer quotes only the line terminator's \n, not a lone \r
        if substituted:
            found = text.count(_SENTINEL_EMPTY) + text.count(_SENTINEL_MARKER)
            if found != substituted:
                return self._slow(rows)  # the data itself holds a sentinel character
            text = text.replace(_SENTINEL_EMPTY, '""').replace(_SENTINEL_MARKER, self.marker_quoted)
        return text

    def _shield(self, value: Any) -> Any:
        if type(value) is not str:
            return value
        if value == "":
            return _SENTINEL_EMPTY
        if self.null_marker and value == self.null_marker:
            return _SENTINEL_MARKER
        return value

    def _slow(self, rows: Sequence[Sequence[Any]]) -> str:
        lines = []
        for row in rows:
            fields = []
            for value in row:
                if value is None:
                    fields.append(self.null_marker)
                    continue
                text = str(to_text(value))
                if text == "" or text == self.null_marker or any(ch in text for ch in ',"\r\n'):
                    text = '"' + text.replace('"', '""') + '"'
                fields.append(text)
            lines.append(",".join(fields) + "\n")
        return "".join(lines)


def csv_blocks(
    cursor: Any,
    *,
    fetch_size: int,
    null_marker: str = "",
    stats: EncodeStats | None = None,
    first_batch: Sequence[Sequence[Any]] | None = None,
) -> Iterator[bytes]:
    """The cursor's rows as UTF-8 CSV, in blocks of about :data:`BLOCK_SIZE`.

    ``first_batch``: rows already fetched (to learn the columns before anything else happens).
    """
    stats = stats if stats is not None else EncodeStats()
    writer = _CsvBatchWriter(null_marker)
    batch = list(first_batch) if first_batch is not None else cursor.fetchmany(fetch_size)
    stats.columns = column_names(cursor.description)
    pending = [writer.header(stats.columns).encode("utf-8")]
    held = len(pending[0])
    while batch:
        text = writer.batch(batch)
        stats.rows += len(batch)
        if not stats.has_quoted_newlines and (text.count("\n") > len(batch) or "\r" in text):
            stats.has_quoted_newlines = True
        data = text.encode("utf-8")
        pending.append(data)
        held += len(data)
        if held >= BLOCK_SIZE:
            block = b"".join(pending)
            stats.bytes += len(block)
            yield block
            pending, held = [], 0
        batch = cursor.fetchmany(fetch_size)
    if pending:
        block = b"".join(pending)
        stats.bytes += len(block)
        yield block


def copy_csv_blocks(chunks: Iterator[Any], stats: EncodeStats) -> Iterator[bytes]:
    """PostgreSQL's own ``COPY ... TO STDOUT (FORMAT csv, HEADER)`` output, gathered into blocks.

    The driver hands over one row at a time, so the work per row is an append; ``\\n`` bytes are
    counted per block (see :meth:`EncodeStats.settle_copy`); a ``\\r`` can only be data.
    """
    pending: list[Any] = []
    held = 0

    def gather() -> bytes:
        block = b"".join(pending)
        pending.clear()
        stats.newlines += block.count(b"\n")
        if not stats.has_quoted_newlines and b"\r" in block:
            stats.has_quoted_newlines = True
        stats.bytes += len(block)
        return block

    for chunk in chunks:
        pending.append(chunk)
        held += len(chunk)
        if held >= BLOCK_SIZE:
            yield gather()
            held = 0
    if pending:
        yield gather()
    stats.settle_copy()
