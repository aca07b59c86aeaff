"""RedivisUploadSensor: wait until Redivis has processed an upload (poke, reschedule or deferred)."""

from __future__ import annotations

import ast
import json
import logging
from collections.abc import Mapping
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import (
    AirflowFailException,
    AirflowSensorTimeout,
    AirflowSkipException,
    BaseSensorOperator,
    PokeReturnValue,
    conf,
)

from airflow_provider_redivis.engine.status import (
    NEVER_SEEN,
    REASON_FAILED,
    REASON_REJECTED,
    REASON_TIMEOUT,
    UploadOutcome,
    UploadTarget,
    describe_upload_state,
    paced_interval,
    summarize_upload,
    timeout_message,
    upload_failure,
    upload_outcome,
)
from airflow_provider_redivis.errors import RedivisAPIError, RedivisConfigError, RedivisError
from airflow_provider_redivis.hooks.redivis import RedivisHook
from airflow_provider_redivis.hooks.uploads import least_poll_interval
from airflow_provider_redivis.references import is_template, validate_table_reference
from airflow_provider_redivis.triggers.upload import RedivisUploadTrigger

if TYPE_CHECKING:
    from collections.abc import Sequence

log = logging.getLogger(__name__)

#: The triggerer's own deadline is a backstop behind the trigger's: room for its last status check.
DEFERRAL_TIMEOUT_MARGIN = timedelta(minutes=5)


def upload_target_from(value: object) -> UploadTarget:
    """The upload in what the upload operator returned: its dict, that dict rendered as text, or a uri.

    A template such as ``"{{ ti.xcom_pull('upload') }}"`` renders a dict as its Python repr unless the
    DAG sets ``render_template_as_native_obj=True``; both forms are read here (as literals, never run).
    """
    parsed: object = value
    if isinstance(value, str) and value.strip().startswith("{"):
        text = value.strip()
        try:
            parsed = json.loads(text)
        except ValueError:
            try:
                parsed = ast.literal_eval(text)
            except (ValueError, SyntaxError):
                parsed = None
    uri = parsed.get("uri") if isinstance(parsed, Mapping) else parsed
    if not isinstance(uri, str) or not uri.strip() or uri.strip().startswith("{"):
        raise RedivisConfigError(
            f"upload must be the upload operator's result (a dict with 'uri') or an upload uri such as "
            f"'/tables/owner.dataset:3.table:7/uploads/789'; got {value!r}."
        )
    name = parsed.get("name") if isinstance(parsed, Mapping) else None
    return UploadTarget(upload_uri=uri.strip(), upload_name=name if isinstance(name, str) and name else None)


