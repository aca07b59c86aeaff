"""Proof under load and faults: 16 mapped uploads under a real Airflow 3.3 scheduler, things breaking.

Run by ``scripts/load_proof.sh`` (which picks the interpreter and records the result). Airflow runs as a
user runs it (``tests/e2e/deployment.py``: API server, scheduler, DAG processor, triggerer as separate
processes, LocalExecutor with parallelism 8, its own AIRFLOW_HOME, everything on 127.0.0.1). One DAG maps
the upload operator over 16 files of distinct bytes into one table, half over each transport. While it
runs:

- the emulator cuts connections at seeded random points: TCP resets part-way through session chunks,
  a lost answer to an upload's creation, 503s on session requests;
- one worker is SIGKILLed mid-upload (its supervisor and task runner: nobody tells Airflow);
- the API server is stopped and started again once (task runners lose the execution API for a while).

At the end, asserted: the DAG run succeeded; each of the 16 files is in the table exactly once, as one
upload, byte-identical (md5 of the stored bytes = md5 of the file); no checkpoint is left in the task
state store or in a Variable; no task log holds the Redivis token or any session or temp-upload URL.

    python scripts/load_proof.py [--seed N] [--record PATH] [--keep]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import random
import shutil
import signal
import sqlite3
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from redivis_emulator import Fault, RedivisEmulator  # noqa: E402

from tests.e2e.deployment import AirflowDeployment, find_task_processes, log_messages, wait_for  # noqa: E402

DAG_ID = "redivis_load_proof"
TASK_ID = "upload"
TABLE = "load_owner.load_dataset.load_table"
FILES = 16
FILE_SIZE = 12 * 1024 * 1024 + 12_345
CHUNK = 1024 * 1024
PARALLELISM = 8
RUN_TIMEOUT = 1200.0

DAG_TEMPLATE = """
from datetime import datetime, timedelta

from airflow.providers.common.compat.sdk import DAG
from airflow_provider_redivis.operators.upload import RedivisResumableUploadOperator

with DAG(dag_id={dag_id!r}, schedule=None, start_date=datetime(2026, 1, 1), catchup=False, max_active_tasks=16):
    RedivisResumableUploadOperator.partial(
        task_id={task_id!r},
        table={table!r},
        upload_type="stream",
        chunk_size={chunk},
        poll_interval=0.5,
        retries=8,
        retry_delay=timedelta(seconds=3),
    ).expand_kwargs({files!r})
