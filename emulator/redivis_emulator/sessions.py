"""Resumable sessions with Cloud Storage's rules, byte for byte.

The rules this module enforces (see ``docs/resumable-uploads.md`` and Cloud Storage's resumable
upload documentation):

- ``PUT`` with ``Content-Range: bytes a-b/total`` (``/*`` while the total is unknown) carries a chunk;
  the answer is ``308`` with ``Range: bytes=0-n`` for what is held, no ``Range`` when nothing is;
- every chunk but the last is a multiple of 256 KiB, else ``400``;
- bytes already held may be sent again and are ignored; a chunk that starts past what is held (a
  gap) is refused with ``400``;
- ``Content-Range: bytes */total`` (or ``*/*``) with an empty body asks for the status; it also
  completes the object when every byte of ``total`` is held;
- once complete, every ``PUT`` is answered ``200`` with the object, in the session's dialect
  (``json`` or ``xml``, see :mod:`.dialects`);
- ``x-goog-hash`` on the request that completes the object is checked: a mismatch is ``400`` and
  no object; the session is then spent (it keeps its bytes; every later request gets that ``400``);
- an unknown or expired session is ``404``; a cancelled one (``DELETE``) ``410``;
- a request cut off mid-body keeps the bytes before the cut, floored to 256 KiB units (a session with
  ``keep_partial=False`` keeps nothing of it, as storage-testbench does).

Bytes stream to one file per session; md5 is computed incrementally over the kept bytes only, in
order, so a cut that keeps fewer bytes than arrived never hashed the dropped ones.
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, BinaryIO

from redivis_emulator.dialects import (
    ALL_HASHES,
    ObjectFacts,
    SessionReply,
    check_dialect,
    final_reply,
    gcs_error,
    hash_mismatch,
    parse_goog_hash,
)
from redivis_emulator.wire import (
    PIECE,
    THREADED_HASH_MIN,
    UNIT,
    BodyCut,
    BodyReader,
    ClientDisconnected,
    Digests,
    InlineHasher,
    ThreadedHasher,
    floor_unit,
    hash_file_range,
    write_all,
)

if TYPE_CHECKING:
    from pathlib import Path

_RANGE_RE = re.compile(r"^bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)$")


class ResetConnection(Exception):
    """End the request with a TCP reset, nothing answered (what was kept is already committed)."""


class ConnectionGone(Exception):
    """The client went away mid-body; what was kept is committed; nothing can be answered."""


@dataclass(frozen=True)
class ContentRange:
    """A parsed ``Content-Range``; ``first``/``last`` are None for a status query (``bytes */...``)."""

    first: int | None
    last: int | None
    total: int | None

    @property
    def is_query(self) -> bool:
        return self.first is None


def parse_content_range(value: str) -> ContentRange:
    """``bytes a-b/total``, ``bytes a-b/*``, ``bytes */total`` or ``bytes */*``; ValueError otherwise."""
    match = _RANGE_RE.match(value.strip())
    if match is None:
        raise ValueError(
            f"Content-Range {value!r} is not 'bytes FIRST-LAST/TOTAL', 'bytes FIRST-LAST/*' or 'bytes */TOTAL'."
        )
    first, last, total = match.groups()
    parsed_total = None if total == "*" else int(total)
    if first is None:
        return ContentRange(None, None, parsed_total)
    return ContentRange(int(first), int(last), parsed_total)


@dataclass(frozen=True)
class SessionInfo:
    """A snapshot of a session, as ``RedivisEmulator.sessions`` hands it out."""

    id: str
    url: str
    table: str
    size: int | None
    held: int
    complete: bool
    expired: bool
    cancelled: bool
    path: Path
    md5: str | None
    authorization_seen: bool
    created_at: float
    temp_upload_id: str | None
    #: How the session answers once complete: "json" or "xml".
    dialect: str = "json"
    #: False: a request cut mid-body keeps none of its bytes.
    keep_partial_requests: bool = True
    #: The error that spent the session (a hash mismatch on the final request), else None.
    failed: str | None = None
    #: Base64 crc32c of the object, once complete.
    crc32c: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "url": self.url,
            "table": self.table,
            "size": self.size,
            "held": self.held,
            "complete": self.complete,
            "expired": self.expired,
            "cancelled": self.cancelled,
            "path": str(self.path),
            "md5": self.md5,
            "authorizationSeen": self.authorization_seen,
            "createdAt": self.created_at,
            "tempUploadId": self.temp_upload_id,
            "dialect": self.dialect,
            "keepPartialRequests": self.keep_partial_requests,
            "failed": self.failed,
            "crc32c": self.crc32c,
        }


