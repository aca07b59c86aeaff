"""The smallest useful DAG: one file into one Redivis table, resumed from where it stopped on a retry."""

from __future__ import annotations

from datetime import datetime

from airflow.providers.common.compat.sdk import DAG

from airflow_provider_redivis.operators.upload import RedivisResumableUploadOperator

with DAG(
    dag_id="redivis_minimal_upload", schedule=None, start_date=datetime(2026, 1, 1), catchup=False
) as dag:
    RedivisResumableUploadOperator(
        task_id="upload",
        source="/data/exports/sales.csv",  # or s3://..., gs://..., an ObjectStoragePath
        table="demo_owner.demo_dataset:next.daily_sales",
        retries=3,  # each retry resumes from the bytes Redivis already holds
    )
