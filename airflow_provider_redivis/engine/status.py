"""What an upload's status means, and the words for waiting on it: the one place the hook, the operators,
the sensor and the trigger ask. Plain Python.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from airflow_provider_redivis.engine.retry import is_retryable_error
from airflow_provider_redivis.errors import (
    RedivisAPIError,
    RedivisConfigError,
    UploadFailedError,
    describe_failure,
)
from airflow_provider_redivis.references import encode_reference, validate_table_reference

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping

#: Each quiet poll waits this much longer than the one before, up to the cap.
BACKOFF_FACTOR = 1.5
#: The default first interval of a deferred wait: cheap, since the deferred waits on one table share a check.
DEFERRED_POLL_INTERVAL = 10.0
#: The default cap of a deferred wait's backoff: processing a large upload takes minutes, a minute late is fine.
DEFAULT_MAX_POLL_INTERVAL = 60.0
#: The least interval of a wait that polls on its own (a sensor in poke or reschedule mode, a task's wait in
#: its worker), unless Airflow's ``[redivis] min_poll_interval`` says otherwise. Redivis allows about 100
#: requests per 100 s per token: 16 such waits (Airflow's default ``max_active_tasks_per_dag``) then make at
#: most 16 x 100 / 30 = 53, half of it; the rest is for the uploads. Deferred waits share one check per table.
MIN_POLL_INTERVAL = 30.0

# The trigger's event ``reason``s beside ``status`` ("success" | "error"): what a resumed task does.
REASON_COMPLETED = "completed"  # the upload is processed
REASON_FAILED = "failed"  # Redivis could not process it: another try meets the same file
REASON_TIMEOUT = "timeout"  # still pending at the deadline
REASON_REJECTED = "rejected"  # Redivis refused the request (401, 403, 404, ...): waiting cannot fix it
REASON_ERROR = "error"  # anything unexpected: a new try may do better

NEVER_SEEN = "never: no status check has succeeded"


class UploadOutcome(str, enum.Enum):
    COMPLETED = "completed"
    FAILED = "failed"
    #: ``queued``, ``running``, null (no content yet) or a status this provider does not know yet.
    PENDING = "pending"


def upload_outcome(upload: Mapping[str, Any]) -> UploadOutcome:
    status = upload.get("status")
    if status == "completed":
        return UploadOutcome.COMPLETED
    if status == "failed":
        return UploadOutcome.FAILED
    return UploadOutcome.PENDING


def upload_failure(upload: Mapping[str, Any]) -> UploadFailedError:
    """The error for a failed upload, carrying Redivis's ``errorMessage``."""
    message = upload.get("errorMessage") or "no errorMessage given"
    return UploadFailedError(
        f"Redivis could not process upload {upload.get('name')!r} ({upload.get('uri')}): {message}. "
        "Fix the file or the upload options (delimiter, header row, schema) and run the task again; "
        "use if_exists='replace' to overwrite the failed upload.",
        upload_uri=upload.get("uri"),
        error_message=message,
    )


def summarize_upload(upload: Mapping[str, Any]) -> dict[str, Any]:
    """The part of an upload resource that goes to XCom and events."""
    keys = ("uri", "name", "status", "numRows", "size", "type", "errorMessage")
    return {key: upload.get(key) for key in keys}


@dataclass(frozen=True)
class UploadTarget:
    """The upload to wait for: its ``uri`` (as the upload operator returns it), or table and name.

    With a ``uri``, ``upload_name`` only labels the log lines and messages.
    """

    upload_uri: str | None = None
    table: str | None = None
    upload_name: str | None = None

    def __post_init__(self) -> None:
        if self.upload_uri:
            return
        if not (self.table and self.upload_name):
            raise RedivisConfigError(
                "Say which upload to wait for: either upload (the upload operator's result, or its uri) or "
                "both table and upload_name."
            )

    def describe(self) -> str:
        if self.upload_uri:
            return f"{self.upload_name!r} ({self.upload_uri})" if self.upload_name else self.upload_uri
        return f"{self.upload_name!r} in {self.table}"

    @property
    def table_uri(self) -> str | None:
        """The uri of the upload's table (``/tables/owner.dataset:3.table:7``), whose listing holds the
        upload; None when it cannot be told (then only the upload's own GET can find it)."""
        if self.upload_uri:
            head, sep, _ = self.upload_uri.partition("/uploads/")
            start = head.find("/tables/")
            if not sep or start < 0 or "/" in head[start + len("/tables/") :]:
                return None
            return head[start:]
        try:
            return f"/tables/{encode_reference(validate_table_reference(str(self.table)))}"
        except RedivisConfigError:
            return None


