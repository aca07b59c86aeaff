"""The transport of a resumable upload: sends a source to one session URL. Plain Python, no Airflow.

What to send and what an answer means are decided in :mod:`airflow_provider_redivis.engine.protocol`;
how long to wait and when to give up in :mod:`airflow_provider_redivis.engine.retry`. This module reads the
source, streams each request body from it (hashed as it goes, never held whole), and proves what the
server stored before it returns.
"""

from __future__ import annotations

import logging
import time
from typing import IO, TYPE_CHECKING, Any

import requests
import tenacity

from airflow_provider_redivis.engine.body_timeout import read_timeout_hint, send_bodies_under_read_timeout
from airflow_provider_redivis.engine.checksums import (
    SourceChecksums,
    algorithms_for,
    goog_hash_header,
    parse_goog_hash,
    validate_checksum,
)
from airflow_provider_redivis.engine.protocol import (
    CHUNK_UNIT,
    MAX_CHUNK_SIZE,
    MAX_GROWTH,
    RequestSizer,
    SessionAnswerError,
    SessionStatus,
    StoredObject,
    content_range,
    interpret_response,
    is_hash_refusal,
    redact_session_url,
    status_query_range,
    verify_stored,
)
from airflow_provider_redivis.engine.retry import RetryPolicy, is_retryable_error
from airflow_provider_redivis.engine.transfer_source import BytesBody, RequestBody, SharedReader, TailHash
from airflow_provider_redivis.errors import UploadIntegrityError, UploadInterruptedError, describe_failure

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)

#: A last request up to this size is hashed just before it is sent (a few milliseconds).
PREHASH_LIMIT = 32 * 1024 * 1024
#: Else, unless its hash is ready, all of it but this much goes first, and this last.
FINAL_TAIL = 8 * 1024 * 1024


class _NoProgress(SessionAnswerError):
    """A 308 that kept nothing new: worth a pause and another go, like a 503."""


def _is_transient(exc: BaseException) -> bool:
    return isinstance(exc, _NoProgress) or is_retryable_error(exc)


