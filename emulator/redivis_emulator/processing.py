"""Upload processing and version releases: the background work between ``queued`` and ``completed``.

A delimited file is parsed for real, streaming with :mod:`csv`, so ``numRows`` is the file's row
count and a malformed file fails with an ``errorMessage`` that says which row and why. Other
types complete with ``numRows`` null (ndjson: its non-blank lines), ``size`` and ``hash`` real.
"""

from __future__ import annotations

import csv
import gzip
import logging
import threading
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

from redivis_emulator.catalog import now_ms
from redivis_emulator.transfers import fetch

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from redivis_emulator.catalog import Catalog, Upload, Version

log = logging.getLogger(__name__)

_GZIP_MAGIC = b"\x1f\x8b"
_CANDIDATE_DELIMITERS = (",", "\t", "|", ";")
#: How often (rows) a long parse checks whether the emulator is stopping.
_STOP_CHECK_EVERY = 50_000


class ProcessingStopped(Exception):
    """The emulator stopped while a file was being parsed."""


@dataclass(frozen=True)
class ParseResult:
    num_rows: int | None
    bad_records: int | None = None
    error: str | None = None


@dataclass(frozen=True)
class DelimitedOptions:
    delimiter: str | None = None
    has_header_row: bool = True
    quote_character: str = '"'
    escape_character: str | None = None
    allow_jagged_rows: bool = False
    has_quoted_newlines: bool = False
    skip_bad_records: bool = False

    @classmethod
    def from_upload_options(cls, options: dict[str, Any]) -> DelimitedOptions:
        escape = options.get("escapeCharacter")
        quote = options.get("quoteCharacter") or '"'
        return cls(
            delimiter=options.get("delimiter") or None,
            # The official client defaults hasHeaderRow to True; so does the emulator.
            has_header_row=options.get("hasHeaderRow") is not False,
            quote_character=quote,
            escape_character=None if escape in (None, "", quote) else escape,
            allow_jagged_rows=bool(options.get("allowJaggedRows")),
            has_quoted_newlines=bool(options.get("hasQuotedNewlines")),
            skip_bad_records=bool(options.get("skipBadRecords")),
        )


def _open_text(path: Path) -> IO[str]:
    """The file as UTF-8 text, gunzipped when it is gzip (Redivis accepts compressed delimited files)."""
    with open(path, "rb") as probe:
        magic = probe.read(2)
    if magic == _GZIP_MAGIC:
        return gzip.open(path, "rt", encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def _sniff_delimiter(path: Path) -> str:
    with _open_text(path) as fh:
        first = fh.readline(64 * 1024)
    counts = {d: first.count(d) for d in _CANDIDATE_DELIMITERS}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] > 0 else ","


def count_delimited_rows(
    path: Path, options: DelimitedOptions, should_stop: Callable[[], bool] | None = None
) -> ParseResult:
    """Parse the whole file; rows, bad records, or the first error a data engineer can act on."""
    try:
        delimiter = options.delimiter or _sniff_delimiter(path)
    except UnicodeDecodeError:
        return ParseResult(
            None, error="The file is not UTF-8 text (or gzip of it); a delimited upload must be."
        )
    rows = 0
    bad = 0
    expected: int | None = None
    try:
        with _open_text(path) as fh:
            reader = csv.reader(
                fh,
                delimiter=delimiter,
                quotechar=options.quote_character,
                escapechar=options.escape_character,
                doublequote=options.escape_character is None,
                strict=True,
            )
            records: Iterator[list[str]] = iter(reader)
            last_line = 0
            while True:
                try:
                    row = next(records)
                except StopIteration:
                    break
                except csv.Error as exc:
                    if options.skip_bad_records and reader.line_num > last_line:
                        bad += 1
                        last_line = reader.line_num
                        continue
                    return ParseResult(
                        None,
                        bad,
                        f"Line {reader.line_num}: the row could not be parsed ({exc}). Check the "
                        "quoteCharacter and escapeCharacter, or set skipBadRecords to drop bad rows.",
                    )
                spans = reader.line_num - last_line
                last_line = reader.line_num
                if not row:
                    continue  # a blank line is no row
                if expected is None:
                    expected = len(row)
                    if options.has_header_row:
                        continue
                problem = None
                if spans > 1 and not options.has_quoted_newlines:
                    problem = (
                        f"Row {rows + bad + 1} (line {reader.line_num - spans + 1}) has a newline inside a "
                        "quoted field; set hasQuotedNewlines to accept it."
                    )
                elif len(row) > expected or (len(row) < expected and not options.allow_jagged_rows):
                    problem = (
                        f"Row {rows + bad + 1} (line {reader.line_num}) has {len(row)} columns, expected "
                        f"{expected}. Fix the file, or set "
                        + (
                            "allowJaggedRows (for missing trailing columns) or "
                            if len(row) < expected
                            else ""
                        )
                        + "skipBadRecords."
                    )
                if problem is not None:
                    if options.skip_bad_records:
                        bad += 1
                        continue
                    return ParseResult(None, bad, problem)
                rows += 1
                if rows % _STOP_CHECK_EVERY == 0 and should_stop is not None and should_stop():
                    raise ProcessingStopped()
    except UnicodeDecodeError as exc:
        return ParseResult(
            None,
            bad,
            f"The file is not UTF-8 text (byte offset {exc.start} of a block); a delimited upload must be.",
        )
    except (OSError, EOFError) as exc:
        return ParseResult(None, bad, f"The file could not be read: {exc}.")
    return ParseResult(rows, bad)


