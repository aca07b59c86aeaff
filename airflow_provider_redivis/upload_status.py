"""What an upload's ``status`` means: the one place the hook, operator, sensor and trigger ask. Plain Python."""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any

from airflow_provider_redivis.errors import UploadFailedError

if TYPE_CHECKING:
    from collections.abc import Mapping


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
