"""Daily load into Redivis: open the next version, upload the day's files, wait for Redivis, release.

One mapped upload task per file: each one streams its file through a resumable session and keeps a
checkpoint, so a retry (on any worker) continues from the bytes Redivis already holds instead of
starting over. A deferred sensor per upload waits for Redivis to process it without holding a worker
slot, and the version is released only once every upload is processed.

The same file runs against the real Redivis and against the local emulator (``./dev/demo``); only
the environment differs:

- ``AIRFLOW_CONN_REDIVIS_DEFAULT``: the connection, ``redivis://:TOKEN@`` for redivis.com (the token
  needs the ``data.edit`` scope).
- ``REDIVIS_EXAMPLE_DATASET``: ``owner.dataset`` (default ``demo_owner.demo_dataset``).
- ``REDIVIS_EXAMPLE_TABLE``: the table in it (default ``daily_sales``); created on the first run.
- ``REDIVIS_EXAMPLE_FILES_DIR``: the folder holding the day's files, templated (default
  ``$TMPDIR/redivis_example/{{ ds }}``: one folder per day).
- ``REDIVIS_EXAMPLE_MERGE_STRATEGY``: ``replace`` (default) or ``append``; see below.

The merge strategy, and the row-doubling trap
---------------------------------------------
A table in a new version starts with the rows it had in the previous version. With the ``append``
strategy the day's uploads are added to those rows, so loading the *full* export again every day
doubles the table (then triples it...). A daily full reload wants ``replace``: each version holds
exactly the files uploaded to it. ``append`` is for an incremental load, where each day's files hold
only the new rows. The strategy belongs to the table: ``check_table`` creates the table with it,
and fails, with what to do, if an existing table says otherwise.
"""

from __future__ import annotations

import os
import tempfile
from datetime import datetime, timedelta
from pathlib import Path

from airflow.providers.common.compat.sdk import DAG, AirflowFailException, task

from airflow_provider_redivis.errors import RedivisNotFoundError
from airflow_provider_redivis.hooks.redivis import RedivisHook
from airflow_provider_redivis.operators.upload import RedivisResumableUploadOperator
from airflow_provider_redivis.operators.versions import (
    RedivisCreateNextVersionOperator,
    RedivisReleaseVersionOperator,
)
from airflow_provider_redivis.sensors.upload import RedivisUploadSensor

DATASET = os.environ.get("REDIVIS_EXAMPLE_DATASET", "demo_owner.demo_dataset")
TABLE_NAME = os.environ.get("REDIVIS_EXAMPLE_TABLE", "daily_sales")
FILES_DIR = os.environ.get(
    "REDIVIS_EXAMPLE_FILES_DIR", os.path.join(tempfile.gettempdir(), "redivis_example", "{{ ds }}")
)
# "replace": a daily full reload. "append": an incremental load (each day's files hold only new rows).
MERGE_STRATEGY = os.environ.get("REDIVIS_EXAMPLE_MERGE_STRATEGY", "replace")
# Uploads go to the unreleased "next" version: the only one that accepts them.
TABLE = f"{DATASET}:next.{TABLE_NAME}"


@task
def check_table(dataset: str, table: str, merge_strategy: str) -> dict[str, str]:
    """Create the table with ``merge_strategy`` on the first run; refuse to load into the wrong one."""
    hook = RedivisHook()
    try:
        found = hook.get_table(f"{dataset}:next.{table}")
    except RedivisNotFoundError:
        found = hook.create_table(dataset, table, merge_strategy=merge_strategy)  # in "next"
    actual = found.get("uploadMergeStrategy")
    if actual is not None and actual != merge_strategy:
        raise AirflowFailException(
            f"Table {dataset}.{table} merges uploads with {actual!r}, but this DAG loads with {merge_strategy!r}. "
            "A full daily export into an 'append' table doubles its rows every day. Change the table's upload "
            "merge strategy in Redivis (table settings) or set REDIVIS_EXAMPLE_MERGE_STRATEGY to match."
        )
    return {"uri": found.get("uri", ""), "uploadMergeStrategy": merge_strategy}


@task
def list_day_files(directory: str) -> list[str]:
    """The day's files, in a stable order; a missing or empty folder fails the try (and retries)."""
    folder = Path(directory)
    files = sorted(str(p) for p in folder.glob("*") if p.is_file() and not p.name.startswith("."))
    if not files:
        # Not a hard failure: the export may land late, and the retries look again.
        raise FileNotFoundError(f"No files to upload in {folder}: has today's export arrived?")
    return files


with DAG(
    dag_id="redivis_daily_load",
    schedule="@daily",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,  # one open "next" version per dataset: runs must not overlap
    default_args={
        # A retried upload resumes from the bytes Redivis already holds, so a retry is cheap: retry
        # soon and often enough to ride out a network blip. 5 s keeps the demo short; in production
        # a minute or more also rides out a longer outage (the checkpoint keeps for 24 h).
        "retries": 2,
        "retry_delay": timedelta(seconds=5),
    },
    tags=["redivis", "example"],
) as dag:
    next_version = RedivisCreateNextVersionOperator(
        task_id="create_next_version",
        dataset=DATASET,
        if_not_exists=True,  # a re-run of a failed day reuses its unreleased version
    )
    table = check_table(DATASET, TABLE_NAME, MERGE_STRATEGY)
    files = list_day_files(FILES_DIR)

    uploads = RedivisResumableUploadOperator.partial(
        task_id="upload",
        table=TABLE,
        # A re-run of the day re-sends a file it already uploaded to this version: the new copy wins.
        if_exists="replace",
        # The sensors below wait, deferred; the upload task ends as soon as Redivis has the bytes.
        wait_for_completion=False,
        # Every chunk Redivis acknowledges is checkpointed and logged as progress. Smaller than the
        # 64 MiB default for more frequent progress; any multiple of 256 KiB works.
        chunk_size=16 * 1024 * 1024,
    ).expand(source=files)

    processed = RedivisUploadSensor.partial(
        task_id="wait_for_processing",
        deferrable=True,
        poke_interval=5,  # the first wait; later ones grow (the trigger backs off)
        timeout=6 * 3600,
    ).expand(upload=uploads.output)

    release = RedivisReleaseVersionOperator(
        task_id="release_version",
        dataset=DATASET,
        release_notes="Daily load of {{ ds }}",
        poll_interval=5,
    )

    next_version >> table >> uploads
    processed >> release
