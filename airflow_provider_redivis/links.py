"""The task's "Redivis table" and "Redivis upload" buttons: the ``url`` fields Redivis returned, never guessed.

The operator publishes each URL as soon as it knows it: on itself (``redivis_links``) and to XCom.
Airflow 3 asks for the link when a try ends, in the task's process, with the operator that ran the try,
and keeps the answer for its API server: the link answers from what that operator published, with no
lookup, so a try that failed before Redivis named a URL answers "" (a lookup would log "XCom not found"
as an error, a second failure in the failed try's log). Airflow 2's web server asks later, with the
serialized operator: the link reads the XCom (absent is None there, and silent).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import airflow
from airflow.providers.common.compat.sdk import BaseOperatorLink, XCom

if TYPE_CHECKING:
    from airflow.sdk.types import TaskInstanceKey

XCOM_TABLE_URL = "redivis_table_url"
XCOM_UPLOAD_URL = "redivis_upload_url"
#: Airflow 3 asks in the task's process when the try ends; Airflow 2 in the web server, later.
_ASKED_WHEN_THE_TRY_ENDS = int(airflow.__version__.split(".", 1)[0]) >= 3


def _saved_url(operator: Any, ti_key: TaskInstanceKey, key: str) -> str:
    if _ASKED_WHEN_THE_TRY_ENDS:
        value = (getattr(operator, "redivis_links", None) or {}).get(key)
    else:
        value = XCom.get_value(ti_key=ti_key, key=key)
    return value if isinstance(value, str) and value.startswith(("https://", "http://")) else ""


class RedivisTableLink(BaseOperatorLink):
    """The table the upload went into, as Redivis shows it."""

    name = "Redivis table"

    def get_link(self, operator: Any, *, ti_key: TaskInstanceKey) -> str:
        return _saved_url(operator, ti_key, XCOM_TABLE_URL)


class RedivisUploadLink(BaseOperatorLink):
    """The upload itself: its status, row count and errors in Redivis."""

    name = "Redivis upload"

    def get_link(self, operator: Any, *, ti_key: TaskInstanceKey) -> str:
        return _saved_url(operator, ti_key, XCOM_UPLOAD_URL)
