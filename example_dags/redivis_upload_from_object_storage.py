"""Upload a file straight from object storage: no local copy, and every worker can resume it.

The source is an ``ObjectStoragePath``: the operator reads it as a seekable stream, one chunk at a
time, and a retry on another worker reopens the same path and continues where the last try
stopped. By default it reads ``file://$TMPDIR/redivis_example/object_storage/sales.csv`` so that it runs
anywhere; for S3 (with ``apache-airflow-providers-amazon`` installed) it would be::

    SOURCE = ObjectStoragePath("s3://my-bucket/exports/sales.csv", conn_id="aws_default")

Set ``REDIVIS_EXAMPLE_SOURCE_URL`` to any fsspec URL, and ``REDIVIS_EXAMPLE_DATASET`` /
``REDIVIS_EXAMPLE_TABLE`` to the target (the table must exist in the dataset's ``next`` version).
"""

from __future__ import annotations

import os
import tempfile
from datetime import datetime, timedelta
from pathlib import Path

from airflow.providers.common.compat.sdk import DAG, ObjectStoragePath

from airflow_provider_redivis.operators.upload import RedivisResumableUploadOperator

DATASET = os.environ.get("REDIVIS_EXAMPLE_DATASET", "demo_owner.demo_dataset")
TABLE_NAME = os.environ.get("REDIVIS_EXAMPLE_TABLE", "daily_sales")
DEFAULT_URL = Path(tempfile.gettempdir(), "redivis_example", "object_storage", "sales.csv").as_uri()
SOURCE = ObjectStoragePath(os.environ.get("REDIVIS_EXAMPLE_SOURCE_URL", DEFAULT_URL))

with DAG(
    dag_id="redivis_upload_from_object_storage",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["redivis", "example"],
) as dag:
    RedivisResumableUploadOperator(
        task_id="upload_from_object_storage",
        source=SOURCE,
        table=f"{DATASET}:next.{TABLE_NAME}",
        if_exists="replace",
        # Waits for Redivis to process the upload, in the triggerer rather than a worker slot.
        deferrable=True,
        poll_interval=10,
        retries=2,
        retry_delay=timedelta(seconds=30),  # a retry resumes, so it only re-sends the chunk in flight
    )
