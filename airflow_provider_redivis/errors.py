"""The errors this provider raises: one root, each message saying what happened and what to do."""

from __future__ import annotations


class RedivisError(Exception):
    """Root of every error raised by this provider."""


class RedivisConfigError(RedivisError, ValueError):
    """Bad input or configuration, found before anything is sent: fix the DAG or the connection."""


class RedivisAPIError(RedivisError):
    """Redivis answered with an error status.

    Carries the HTTP status, Redivis's own error code (``insufficient_scope``, ...) and message.
    ``method`` and ``path`` say which call failed; they never include a query string or a token.
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        method: str | None = None,
        path: str | None = None,
        retry_after: float | None = None,
        hint: str | None = None,
    ) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.method = method
        self.path = path
        self.retry_after = retry_after
        self.hint = hint
        super().__init__(self._render())

    def _render(self) -> str:
        where = f"{self.method} {self.path} " if self.method and self.path else ""
        code = f" ({self.code})" if self.code else ""
        text = f"Redivis API error {self.status}{code}: {where}→ {self.message}"
        if self.hint:
            # Server messages often end with a period already; one is enough.
            text = f"{text.rstrip('.')}. {self.hint.rstrip('.')}."
        return text

    def __reduce__(self):  # type: ignore[no-untyped-def]
        # Keep the keyword arguments when the error crosses a process boundary (triggerer, Celery).
        return (
            _rebuild_api_error,
            (
                type(self),
                self.status,
                self.message,
                self.code,
                self.method,
                self.path,
                self.retry_after,
                self.hint,
            ),
        )


def _rebuild_api_error(cls, status, message, code, method, path, retry_after, hint):  # type: ignore[no-untyped-def]
    return cls(status, message, code=code, method=method, path=path, retry_after=retry_after, hint=hint)


class RedivisAuthError(RedivisAPIError):
    """401 or 403: the token is missing, invalid, or lacks a scope (usually ``data.edit``)."""


class RedivisNotFoundError(RedivisAPIError):
    """404: the resource does not exist, or the token may not see it."""


class RedivisConflictError(RedivisAPIError):
    """409 or a name clash: the resource exists already."""


class RedivisRateLimitError(RedivisAPIError):
    """429 after every retry was spent."""


class RedivisServerError(RedivisAPIError):
    """5xx after every retry was spent."""


class UploadInterruptedError(RedivisError):
    """The transfer gave up after repeated network failures; what the server holds stays resumable.

    Worth a task retry: the next try asks the server for its offset and continues from there.
    """


class ResumableSessionExpiredError(RedivisError):
    """The resumable session URL answered 404 or 410: it expired or was cancelled. Only a new session helps."""


class UploadIntegrityError(RedivisError):
    """What the server stored differs from the source (size or checksum). The upload is not created."""


class StoreTimeoutError(RedivisError):
    """A save to Airflow's metadata database (a checkpoint) did not finish in time: the store does not answer."""


class SourceChangedError(RedivisError):
    """The source file changed while it was being read, or between tries."""


class ReleaseFailedError(RedivisError):
    """Redivis ended the release of a version with status ``failed``; the message carries its reason."""


class WaitTimeoutError(RedivisError):
    """Redivis was still processing when the wait's deadline came; the work goes on in Redivis."""


class UploadFailedError(RedivisError):
    """Redivis finished processing the upload with status ``failed``; carries its ``errorMessage``."""

    def __init__(
        self, message: str, *, upload_uri: str | None = None, error_message: str | None = None
    ) -> None:
        self.upload_uri = upload_uri
        self.error_message = error_message
        super().__init__(message)

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (_rebuild_upload_failed, (type(self), str(self), self.upload_uri, self.error_message))


def _rebuild_upload_failed(cls, message, upload_uri, error_message):  # type: ignore[no-untyped-def]
    return cls(message, upload_uri=upload_uri, error_message=error_message)


def is_final(exc: BaseException) -> bool:
    """Another try would meet the same answer: bad input, auth, a missing resource, a conflict, failed processing.

    Operators fail such a task at once, without retries, with the message that says what to do.
    """
    if isinstance(
        exc,
        (
            RedivisConfigError,
            UploadFailedError,
            ReleaseFailedError,
            RedivisConflictError,
            RedivisNotFoundError,
        ),
    ):
        return True
    return isinstance(exc, RedivisAPIError) and exc.status in (400, 401, 403, 404, 409)


def describe_failure(exc: BaseException | None) -> str:
    """A failure in a few words for a log line: ``HTTP 503``, ``HTTP 403 insufficient_scope``, ``ReadTimeout``.

    Never the exception's text, which may quote a URL.
    """
    if isinstance(exc, RedivisAPIError):
        return f"HTTP {exc.status}" + (f" {exc.code}" if exc.code else "")
    return type(exc).__name__
