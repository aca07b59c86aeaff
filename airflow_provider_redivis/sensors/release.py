"""RedivisReleaseSensor: wait for a new release of a Redivis dataset (poke, reschedule or deferred).

On Airflow 2.11, which has no event-driven scheduling, this is what waits for a release; on Airflow 3 a
DAG scheduled on :func:`~airflow_provider_redivis.triggers.release.release_asset` is the better fit.
"""

from __future__ import annotations

import time
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import (
    AirflowSensorTimeout,
    BaseSensorOperator,
    PokeReturnValue,
    conf,
)

from airflow_provider_redivis.errors import RedivisConfigError
from airflow_provider_redivis.hooks.redivis import RedivisHook
from airflow_provider_redivis.hooks.uploads import least_poll_interval
from airflow_provider_redivis.triggers.release import release_payload
from airflow_provider_redivis.triggers.release_wait import RedivisReleaseWaitTrigger

if TYPE_CHECKING:
    from collections.abc import Sequence


class RedivisReleaseSensor(BaseSensorOperator):
    """Wait until ``dataset`` has a version released after ``after_tag``; return that release.

    The return value (XCom) is the release: ``{"dataset", "dataset_uri", "dataset_url", "tag", "index",
    "version_uri", "released_at"}``, the same as the release trigger's event.

    :param dataset: ``owner.dataset`` (templated).
    :param after_tag: the version already handled, like ``v1.2`` (templated); None: the version current
        when the sensor starts.
    :param deferrable: wait in the triggerer, sharing its looks with every other wait on the dataset.
    """

    template_fields: Sequence[str] = ("dataset", "after_tag")

    def __init__(
        self,
        *,
        dataset: str,
        after_tag: str | None = None,
        redivis_conn_id: str = RedivisHook.default_conn_name,
        poke_interval: float = 60.0,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        **kwargs: Any,
    ) -> None:
        super().__init__(poke_interval=poke_interval, **kwargs)
        if self.mode == "reschedule" and not after_tag:
            # Each reschedule starts the task again: "the version current at the start" would move with it.
            raise RedivisConfigError(
                f"{self.task_id}: in mode='reschedule' give after_tag (the version already handled), or use "
                "deferrable=True or mode='poke'."
            )
        self.dataset = dataset
        self.after_tag = after_tag
        self.redivis_conn_id = redivis_conn_id
        self.deferrable = deferrable
        self._after_index: int | None = None

    @cached_property
    def hook(self) -> RedivisHook:
        return RedivisHook(redivis_conn_id=self.redivis_conn_id)

    def _baseline(self) -> int:
        if self.after_tag:
            index = self.hook.get_version(self.dataset, self.after_tag).get("index")
            if not isinstance(index, int):
                raise RedivisConfigError(
                    f"Redivis gave no index for version {self.after_tag} of {self.dataset}."
                )
            return index
        current = self.hook.releases_after(self.dataset, None).current_index
        return -1 if current is None else current

    def execute(self, context: Any) -> Any:
        self._after_index = self._baseline()
        if not self.deferrable:
            return super().execute(context)
        self.defer(
            trigger=RedivisReleaseWaitTrigger(
                dataset=self.dataset,
                after_index=self._after_index,
                end_time=time.time() + self.timeout,
                redivis_conn_id=self.redivis_conn_id,
                poll_interval=max(float(self.poke_interval), least_poll_interval()),
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout) + timedelta(minutes=5),
        )
        return None

    def poke(self, context: Any) -> bool | PokeReturnValue:
        after = self._after_index if self._after_index is not None else self._baseline()
        check = self.hook.releases_after(self.dataset, after)
        if not check.new_versions:
            self.log.info("No version of %s released past index %s yet", self.dataset, after)
            return False
        return PokeReturnValue(
            is_done=True, xcom_value=release_payload(self.dataset, check, check.new_versions[0])
        )

    def execute_complete(self, context: Any, event: dict[str, Any]) -> Any:
        if event.get("status") != "success":
            raise AirflowSensorTimeout(str(event.get("message")))
        release = event["release"]
        self.log.info("%s released %s", self.dataset, release.get("tag"))
        return release
