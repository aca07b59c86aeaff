"""RedivisReleaseWaitTrigger: a deferred wait for a dataset's next release (the sensor's, on Airflow 2 and 3).

It shares its looks with every watcher of the dataset in the triggerer (``release_poll.py``) and fires
one event: the first version released past ``after_index``, or a timeout.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_redivis.hooks.redivis import RedivisHook
from airflow_provider_redivis.triggers.release import release_payload
from airflow_provider_redivis.triggers.release_poll import watching
from airflow_provider_redivis.triggers.shared_poll import FIRST_LOOK_GRACE

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


class RedivisReleaseWaitTrigger(BaseTrigger):
    """Fire once: ``{"status": "success", "release": <payload>}`` for the first version released past
    ``after_index``, or ``{"status": "timeout", "message": ...}`` at ``end_time`` (a UNIX timestamp).

    :param dataset: ``owner.dataset``.
    :param after_index: the index of the last version already seen; -1: any released version.
    """

    def __init__(
        self,
        dataset: str,
        after_index: int,
        end_time: float,
        redivis_conn_id: str = RedivisHook.default_conn_name,
        poll_interval: float = 60.0,
    ) -> None:
        super().__init__()
        self.dataset = dataset
        self.after_index = int(after_index)
        self.end_time = float(end_time)
        self.redivis_conn_id = redivis_conn_id
        self.poll_interval = float(poll_interval)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "dataset": self.dataset,
                "after_index": self.after_index,
                "end_time": self.end_time,
                "redivis_conn_id": self.redivis_conn_id,
                "poll_interval": self.poll_interval,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        async with watching(
            self.redivis_conn_id,
            self.dataset,
            poll_interval=self.poll_interval,
            cursor=self.after_index,
            # Its task has just deferred: give the process time to exit (see release_poll's module doc).
            first_look_after=min(FIRST_LOOK_GRACE, self.poll_interval),
        ) as watcher:
            while time.time() < self.end_time:
                try:
                    check = await watcher.next_check()
                except Exception as exc:
                    self.log.warning(
                        "Looking at %s's releases failed; looking again later: %s", self.dataset, exc
                    )
                    continue
                new = [v for v in check.new_versions if int(v["index"]) > self.after_index]
                if new:
                    yield TriggerEvent(
                        {"status": "success", "release": release_payload(self.dataset, check, new[0])}
                    )
                    return
        yield TriggerEvent(
            {
                "status": "timeout",
                "message": f"No version of {self.dataset} was released past index {self.after_index}.",
            }
        )