def count_lines(path: Path, should_stop: Callable[[], bool] | None = None) -> ParseResult:
    """Newline-delimited formats: one row per non-blank line."""
    rows = 0
    with open(path, "rb") as fh:
        for index, line in enumerate(fh):
            if line.strip():
                rows += 1
            if index % _STOP_CHECK_EVERY == 0 and should_stop is not None and should_stop():
                raise ProcessingStopped()
    return ParseResult(rows, 0)


def process_file(
    path: Path | None, upload_type: str | None, options: dict[str, Any], should_stop: Callable[[], bool]
) -> ParseResult:
    if path is None:
        return ParseResult(None)
    if upload_type == "delimited":
        return count_delimited_rows(path, DelimitedOptions.from_upload_options(options), should_stop)
    if upload_type in ("ndjson", "geojsonl"):
        return count_lines(path, should_stop)
    return ParseResult(None)


class Processor:
    """Drives uploads and releases through their states on daemon threads."""

    def __init__(self, catalog: Catalog, delay: float, stop: threading.Event) -> None:
        self.catalog = catalog
        self.delay = delay
        self.stop = stop
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=self._guard(target), name=name, daemon=True)
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
        thread.start()

    def _guard(self, target: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                target()
            except ProcessingStopped:
                pass
            except Exception:
                log.exception("Redivis emulator: background processing crashed")

        return run

    def join(self, timeout: float) -> None:
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(timeout)

    def _wait(self) -> None:
        if self.stop.wait(self.delay):
            raise ProcessingStopped()

    def start_upload(self, upload: Upload, fail_message: str | None = None) -> None:
        if upload.status is None:
            return  # no content, nothing to process
        upload.fail_message = fail_message
        self._spawn(lambda: self._run_upload(upload), f"redivis-emulator-upload-{upload.id}")

    def _run_upload(self, upload: Upload) -> None:
        # queued -> running -> completed | failed, one processing_delay per step.
        self._wait()
        with self.catalog.lock:
            if upload.deleted:
                return
            upload.status = "running"
            upload.updated_at = now_ms()
        if upload.fail_message is not None:
            result = ParseResult(None, None, upload.fail_message)
        else:
            result = self._process(upload)
        self._wait()
        with self.catalog.lock:
            if upload.deleted:
                return
            upload.updated_at = now_ms()
            upload.bad_records = result.bad_records
            if result.error is not None:
                upload.status = "failed"
                upload.error_message = result.error
            else:
                upload.status = "completed"
                upload.num_rows = result.num_rows
                upload.completed_seq = self.catalog.next_completion()
                upload.table.updated_at = upload.updated_at

    def _process(self, upload: Upload) -> ParseResult:
        if upload.options.get("transferSpecification") is not None:
            # Redivis fetches the source while the upload runs: what it cannot read fails the upload.
            error = fetch(self.catalog, upload)
            if error is not None:
                return ParseResult(None, None, error)
            if upload.copied_rows is not None:
                return ParseResult(upload.copied_rows, 0)
        return process_file(upload.path, upload.type, upload.options, self.stop.is_set)

    def start_release(self, version: Version, fail_message: str | None = None) -> None:
        self._spawn(
            lambda: self._run_release(version, fail_message), f"redivis-emulator-release-{version.id}"
        )

    def _run_release(self, version: Version, fail_message: str | None) -> None:
        # Release is asynchronous: status queued -> running -> completed (isReleased) or failed.
        self._wait()
        with self.catalog.lock:
            version.release_status = "running"
        self._wait()
        with self.catalog.lock:
            if fail_message is not None:
                version.release_status = "failed"
                version.release_error = fail_message
                return
            version.release_status = "completed"
            version.released = True
            version.released_at = now_ms()