@dataclass(frozen=True)
class UploadCheck:
    """What one look at an upload found; ``seen`` says it in words, with the time, for a log or a timeout."""

    outcome: UploadOutcome
    #: The upload resource; None when it does not exist yet or the look failed.
    upload: dict[str, Any] | None
    seen: str
    #: A transient failure of the look (a 503, a timeout): the wait goes on.
    error: BaseException | None = None

    @property
    def retry_after(self) -> float:
        """Seconds the server asked us to wait before the next look (0 when it did not ask)."""
        return (self.error.retry_after or 0.0) if isinstance(self.error, RedivisAPIError) else 0.0


def look(fetch: Callable[[], dict[str, Any] | None]) -> UploadCheck:
    """One status check. A transient failure is a pending check; any other failure raises (waiting cannot fix it)."""
    checked_at = utc_now()
    try:
        upload = fetch()
    except Exception as exc:
        if not is_retryable_error(exc):
            raise
        return failed_check(exc, checked_at)
    return found_check(upload, checked_at)


def found_check(upload: dict[str, Any] | None, checked_at: datetime) -> UploadCheck:
    """What a look that found ``upload`` (None: not created yet) at ``checked_at`` saw."""
    outcome = upload_outcome(upload) if upload is not None else UploadOutcome.PENDING
    return UploadCheck(outcome, upload, f"{describe_upload_state(upload)} at {iso_time(checked_at)}")


def failed_check(exc: BaseException, checked_at: datetime) -> UploadCheck:
    """A look that failed in passing (``is_retryable_error``): pending, carrying the error."""
    kind = "answering with an error" if isinstance(exc, RedivisAPIError) else "unreachable"
    return UploadCheck(
        UploadOutcome.PENDING, None, f"{kind} ({describe_failure(exc)}) at {iso_time(checked_at)}", exc
    )


def poll_intervals(first: float, cap: float) -> Iterator[float]:
    """Seconds between status checks: ``first``, then 1.5x longer each time, never more than ``cap``."""
    interval = min(first, cap)
    while True:
        yield interval
        interval = min(interval * BACKOFF_FACTOR, cap)


def paced_interval(name: str, requested: float | None, least: float) -> tuple[float, str | None]:
    """The interval of a wait that polls on its own: ``requested`` (None: ``least``), never below ``least``.

    :returns: the interval, and a warning for the log when it is longer than the one asked for.
    """
    if requested is None:
        return least, None
    if requested >= least:
        return requested, None
    return least, (
        f"{name}={requested:g} s is below {least:g} s, the least interval of a wait that polls on its own "
        "(Redivis allows about 100 API requests per 100 s per token, for every task using it): checking "
        f"every {least:g} s. Defer the wait (deferrable=True) to share one check per table among all the "
        "waits; Airflow's [redivis] min_poll_interval sets the least."
    )


def describe_upload_state(upload: Mapping[str, Any] | None) -> str:
    """What one look at the upload saw, in words for a log or an error message."""
    if upload is None:
        return "not created yet"
    status = upload.get("status")
    if status is None:
        return "status null (no content yet)"
    return f"status {status!r}"


def timeout_message(target: UploadTarget, timeout: float, last_seen: str) -> str:
    return (
        f"Gave up waiting for Redivis upload {target.describe()} after {timeout:.0f} s; it was last seen "
        f"{last_seen}. Processing goes on in Redivis: wait longer (a larger timeout) or look at the upload in "
        "the Redivis web app."
    )


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def iso_time(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")
