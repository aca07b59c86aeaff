"""Run a DAG once for each newly released version of a Redivis dataset (Airflow 3: event-driven scheduling).

The asset ``redivis://owner/dataset`` is watched by a RedivisDatasetReleaseTrigger in the triggerer: a
look at the dataset every ``poll_interval`` seconds (one API request, shared by every watcher of the
dataset), an asset event per new version, oldest first. Versions released before the DAG was first
deployed fire nothing. Each run gets the version in its triggering asset events.

Airflow 2.11 has no event-driven scheduling: there this file defines no DAG (see docs/releases.md).
"""

from __future__ import annotations

import os
from datetime import datetime

from airflow.providers.common.compat.sdk import DAG

try:
    from airflow.sdk import AssetWatcher  # noqa: F401 - only to tell Airflow 3 from Airflow 2
except ImportError:
    AIRFLOW_3 = False
else:
    AIRFLOW_3 = True

DATASET = os.environ.get("REDIVIS_EXAMPLE_DATASET", "demo_owner.demo_dataset")
POLL_INTERVAL = float(os.environ.get("REDIVIS_EXAMPLE_RELEASE_POLL_INTERVAL", "60"))

if AIRFLOW_3:
    from airflow.sdk import task

    from airflow_provider_redivis.triggers.release import release_asset

    RELEASES = release_asset(DATASET, poll_interval=POLL_INTERVAL)

    with DAG(
        dag_id="redivis_on_release",
        schedule=[RELEASES],
        start_date=datetime(2026, 1, 1),
        catchup=False,
        doc_md=__doc__,
    ):

        @task
        def new_release(triggering_asset_events=None) -> list[str]:
            """The released version(s) this run is for; usually one (events that came together are merged)."""
            tags = []
            for event in triggering_asset_events[RELEASES]:
                release = event.extra["payload"]
                print(
                    f"{release['dataset']} released {release['tag']} at {release['released_at']}: {release['dataset_url']}"
                )
                tags.append(release["tag"])
            return tags

        new_release()
