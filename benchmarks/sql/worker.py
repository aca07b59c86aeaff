"""One SqlToRedivisOperator run under measurement, in a process of its own: ``python -m benchmarks.sql.worker JOB_JSON``.

The runner starts PostgreSQL and the emulator; this process runs ``execute()`` once (no wait for
Redivis's processing) with a task state store in memory, and prints one line ``RESULT {json}``: the
wall time, the staging time (staged mode), rows, bytes, and the peak resident memory over the
baseline taken just before ``execute()`` (Linux's VmHWM, reset at that moment through clear_refs).
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

_STATUS = Path("/proc/self/status")


def memory_kib() -> dict[str, int]:
    text = _STATUS.read_text()
    found = {}
    for key in ("VmRSS", "VmHWM"):
        match = re.search(rf"^{key}:\s+(\d+) kB", text, re.MULTILINE)
        found[key] = int(match.group(1)) if match else -1
    return found


def reset_peak_memory() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


class _TI:
    dag_id = "bench_sql"
    run_id = "bench"
    map_index = -1
    try_number = 1

    def __init__(self, task_id: str) -> None:
        self.task_id = task_id
        self.xcoms: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcoms[key] = value


class _Store:
    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def set(self, key: str, value: Any, *, retention: Any = None) -> None:
        self.values[key] = value

    def delete(self, key: str) -> None:
        self.values.pop(key, None)


def main() -> int:
    job = json.loads(sys.argv[1])
    os.environ["AIRFLOW_CONN_BENCH_PG"] = json.dumps(job["pg_connection"])
    os.environ["AIRFLOW_CONN_REDIVIS_DEFAULT"] = json.dumps(job["redivis_connection"])
    logging.basicConfig(level=logging.WARNING)

    from airflow_provider_redivis.transfers.sql_to_redivis import SqlToRedivisOperator

    timings: dict[str, float] = {}

    class Timed(SqlToRedivisOperator):
        def _stage(self, path: Any) -> dict[str, Any]:
            started = time.perf_counter()
            try:
                return super()._stage(path)
            finally:
                timings["stage_seconds"] = time.perf_counter() - started

    op = Timed(
        task_id=job["name"].replace(".", "_"),
        sql=job["sql"],
        conn_id="bench_pg",
        table=job["table"],
        upload_name=job["name"],
        mode=job["mode"],
        postgres_copy=job["postgres_copy"],
        fetch_size=job.get("fetch_size", 10_000),
        staging_path=job.get("staging_path"),
        wait_for_completion=False,
        checksum=job.get("checksum", "auto"),
    )
    ti = _TI(op.task_id)
    context = {"ti": ti, "task_state_store": _Store()}
    # Warm the imports the run needs, so the baseline holds them and the peak is the transfer's.
    op.get_db_hook().get_conn().close()
    from airflow_provider_redivis.hooks.redivis import RedivisHook

    RedivisHook().get_table(job["table"])
    baseline = memory_kib()["VmRSS"]
    reset = reset_peak_memory()
    started = time.perf_counter()
    result = op.execute(context)
    seconds = time.perf_counter() - started
    peak = memory_kib()["VmHWM"]
    print(
        "RESULT "
        + json.dumps(
            {
                "seconds": seconds,
                "stage_seconds": timings.get("stage_seconds"),
                "rows": ti.xcoms.get("redivis_sql_rows"),
                "bytes": result.get("size"),
                "upload": result.get("uri"),
                "baseline_mib": baseline / 1024,
                "peak_over_baseline_mib": (peak - baseline) / 1024 if reset else None,
            }
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
