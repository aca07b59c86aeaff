"""A fleet of mapped uploads on one token at Redivis's request limit, under a real Airflow 3.3:
``python -m benchmarks fleet [--uploads N] [--parallelism P] [--rate-limit LIMIT/SECONDS] ...``.

Airflow runs as users run it (:class:`tests.e2e.deployment.AirflowDeployment`: api-server, scheduler,
dag-processor, triggerer; LocalExecutor on SQLite with ``--parallelism`` task processes). One DAG run maps
``RedivisResumableUploadOperator`` (``deferrable=True``, ``poll_interval`` at its default) over ``--uploads``
small CSV files into one table, on one token; the emulator (in this process) enforces ``--rate-limit``
(default Redivis's 100 per 100 s, the connection's ``rate_limit_interval`` the same interval).

First, unless ``--no-baseline``, the same fleet runs into another table with no limit: what this machine
takes for it. The floor is the larger of that and the budget's floor (:func:`budget_floor_seconds`).
Reported: API requests per upload (every request the emulator counted, the waits included), the share
answered 429, where the requests went (method and path), the makespan against the floor, each task's
first-try success, and the triggerer's CPU (its process tree, sampled with psutil). Results go to
``benchmarks/results/fleet.json`` and ``fleet.md`` (:mod:`benchmarks.fleet_report`).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil
from redivis_emulator import RedivisEmulator
from redivis_emulator.rate_limit import parse_rate_limit

from benchmarks import fleet_report
from benchmarks.runner import RESULTS, command_line, load_average, say

DAG_FILE = Path(__file__).resolve().parent / "fleet_dags" / "redivis_fleet_bench.py"
DAG_ID = "redivis_fleet_bench"
BASELINE_DAG_ID = "redivis_fleet_bench_baseline"
TABLE = "fleet_owner.fleet_dataset.daily_files"
BASELINE_TABLE = "fleet_owner.fleet_dataset.baseline_files"
#: API requests an upload cannot do without outside its wait: its session and its upload's creation.
REQUESTS_PER_UPLOAD = 2
#: The emulator's processing steps per upload (queued, running).
PROCESSING_STEPS = 2


@dataclass(frozen=True)
class Plan:
    uploads: int
    parallelism: int
    limit: int
    interval: float
    processing_step: float
    baseline: bool


def budget_floor_seconds(plan: Plan) -> float:
    """No fleet ends sooner than its unavoidable requests allow at the limit's pace, plus the last upload's
    processing: ``2 * uploads * interval / limit + processing``. The emulator's fixed window would let the
    first ``limit`` requests through at once; a client that paces itself (as the provider does, so that
    several processes share the token) cannot count on that, so the floor does not either."""
    return (
        REQUESTS_PER_UPLOAD * plan.uploads * plan.interval / plan.limit
        + PROCESSING_STEPS * plan.processing_step
    )


def floor_seconds(plan: Plan, baseline_makespan: float | None) -> tuple[float, str]:
    """The floor and what sets it: the budget, or this machine running the same fleet with no limit."""
    budget = budget_floor_seconds(plan)
    if baseline_makespan is not None and baseline_makespan > budget:
        return baseline_makespan, "the same fleet with no limit (the machine)"
    return budget, "the budget (2 requests per upload at the allowed rate, plus processing)"


class TreeCpu:
    """User + system CPU seconds of a process and its descendants, sampled every second on a thread so a
    descendant that ends between samples still counts (up to its last sample)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._seen: dict[tuple[int, float], float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="tree-cpu", daemon=True)

    def start(self) -> TreeCpu:
        self.sample()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sample()

    def _loop(self) -> None:
        while not self._stop.wait(1.0):
            self.sample()

    def sample(self) -> None:
        try:
            root = psutil.Process(self.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            return
        for proc in procs:
            try:
                times = proc.cpu_times()
                key = (proc.pid, proc.create_time())
            except psutil.Error:
                continue
            with self._lock:
                self._seen[key] = times.user + times.system

    def seconds(self) -> float:
        with self._lock:
            return sum(self._seen.values())


def write_files(folder: Path, count: int) -> Path:
    """``count`` small CSVs (50 rows each), one per upload."""
    folder.mkdir(parents=True, exist_ok=True)
    for number in range(count):
        rows = "".join(f"{i},{i * number}\n" for i in range(50))
        (folder / f"part_{number:04d}.csv").write_text("id,amount\n" + rows)
    return folder


_NAMES = re.compile(r"part_\d+\.csv")
_IDS = re.compile(r"/[0-9a-f]{16,}|/\d{4,}")


def request_kind(method: str, path: str) -> str:
    """A request's method and path with its file name and ids left out, to group where requests went."""
    path = _IDS.sub("/{id}", _NAMES.sub("{file}", path))
    return f"{method} {path}"


def budget_windows(stamps: list[float], interval: float) -> list[dict[str, float]]:
    """The emulator's windows over the run, rebuilt from its API requests' arrival times (its model: a window
    opens with the first request after the previous one ended and lasts ``interval``): each window's start
    (from the first request), the requests in it, and the seconds nothing was sent between it and the one
    before (the budget lying unused)."""
    windows: list[dict[str, float]] = []
    first = min(stamps, default=0.0)
    for stamp in sorted(stamps):
        if windows and stamp < first + windows[-1]["start"] + interval:
            windows[-1]["requests"] += 1
            continue
        start = stamp - first
        idle = start - (windows[-1]["start"] + interval) if windows else 0.0
        windows.append({"start": round(start, 1), "requests": 1, "idle_before": round(idle, 1)})
    return windows


def budget_waits(logs: Path, dag_id: str) -> int:
    """How many of the run's task and trigger logs say a request waited for the budget."""
    folder = logs / f"dag_id={dag_id}"
    return sum(
        "for a turn in Redivis's request budget" in p.read_text(errors="replace")
        for p in folder.rglob("*.log")
    )


def run_fleet(
    airflow: Any, emu: RedivisEmulator, cpu: TreeCpu, dag_id: str, plan: Plan, timeout: float
) -> dict[str, Any]:
    """Trigger one run of ``dag_id``, wait for it, and measure it."""
    emu.clear_requests()
    emu.clear_rate_limit_counts()
    cpu_before = cpu.seconds()
    started = time.monotonic()
    run_id = airflow.trigger(dag_id)
    say(f"triggered {dag_id} ({plan.uploads} uploads)")
    state = airflow.wait_for_run(dag_id, run_id, timeout=timeout)
    makespan = time.monotonic() - started
    cpu.sample()
    triggerer_cpu = cpu.seconds() - cpu_before
    counts = emu.rate_limit_counts(emu.token)
    allowed, refused = int(counts["allowed"]), int(counts["refused"])
    api = [r for r in emu.requests if r.origin == "api"]
    kinds = Counter(request_kind(r.method, r.path) for r in api)
    kinds_refused = Counter(request_kind(r.method, r.path) for r in api if r.rate_limited)
    windows = budget_windows([r.started_at for r in api], plan.interval)
    tis = [ti for ti in airflow.task_instances(dag_id, run_id) if ti["task_id"] == "upload"]
    tries = Counter(f"try {ti['try_number']}, {ti['state']}" for ti in tis)
    first_try = sum(ti["try_number"] == 1 and ti["state"] == "success" for ti in tis)
    say(
        f"{dag_id}: {state} in {makespan:.0f} s, {allowed + refused} API requests ({refused} answered 429), "
        f"first-try successes {first_try}/{len(tis)}, triggerer CPU {triggerer_cpu:.1f} s"
    )
    return {
        "dag_id": dag_id,
        "state": state,
        "makespan_seconds": round(makespan, 1),
        "api_requests": allowed + refused,
        "refused_429": refused,
        "requests_per_upload": round((allowed + refused) / plan.uploads, 3),
        "refused_share": round(refused / max(allowed + refused, 1), 4),
        "requests_by_kind": dict(kinds.most_common()),
        "budget_windows": windows,
        "refused_by_kind": dict(kinds_refused.most_common()),
        "task_instances": len(tis),
        "first_try_successes": first_try,
        "tries": dict(tries),
        "logs_with_a_budget_wait": budget_waits(airflow.logs, dag_id),
        "triggerer_cpu_seconds": round(triggerer_cpu, 2),
        "triggerer_cpu_percent_of_one_core": round(100 * triggerer_cpu / makespan, 2),
        "uploads_on_emulator": len(emu.list_uploads(TABLE if dag_id == DAG_ID else BASELINE_TABLE)),
    }


def deployment_env(emu: RedivisEmulator, files: Path, plan: Plan) -> dict[str, str]:
    connection = {
        "conn_type": "redivis",
        "host": emu.base_url,
        "password": emu.token,
        "extra": {"rate_limit_interval": plan.interval},
    }
    env = {
        "AIRFLOW_CONN_REDIVIS_DEFAULT": json.dumps(connection),
        "REDIVIS_FLEET_BENCH_FILES_DIR": str(files),
        "REDIVIS_FLEET_BENCH_TABLE": TABLE.replace(".daily_files", ":next.daily_files"),
        "AIRFLOW__CORE__PARALLELISM": str(plan.parallelism),
        "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": str(plan.parallelism),
        # Airflow's default capacity: every wait of the fleet fits in the one triggerer.
        "AIRFLOW__TRIGGERER__CAPACITY": "1000",
    }
    if plan.baseline:
        env["REDIVIS_FLEET_BENCH_BASELINE_TABLE"] = BASELINE_TABLE.replace(
            ".baseline_files", ":next.baseline_files"
        )
    return env


def measure(plan: Plan, scratch: Path) -> dict[str, Any]:
    from tests.e2e.deployment import AirflowDeployment  # the repository's deployment of real Airflow

    files = write_files(scratch / "files", plan.uploads)
    results: dict[str, Any] = {}
    # Generous: a run that breaks the budget badly still ends and is reported.
    timeout = max(1800.0, 6 * budget_floor_seconds(plan))
    with RedivisEmulator(
        tables=[TABLE, BASELINE_TABLE],
        data_dir=scratch / "emulator",
        processing_delay=plan.processing_step,
    ) as emu:
        airflow = AirflowDeployment(
            scratch / "airflow", python=sys.executable, env=deployment_env(emu, files, plan)
        )
        shutil.copy(DAG_FILE, airflow.dags / DAG_FILE.name)
        try:
            say(f"starting Airflow (LocalExecutor, parallelism {plan.parallelism}) in {scratch}")
            airflow.start()
            for dag_id in (BASELINE_DAG_ID, DAG_ID) if plan.baseline else (DAG_ID,):
                airflow.wait_for_dag(dag_id, timeout=180)
            triggerer = airflow.services["triggerer"].pid
            assert triggerer is not None
            cpu = TreeCpu(triggerer).start()
            if plan.baseline:
                results["baseline"] = run_fleet(airflow, emu, cpu, BASELINE_DAG_ID, plan, timeout)
            emu.set_rate_limit((plan.limit, plan.interval))
            results["fleet"] = run_fleet(airflow, emu, cpu, DAG_ID, plan, timeout)
            cpu.stop()
        except BaseException:
            print(airflow.diagnostics(60), file=sys.stderr)
            raise
        finally:
            airflow.stop()
    return results


def _rate_limit(text: str) -> tuple[int, float]:
    try:
        return parse_rate_limit(text)
    except ValueError as exc:  # argparse shows an ArgumentTypeError's own words
        raise argparse.ArgumentTypeError(str(exc)) from exc


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks fleet",
        description="Mapped uploads with deferred waits on one token, at Redivis's request limit, "
        "under a real Airflow 3.3 (scheduler, triggerer, LocalExecutor).",
    )
    parser.add_argument("--uploads", type=int, default=200, help="mapped uploads in the run (default 200)")
    parser.add_argument(
        "--parallelism", type=int, default=8, help="LocalExecutor task processes at once (default 8)"
    )
    parser.add_argument(
        "--rate-limit",
        type=_rate_limit,
        default=(100, 100.0),
        metavar="LIMIT/SECONDS",
        help="what the emulator allows the token (default 100/100, Redivis's); the connection's "
        "rate_limit_interval is set to the same SECONDS",
    )
    parser.add_argument(
        "--processing-step",
        type=float,
        default=1.0,
        help="the emulator's seconds per processing step (queued, running; default 1)",
    )
    parser.add_argument(
        "--no-baseline",
        action="store_true",
        help="skip the run with no limit (the floor is then the budget's)",
    )
    parser.add_argument(
        "--out", type=Path, default=RESULTS, help="results directory (default benchmarks/results)"
    )
    parser.add_argument("--tmp", type=Path, help="where Airflow's home, the files and the emulator go")
    args = parser.parse_args(argv)
    if args.uploads < 1 or args.parallelism < 1 or args.processing_step < 0:
        parser.error("--uploads and --parallelism must be at least 1, --processing-step at least 0")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    limit, interval = args.rate_limit
    plan = Plan(args.uploads, args.parallelism, limit, interval, args.processing_step, not args.no_baseline)
    say(
        f"fleet: {plan.uploads} uploads, parallelism {plan.parallelism}, {limit} requests per {interval:g} s; "
        f"budget floor {budget_floor_seconds(plan):.0f} s"
    )
    machine = fleet_report.machine()
    machine["load_before"] = load_average()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="redivis-fleet-", dir=args.tmp) as tmp:
        measured = measure(plan, Path(tmp))
    machine["load_after"] = load_average()
    machine["duration_seconds"] = round(time.monotonic() - started, 1)
    baseline = measured.get("baseline")
    floor, floor_by = floor_seconds(plan, baseline["makespan_seconds"] if baseline else None)
    fleet = measured["fleet"]
    results = {
        "command": command_line(["fleet", *argv]),
        "plan": asdict(plan),
        "machine": machine,
        "floor": {
            "budget_seconds": round(budget_floor_seconds(plan), 1),
            "baseline_seconds": baseline["makespan_seconds"] if baseline else None,
            "seconds": round(floor, 1),
            "set_by": floor_by,
            "makespan_over_floor": round(fleet["makespan_seconds"] / floor, 3),
        },
        **measured,
    }
    fleet_report.write(results, args.out)
    print(fleet_report.markdown(results), flush=True)
    ok = fleet["state"] == "success" and fleet["first_try_successes"] == plan.uploads
    return 0 if ok else 1
