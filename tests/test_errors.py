"""Which errors end a task at once: another try would meet the same answer."""

from __future__ import annotations

import pytest
import requests

from airflow_provider_redivis.errors import (
    RedivisAPIError,
    RedivisAuthError,
    RedivisConfigError,
    RedivisConflictError,
    RedivisNotFoundError,
    RedivisServerError,
    ResumableSessionExpiredError,
    SourceChangedError,
    UploadFailedError,
    UploadIntegrityError,
    UploadInterruptedError,
    is_final,
)


@pytest.mark.parametrize(
    ("error", "final"),
    [
        (RedivisConfigError("bad table"), True),
        (UploadFailedError("row 7"), True),
        (RedivisAuthError(403, "no data.edit", code="insufficient_scope"), True),
        (RedivisAPIError(400, "released version"), True),
        (RedivisNotFoundError(404, "no table"), True),
        (RedivisConflictError(409, "name taken"), True),
        (RedivisServerError(503, "busy"), False),
        (RedivisAPIError(429, "slow down"), False),
        (UploadInterruptedError("network"), False),
        (ResumableSessionExpiredError("gone"), False),
        (UploadIntegrityError("md5"), False),
        (SourceChangedError("moved"), False),
        (requests.ConnectionError("reset"), False),
    ],
)
def test_is_final(error: BaseException, final: bool) -> None:
    assert is_final(error) is final
