"""Where a checkpoint lives so that it survives a retry on any worker.

Airflow deletes a task's own XComs when a new try starts, so XCom cannot hold it. Airflow 3.3+
gives each task instance a state store shared by all its tries; below 3.3 an Airflow Variable keyed
by dag id, run id, task id and map index does the same job. Nothing else removes such a Variable, so
it is deleted when the task ends for good (success, a final failure, its last try) and any left by a
killed last try is swept by a later upload task once it is older than a session's life.
"""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from collections.abc import Mapping

log = logging.getLogger(__name__)

#: The state-store key of the upload checkpoint.
CHECKPOINT_KEY = "redivis_upload_checkpoint"
#: Outlives the 24-hour session by a margin, then Airflow's cleanup removes it.
CHECKPOINT_RETENTION = timedelta(hours=26)
#: Variable keys: "secret" is a word Airflow's masker hides the value of (UI, logs).
VARIABLE_PREFIX = "redivis_upload_secret__"
#: Keys of provider versions before 0.x: swept like the new ones.
LEGACY_VARIABLE_PREFIX = "redivis_upload_checkpoint__"
#: Airflow's Variable key column holds 250 characters.
MAX_VARIABLE_KEY = 250
#: A sweep looks at this many Variables at most, so it stays cheap on a busy deployment.
SWEEP_LIMIT = 200


class CheckpointStore(Protocol):
    description: str
    #: Keep the checkpoint when the last try fails on something another run could resume (the store
    #: expires it by itself); False: nothing would ever remove it, so it goes with the task.
    keep_after_last_try: bool

    def load(self) -> Any: ...

    def save(self, value: dict[str, Any]) -> None: ...

    def delete(self) -> None: ...


class TaskStateCheckpointStore:
    """``context["task_state_store"]``: scoped to the task instance, shared by all its tries (Airflow 3.3+)."""

    description = "the task state store"
    keep_after_last_try = True

    def __init__(self, accessor: Any) -> None:
        self._accessor = accessor

    def load(self) -> Any:
        return self._accessor.get(CHECKPOINT_KEY)

    def save(self, value: dict[str, Any]) -> None:
        self._accessor.set(CHECKPOINT_KEY, value, retention=CHECKPOINT_RETENTION)

    def delete(self) -> None:
        self._accessor.delete(CHECKPOINT_KEY)


class VariableCheckpointStore:
    """An Airflow Variable named after the task instance (Airflow below 3.3)."""

    description = "an Airflow Variable"
    keep_after_last_try = False

    def __init__(self, key: str) -> None:
        self.key = key

    def load(self) -> Any:
        from airflow.providers.common.compat.sdk import Variable

        # The default is positional: Airflow 2 names it default_var, Airflow 3 default.
        return Variable.get(self.key, None, deserialize_json=True)

    def save(self, value: dict[str, Any]) -> None:
        from airflow.providers.common.compat.sdk import Variable

        Variable.set(self.key, value, serialize_json=True)

    def delete(self) -> None:
        from airflow.providers.common.compat.sdk import Variable

        Variable.delete(self.key)

    def sweep(self, now: datetime | None = None) -> int:
        """Delete this provider's checkpoint Variables older than a session's life; how many went.

        A last try killed with SIGKILL cannot delete its own. Only where the task can list Variables
        (Airflow 2, which gives tasks the metadata database); Airflow 3.0-3.2 tasks cannot, and say so.
        """
        keys = _checkpoint_variable_keys()
        if keys is None:
            log.debug("This Airflow does not let a task list Variables: no sweep of old upload checkpoints")
            return 0
        from airflow.providers.common.compat.sdk import Variable

        cutoff = (now or datetime.now(timezone.utc)) - CHECKPOINT_RETENTION
        swept = 0
        for key in keys:
            if key == self.key:
                continue
            created = _created_at(Variable.get(key, None, deserialize_json=False))
            if created is None:
                continue  # a value this provider did not write is left alone
            if created < cutoff:
                Variable.delete(key)
                swept += 1
        if swept:
            log.info(
                "Deleted %d upload checkpoint Variable(s) older than %s left by killed tries", swept, cutoff
            )
        return swept


def _created_at(text: object) -> datetime | None:
    try:
        created = datetime.fromisoformat(json.loads(str(text))["created_at"])
    except (ValueError, TypeError, KeyError):
        return None
    return created if created.tzinfo else created.replace(tzinfo=timezone.utc)


def _checkpoint_variable_keys() -> list[str] | None:
    """The keys of this provider's checkpoint Variables, or None where a task cannot list Variables."""
    import airflow

    if int(airflow.__version__.split(".", 1)[0]) >= 3:
        return None  # tasks talk to the execution API, which lists no Variables
    from airflow.models.variable import Variable as VariableModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = (
            session.query(VariableModel.key)
            .filter(
                VariableModel.key.like(f"{VARIABLE_PREFIX}%")
                | VariableModel.key.like(f"{LEGACY_VARIABLE_PREFIX}%")
            )
            .limit(SWEEP_LIMIT)
            .all()
        )
    return [row[0] for row in rows]


def variable_key(dag_id: str, run_id: str, task_id: str, map_index: int | None) -> str:
    """The task instance's checkpoint Variable: within 250 characters, named so Airflow masks its value.

    ``redivis_upload_secret__<dag>__<task>__<map index>__<hash>``: the dag and task ids are cut to
    80 characters each for a reader; the hash of all four parts (run id included) keeps it unique.
    """
    index = -1 if map_index is None else map_index
    digest = hashlib.sha256("\x00".join((dag_id, run_id, task_id, str(index))).encode()).hexdigest()[:32]
    return f"{VARIABLE_PREFIX}{dag_id[:80]}__{task_id[:80]}__{index}__{digest}"


def checkpoint_store_for(context: Mapping[str, Any]) -> CheckpointStore:
    """The task state store when Airflow has one, else the Variable fallback."""
    accessor = context.get("task_state_store")
    if accessor is not None:
        return TaskStateCheckpointStore(accessor)
    ti = context["ti"]
    return VariableCheckpointStore(
        variable_key(ti.dag_id, ti.run_id, ti.task_id, getattr(ti, "map_index", -1))
    )