class ResumableSession:
    """Sends a source to one resumable-session URL, resuming from whatever the server holds.

    :param http: a ``requests.Session`` that adds no Redivis token to the session URL (the URL is its
        own credential); :meth:`RedivisHook.resumable_session` hands out such sessions.
    :param total: the source's size, or None when it is only known once the source ends.
    :param chunk_size: bytes per request; None sizes requests from the measured rate.
    :param timeout: (connect, read) seconds: the read timeout also bounds each wait to send more of a body
        (:mod:`~airflow_provider_redivis.engine.body_timeout` mounts its adapter on ``http`` for the URL's origin).
    :param checksum: ``"auto"`` (crc32c), ``"crc32c"``, ``"md5"`` or None (the size alone, unless an earlier
        try sent some of the bytes: those are proven by crc32c).
    """

    def __init__(
        self,
        http: requests.Session,
        url: str,
        total: int | None,
        *,
        chunk_size: int | None = None,
        checksum: str | None = "auto",
        timeout: tuple[float, float] = (10.0, 120.0),
        retry_policy: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.http = http
        self.url = url
        # A body takes longer to send than a connect takes: a slow or paused link must not cut it.
        send_bodies_under_read_timeout(http, url)
        self.total = total
        self.sizer = RequestSizer(chunk_size, unknown_total=total is None)
        self.checksum = validate_checksum(checksum)
        self.timeout = timeout
        self.retry_policy = retry_policy or RetryPolicy()
        self._sleep = sleep
        self._clock = clock
        self._cancelled = False

    def __repr__(self) -> str:
        return f"ResumableSession(url={redact_session_url(self.url)!r}, total={self.total})"

    def cancel(self) -> None:
        """Stop after the request in flight; what the server holds stays resumable."""
        self._cancelled = True

    # -- one request ----------------------------------------------------------------------------

    def _put(self, body: bytes | RequestBody | BytesBody, headers: Mapping[str, str]) -> SessionStatus:
        """One PUT and what its answer means; a refusal of the request's ``x-goog-hash`` is final."""
        data: Any = body  # requests sends an iterable with a length as one body of that length
        response = self.http.put(
            self.url,
            data=data,
            headers={"Content-Type": "application/octet-stream", **headers},
            timeout=self.timeout,
            allow_redirects=False,
        )
        try:
            if "x-goog-hash" in headers and is_hash_refusal(response.status_code, response.content):
                raise UploadIntegrityError(
                    "The upload server refused the last request: the bytes it received do not match the "
                    f"source's {'/'.join(parse_goog_hash(headers['x-goog-hash']))} (the source changed while it was "
                    "read or since an earlier try sent part of it, or bytes were corrupted on the way). The upload "
                    "was not created; run the task again to start a new session."
                )
            return interpret_response(response.status_code, response.headers, response.content)
        finally:
            response.close()

    def _retrying(self, doing: str) -> tenacity.Retrying:
        def log_retry(state: tenacity.RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            wait = state.next_action.sleep if state.next_action else 0.0
            log.warning(
                "%s failed (%s); asking the server what it holds in %.1f s",
                doing,
                describe_failure(exc),
                wait,
            )

        args = self.retry_policy.retry_args(_is_transient, before_sleep=log_retry)
        return tenacity.Retrying(sleep=self._sleep, **args)

    def query_status(self, total: int | None = None) -> SessionStatus:
        """Ask the server what it holds, under the retry policy (``total``: see :meth:`_query_once`)."""
        try:
            return self._retrying("Asking the upload server for its offset")(self._query_once, total)
        except (requests.RequestException, SessionAnswerError) as exc:
            failure, hint = describe_failure(exc), read_timeout_hint(exc, self.timeout[1])
        raise _gave_up(failure, "asking the upload server for its offset", hint)

    def _query_once(self, total: int | None = None) -> SessionStatus:
        """``total``: known once a stream of unknown size ended; the query then also completes the object."""
        return self._put(b"", {"Content-Range": status_query_range(self.total if total is None else total)})

    # -- the transfer ---------------------------------------------------------------------------

    def upload(
        self,
        reader: IO[bytes],
        start_offset: int,
        *,
        on_progress: Callable[[int, int | None], None] | None = None,
        check_source: Callable[[], None] | None = None,
    ) -> StoredObject:
        """Send ``reader`` from ``start_offset`` until the object is complete; prove it; return what was stored.

        ``reader`` is seekable and yields the same bytes on every read (``check_source`` raises
        :class:`SourceChangedError` otherwise). The bytes before ``start_offset`` (sent by an earlier try)
        are hashed from the local source, not fetched from the server.

        Errors never carry the session URL: a network failure that outlasts the retry policy is an
        :class:`UploadInterruptedError` naming only the kind of failure.
        """
        try:
            return _Transfer(self, reader, start_offset, on_progress, check_source).run()
        except (requests.RequestException, SessionAnswerError) as exc:
            failure, hint = describe_failure(exc), read_timeout_hint(exc, self.timeout[1])
        # Raised outside the except block: no chained exception carries urllib3's text with the URL.
        raise _gave_up(failure, "sending the source", hint)


class _Transfer:
    """One call of :meth:`ResumableSession.upload`: the offset the server confirmed, and what is owed next."""

    def __init__(
        self,
        session: ResumableSession,
        reader: IO[bytes],
        offset: int,
        on_progress: Callable[[int, int | None], None] | None,
        check_source: Callable[[], None] | None,
    ) -> None:
        self.session = session
        self.source = SharedReader(reader)
        #: The last request's bytes, hashed ahead on a thread (crc32c only).
        self.tail: TailHash | None = None
        self.offset = offset
        self.total = session.total
        self.on_progress = on_progress
        self.check_source = check_source
        #: Bytes an earlier try sent: even under checksum=None, only a whole-object hash shows they are the source's.
        self.unproven_earlier = offset if session.checksum is None else 0
        self.checksum = "auto" if self.unproven_earlier else session.checksum
        self.checksums = SourceChecksums(algorithms_for(self.checksum))
        self.needs_query = False
        #: The end of the furthest request sent: the most the server may claim to hold.
        self.sent_end = offset
        #: The end of the request that got a completing answer.
        self.final_request_end: int | None = None
        self.early_completions = 0

    def run(self) -> StoredObject:
        try:
            return self._run()
        finally:
            if self.tail is not None:
                self.tail.cancel()

    def _run(self) -> StoredObject:
        self.checksums.hash_range(self.source.read_at, self.offset)
        while True:
            status = self.session._retrying(f"The request at byte {self.offset}")(self._step)
            if status.complete:
                stored = self._confirmed(status)
                if stored is not None:
                    return self._verified(stored)
            elif self.on_progress is not None:
                self.on_progress(self.offset, self.total)

    def _step(self) -> SessionStatus:
        """Ask where the server stands if the last request went unanswered, then send the next request."""
        if self.session._cancelled:
            raise InterruptedError("upload cancelled; the session stays resumable")
        if self.needs_query:
            status = self.session._query_once(self.total)
            self.needs_query = False
            if status.complete:
                self.final_request_end = self.total  # the server's own answer about the whole object
                return status
            self._accept(status.offset)
        if self.check_source is not None:
            self.check_source()
        body, headers, end = self._next_request()
        clock, sizer = self.session._clock, self.session.sizer
        started = clock()
        self.sent_end = max(self.sent_end, end)
        try:
            status = self.session._put(body, headers)
        except (requests.RequestException, SessionAnswerError):
            self.needs_query = True
            sizer.record_failure(0 if isinstance(body, bytes) else body.sent, clock() - started)
            raise
        if status.complete:
            self.final_request_end = end
            return status
        before = self.offset
        self._accept(status.offset)
        if self.offset <= before:
            sizer.record_failure(len(body), clock() - started)
            raise _NoProgress(308, f"the upload server kept nothing of bytes {before}-{end - 1}")
        sizer.record(self.offset - before, clock() - started)
        return status

    def _accept(self, held: int) -> None:
        # The server's Range decides, even when it is less than what was sent; more than was sent is a lie.
        if held > self.sent_end:
            raise UploadIntegrityError(
                f"The upload server claims {held} bytes but only {self.sent_end} were sent. The upload was not "
                "created; run the task again to start a new session."
            )
        self.offset = held

    def _next_request(self) -> tuple[bytes | RequestBody | BytesBody, dict[str, str], int]:
        """The next request's body, headers and end; the last one carries the whole source's hashes."""
        sizer = self.session.sizer
        size = sizer.next_size()
        if self.total is None:
            return self._next_unknown_total_request(size)
        total = self.total
        remaining = total - self.offset
        # The last request too keeps to the rate, even when a longer tail was hashed ahead (it is hashed again).
        if remaining > size:
            return self._body(size, total, final=False)
        if not self._final_hash_ready(total):
            if remaining > PREHASH_LIMIT and sizer.fixed is None:
                # Reading all of it before sending would leave the link idle: all but a short tail goes first.
                return self._body((remaining - FINAL_TAIL) // CHUNK_UNIT * CHUNK_UNIT, total, final=False)
            self.checksums.hash_range(self.source.read_at, total)
        self.source.check_no_growth(total)
        return self._body(remaining, total, final=True)

    def _body(
        self, length: int, total: int, *, final: bool
    ) -> tuple[bytes | RequestBody, dict[str, str], int]:
        end = self.offset + length
        body: bytes | RequestBody = (
            RequestBody(self.source, self.offset, length, self.checksums) if length else b""
        )
        if not final:
            self._plan_tail(end, length, total)
            return body, _range(self.offset, end, None), end
        # The final request states the hashes, so the server itself refuses bytes that differ from them.
        headers = _range(self.offset, end, total)
        if self.checksums.algorithms:
            headers["x-goog-hash"] = goog_hash_header(self.checksums.digests())
        return body, headers, end

    def _plan_tail(self, end: int, length: int, total: int) -> None:
        """If the request after this one can be the last, hash its bytes now, on a thread, while this one streams."""
        if self.tail is not None:
            if self.tail.start == end:
                return
            self.tail.cancel()
            self.tail = None
        left = total - end
        fits = self.session.sizer.fixed or min(MAX_CHUNK_SIZE, length * MAX_GROWTH)
        if self.checksums.crc32c_only and 0 < left <= fits:
            self.tail = TailHash(self.source, end, total)

    def _final_hash_ready(self, total: int) -> bool:
        """Whether the whole source's hash is known, joining the tail hashed ahead to what was sent."""
        if self.checksums.position >= total:
            return True  # an earlier attempt at the final request hashed it all
        tail = self.tail
        if tail is None or tail.end != total or self.checksums.position > tail.start:
            return False
        crc = tail.result(wait_if_left=PREHASH_LIMIT)
        if crc is None:
            return False
        self.checksums.hash_range(self.source.read_at, tail.start)  # what a cut request left unhashed
        self.checksums.append_crc32c(crc, total - tail.start)
        return True

    def _next_unknown_total_request(self, size: int) -> tuple[bytes | BytesBody, dict[str, str], int]:
        # The Content-Range goes out before the body, so the request is read first: one byte more tells
        # whether it is the last.
        data = self.source.read_at(self.offset, size)
        last = len(data) < size or not self.source.read_at(self.offset + len(data), 1)
        end = self.offset + len(data)
        self.checksums.update(self.offset, data)
        body = BytesBody(data) if data else b""  # an empty iterable would go as a chunked body
        if not last:
            return body, _range(self.offset, end, None), end
        self.total = end  # the source ended: from now on the total is known
        headers = _range(self.offset, end, end)
        if self.checksums.algorithms:
            headers["x-goog-hash"] = goog_hash_header(self.checksums.digests())
        return body, headers, end

    def _confirmed(self, status: SessionStatus) -> StoredObject | None:
        """A completing answer that states the size of a request that reached the end; else ask the server.

        None: the server answered 200 too early and holds less than all of it; the transfer goes on.
        """
        stored = status.stored or StoredObject(size=None)
        reached_end = self.total is not None and self.final_request_end == self.total
        if stored.size is not None and reached_end:
            return stored
        self.early_completions += 1
        log.warning(
            "The upload server answered %s; asking it what it holds before anything is created",
            "complete without saying how many bytes it stored"
            if stored.size is None
            else "complete before the last byte was sent",
        )
        again = self.session.query_status(self.total)
        if again.complete and again.stored is not None and again.stored.size is not None:
            return again.stored
        if again.complete or self.early_completions > 2:
            raise UploadIntegrityError(
                "The upload server says the upload is complete but does not say how many bytes it stored, so "
                "nothing proves it holds the source. The upload was not created; run the task again to start "
                "a new session, or check that the connection's host points at Redivis."
            )
        self._accept(again.offset)
        self.final_request_end = None
        return None

    def _verified(self, stored: StoredObject) -> StoredObject:
        total = self.total if self.total is not None else self.checksums.position
        # An earlier try's last request may have completed the object: hash the rest locally.
        self.checksums.hash_range(self.source.read_at, total)
        if self.check_source is not None:
            self.check_source()
        computed = self.checksums.digests()
        if self.checksum is not None and stored.hashes and not set(stored.hashes) & set(computed):
            # The server reports only a hash this engine did not compute (md5, say): compute it now, once.
            missing = [name for name in ("crc32c", "md5") if name in stored.hashes]
            extra = SourceChecksums(missing)  # type: ignore[arg-type]
            extra.hash_range(self.source.read_at, total)
            computed.update(extra.digests())
        compared = verify_stored(
            stored, total, computed, checksum=self.checksum, earlier=self.unproven_earlier
        )
        log.info("The upload server holds all %d bytes; %s match the source", total, compared)
        if self.on_progress is not None:
            self.on_progress(total, total)
        return stored


def _range(first: int, end: int, total: int | None) -> dict[str, str]:
    if end == first:
        return {"Content-Range": status_query_range(total)}
    return {"Content-Range": content_range(first, end - 1, total)}


def _gave_up(failure: str, doing: str, hint: str) -> UploadInterruptedError:
    return UploadInterruptedError(
        f"Gave up {doing} after repeated failures ({failure}).{hint} The bytes the upload server holds are kept: "
        "the task's next try resumes from them."
    )
