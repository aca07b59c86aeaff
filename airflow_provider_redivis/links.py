"""The task's "Redivis table" and "Redivis upload" buttons: the ``url`` fields Redivis returned, never guessed.

The operator saves each URL to XCom when it has it. Airflow 3 asks for the link when the try ends, in the
task's process, and keeps the answer; Airflow 2's web server asks later. Both read the same XCom.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import BaseOperatorLink, XCom

if TYPE_CHECKING:
    from airflow.sdk.types import TaskInstanceKey

XCOM_TABLE_URL = "redivis_table_url"
XCOM_UPLOAD_URL = "redivis_upload_url"


def _saved_url(ti_key: TaskInstanceKey, key: str) -> str:
    value = XCom.get_value(ti_key=ti_key, key=key)
    return value if isinstance(value, str) and value.startswith(("https://", "http://")) else ""


class RedivisTableLink(BaseOperatorLink):
    """The table the upload went into, as Redivis shows it."""

    name = "Redivis table"

    def get_link(self, operator: Any, *, ti_key: TaskInstanceKey) -> str:
        return _saved_url(ti_key, XCOM_TABLE_URL)


class RedivisUploadLink(BaseOperatorLink):
    """The upload itself: its status, row count and errors in Redivis."""

    name = "Redivis upload"

    def get_link(self, operator: Any, *, ti_key: TaskInstanceKey) -> str:
        return _saved_url(ti_key, XCOM_UPLOAD_URL)
