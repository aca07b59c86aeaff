"""Cloud Storage's resumable-session protocol as pure functions: no I/O, no Airflow.

Redivis hands out Cloud Storage resumable-session URLs, so the rules are Cloud Storage's
(``docs/resumable-uploads.md``):

- every request but the last carries a multiple of 256 KiB;
- ``308`` answers a request that did not complete the object; ``Range: bytes=0-n`` says the server
  holds n+1 bytes, no ``Range`` that it holds nothing. The server's count decides the next offset;
- after a request that got no answer, or 408/429/5xx, an empty ``PUT`` with ``Content-Range:
  bytes */total`` asks what the server holds (with the total, it also completes an object whose
  bytes are all there);
- ``200``/``201`` means the object is complete, described in one of two dialects: the JSON API's
  object resource in the body (``size``, ``crc32c``, ``md5Hash``), or the XML API's empty body with
  ``x-goog-stored-content-length`` and ``x-goog-hash`` headers;
- ``404``/``410`` means the session is gone.

Building a request (:func:`content_range`, :class:`RequestSizer`) is apart from reading an answer
(:func:`interpret_response`) and from judging the stored object (:func:`verify_stored`), so each is
tested without a network; :mod:`airflow_provider_redivis.engine.resumable` does the I/O.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from airflow_provider_redivis.engine.checksums import parse_goog_hash
from airflow_provider_redivis.engine.retry import is_retryable_status, parse_retry_after
from airflow_provider_redivis.errors import (
    RedivisAPIError,
    RedivisConfigError,
    ResumableSessionExpiredError,
    UploadIntegrityError,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

MiB = 1024 * 1024
#: Cloud Storage accepts requests that do not complete the object only in multiples of this.
CHUNK_UNIT = 256 * 1024
MAX_CHUNK_SIZE = 1024 * MiB
#: Adaptive sizing: the first request, before a rate is known.
FIRST_REQUEST_SIZE = 32 * MiB
#: Adaptive sizing: each request aims at this many seconds on the wire (see docs/internals.md, "Request sizes").
TARGET_REQUEST_SECONDS = 8.0
#: Adaptive sizing never shrinks a request below this, so a slow start does not mean tiny requests.
MIN_ADAPTIVE_REQUEST_SIZE = 8 * MiB
#: A request of unknown total is read into memory before it is sent (to know whether it is the last).
MAX_UNKNOWN_TOTAL_REQUEST_SIZE = 32 * MiB
#: Adaptive sizing grows a request at most this many times over the one before.
MAX_GROWTH = 16


def validate_chunk_size(chunk_size: object) -> int | None:
    """None (sized from the measured rate) or a positive multiple of 256 KiB of at most 1 GiB."""
    if chunk_size is None:
        return None
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int):
        raise RedivisConfigError(
            f"chunk_size must be None (sized from the measured rate) or a number of bytes, got {chunk_size!r}."
        )
    if chunk_size < CHUNK_UNIT or chunk_size % CHUNK_UNIT or chunk_size > MAX_CHUNK_SIZE:
        suggestion = max(CHUNK_UNIT, min(MAX_CHUNK_SIZE, (chunk_size // CHUNK_UNIT) * CHUNK_UNIT))
        raise RedivisConfigError(
            f"chunk_size={chunk_size} is not allowed: Cloud Storage needs a multiple of 256 KiB "
            f"({CHUNK_UNIT} bytes) between 256 KiB and 1 GiB. Use for example {suggestion}, or leave it "
            "unset to size requests from the measured rate."
        )
    return chunk_size


def redact_session_url(url: str) -> str:
    """A session URL is its own credential: keep the origin and a hint of the path, drop the rest."""
    parts = urlsplit(url)
    path = parts.path
    shown = path if len(path) <= 24 else path[:20] + "…"
    return f"{parts.scheme}://{parts.netloc}{shown}{'?…' if parts.query else ''}"


def content_range(first: int, last: int, total: int | None) -> str:
    """``bytes first-last/total`` for a request carrying bytes; ``/*`` while the total is unknown."""
    return f"bytes {first}-{last}/{'*' if total is None else total}"


def status_query_range(total: int | None) -> str:
    """``bytes */total``: what do you hold? With a total, it completes an object whose bytes are all there."""
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
class StoredObject:
    """What a completing answer says of the stored object, whichever dialect said it."""

    #: None when the answer did not say: such an answer proves nothing.
    size: int | None
    #: Base64 digests the server reported, by algorithm (``crc32c``, ``md5``).
    hashes: Mapping[str, str] = field(default_factory=dict)
    #: The JSON object resource, when the answer had one.
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SessionStatus:
    """One answer: complete (with what the server says it stored), or how much it holds."""

    complete: bool
    offset: int
    stored: StoredObject | None = None


class SessionAnswerError(RedivisAPIError):
    """An answer worth a status query and another go after a pause (408, 429, 5xx, a 308 with no progress)."""

    def __init__(self, status: int, message: str, *, retry_after: float | None = None, **_: Any) -> None:
        super().__init__(status, message, method="PUT", path="<session>", retry_after=retry_after)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        lowered = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == lowered), None)
    return value


def _size(value: Any) -> int | None:
    try:
        size = int(value)
    except (TypeError, ValueError):
        return None
    return size if size >= 0 else None


def stored_object_from(headers: Mapping[str, str], body: bytes) -> StoredObject:
    """The JSON dialect (object resource in the body) or the XML one (empty body, ``x-goog-*`` headers)."""
    metadata: dict[str, Any] = {}
    if body:
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            metadata = parsed
    hashes = {
        name: str(metadata[key])
        for name, key in (("crc32c", "crc32c"), ("md5", "md5Hash"))
        if metadata.get(key)
    }
    size = _size(metadata.get("size"))
    if size is None and hashes:
        size = 0  # a JSON object resource may leave out a zero size, as protobuf's JSON mapping does
    if not metadata:
        hashes = parse_goog_hash(_header(headers, "x-goog-hash"))
        size = _size(_header(headers, "x-goog-stored-content-length"))
    return StoredObject(size=size, hashes=hashes, metadata=metadata)


def interpret_response(status: int, headers: Mapping[str, str], body: bytes) -> SessionStatus:
    """Turn one answer from a session URL into the next step; raise for what cannot continue."""
    if status == 308:
        return SessionStatus(complete=False, offset=held_bytes_from_range(_header(headers, "Range")))
    if status in (200, 201):
        stored = stored_object_from(headers, body)
        return SessionStatus(complete=True, offset=-1 if stored.size is None else stored.size, stored=stored)
    if status in (404, 410):
        raise ResumableSessionExpiredError(
            f"The resumable upload session answered {status}: it expired (sessions live 24 hours) or was "
            "cancelled. A new session is needed; the upload starts again from byte 0."
        )
    if is_retryable_status(status):
        retry_after = parse_retry_after(_header(headers, "Retry-After"), server_date=_header(headers, "Date"))
        raise SessionAnswerError(status, f"the upload server answered {status}", retry_after=retry_after)
    text = body[:300].decode("utf-8", "replace")
    raise RedivisAPIError(
        status, f"the upload server refused the request: {text}", method="PUT", path="<session>"
    )


def is_hash_refusal(status: int, body: bytes) -> bool:
    """The answer to a request that carried ``x-goog-hash``: do the bytes the server got differ from it?

    Cloud Storage answers 400 naming the hash; storage-testbench answers 412 (precondition failed).
    """
    text = body[:2000].decode("utf-8", "replace").lower()
    return status == 412 or (
        status == 400 and any(word in text for word in ("crc32c", "md5", "hash", "checksum"))
    )


def verify_stored(
    stored: StoredObject, total: int, computed: Mapping[str, str], *, checksum: str | None, earlier: int = 0
) -> str:
    """Prove the stored object is the source: its size, and every hash both sides have. Returns what was compared.

    ``checksum=None`` compares the size only. Otherwise at least one hash must be compared: the caller
    computes a reported algorithm it lacks (md5 when the server reports nothing else) before calling.
    ``earlier``: bytes an earlier try sent that only a hash can prove (a ``checksum=None`` resume).
    """
    if stored.size != total:
        raise UploadIntegrityError(
            f"The server stored {stored.size} bytes but the source has {total}. The upload was not created; "
            "run the task again to start a new session."
        )
    if checksum is None:
        return "size"
    if earlier and not stored.hashes:
        raise UploadIntegrityError(
            f"An earlier try sent the first {earlier} bytes and the upload server reports no hash, so nothing shows "
            "they are this source's bytes as it is now. The upload was not created; run the task again: it sends "
            "the whole file through a new session."
        )
    if not stored.hashes:
        raise UploadIntegrityError(
            "The upload server reported no hash of the stored object, so its bytes cannot be proven to be the "
            "source's. The upload was not created. If this server never reports one, set checksum=None to "
            "accept a matching size alone."
        )
    compared = sorted(set(stored.hashes) & set(computed))
    if not compared:
        raise UploadIntegrityError(
            f"The upload server reported only {sorted(stored.hashes)}, which this engine did not compute. The "
            "upload was not created; choose checksum='md5' or 'crc32c' to match the server."
        )
    for name in compared:
        if stored.hashes[name] != computed[name]:
            raise UploadIntegrityError(
                f"The server's {name} ({stored.hashes[name]}) differs from the source's ({computed[name]}): it "
                "stored other bytes. The upload was not created; run the task again to start a new session."
            )
    return " and ".join(["size", *compared])


class RequestSizer:
    """How many bytes the next request carries: a fixed ``chunk_size``, or sized from the measured rate.

    Adaptive sizing aims each request at :data:`TARGET_REQUEST_SECONDS` on the wire: long enough that
    the round trip and the server's answer between two requests cost about 1 % of the time, short
    enough that a server which keeps nothing of a cut request makes the next try re-send at most that
    many seconds of bytes. It starts at :data:`FIRST_REQUEST_SIZE` and grows at most
    :data:`MAX_GROWTH`-fold per request, between 8 MiB and 1 GiB, in 256 KiB units. Few requests matter
    on a long link: each boundary costs a round trip. A failed or cut request shrinks the next one to
    the rate it saw, and from then on the 8 MiB floor is 256 KiB: once the link cuts requests, what a
    cut costs matters more than a round trip.
    """

    def __init__(self, chunk_size: int | None = None, *, unknown_total: bool = False) -> None:
        self.fixed = validate_chunk_size(chunk_size)
        self.maximum = MAX_UNKNOWN_TOTAL_REQUEST_SIZE if unknown_total else MAX_CHUNK_SIZE
        self._size = self.fixed or min(FIRST_REQUEST_SIZE, self.maximum)
        self._floor = min(MIN_ADAPTIVE_REQUEST_SIZE, self.maximum)

    def next_size(self) -> int:
        return self._size

    def record(self, sent: int, seconds: float) -> None:
        """A request of ``sent`` bytes was answered after ``seconds``: size the next one."""
        if self.fixed is not None or sent < self._size // 2 or seconds <= 0:
            return  # a short last request says little about the rate
        wanted = int(sent / seconds * TARGET_REQUEST_SECONDS)
        self._size = self._units(max(min(wanted, self._size * MAX_GROWTH, self.maximum), self._floor))

    def record_failure(self, sent: int, seconds: float) -> None:
        """A request failed or was cut ``seconds`` after it started, ``sent`` of its bytes on their way.

        The next request is sized to the rate this one saw and is never larger than it: a server may
        keep nothing of a cut request, and the next cut may come as soon.
        """
        if self.fixed is not None:
            return
        self._floor = CHUNK_UNIT
        if sent <= 0 or seconds <= 0:
            return  # nothing went out (a refused connection, say): nothing learned about the rate
        wanted = int(sent / seconds * TARGET_REQUEST_SECONDS)
        self._size = self._units(max(min(wanted, self._size), self._floor))

    @staticmethod
    def _units(size: int) -> int:
        return max(CHUNK_UNIT, size // CHUNK_UNIT * CHUNK_UNIT)