class ServerSession:
    """One resumable session on the server's side: its file, what it holds, and the rules for adding to it."""

    def __init__(
        self,
        *,
        session_id: str,
        token: str,
        url: str,
        path: Path,
        size: int | None,
        ttl: float,
        table: str,
        temp_upload_id: str | None = None,
        dialect: str = "json",
        keep_partial: bool = True,
    ) -> None:
        self.id = session_id
        self.token = token
        self.url = url
        self.path = path
        self.declared_size = size
        self.total: int | None = size
        self.ttl = ttl
        self.table = table
        self.temp_upload_id = temp_upload_id
        self.created_monotonic = time.monotonic()
        self.created_at = time.time()
        self.lock = threading.Lock()
        self.held = 0
        self.digests = Digests()
        self.complete = False
        self.facts: ObjectFacts | None = None
        self.dialect = check_dialect(dialect)
        self.keep_partial = keep_partial
        #: The hashes a finished object is described with: a server that reports fewer (md5 only) or none.
        self.reported_hashes: tuple[str, ...] = ALL_HASHES
        #: The reply that spent the session (hash mismatch); every later request gets it.
        self.failed: SessionReply | None = None
        self.generation = 0
        self.expired_flag = False
        self.cancelled = False
        self.authorization_seen = False
        self.consumed_by: str | None = None
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: BinaryIO | None = open(path, "w+b", buffering=0)  # noqa: SIM115 - lives with the session

    # -- state ---------------------------------------------------------------------------------

    def is_expired(self) -> bool:
        return self.expired_flag or (time.monotonic() - self.created_monotonic) > self.ttl

    def expire(self) -> None:
        with self.lock:
            self.expired_flag = True
            self.generation += 1  # a writer still streaming into it stops at its next piece
            self._close_file()

    def cancel(self) -> None:
        with self.lock:
            self.cancelled = True
            self.generation += 1
            self._close_file()

    def close(self) -> None:
        with self.lock:
            self._close_file()

    def _close_file(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def info(self) -> SessionInfo:
        with self.lock:
            return SessionInfo(
                id=self.id,
                url=self.url,
                table=self.table,
                size=self.total,
                held=self.held,
                complete=self.complete,
                expired=self.is_expired(),
                cancelled=self.cancelled,
                path=self.path,
                md5=self.digests.md5_hex if self.complete else None,
                authorization_seen=self.authorization_seen,
                created_at=self.created_at,
                temp_upload_id=self.temp_upload_id,
                dialect=self.dialect,
                keep_partial_requests=self.keep_partial,
                failed=_error_message(self.failed),
                crc32c=self.facts.crc32c if self.facts is not None else None,
            )

    def facts_now(self) -> ObjectFacts:
        """The held bytes described as if they were the object (for a server that answers too early)."""
        with self.lock:
            return self._facts(self.digests)

    def _facts(self, digests: Digests) -> ObjectFacts:
        return ObjectFacts(
            name=self.id,
            size=self.held,
            md5=digests.md5_base64,
            crc32c=digests.crc32c_base64,
            generation=int(time.time() * 1_000_000),
            created=datetime.fromtimestamp(self.created_at, timezone.utc).isoformat(),
        )

    def _gone(self) -> SessionReply | None:
        if self.failed is not None:
            return self.failed
        if self.cancelled:
            return gcs_error(410, "The resumable session was cancelled. Start a new session.")
        if self.is_expired():
            return gcs_error(404, "No such upload: the resumable session expired. Start a new session.")
        return None

    def _incomplete(self) -> SessionReply:
        # 308 without Range: the server holds nothing yet.
        headers = {"Range": f"bytes=0-{self.held - 1}"} if self.held > 0 else {}
        return SessionReply(308, headers, None, reason="Resume Incomplete")

    def _completed(self) -> SessionReply:
        assert self.facts is not None  # noqa: S101 - only called once complete
        return final_reply(self.facts, self.dialect, self.reported_hashes)

    def _finalize(self, expected: dict[str, str] | None) -> SessionReply:
        """Every byte is here: check the client's hashes, then make the object (or spend the session)."""
        facts = self._facts(self.digests)
        mismatch = hash_mismatch(expected, facts, self.dialect) if expected else None
        if mismatch is not None:
            # No object. The bytes stay (visible in .sessions) but the session is spent.
            self.failed = mismatch
            self._close_file()
            return mismatch
        self.complete = True
        self.facts = facts
        self._close_file()
        return self._completed()

    def status_reply(self) -> SessionReply:
        with self.lock:
            gone = self._gone()
            if gone is not None:
                return gone
            return self._completed() if self.complete else self._incomplete()

    def _write(self, offset: int, data: memoryview) -> None:
        if self._file is None:
            raise ResetConnection()  # expired or cancelled under us
        self._file.seek(offset)
        write_all(self._file, data)

    # -- requests ------------------------------------------------------------------------------

    def put(
        self,
        body: BodyReader,
        content_range: ContentRange,
        *,
        keep_bytes: int | None = None,
        goog_hash: str | None = None,
        keep_partial: bool | None = None,
    ) -> SessionReply:
        """Handle one PUT. Validation errors come back as replies (the caller drains the body).

        ``keep_bytes``: keep only that many bytes of this chunk (the ``partial`` fault, or a
        ``reset`` fault's explicit keep). ``goog_hash``: the request's ``x-goog-hash``, checked if this
        request completes the object. ``keep_partial``: overrides the session's rule for a cut body.
        Raises ResetConnection when ``body.cut_at`` was reached (after committing what the session
        keeps), ConnectionGone when the client left.
        """
        expected: dict[str, str] | None = None
        if goog_hash is not None:
            try:
                expected = parse_goog_hash(goog_hash)
            except ValueError as exc:
                return gcs_error(400, str(exc))
        keep_cut = self.keep_partial if keep_partial is None else keep_partial
        with self.lock:
            gone = self._gone()
            if gone is not None:
                return gone
            if self.complete:
                # Once complete, every PUT gets the final object; its bytes are ignored.
                return self._completed()
            if content_range.is_query:
                return self._query(body, content_range, expected)
            first, last, total = content_range.first, content_range.last, content_range.total
            if first is None or last is None:  # is_query covers this; narrows the types
                return self._query(body, content_range, expected)
            if last < first:
                return gcs_error(400, f"Content-Range ends ({last}) before it starts ({first}).")
            length = last - first + 1
            if body.length is not None and body.length != length:
                return gcs_error(
                    400,
                    f"Content-Length {body.length} does not match Content-Range bytes {first}-{last} "
                    f"({length} bytes).",
                )
            if total is not None:
                if self.total is not None and total != self.total:
                    return gcs_error(
                        400, f"Content-Range total {total} differs from the session's size {self.total}."
                    )
                if last >= total:
                    return gcs_error(400, f"Content-Range bytes {first}-{last} runs past the total {total}.")
            if first > self.held:
                # A gap: Cloud Storage refuses it (some servers would silently corrupt the object).
                return gcs_error(
                    400,
                    f"Content-Range starts at byte {first} but the session holds only {self.held} bytes: "
                    f"a gap. Ask for the status (bytes */total) and resume from byte {self.held}.",
                )
            final = total is not None and last == total - 1
            if not final and length % UNIT:
                return gcs_error(
                    400,
                    f"A chunk that is not the last must be a multiple of {UNIT} bytes (256 KiB); "
                    f"this one has {length} bytes.",
                )
            if total is not None and self.total is None:
                self.total = total
            self.generation += 1
            generation = self.generation
            held_before = self.held
            digests = self.digests.copy()
        return self._receive(
            body, first, last, held_before, generation, digests, keep_bytes, keep_cut, expected
        )

    def _query(
        self, body: BodyReader, content_range: ContentRange, expected: dict[str, str] | None
    ) -> SessionReply:
        # Caller holds the lock. A status query has an empty body.
        if body.length is not None and body.length != 0:
            return gcs_error(400, "A status query (Content-Range: bytes */...) must have an empty body.")
        total = content_range.total
        if total is not None:
            if self.total is not None and total != self.total:
                return gcs_error(
                    400, f"Content-Range total {total} differs from the session's size {self.total}."
                )
            if self.held > total:
                return gcs_error(
                    400, f"The session already holds {self.held} bytes, more than the total {total}."
                )
            if self.held == total:
                # Every byte is here: naming the total completes the object.
                self.total = total
                return self._finalize(expected)
        return self._incomplete()

    def _receive(
        self,
        body: BodyReader,
        first: int,
        last: int,
        held_before: int,
        generation: int,
        digests: Digests,
        keep_bytes: int | None,
        keep_cut: bool,
        expected: dict[str, str] | None,
    ) -> SessionReply:
        end = last + 1
        # Bytes that will be kept whatever happens next may be hashed while they stream.
        if keep_bytes is not None:
            safe_end: int | None = first + keep_bytes
        elif body.cut_at is not None and not keep_cut:
            safe_end = first
        elif body.cut_at is not None:
            safe_end = floor_unit(first + body.cut_at)
        else:
            safe_end = None
        hasher: InlineHasher | ThreadedHasher = (
            ThreadedHasher(digests)
            if end - max(first, held_before) >= THREADED_HASH_MIN
            else InlineHasher(digests)
        )
        pos = first
        hashed = held_before
        interrupted: type[Exception] | None = None
        try:
            try:
                while pos < end:
                    view = hasher.acquire()
                    # Reads end on absolute 256 KiB boundaries so that the hash can keep up.
                    want = min(end - pos, PIECE - pos % UNIT)
                    try:
                        n = body.readinto(view[:want])
                    except BaseException:
                        hasher.submit(view, None)
                        raise
                    to_hash: memoryview | None = None
                    if n and pos + n > held_before:
                        skip = max(0, held_before - pos)
                        new_pos = pos + skip
                        new = view[skip:n]
                        with self.lock:
                            if self.generation != generation or self._gone() is not None:
                                hasher.submit(view, None)
                                raise ResetConnection()  # a newer request took over this session
                            self._write(new_pos, new)
                        hashed, to_hash = self._hash_ahead(hasher, hashed, new_pos, new, safe_end)
                    hasher.submit(view, to_hash)
                    if n == 0:
                        break
                    pos += n
            except BodyCut:
                interrupted = ResetConnection
            except ClientDisconnected:
                interrupted = ConnectionGone
            if interrupted is None and pos < end:
                self._rollback(generation)
                return gcs_error(
                    400, f"The body ended after {pos - first} bytes; Content-Range announced {end - first}."
                )
            if interrupted is None and not body.finished:
                # Chunked body: it must end exactly where Content-Range says.
                probe = memoryview(bytearray(1))
                try:
                    extra = body.readinto(probe)
                except BodyCut:
                    extra, interrupted = 0, ResetConnection
                except ClientDisconnected:
                    extra, interrupted = 0, ConnectionGone
                if extra:
                    self._rollback(generation)
                    return gcs_error(400, f"The body is longer than Content-Range bytes {first}-{last} says.")
        finally:
            hasher.close()
        if interrupted is not None and pos < end:
            if keep_bytes is None and not keep_cut:
                # A server that keeps nothing of a cut request (storage-testbench).
                self._rollback(generation)
                raise interrupted()
            # Cut mid-body: Cloud Storage keeps what arrived in whole 256 KiB units (or as told).
            keep = min(pos, first + keep_bytes) if keep_bytes is not None else floor_unit(pos)
        else:
            keep = end if keep_bytes is None else min(end, first + keep_bytes)
        reply = self._commit(generation, digests, hashed, max(held_before, keep), expected)
        if interrupted is not None:
            raise interrupted()
        return reply

    def _hash_ahead(
        self,
        hasher: InlineHasher | ThreadedHasher,
        hashed: int,
        new_pos: int,
        new: memoryview,
        safe_end: int | None,
    ) -> tuple[int, memoryview | None]:
        """What of a new piece to hash now: up to its last 256 KiB boundary, never past safe_end.

        Returns the new hashed offset and the slice of ``new`` to hash (in order, after what
        was submitted before).
        """
        limit = floor_unit(new_pos + len(new))
        if safe_end is not None:
            limit = min(limit, safe_end)
        if limit <= hashed:
            return hashed, None
        if hashed < new_pos:
            # The tail of an earlier piece (< 256 KiB) was left for later: catch up from the file.
            hasher.flush()
            with self.lock:
                if self._file is None:
                    raise ResetConnection()
                hash_file_range(self._file, hasher.digests, hashed, min(new_pos, limit))
            hashed = min(new_pos, limit)
        if limit <= new_pos:
            return hashed, None
        start = max(hashed, new_pos) - new_pos
        return limit, new[start : limit - new_pos]

    def _commit(
        self, generation: int, digests: Digests, hashed: int, keep: int, expected: dict[str, str] | None
    ) -> SessionReply:
        """Make ``keep`` bytes durable: finish the hash from the file, trim the rest, maybe complete."""
        with self.lock:
            if self.generation != generation or self._gone() is not None:
                raise ResetConnection()  # a newer request (or expiry) took over: keep nothing of ours
            if self._file is None or hashed > keep:
                # Never: the hash ran ahead of what is kept. Refuse rather than store a wrong md5.
                raise ResetConnection()
            if hashed < keep:
                hash_file_range(self._file, digests, hashed, keep)
            self._file.truncate(keep)
            self.held = keep
            self.digests = digests
            if self.total is not None and self.held == self.total:
                return self._finalize(expected)
            return self._incomplete()

    def _rollback(self, generation: int) -> None:
        """A refused chunk keeps nothing: drop whatever of it reached the file."""
        with self.lock:
            if self.generation == generation and self._file is not None:
                self._file.truncate(self.held)


def reply_bytes(reply: SessionReply) -> bytes:
    if reply.data is not None:
        return reply.data
    return b"" if reply.body is None else json.dumps(reply.body).encode()


def _error_message(reply: SessionReply | None) -> str | None:
    if reply is None:
        return None
    if reply.body is not None:
        return str(reply.body.get("error", {}).get("message"))
    return (reply.data or b"").decode("utf-8", "replace")
