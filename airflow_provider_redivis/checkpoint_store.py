"""Where a checkpoint lives so that it survives a retry on any worker.

Airflow deletes a task's own XComs when a new try starts, so XCom cannot hold it. Airflow 3.3+
gives each task instance a state store shared by all its tries; below 3.3 an Airflow Variable keyed
by dag id, run id, task id and map index does the same job and is deleted on success.
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

T = TypeVar("T")

log = logging.getLogger(__name__)

#: The state-store key of the upload checkpoint.
CHECKPOINT_KEY = "redivis_upload_checkpoint"
#: Outlives the 24-hour session by a margin, then Airflow's cleanup removes it.
CHECKPOINT_RETENTION = timedelta(hours=26)


class CheckpointStore(Protocol):
    description: str

    def load(self) -> Any: ...

    def save(self, value: dict[str, Any]) -> None: ...

    def delete(self) -> None: ...


class TaskStateCheckpointStore:
    """``context["task_state_store"]``: scoped to the task instance, shared by all its tries (Airflow 3.3+)."""

    description = "the task state store"

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


def variable_key(dag_id: str, run_id: str, task_id: str, map_index: int | None) -> str:
    index = -1 if map_index is None else map_index
    return f"{CHECKPOINT_KEY}__{dag_id}__{run_id}__{task_id}__{index}"


def checkpoint_store_for(context: Mapping[str, Any]) -> CheckpointStore:
    """The task state store when Airflow has one, else the Variable fallback."""
    accessor = context.get("task_state_store")
    if accessor is not None:
        return TaskStateCheckpointStore(accessor)
    ti = context["ti"]
    return VariableCheckpointStore(
        variable_key(ti.dag_id, ti.run_id, ti.task_id, getattr(ti, "map_index", -1))
    )


class BackgroundWriter(Generic[T]):
    """Runs the newest of a series of writes on a thread of its own, so a slow store never holds bytes up.

    Each value supersedes the one before (a later offset), so a value that arrives while a write is in
    flight replaces any that waits. A failed write is logged and skipped: the server's offset, not the
    checkpoint's, is what a resume trusts. :meth:`close` waits for the last write, so a synchronous
    write after it is never overtaken.
    """

    def __init__(self, write: Callable[[T], None], what: str) -> None:
        self._write = write
        self._what = what
        self._pending: list[T] = []
        self._closed = False
        self._wake = threading.Condition()
        self._thread = threading.Thread(target=self._run, name=f"redivis-{what}", daemon=True)
        self._thread.start()

    def submit(self, value: T) -> None:
        with self._wake:
            self._pending[:] = [value]
            self._wake.notify()

    def close(self) -> None:
        with self._wake:
            self._closed = True
            self._wake.notify()
        self._thread.join()

    def __enter__(self) -> BackgroundWriter[T]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._pending and not self._closed:
                    self._wake.wait()
                if not self._pending:
                    return
                value = self._pending.pop()
            try:
                self._write(value)
            except Exception as exc:
                log.warning("Could not save the %s (%s); the upload goes on", self._what, type(exc).__name__)
