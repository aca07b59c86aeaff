"""The resumable-upload protocol: plain Python, no Airflow.

Redivis hands out Google Cloud Storage resumable-session URLs, so the rules here are Cloud Storage's
(see ``createResumableUpload.txt``):

- every chunk but the last is a multiple of 256 KiB;
- ``308`` answers a chunk; its ``Range: bytes=0-n`` says the server holds n+1 bytes, and no
  ``Range`` means it holds nothing. The server's count decides the next offset, never ours;
- after a request that got no answer, or 408/429/5xx, an empty ``PUT`` with
  ``Content-Range: bytes */total`` asks what the server holds;
- ``200``/``201`` means the object is complete; ``404``/``410`` means the session is gone.

Pure functions build requests and read responses (:func:`content_range`, :func:`next_offset_from`,
:func:`interpret_response`); :class:`ResumableSession` drives them over a ``requests.Session``.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import IO, Any
from urllib.parse import urlsplit

import requests

from airflow_provider_redivis.errors import (
    RedivisAPIError,
    RedivisConfigError,
    ResumableSessionExpiredError,
    SourceChangedError,
    UploadIntegrityError,
    UploadInterruptedError,
)
from airflow_provider_redivis.retry import (
    RetryPolicy,
    is_retryable_error,
    is_retryable_status,
    parse_retry_after,
)

log = logging.getLogger(__name__)

#: Cloud Storage accepts intermediate chunks only in multiples of this.
CHUNK_UNIT = 256 * 1024
#: Chosen from ``benchmarks/``: see README "Benchmarks".
DEFAULT_CHUNK_SIZE = 64 * 1024 * 1024
MAX_CHUNK_SIZE = 1024 * 1024 * 1024
#: How much of the source is read at a time when re-hashing what an earlier try sent.
_HASH_READ_SIZE = 8 * 1024 * 1024


def validate_chunk_size(chunk_size: object) -> int:
    """A positive multiple of 256 KiB, at most 1 GiB; anything else is a configuration error."""
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int):
        raise RedivisConfigError(f"chunk_size must be an integer number of bytes, got {chunk_size!r}.")
    if chunk_size < CHUNK_UNIT or chunk_size % CHUNK_UNIT or chunk_size > MAX_CHUNK_SIZE:
        suggestion = max(CHUNK_UNIT, min(MAX_CHUNK_SIZE, (chunk_size // CHUNK_UNIT) * CHUNK_UNIT))
        raise RedivisConfigError(
            f"chunk_size={chunk_size} is not allowed: Cloud Storage needs a multiple of 256 KiB "
            f"({CHUNK_UNIT} bytes) between 256 KiB and 1 GiB. Use for example {suggestion}."
        )
    return chunk_size


def redact_session_url(url: str) -> str:
    """A session URL is its own credential: keep the origin and a hint of the path, drop the rest."""
    parts = urlsplit(url)
    path = parts.path
    shown = path if len(path) <= 24 else path[:20] + "…"
    return f"{parts.scheme}://{parts.netloc}{shown}{'?…' if parts.query else ''}"


def content_range(first: int, last: int, total: int | None) -> str:
    """``bytes first-last/total`` for a chunk; ``/*`` while the total is unknown."""
    return f"bytes {first}-{last}/{'*' if total is None else total}"


def status_query_range(total: int | None) -> str:
    """The Content-Range of a status query: ``bytes */total`` (``bytes */*`` when unknown)."""
    return f"bytes */{'*' if total is None else total}"


def held_bytes_from_range(range_header: str | None) -> int:
    """How many bytes a 308's ``Range`` says the server holds: ``bytes=0-n`` → n+1; none → 0."""
    if not range_header:
        return 0  # 308 without Range: the server holds nothing yet.
    value = range_header.strip()
    if not value.startswith("bytes=0-"):
        raise RedivisAPIError(308, f"the upload server sent an unreadable Range header {value!r}")
    try:
        return int(value[len("bytes=0-") :]) + 1
    except ValueError:
        raise RedivisAPIError(308, f"the upload server sent an unreadable Range header {value!r}") from None


@dataclass(frozen=True)
class SessionStatus:
    """What the server said: complete (with Cloud Storage's object metadata), or how much it holds."""

    complete: bool
    offset: int
    metadata: Mapping[str, Any] = field(default_factory=dict)


class _TransientSessionError(Exception):
    """A chunk or status query that deserves a status query and another go (408, 429, 5xx)."""

    def __init__(self, status: int, retry_after: float | None) -> None:
        super().__init__(f"upload server answered {status}")
        self.status = status
        self.retry_after = retry_after


def interpret_response(status: int, headers: Mapping[str, str], body: bytes) -> SessionStatus:
    """Turn one response from a session URL into the next step; raise for what cannot continue."""
    if status == 308:
        return SessionStatus(complete=False, offset=held_bytes_from_range(headers.get("Range")))
    if status in (200, 201):
        metadata: dict[str, Any] = {}
        if body:
            try:
                parsed = json.loads(body)
            except ValueError:
                parsed = None
            if isinstance(parsed, dict):
                metadata = parsed
        size = metadata.get("size")
        return SessionStatus(complete=True, offset=int(size) if size is not None else -1, metadata=metadata)
    if status in (404, 410):
        raise ResumableSessionExpiredError(
            f"The resumable upload session answered {status}: it expired (sessions live 24 hours) or was "
            "cancelled. A new session is needed; the upload starts again from byte 0."
        )
    if is_retryable_status(status):
        raise _TransientSessionError(status, parse_retry_after(headers.get("Retry-After")))
    text = body[:300].decode("utf-8", "replace")
    raise RedivisAPIError(
        status, f"the upload server refused the request: {text}", method="PUT", path="<session>"
    )


def next_offset_from(response: requests.Response) -> SessionStatus:
    """:func:`interpret_response` for a ``requests.Response``."""
    return interpret_response(response.status_code, response.headers, response.content)


class StreamingMD5:
    """md5 over each byte of the source once, in order, however often a range is sent again."""

    def __init__(self) -> None:
        self._md5 = hashlib.md5()  # noqa: S324 - Cloud Storage's integrity checksum, not security
        self.position = 0

    def update(self, offset: int, data: bytes | memoryview) -> None:
        if offset > self.position:
            raise ValueError(f"cannot hash from {offset}: only {self.position} bytes hashed so far")
        skip = self.position - offset
        if skip < len(data):
            self._md5.update(memoryview(data)[skip:])
            self.position = offset + len(data)

    def base64(self) -> str:
        return base64.b64encode(self._md5.digest()).decode("ascii")

    def hexdigest(self) -> str:
        return self._md5.hexdigest()


class _ChunkBody:
    """One chunk as a request body that ``requests`` reads as it sends: hashed as it goes, never held whole.

    ``reader`` is positioned at the chunk's first byte. A short read means the source shrank.
    """

    def __init__(self, reader: IO[bytes], offset: int, length: int, digest: StreamingMD5) -> None:
        self._reader = reader
        self._position = offset
        self._end = offset + length
        self._length = length
        self._digest = digest

    def __len__(self) -> int:
        return self._length

    def read(self, size: int = -1) -> bytes:
        left = self._end - self._position
        if left <= 0:
            return b""
        data = self._reader.read(left if size is None or size < 0 else min(size, left))
        if not data:
            raise SourceChangedError(
                f"The source ended at byte {self._position}, before the {self._end} bytes it had when the upload "
                "started: it changed while being read. Nothing was created; run the task again once the file is "
                "complete."
            )
        self._digest.update(self._position, data)
        self._position += len(data)
        return data


#: Called with (bytes the server holds, total or None) after every acknowledged chunk.
ProgressCallback = Callable[[int, "int | None"], None]


class ResumableSession:
    """Sends a source to one resumable-session URL, resuming from whatever the server holds.

    ``http`` must not add a Redivis token to the session URL: the URL is its own credential.
    """

    def __init__(
        self,
        http: requests.Session,
        url: str,
        total: int | None,
        *,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        timeout: tuple[float, float] = (10.0, 120.0),
        retry_policy: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.http = http
        self.url = url
        self.total = total
        self.chunk_size = validate_chunk_size(chunk_size)
        self.timeout = timeout
        self.retry_policy = retry_policy or RetryPolicy()
        self._sleep = sleep
        self._cancelled = False

    def __repr__(self) -> str:
        return f"ResumableSession(url={redact_session_url(self.url)!r}, total={self.total})"

    def cancel(self) -> None:
        """Stop after the request in flight; what the server holds stays resumable."""
        self._cancelled = True

    # -- requests -------------------------------------------------------------------------------

    def _put(self, data: bytes | _ChunkBody, range_header: str) -> SessionStatus:
        response = self.http.put(
            self.url,
            data=data,
            headers={"Content-Range": range_header, "Content-Type": "application/octet-stream"},
            timeout=self.timeout,
            allow_redirects=False,
        )
        try:
            return next_offset_from(response)
        finally:
            response.close()

    def query_status(self) -> SessionStatus:
        """Ask the server what it holds, with backoff; raise once the retry policy is spent."""
        policy = self.retry_policy
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            try:
                return self._put(b"", status_query_range(self.total))
            except (_TransientSessionError, requests.RequestException) as exc:
                retry_after = exc.retry_after if isinstance(exc, _TransientSessionError) else None
                if isinstance(exc, requests.RequestException) and not is_retryable_error(exc):
                    raise
                elapsed = time.monotonic() - started
                if attempt >= policy.max_attempts or elapsed >= policy.max_total_seconds:
                    raise _as_final_error(exc, "asking the upload server for its offset") from exc
                wait = policy.backoff(attempt, retry_after)
                log.warning("Status query failed (%s); asking again in %.1f s", _describe(exc), wait)
                self._sleep(wait)

    # -- the transfer ---------------------------------------------------------------------------

    def upload(
        self,
        reader: IO[bytes],
        start_offset: int,
        *,
        digest: StreamingMD5 | None = None,
        on_progress: ProgressCallback | None = None,
        check_source: Callable[[], None] | None = None,
    ) -> Mapping[str, Any]:
        """Send ``reader`` from ``start_offset`` until the server answers 200/201; verify; return its metadata.

        ``reader`` is seekable and yields the same bytes on every read (``check_source`` raises
        :class:`SourceChangedError` otherwise). With a known total each chunk streams from the source as it is
        sent and is hashed as it goes: memory stays at a few KiB whatever the chunk size. With an unknown total
        a chunk is read first (one byte more tells whether it is the last): memory stays at one chunk.
        """
        digest = digest or StreamingMD5()
        self._hash_prefix(reader, digest, start_offset)
        return self._send_all(reader, start_offset, digest, on_progress, check_source)

    def _send_all(
        self,
        reader: IO[bytes],
        offset: int,
        digest: StreamingMD5,
        on_progress: ProgressCallback | None,
        check_source: Callable[[], None] | None,
    ) -> Mapping[str, Any]:
        stalled = 0  # consecutive rounds that moved the server's offset nowhere
        while True:
            if self._cancelled:
                raise InterruptedError("upload cancelled; the session stays resumable")
            if check_source is not None:
                check_source()
            body, last, total = self._chunk_body(reader, offset, digest)
            end = offset + len(body)
            try:
                if not len(body):
                    # The server holds all of it already: only the answer to the last chunk was lost.
                    status = self.query_status()
                else:
                    status = self._put(body, content_range(offset, end - 1, total if last else self.total))
            except (_TransientSessionError, requests.RequestException) as exc:
                if isinstance(exc, requests.RequestException) and not is_retryable_error(exc):
                    raise
                stalled += 1
                self._give_up_if_spent(stalled, exc, f"sending bytes {offset}-{end - 1}")
                retry_after = exc.retry_after if isinstance(exc, _TransientSessionError) else None
                wait = self.retry_policy.backoff(stalled, retry_after)
                log.warning(
                    "Chunk at byte %d failed (%s); asking the server what it holds in %.1f s",
                    offset,
                    _describe(exc),
                    wait,
                )
                self._sleep(wait)
                status = self.query_status()
            else:
                if not status.complete and status.offset <= offset:
                    stalled += 1
                    self._give_up_if_spent(stalled, None, f"sending bytes {offset}-{end - 1}")
            del body
            if status.complete:
                final_total = total if total is not None else self.total
                self._verify(status.metadata, final_total, digest, reader, check_source)
                if on_progress is not None:
                    on_progress(final_total if final_total is not None else digest.position, final_total)
                return status.metadata
            if status.offset > end:
                raise RedivisAPIError(
                    308,
                    f"the upload server claims {status.offset} bytes but only {end} were sent; not continuing",
                )
            if status.offset > offset:
                stalled = 0  # progress renews the failure budget
            # The server's Range decides, even when it is less than what was sent.
            offset = status.offset
            if on_progress is not None:
                on_progress(offset, self.total)

    def _chunk_body(
        self, reader: IO[bytes], offset: int, digest: StreamingMD5
    ) -> tuple[_ChunkBody, bool, int | None]:
        """The next chunk as a request body, whether it is the last, and the total to announce with it."""
        if self.total is None:
            reader.seek(offset)
            data = reader.read(self.chunk_size)
            last, total = self._is_last_chunk(reader, offset, len(data))
            return _ChunkBody(io.BytesIO(data), offset, len(data), digest), last, total
        length = max(0, min(self.chunk_size, self.total - offset))
        last = offset + length == self.total
        if last:
            # Growth shows past the announced end; shrinking shows as a short read while the chunk is sent.
            reader.seek(self.total)
            if reader.read(1):
                raise SourceChangedError(
                    f"The source grew past its {self.total} bytes while being read. Nothing was created; "
                    "run the task again once the file is complete."
                )
        reader.seek(offset)
        return _ChunkBody(reader, offset, length, digest), last, self.total if last else None

    def _give_up_if_spent(self, stalled: int, exc: BaseException | None, doing: str) -> None:
        if stalled >= self.retry_policy.max_attempts:
            if exc is None:
                raise UploadInterruptedError(
                    f"The upload server kept nothing new after {stalled} attempts at {doing}. The bytes it holds "
                    "are kept: the task's next try resumes from them."
                )
            raise _as_final_error(exc, doing) from exc

    def _is_last_chunk(self, reader: IO[bytes], offset: int, length: int) -> tuple[bool, int | None]:
        """Total unknown: a short read is the last chunk; after a full one, one byte more tells."""
        end = offset + length
        if length < self.chunk_size:
            return True, end
        more = reader.read(1)
        return (not more), (end if not more else None)

    def _hash_prefix(self, reader: IO[bytes], digest: StreamingMD5, upto: int) -> None:
        # A new try resumes mid-file: hash what an earlier try sent from the local source, not the network.
        if digest.position >= upto:
            return
        reader.seek(digest.position)
        while digest.position < upto:
            piece = reader.read(min(_HASH_READ_SIZE, upto - digest.position))
            if not piece:
                raise SourceChangedError("The source is shorter than what was already uploaded: it changed.")
            digest.update(digest.position, piece)

    def _verify(
        self,
        metadata: Mapping[str, Any],
        total: int | None,
        digest: StreamingMD5,
        reader: IO[bytes],
        check_source: Callable[[], None] | None,
    ) -> None:
        if total is None:
            total = digest.position
        if digest.position < total:
            # Completed by an earlier try's last chunk: hash the rest locally.
            self._hash_prefix(reader, digest, total)
        if check_source is not None:
            check_source()
        size = metadata.get("size")
        if size is not None and int(size) != total:
            raise UploadIntegrityError(
                f"The server stored {size} bytes but the source has {total}. The upload was not created; "
                "run the task again to start a new session."
            )
        md5 = metadata.get("md5Hash")
        if md5 is not None and md5 != digest.base64():
            raise UploadIntegrityError(
                f"The server's md5 ({md5}) differs from the source's ({digest.base64()}). The upload was not "
                "created; run the task again to start a new session."
            )
        if md5 is None:
            log.warning("The upload server returned no md5Hash; only the size (%s bytes) was checked", size)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, _TransientSessionError):
        return f"HTTP {exc.status}"
    return type(exc).__name__


def _as_final_error(exc: BaseException, doing: str) -> UploadInterruptedError:
    return UploadInterruptedError(
        f"Gave up {doing} after repeated failures ({_describe(exc)}). The bytes the upload server holds are "
        "kept: the task's next try resumes from them."
    )
