"""A daily fleet: one upload task mapped over every file of a folder, each waiting deferred for processing.

Used by tests/e2e/test_fleet_budget.py: the folder comes from the environment, the table from the run's
conf (so that one deployment can load the same files twice, into two tables).
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from pathlib import Path

from airflow.sdk import DAG

from airflow_provider_redivis.operators.upload import RedivisResumableUploadOperator

FILES = sorted(str(p) for p in Path(os.environ["REDIVIS_FLEET_FILES_DIR"]).glob("*.csv"))

with DAG(
    dag_id="redivis_fleet",
    start_date=datetime(2026, 1, 1),
    schedule=None,
    catchup=False,
    default_args={"retries": 2, "retry_delay": timedelta(seconds=2)},
):
    RedivisResumableUploadOperator.partial(
        task_id="upload",
        table="{{ dag_run.conf['table'] }}",
        upload_type="delimited",
        deferrable=True,
    ).expand(source=FILES)