"""


def say(message: str) -> None:
    print(f"[{datetime.now().strftime('%H:%M:%S')}] {message}", flush=True)


def md5_file(path: Path) -> str:
    digest = hashlib.md5()  # noqa: S324 - a checksum, not security
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def last_error(log_text: str) -> str:
    """The exception a try ended with, from its JSON task log."""
    found = "(no exception logged: the process was killed, or lost the API server)"
    for line in log_text.splitlines():
        with contextlib.suppress(ValueError, AttributeError):
            record = json.loads(line)
            chain = record.get("error_detail") or []
            if chain:  # the exception raised first, then what it was raised while handling
                found = "; while handling ".join(
                    f"{detail.get('exc_type')}: {str(detail.get('exc_value'))[:140]}" for detail in chain
                )
    return found


def seeded_faults(rng: random.Random) -> list[Fault]:
    """Connection cuts at seeded random points, and a few other ways the network fails."""
    chunks_in_all = FILES * (FILE_SIZE // CHUNK + 1)
    faults = [
        Fault(
            "reset",
            origin="session",
            method="PUT",
            nth=rng.randint(1, chunks_in_all),
            after_bytes=rng.randint(1, CHUNK - 1),
        )
        for _ in range(14)
    ]
    faults += [
        Fault("status", origin="session", method="PUT", status=503, nth=rng.randint(1, chunks_in_all))
        for _ in range(4)
    ]
    # One upload's creation is handled but its answer is lost: the retry must attach, not create twice.
    faults.append(
        Fault(
            "drop_response", origin="api", method="POST", path_contains="/uploads", nth=rng.randint(1, FILES)
        )
    )
    return faults


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seed", type=int, default=20261202)
    parser.add_argument("--keep", action="store_true", help="keep the run directory")
    args = parser.parse_args()
    rng = random.Random(args.seed)  # noqa: S311 - seeded fault points, not security
    root = Path(tempfile.mkdtemp(prefix="redivis-load-proof-"))
    say(f"seed {args.seed}; run directory {root}")
    started = time.monotonic()
    failures: list[str] = []
    files_dir = root / "files"
    files_dir.mkdir()
    sources: dict[str, Path] = {}
    for i in range(FILES):
        path = files_dir / f"part_{i:02d}.csv"
        path.write_bytes(rng.randbytes(FILE_SIZE))
        sources[path.name] = path
    mapped = [
        {"source": str(path), "transport": "temp_upload" if i % 2 else "resumable_upload"}
        for i, path in enumerate(sources.values())
    ]
    with RedivisEmulator(tables=[TABLE], data_dir=root / "emulator", processing_delay=0.05) as emu:
        for fault in seeded_faults(rng):
            emu.add_fault(fault)
        # Every session chunk is slowed a little, so that uploads overlap and the kill lands mid-transfer.
        emu.add_fault(Fault("stall", origin="session", method="PUT", seconds=0.25, times=None))
        conn = {
            "conn_type": "redivis",
            "host": emu.base_url,
            "password": emu.token,
            "extra": json.dumps(
                {"read_timeout": 5, "connect_timeout": 3, "max_attempts": 4, "max_retry_seconds": 20}
            ),
        }
        deployment = AirflowDeployment(
            root / "airflow",
            env={
                "AIRFLOW__CORE__PARALLELISM": str(PARALLELISM),
                "AIRFLOW_CONN_REDIVIS_DEFAULT": json.dumps(conn),
            },
        )
        (deployment.dags / f"{DAG_ID}.py").write_text(
            DAG_TEMPLATE.format(dag_id=DAG_ID, task_id=TASK_ID, table=TABLE, chunk=CHUNK, files=mapped)
        )
        try:
            say("migrating the database and starting the API server, scheduler, DAG processor, triggerer")
            deployment.start()
            deployment.wait_for_dag(DAG_ID)
            run_id = deployment.trigger(DAG_ID, logical_date=datetime.now(timezone.utc))
            say(
                f"triggered {DAG_ID} run {run_id}: {FILES} files of {FILE_SIZE} bytes, parallelism {PARALLELISM}"
            )
            total = FILES * FILE_SIZE

            # -- a worker dies mid-upload ------------------------------------------------------
            def a_running_try() -> tuple[dict[str, object], object] | None:
                if emu.bytes_received("session") < total // 5:
                    return None
                for ti in deployment.task_instances(DAG_ID, run_id):
                    if ti["state"] == "running":
                        processes = find_task_processes(str(ti["id"]))
                        if processes is not None:
                            return ti, processes
                return None

            ti, processes = wait_for("a running upload past a fifth of the bytes", a_running_try, timeout=600)
            if processes.supervisor is not None:  # type: ignore[attr-defined]
                processes.supervisor.kill()  # type: ignore[attr-defined]
            os.killpg(processes.runner.pid, signal.SIGKILL)  # type: ignore[attr-defined]
            killed = (int(ti["map_index"]), int(ti["try_number"]))  # type: ignore[call-overload]
            say(
                f"SIGKILLed the worker of map index {killed[0]} (try {killed[1]}) at {emu.bytes_received('session')} bytes received"
            )

            # -- the API server restarts ------------------------------------------------------
            wait_for(
                "half of the bytes",
                lambda: True if emu.bytes_received("session") >= total // 2 else None,
                timeout=600,
            )
            running = [
                t["map_index"] for t in deployment.task_instances(DAG_ID, run_id) if t["state"] == "running"
            ]
            api = deployment.services.pop("api-server")
            api.stop()
            say(
                f"stopped the API server at {emu.bytes_received('session')} bytes received; running: map indexes {running}"
            )
            time.sleep(5)
            deployment.start_service("api-server")
            deployment.wait_healthy(timeout=120)
            say("started the API server again")

            state = deployment.wait_for_run(DAG_ID, run_id, timeout=RUN_TIMEOUT)
            say(f"DAG run ended: {state}")
            if state != "success":
                failures.append(f"the DAG run ended {state}")
            tis = deployment.task_instances(DAG_ID, run_id)
            tries = sorted((int(t["map_index"]), int(t["try_number"]), str(t["state"])) for t in tis)
            say(f"task instances (map index, tries, state): {tries}")
            killed_tries = deployment.task_tries(DAG_ID, run_id, TASK_ID, map_index=killed[0])
            say(f"the killed task's tries: {[(t['try_number'], t['state']) for t in killed_tries]}")
            if len(killed_tries) < 2:
                failures.append("the killed task was not retried")
            else:
                resumed = [
                    m
                    for m in log_messages(
                        deployment.task_log(
                            DAG_ID, run_id, TASK_ID, killed_tries[1]["try_number"], map_index=killed[0]
                        )
                    )
                    if m.startswith(("Resuming Redivis upload session", "Starting a new upload session"))
                ]
                say(f"the killed task's try {killed_tries[1]['try_number']}: {resumed}")
            for map_index, try_count, _state in tries:
                for number in range(1, try_count):
                    text = deployment.task_log(DAG_ID, run_id, TASK_ID, number, map_index=map_index)
                    say(f"map index {map_index} try {number} ended with: {last_error(text)}")
        finally:
            say("stopping every service")
            deployment.stop()

        # -- what is left --------------------------------------------------------------------
        uploads = emu.list_uploads(TABLE)
        names = sorted(u["name"] for u in uploads)
        if names != sorted(sources):
            failures.append(f"uploads {names} are not one per file")
        identical = 0
        for name, path in sources.items():
            try:
                stored = emu.upload_bytes_path(TABLE, name)
            except Exception as exc:  # reported as a failure below
                failures.append(f"{name}: no stored bytes ({exc})")
                continue
            if md5_file(stored) == md5_file(path) and stored.stat().st_size == path.stat().st_size:
                identical += 1
            else:
                failures.append(f"{name}: stored bytes differ from the file")
        say(f"{len(uploads)} uploads for {FILES} files; {identical} byte-identical")
        faults_fired = sorted({kind for r in emu.requests for kind in r.faults})
        resets = sum(1 for r in emu.requests if "reset" in r.faults)
        say(f"faults that fired: {faults_fired}; connection resets: {resets}")
        received = emu.bytes_received("session")
        say(
            f"bytes received by the session origin: {received} for {total} bytes of files ({received / total:.2f}x)"
        )
        if emu.authorization_seen("session"):
            failures.append("the token reached the session origin")

        with sqlite3.connect(deployment.root / "airflow.db") as db:
            states = db.execute("SELECT COUNT(*) FROM task_state_store").fetchone()[0]
            variables = [
                k for (k,) in db.execute("SELECT key FROM variable") if k.startswith("redivis_upload")
            ]
        say(f"checkpoints left: {states} in the task state store, {len(variables)} in Variables")
        if states or variables:
            failures.append(f"checkpoints left behind: {states} state-store rows, Variables {variables}")

        secrets = {emu.token}
        secrets |= {info.url.rsplit("/", 1)[1] for info in emu.sessions.values()}
        with emu.catalog.lock:
            secrets |= {temp.token for temp in emu.catalog.temp_uploads.values()}
        log_files = sorted(deployment.logs.rglob("*.log"))
        leaks = []
        for log_file in log_files:
            text = log_file.read_text(errors="replace")
            leaks += [log_file.name for secret in secrets if secret in text]
        say(
            f"task logs scanned: {len(log_files)} files for {len(secrets)} secrets (token, session and temp-upload URLs)"
        )
        if leaks:
            failures.append(f"secrets in task logs: {sorted(set(leaks))}")

    say(f"whole run {time.monotonic() - started:.0f} s")
    if failures:
        for failure in failures:
            say(f"FAILED: {failure}")
        print(f"Run directory kept: {root}")
        return 1
    say("PASSED: every file once, byte-identical; no checkpoint left; no secret in a task log")
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
    sys.exit(130)
