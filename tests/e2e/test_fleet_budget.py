"""A fleet of uploads inside Redivis's request budget, under a real scheduler and triggerer.

Airflow 3.3 runs as users run it (api-server, scheduler, dag-processor, triggerer; LocalExecutor with
parallelism 8: every task in a process of its own). One upload task is mapped over 40 files, each waiting
for processing deferred, on one token. The emulator enforces Redivis's limit scaled down tenfold in time
(20 requests per 10 s instead of 100 per 100 s; the connection's ``rate_limit_interval`` says 10 s), so
the budget, not the machine, sets the pace. What must hold:

- every task succeeds on its first try (a busy token never fails a task);
- at most 5 % of the API requests are answered 429;
- at most 3.0 API requests per upload, its wait included;
- the run ends within 1.5x the budget's floor: 2 requests per upload at the allowed rate, plus processing.

"Processing" is measured, not guessed: the same deployment first loads the same 40 files into another
table with the limit off, and that run's makespan (Airflow starting 40 task processes on this machine, the
bytes, the emulator's processing, the deferred waits) is what the machine needs without any budget. On 2
cores, Airflow's processing, not the budget, is most of the floor.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from redivis_emulator import RedivisEmulator

from tests.e2e.deployment import AirflowDeployment

pytestmark = [pytest.mark.airflow, pytest.mark.slow, pytest.mark.solo]

DAG_ID = "redivis_fleet"
TABLE = "fleet_owner.fleet_dataset.daily_files"
UPLOADS = 40
LIMIT, INTERVAL = 20, 10.0
#: The emulator's seconds per processing step (queued, running).
PROCESSING_STEP_SECONDS = 1.0
#: 2 requests per upload at the allowed rate.
BUDGET_SECONDS = 2 * UPLOADS / (LIMIT / INTERVAL)
UNLIMITED_TABLE = "fleet_owner.fleet_dataset.unpaced_files"


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[RedivisEmulator]:
    with RedivisEmulator(
        tables=[TABLE, UNLIMITED_TABLE],
        data_dir=tmp_path / "emulator",
        processing_delay=PROCESSING_STEP_SECONDS,
    ) as emu:
        yield emu


@pytest.fixture
def airflow(tmp_path: Path, emulator: RedivisEmulator) -> Iterator[AirflowDeployment]:
    files = tmp_path / "files"
    files.mkdir()
    for number in range(UPLOADS):
        (files / f"part_{number:03d}.csv").write_text(
            "id,amount\n" + "".join(f"{i},{i * number}\n" for i in range(50))
        )
    connection = {
        "conn_type": "redivis",
        "host": emulator.base_url,
        "password": emulator.token,
        "extra": {"rate_limit_interval": INTERVAL},
    }
    deployment = AirflowDeployment(
        tmp_path / "airflow",
        env={
            "AIRFLOW_CONN_REDIVIS_DEFAULT": json.dumps(connection),
            "REDIVIS_FLEET_FILES_DIR": str(files),
            "AIRFLOW__CORE__PARALLELISM": "8",
            "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": "8",
            "AIRFLOW__TRIGGERER__CAPACITY": "100",
        },
    )
    shutil.copy(
        Path(__file__).parent / "fleet_dags" / "redivis_fleet.py", deployment.dags / "redivis_fleet.py"
    )
    try:
        deployment.start()
        yield deployment
    finally:
        deployment.stop()


def run_fleet(airflow: AirflowDeployment, table: str) -> tuple[str, str, float]:
    started = time.monotonic()
    dataset, name = table.rsplit(".", 1)
    run_id = airflow.trigger(DAG_ID, conf={"table": f"{dataset}:next.{name}"})
    state = airflow.wait_for_run(DAG_ID, run_id, timeout=600)
    return run_id, state, time.monotonic() - started


def test_forty_mapped_uploads_with_deferred_waits_stay_inside_the_budget(
    airflow: AirflowDeployment, emulator: RedivisEmulator
) -> None:
    airflow.wait_for_dag(DAG_ID)
    # What the machine needs with no budget at all: the same fleet, into another table, the limit off.
    _, unpaced_state, processing = run_fleet(airflow, UNLIMITED_TABLE)
    assert unpaced_state == "success"
    assert len(emulator.list_uploads(UNLIMITED_TABLE)) == UPLOADS
    floor = BUDGET_SECONDS + processing

    emulator.set_rate_limit((LIMIT, INTERVAL))
    emulator.clear_rate_limit_counts()
    run_id, state, makespan = run_fleet(airflow, TABLE)
    counts = emulator.rate_limit_counts(emulator.token)
    allowed, refused = counts["allowed"], counts["refused"]
    uploads = [ti for ti in airflow.task_instances(DAG_ID, run_id) if ti["task_id"] == "upload"]
    summary = (
        f"{len(uploads)} uploads, {allowed + refused} API requests ({refused} answered 429), "
        f"{(allowed + refused) / UPLOADS:.2f} per upload, {makespan:.0f} s against a floor of {floor:.0f} s "
        f"({BUDGET_SECONDS:.0f} s of budget + {processing:.0f} s of processing, measured with no limit)"
    )
    print(summary)
    for ti in uploads:
        if ti["try_number"] != 1 or ti["state"] != "success":
            log = airflow.task_log(DAG_ID, run_id, "upload", 1, map_index=ti["map_index"])
            summary += f"\nmap index {ti['map_index']} ({ti['state']}, try {ti['try_number']}), try 1:\n{log[-3000:]}"
    assert state == "success", summary
    assert len(uploads) == UPLOADS
    assert all(ti["state"] == "success" and ti["try_number"] == 1 for ti in uploads), summary
    assert refused <= 0.05 * (allowed + refused), summary
    assert allowed + refused <= 3.0 * UPLOADS, summary
    assert makespan <= 1.5 * floor, summary
    assert len(emulator.list_uploads(TABLE)) == UPLOADS
