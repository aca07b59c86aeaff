"""The fleet benchmark's DAGs (``python -m benchmarks fleet``): one upload task mapped over every file of a
folder, each waiting deferred for processing, with the operator's defaults (``poll_interval`` unset).

``redivis_fleet_bench`` loads ``REDIVIS_FLEET_BENCH_TABLE`` (the emulator enforcing the limit);
``redivis_fleet_bench_baseline``, when ``REDIVIS_FLEET_BENCH_BASELINE_TABLE`` is set, the same files into
another table (the emulator with no limit). The folder and the tables come from the environment.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from pathlib import Path

from airflow.sdk import DAG

from airflow_provider_redivis.operators.upload import RedivisResumableUploadOperator

FILES = sorted(str(p) for p in Path(os.environ["REDIVIS_FLEET_BENCH_FILES_DIR"]).glob("*.csv"))
TABLES = {
    "redivis_fleet_bench": os.environ["REDIVIS_FLEET_BENCH_TABLE"],
    "redivis_fleet_bench_baseline": os.environ.get("REDIVIS_FLEET_BENCH_BASELINE_TABLE", ""),
}

for dag_id, table in TABLES.items():
    if not table:
        continue
    with DAG(
        dag_id=dag_id,
        start_date=datetime(2026, 1, 1),
        schedule=None,
        catchup=False,
        # A try that fails shows as try 2 in the results rather than failing the run.
        default_args={"retries": 2, "retry_delay": timedelta(seconds=5)},
    ):
        RedivisResumableUploadOperator.partial(
            task_id="upload", table=table, upload_type="delimited", deferrable=True
        ).expand(source=FILES)
