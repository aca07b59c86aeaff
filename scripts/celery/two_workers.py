"""The Celery half of ``scripts/celery_two_workers.sh``: try 1 of an upload dies with its worker, try 2 runs
on the other worker and resumes. Run by that script, which provides PostgreSQL, Redis and the venv::

    python scripts/celery/two_workers.py --run-dir DIR --database URL --broker URL [--summary FILE]

Airflow 3.3 runs as separate processes (API server, scheduler, DAG processor, triggerer) with the
CeleryExecutor, plus two ``airflow celery worker`` processes named ``w1@HOST`` and ``w2@HOST``. Each
worker has its own AIRFLOW_HOME with its own copy of the DAG file, its own working directory, TMPDIR
and task-log folder, as two machines would. The day's file sits in one folder both can read, as a
shared mount or object storage would be. The emulator runs in this process on 127.0.0.1.

When the emulator holds half of the file, the task runner of the upload is SIGKILLed and its worker is
stopped (SIGTERM, a warm shutdown, SIGKILL if it lingers). Its supervisor reports the failed try, the
scheduler queues try 2, and only the other worker is there to take it. Exit status 0 when every check
holds; the summary says what was seen.

The emulator enforces Redivis's request limit (100 per 100 s per token; the connection keeps the default
``rate_limit_interval``). The proof reports the API requests the run spent, by kind, and checks that none
was answered 429 and that every other task succeeded on its first try: a run this small has no reason to
meet the limit, so a single 429 would mean the provider's pacing is broken.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import sys
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(REPO))

from redivis_emulator import REDIVIS_RATE_LIMIT, Fault, RedivisEmulator  # noqa: E402

from tests.e2e.daily_load import (  # noqa: E402
    DAG_ID,
    EXAMPLE_CHUNK_SIZE,
    FILE_SIZE,
    PROCESSING_STEP_SECONDS,
    SOURCE_NAME,
    STALL_SECONDS,
    TABLE,
    UPLOAD_TASK,
    assert_resumed,
    example_env,
    install_dag,
    resume_evidence,
    wait_for_first_upload_try,
    wait_until_half_held,
    write_csv,
)
from tests.e2e.deployment import (  # noqa: E402
    AirflowDeployment,
    DeploymentError,
    Service,
    find_task_processes,
    log_messages,
    wait_for,
)

WORKERS = ("w1", "w2")
RUN_TIMEOUT = 300.0


def check(condition: bool, details: object) -> None:
    if not condition:
        raise AssertionError(details)


def note(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def start_worker(airflow: AirflowDeployment, run_dir: Path, name: str) -> tuple[Service, Path]:
    """One Celery worker with a home, working directory, TMPDIR and log folder of its own."""
    base = run_dir / f"worker-{name}"
    home, logs, tmp = base / "airflow-home", base / "logs", base / "tmp"
    for folder in (home, logs, tmp):
        folder.mkdir(parents=True, exist_ok=True)
    install_dag(home / "dags")
    env = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(logs),
        "TMPDIR": str(tmp),
        # Both workers share this machine's name: each records its own in the task instance.
        "AIRFLOW__CORE__HOSTNAME_CALLABLE": "worker_identity.hostname",
        "REDIVIS_E2E_WORKER_HOSTNAME": f"{name}.celery-e2e",
        "PYTHONPATH": os.pathsep.join([str(HERE), airflow.env["PYTHONPATH"]]),
    }
    argv = [
        airflow.airflow,
        "celery",
        "worker",
        "--celery-hostname",
        f"{name}@{socket.gethostname()}",
        "--concurrency",
        "1",
        "--skip-serve-logs",
    ]
    return airflow.start_service(f"worker-{name}", argv, env=env, cwd=base), logs


def _path_kind(path: str) -> str:
    """The path with its names left out (a table, an upload): its plain words stay (tables, uploads...)."""
    words = path.split("?")[0].removeprefix("/api/v1/").split("/")
    return "/".join(w if re.fullmatch(r"[A-Za-z]+", w) else "{…}" for w in words)


def requests_spent(emu: RedivisEmulator) -> tuple[int, int, str]:
    """API requests the token spent, how many were answered 429, and a line of them by kind."""
    counts = emu.rate_limit_counts(emu.token)
    kinds = Counter(
        f"{r.method} {_path_kind(r.path)}" + (" (429)" if r.rate_limited else "")
        for r in emu.requests
        if r.origin == "api"
    )
    shown = ", ".join(f"{kind} x{count}" for kind, count in sorted(kinds.items()))
    return int(counts["allowed"]) + int(counts["refused"]), int(counts["refused"]), shown


def worker_running(service: Service, ti_id: str) -> bool:
    return service.pid is not None and find_task_processes(ti_id, within=[service.pid]) is not None


def run(args: argparse.Namespace) -> list[str]:
    run_dir: Path = args.run_dir
    files = run_dir / "shared-files"
    files.mkdir(parents=True, exist_ok=True)
    source = write_csv(files / SOURCE_NAME)
    facts: list[str] = []
    started = time.monotonic()

    def fact(message: str) -> None:
        note(message)
        facts.append(message)

    with RedivisEmulator(
        tables=[TABLE],
        data_dir=run_dir / "emulator",
        processing_delay=PROCESSING_STEP_SECONDS,
        rate_limit=REDIVIS_RATE_LIMIT,
    ) as emu:
        emu.add_fault(Fault("stall", origin="session", method="PUT", seconds=STALL_SECONDS, times=None))
        env = example_env(emu, files)
        env.update(
            AIRFLOW__CORE__EXECUTOR="CeleryExecutor",
            AIRFLOW__CORE__PARALLELISM="4",
            AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=args.database,
            AIRFLOW__CELERY__BROKER_URL=args.broker,
            # With its driver named: SQLAlchemy's default PostgreSQL driver may be one not installed.
            AIRFLOW__CELERY__RESULT_BACKEND="db+" + args.database,
            AIRFLOW__CELERY__WORKER_CONCURRENCY="1",
        )
        airflow = AirflowDeployment(run_dir / "airflow", python=sys.executable, env=env)
        install_dag(airflow.dags)
        try:
            note("migrating the database and starting the API server, scheduler, DAG processor, triggerer")
            airflow.start()
            workers = {name: start_worker(airflow, run_dir, name) for name in WORKERS}
            note(f"started workers {', '.join(WORKERS)}; waiting for the DAG to be parsed")
            airflow.wait_for_dag(DAG_ID)
            run_id = airflow.trigger(DAG_ID, logical_date=datetime.now(timezone.utc))
            note(f"triggered {DAG_ID} run {run_id}")

            ti = wait_for_first_upload_try(airflow, run_id, timeout=180)
            listening = airflow.listening_addresses()
            check(
                {address for address, _ in listening} == {"127.0.0.1"}, f"not only on 127.0.0.1: {listening}"
            )
            fact(f"Airflow's processes listen on {sorted(listening)} only")
            first = wait_for(
                "a worker to run the upload's first try",
                lambda: next((n for n, (s, _) in workers.items() if worker_running(s, str(ti["id"]))), None),
                timeout=30,
                on_timeout=airflow.diagnostics(),
            )
            other = next(n for n in WORKERS if n != first)
            first_service = workers[first][0]
            processes = find_task_processes(str(ti["id"]), within=[first_service.pid or 0])
            if processes is None:
                raise DeploymentError("The upload's task runner vanished before the kill")
            held = wait_until_half_held(emu)
            os.killpg(processes.runner.pid, signal.SIGKILL)
            first_service.stop()  # SIGTERM (warm shutdown) to its group; SIGKILL after 10 s
            note(
                f"emulator held {held} of {FILE_SIZE} bytes: killed the task runner on {first}, stopped {first}"
            )

            state = airflow.wait_for_run(DAG_ID, run_id, timeout=RUN_TIMEOUT)
            note(f"DAG run ended: {state}")
            check(state == "success", f"DAG run {run_id} ended {state}{airflow.diagnostics()}")

            tries = airflow.task_tries(DAG_ID, run_id, UPLOAD_TASK, map_index=0)
            summary = [(t["try_number"], t["state"], t["hostname"]) for t in tries]
            check([s[1] for s in summary] == ["failed", "success"], summary)
            check(summary[0][2] == f"{first}.celery-e2e", summary)
            check(summary[1][2] == f"{other}.celery-e2e", summary)
            fact(f"upload tries (try, state, hostname): {summary}")
            others = sorted(
                (t["task_id"], t["map_index"], t["try_number"], t["state"])
                for t in airflow.task_instances(DAG_ID, run_id)
                if t["task_id"] != UPLOAD_TASK
            )
            check(others and all(o[2:] == (1, "success") for o in others), f"other tasks' tries: {others}")
            fact(f"every other task succeeded on its first try (task, map index, try, state): {others}")
            spent, refused, kinds = requests_spent(emu)
            limit, interval = REDIVIS_RATE_LIMIT
            fact(
                f"API requests spent on the token: {spent}, {refused} answered 429, the emulator enforcing "
                f"{limit} per {interval:g} s ({kinds})"
            )
            check(refused == 0, f"{refused} API requests answered 429: the provider broke the request budget")

            # Each try's log is on the worker that ran it, and only there.
            first_logs, other_logs = workers[first][1], workers[other][1]
            first_log = airflow.task_log(DAG_ID, run_id, UPLOAD_TASK, 1, map_index=0, logs=first_logs)
            second_log = airflow.task_log(DAG_ID, run_id, UPLOAD_TASK, 2, map_index=0, logs=other_logs)
            for logs, attempt in ((first_logs, 2), (other_logs, 1)):
                stray = list(logs.rglob(f"task_id={UPLOAD_TASK}/**/attempt={attempt}.log"))
                check(not stray, f"try {attempt}'s log on the wrong worker: {stray}")
            check(any("Created Redivis upload session" in m for m in log_messages(first_log)), first_log)
            fact(
                f"try 1 log: {first_logs.relative_to(run_dir)}/…/attempt=1.log; "
                f"try 2 log: {other_logs.relative_to(run_dir)}/…/attempt=2.log"
            )
            resume_line = next(m for m in log_messages(second_log) if "Resuming Redivis upload session" in m)
            fact(f"try 2 log: {resume_line!r}")

            evidence = resume_evidence(emu, second_log, source)
            assert_resumed(evidence, emu, held)
            fact(evidence.summary())
            fact(
                f"file {FILE_SIZE} bytes, chunk {EXAMPLE_CHUNK_SIZE}, held at the kill {held}; "
                f"whole run {time.monotonic() - started:.0f} s"
            )
        except BaseException:
            print(airflow.diagnostics(60), file=sys.stderr)
            raise
        finally:
            note("stopping every service")
            airflow.stop()
    return facts


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument(
        "--database", required=True, help="SQLAlchemy URL of the PostgreSQL metadata database"
    )
    parser.add_argument("--broker", required=True, help="Celery broker URL (Redis)")
    parser.add_argument("--summary", type=Path, help="write the facts here as Markdown list items")
    args = parser.parse_args()
    if shutil.which("airflow", path=str(Path(sys.executable).parent)) is None:
        parser.error(f"{sys.executable} has no airflow script beside it: run this with the venv's python")
    try:
        facts = run(args)
    except (AssertionError, DeploymentError) as exc:
        note(f"FAILED: {exc}")
        if args.summary:
            args.summary.write_text(f"- FAILED: {exc}\n")
        return 1
    note("PASSED: try 1 died on one worker, try 2 resumed on the other")
    if args.summary:
        args.summary.write_text("".join(f"- {fact}\n" for fact in [*facts, "PASSED"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