class RedivisUploadSensor(BaseSensorOperator):
    """Wait until Redivis has processed an upload: succeed on ``completed``, fail at once on ``failed``.

    Give the upload either as ``upload`` (the upload operator's XCom result, e.g. its ``.output``, or
    that result rendered from a template) or as ``table`` plus ``upload_name``. Looked up by name, an
    upload that does not exist yet is waited for; a table that does not exist fails the task.

    ``queued``, ``running`` and a null status keep it waiting, and so do transient API errors
    (connection errors, 429, 5xx), until ``timeout``. A ``failed`` upload fails the task without
    retries, with Redivis's ``errorMessage``; the timeout says what was seen last, and when.

    In ``poke`` and ``reschedule`` mode each sensor checks on its own: ``poke_interval`` is never less
    than Airflow's ``[redivis] min_poll_interval`` (30 s; a warning says when it was raised), so that a
    fleet of sensors stays inside Redivis's request budget (about 100 requests per 100 s per token).
    Deferred, the sensors waiting on one table share one check per interval.

    :param table: ``owner.dataset:next.table``. Templated.
    :param upload_name: the upload's name in the table. Templated.
    :param upload: instead of table and name: the upload operator's result or an upload ``uri``. Templated.
    :param redivis_conn_id: the Redivis connection.
    :param deferrable: wait in the triggerer (no worker slot is held); ``poke_interval`` is the first
        polling interval and it backs off up to ``max_poll_interval``. Default:
        ``[operators] default_deferrable``.
    :param max_poll_interval: the cap of the deferred polling backoff (default 60 s or ``poke_interval``).

    Returns (XCom) the upload's summary: ``uri``, ``name``, ``status``, ``numRows``, ``size``, ``type``.
    """

    template_fields: Sequence[str] = ("table", "upload_name", "upload")
    ui_color = "#9fc5e8"

    def __init__(
        self,
        *,
        table: str | None = None,
        upload_name: str | None = None,
        upload: Any = None,
        redivis_conn_id: str = RedivisHook.default_conn_name,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        max_poll_interval: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.table = table
        self.upload_name = upload_name
        self.upload = upload
        self.redivis_conn_id = redivis_conn_id
        self.deferrable = deferrable
        self.max_poll_interval = max_poll_interval
        self._last_seen: str | None = None
        if upload is not None and (table is not None or upload_name is not None):
            raise RedivisConfigError(
                "Give the upload either as upload (the upload operator's result) or as table and upload_name, "
                "not both."
            )
        if upload is None and (table is None or upload_name is None):
            raise RedivisConfigError(
                "RedivisUploadSensor needs table and upload_name, or upload (the upload operator's result)."
            )
        if table is not None and not is_template(table):
            validate_table_reference(table)
        if isinstance(upload, (str, Mapping)) and not is_template(upload):
            upload_target_from(upload)
        if max_poll_interval is not None and max_poll_interval <= 0:
            raise RedivisConfigError("max_poll_interval must be a positive number of seconds.")

    @cached_property
    def hook(self) -> RedivisHook:
        return RedivisHook(redivis_conn_id=self.redivis_conn_id)

    def _target(self) -> UploadTarget:
        """What to look at, from the rendered fields."""
        if self.upload is not None:
            return upload_target_from(self.upload)
        return UploadTarget(table=validate_table_reference(str(self.table)), upload_name=self.upload_name)

    # -- poke and reschedule ---------------------------------------------------------------------

    def execute(self, context: Any) -> Any:
        try:
            target = self._target()
        except RedivisConfigError as exc:
            raise AirflowFailException(str(exc)) from exc
        if self.deferrable:
            return self._execute_deferrable(context, target)
        self.poke_interval, warning = paced_interval(
            "poke_interval", self.poke_interval, least_poll_interval()
        )
        if warning:
            self.log.warning("%s", warning)
        try:
            return super().execute(context)
        except AirflowSensorTimeout as exc:
            # Airflow's own message says only how long; this one says what Redivis answered last.
            raise AirflowSensorTimeout(
                timeout_message(target, self.timeout, self._last_seen or NEVER_SEEN)
            ) from exc

    def poke(self, context: Any) -> bool | PokeReturnValue:
        target = self._target()
        try:
            check = self.hook.check_upload(target)
        except (RedivisAPIError, RedivisConfigError) as exc:
            # 400, 401, 403, a missing table or upload: waiting longer cannot change the answer.
            raise AirflowFailException(str(exc)) from exc
        self._last_seen = check.seen
        if check.error is not None:
            self.log.warning(
                "Status check of upload %s failed, still waiting: %s", target.describe(), check.error
            )
            return False
        if check.upload is None:
            self.log.info("Upload %s is not created yet; waiting", target.describe())
            return False
        if check.outcome is UploadOutcome.COMPLETED:
            self.log.info("Upload %s completed: %s rows", target.describe(), check.upload.get("numRows"))
            return PokeReturnValue(is_done=True, xcom_value=summarize_upload(check.upload))
        if check.outcome is UploadOutcome.FAILED:
            # The same file would fail the same way: no retry.
            raise AirflowFailException(str(upload_failure(check.upload)))
        self.log.info("Upload %s: %s; waiting", target.describe(), describe_upload_state(check.upload))
        return False

    # -- deferrable ------------------------------------------------------------------------------

    def _execute_deferrable(self, context: Any, target: UploadTarget) -> Any:
        # One look first: an upload that is already processed needs no trip through the triggerer.
        try:
            done = self.poke(context)
        except AirflowFailException as exc:
            # What BaseSensorOperator.execute does for a poke that fails, since this path bypasses it.
            if self.soft_fail or getattr(self, "never_fail", False):
                raise AirflowSkipException(
                    f"Skipping ({'soft_fail' if self.soft_fail else 'never_fail'}): {exc}"
                ) from exc
            raise
        if isinstance(done, PokeReturnValue):
            return done.xcom_value
        self.defer(
            trigger=RedivisUploadTrigger(
                upload_uri=target.upload_uri,
                table=target.table,
                upload_name=target.upload_name,
                redivis_conn_id=self.redivis_conn_id,
                poll_interval=self.poke_interval,
                max_poll_interval=self.max_poll_interval,
                timeout=self.timeout,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout) + DEFERRAL_TIMEOUT_MARGIN,
        )

    def execute_complete(self, context: Any, event: dict[str, Any]) -> Any:
        """Resumes after the trigger fired: its one event decides."""
        upload = event.get("upload")
        message = str(event.get("message") or "the trigger gave no message")
        if event.get("status") == "success" and upload and upload_outcome(upload) is UploadOutcome.COMPLETED:
            self.log.info("%s", message)
            return summarize_upload(upload)
        reason = event.get("reason")
        if reason == REASON_TIMEOUT:
            raise AirflowSensorTimeout(message)
        if reason in (REASON_FAILED, REASON_REJECTED) or (
            upload and upload_outcome(upload) is UploadOutcome.FAILED
        ):
            raise AirflowFailException(message)
        # Unexpected trouble in the triggerer: the task's retries may do better.
        raise RedivisError(f"Waiting for the Redivis upload ended without success: {message}")
