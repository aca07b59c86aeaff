"""Rows from a DB-API cursor as one Parquet file (pyarrow), handed on in blocks as pyarrow writes them.

A row group per ``fetchmany`` batch; the schema is the first batch's. Plain Python, no Airflow import;
pyarrow is imported only when a Parquet file is written.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from airflow_provider_redivis.errors import RedivisConfigError
from airflow_provider_redivis.transfers.sql_encoding import EncodeStats, column_names, json_text

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence


class _Sink:
    """A write-only file object for pyarrow that hands its bytes on instead of keeping them."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.position = 0
        self.closed = False

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self.parts.append(chunk)
        self.position += len(chunk)
        return len(chunk)

    def tell(self) -> int:
        return self.position

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def drain(self) -> bytes:
        data = b"".join(self.parts)
        self.parts = []
        return data


def _require_pyarrow() -> Any:
    try:
        import pyarrow as pa
        import pyarrow.parquet  # the submodule must be importable too
    except ImportError:
        raise RedivisConfigError(
            "file_format='parquet' needs pyarrow: pip install 'airflow-provider-redivis[parquet]'."
        ) from None
    return pa


def _arrow_value(value: Any) -> Any:
    if isinstance(value, memoryview):
        return bytes(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, (dict, list)) and not isinstance(value, bool):
        return json_text(value)
    return value


def parquet_blocks(
    cursor: Any,
    *,
    fetch_size: int,
    stats: EncodeStats | None = None,
    first_batch: Sequence[Sequence[Any]] | None = None,
    row_group_rows: int | None = None,
) -> Iterator[bytes]:
    """The cursor's rows as one Parquet file, a row group per batch, in blocks as pyarrow writes them.

    The schema is inferred from the first batch (a column that is all NULL there becomes string); a later
    value of another type fails with a message naming the column.
    """
    pa = _require_pyarrow()
    import pyarrow.parquet as pq

    stats = stats if stats is not None else EncodeStats()
    batch = list(first_batch) if first_batch is not None else cursor.fetchmany(fetch_size)
    stats.columns = column_names(cursor.description)
    names = stats.columns
    sink = _Sink()
    schema = None
    writer = None

    def arrays(rows: Sequence[Sequence[Any]]) -> list[Any]:
        columns = list(zip(*rows, strict=True)) if rows else [() for _ in names]
        out = []
        for index, column in enumerate(columns):
            values = [_arrow_value(v) for v in column]
            wanted = schema.field(index).type if schema is not None else None
            try:
                array = pa.array(values, type=wanted)
            except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as exc:
                raise RedivisConfigError(
                    f"Column {names[index]!r} changes type between batches ({exc}); cast it in the query."
                ) from exc
            if wanted is None and pa.types.is_null(array.type):
                array = pa.array(values, type=pa.string())
            out.append(array)
        return out

    while True:
        columns = arrays(batch)
        if schema is None:
            schema = pa.schema(
                [pa.field(name, array.type) for name, array in zip(names, columns, strict=True)]
            )
            writer = pq.ParquetWriter(sink, schema, compression="snappy")
        if batch and writer is not None:
            writer.write_table(pa.Table.from_arrays(columns, schema=schema), row_group_size=row_group_rows)
            stats.rows += len(batch)
        data = sink.drain()
        if data:
            stats.bytes += len(data)
            yield data
        if not batch:
            break
        batch = cursor.fetchmany(fetch_size)
        if not batch:
            break
    if writer is not None:
        writer.close()
    data = sink.drain()
    if data:
        stats.bytes += len(data)
        yield data
