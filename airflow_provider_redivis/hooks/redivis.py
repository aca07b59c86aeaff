"""RedivisHook: an Airflow connection turned into one authenticated ``requests`` session, every Redivis REST
call this provider makes, and the waits.

The hook is assembled from one part per concern, each in its own module of this package:

- ``base.py``: the connection, the session and one retried request (``RedivisHookBase``);
- ``sessions.py``: resumable sessions on either transport, and the transfer that fills them;
- ``uploads.py``: uploads, and :meth:`~UploadsAPI.wait_for_upload`;
- ``versions.py``: datasets, versions and tables, and :meth:`~VersionsAPI.wait_for_release`;
- ``connection.py`` (the connection's rules), ``auth.py`` (the token's origin rule) and
  ``api_errors.py`` (error answers into exceptions) hold what the parts share.

``AIRFLOW_CONN_REDIVIS_DEFAULT='redivis://:TOKEN@'`` is enough for redivis.com; ``connection.py`` says
what each field and extra of the connection means.
"""

from __future__ import annotations

from typing import Any

from airflow_provider_redivis.hooks.connection import connection_form_widgets, ui_field_behaviour
from airflow_provider_redivis.hooks.sessions import UploadSessionsAPI
from airflow_provider_redivis.hooks.uploads import UploadsAPI
from airflow_provider_redivis.hooks.versions import VersionsAPI


class RedivisHook(UploadsAPI, UploadSessionsAPI, VersionsAPI):
    """The Redivis REST API for one Airflow connection: one session, timeouts, retries, clear errors.

    :param redivis_conn_id: the Airflow connection (type ``redivis``; token in the password).
    :param timeout: seconds, or a (connect, read) pair, overriding the connection's extras.
    :param retry_policy: replaces the policy built from the connection's extras.
    :param retry_args: ``tenacity.Retrying`` keyword arguments laid over the policy's (for example
        ``{"stop": tenacity.stop_after_attempt(1)}`` to turn retries off).
    :param max_retry_seconds: a cap on the connection's ``max_retry_seconds``.
    """

    # Airflow 2 reads these two only from the hook class's own __dict__, never inherited.
    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """Airflow 2's connection form (Airflow 3.2+ reads ``conn-fields`` from the provider info)."""
        return connection_form_widgets()

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Airflow 2's form layout, from the same declaration as the 3.2+ ``ui-field-behaviour``."""
        return ui_field_behaviour()
