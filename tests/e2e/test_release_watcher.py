"""Redivis releases schedule a DAG under a real Airflow 3.3 scheduler and triggerer.

The example DAG ``redivis_on_release`` is copied unchanged into the DAGs folder; its asset is watched
by a RedivisDatasetReleaseTrigger in the triggerer, against the emulator in this test process. A
version released before the deployment fires nothing; a release runs the DAG once, with the version's
tag in its triggering asset events; the triggerer is stopped, a version is released while it is down,
and once it is started again exactly one more run comes, for that version. The watcher's cursor is read
from the asset's state store (the metadata database) over the REST API.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from redivis_emulator import RedivisEmulator

from airflow_provider_redivis.hooks.redivis import RedivisHook
from tests.e2e.deployment import REPO, AirflowDeployment, wait_for

pytestmark = [pytest.mark.airflow, pytest.mark.slow]

DAG_ID = "redivis_on_release"
DAG_FILE = REPO / "example_dags" / "redivis_on_release.py"
DATASET = "e2e_owner.releases"
TABLE = f"{DATASET}.t"
ASSET_URI = "redivis://e2e_owner/releases"


@pytest.fixture
def emulator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RedivisEmulator]:
    with RedivisEmulator(tables=[TABLE], data_dir=tmp_path / "emulator", processing_delay=0.05) as emu:
        conn = json.dumps({"conn_type": "redivis", "host": emu.base_url, "password": emu.token})
        monkeypatch.setenv("AIRFLOW_CONN_REDIVIS_SETUP", conn)
        yield emu


def release_next() -> str:
    """Release the dataset's next version (making one first if it has none); its tag."""
    hook = RedivisHook(redivis_conn_id="redivis_setup")
    if hook.get_next_version(DATASET) is None:
        hook.create_next_version(DATASET)
    started = hook.release_version(DATASET)
    return str(hook.wait_for_release(DATASET, started, poll_interval=0.05, timeout=10)["tag"])


def cursor(airflow: AirflowDeployment) -> dict[str, Any] | None:
    """The watcher's cursor (its version index, tag, and versions in flight) in the asset's state store;
    None before it has one."""
    assets = airflow.api("GET", f"/api/v2/assets?uri_pattern={ASSET_URI}")["assets"]
    if not assets:
        return None
    entries = airflow.api("GET", f"/api/v2/assets/{assets[0]['id']}/state-store")["asset_state_store"]
    found = [e["value"] for e in entries if e["key"].startswith("redivis_release_cursor:")]
    return dict(found[0]) if found else None


def wait_for_cursor(airflow: AirflowDeployment, index: int, *, timeout: float = 60) -> None:
    """Until the cursor is stored at ``index`` with nothing in flight: Airflow stored what was fired."""

    def probe() -> bool | None:
        airflow.check_services()
        value = cursor(airflow)
        return True if value is not None and value["index"] == index and "firing" not in value else None

    wait_for(f"the watcher's cursor at {index}", probe, timeout=timeout, on_timeout=airflow.diagnostics())


def runs(airflow: AirflowDeployment) -> list[dict[str, Any]]:
    return list(airflow.api("GET", f"/api/v2/dags/{DAG_ID}/dagRuns?order_by=run_after")["dag_runs"])


def wait_for_runs(airflow: AirflowDeployment, count: int, *, timeout: float = 90) -> list[dict[str, Any]]:
    def probe() -> list[dict[str, Any]] | None:
        airflow.check_services()
        found = runs(airflow)
        assert len(found) <= count, found
        if len(found) == count and all(r["state"] in ("success", "failed") for r in found):
            return found
        return None

    return wait_for(f"{count} finished run(s)", probe, timeout=timeout, on_timeout=airflow.diagnostics())


def tags_of(airflow: AirflowDeployment, run: dict[str, Any]) -> Any:
    assert run["state"] == "success", run
    path = f"/api/v2/dags/{DAG_ID}/dagRuns/{run['dag_run_id']}/taskInstances/new_release/xcomEntries/return_value"
    return airflow.api("GET", path)["value"]


def test_a_release_runs_the_dag_once_and_a_restart_neither_repeats_nor_loses_one(
    tmp_path: Path, emulator: RedivisEmulator
) -> None:
    assert release_next() == "v1.0"  # before the deployment: never an event
    connection = {"conn_type": "redivis", "host": emulator.base_url, "password": emulator.token}
    env = {
        "AIRFLOW_CONN_REDIVIS_DEFAULT": json.dumps(connection),
        "REDIVIS_EXAMPLE_DATASET": DATASET,
        "REDIVIS_EXAMPLE_RELEASE_POLL_INTERVAL": "1",
        "AIRFLOW__REDIVIS__MIN_POLL_INTERVAL": "1",
    }
    deployment = AirflowDeployment(tmp_path / "airflow", env=env)
    shutil.copy(DAG_FILE, deployment.dags / DAG_FILE.name)
    with deployment as airflow:
        airflow.wait_for_dag(DAG_ID)
        wait_for_cursor(airflow, 0, timeout=90)  # the baseline: v1.0, already released

        assert release_next() == "v2.0"
        first = wait_for_runs(airflow, 1)
        assert tags_of(airflow, first[0]) == ["v2.0"]
        wait_for_cursor(airflow, 1)

        airflow.stop_service("triggerer")
        assert release_next() == "v3.0"  # released while the triggerer is down
        airflow.start_service("triggerer")

        both = wait_for_runs(airflow, 2)
        assert tags_of(airflow, both[1]) == ["v3.0"]
        wait_for_cursor(airflow, 2)
        # More looks of the restarted watcher and scheduler loops after them: still exactly two runs.
        looked = len(emulator.requests)
        wait_for("more looks", lambda: True if len(emulator.requests) >= looked + 5 else None, timeout=30)
        assert [tags_of(airflow, r) for r in runs(airflow)] == [["v2.0"], ["v3.0"]]
    # Airflow 3.3 ran the watcher on its acknowledged shared stream (the cursor moved on its confirmation).
    triggerer_log = (deployment.service_logs / "triggerer.log").read_text(errors="replace")
    assert "on the triggerer's acknowledged shared stream" in triggerer_log, triggerer_log[-3000:]
