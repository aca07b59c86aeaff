"""``./dev/demo`` (``python dev/demo.py``): the daily-load example DAG in real Airflow, against the
local Redivis emulator.

A development tool, not part of the provider's wheel: it needs a checkout (the example DAG) and the
redivis-emulator distribution (``pip install ./emulator``), both of which ``./dev/demo`` sets up.

No Redivis account and no network: the demo starts the emulator on 127.0.0.1 (a free port), writes
a day's worth of CSV files, migrates a fresh Airflow metadata database (SQLite in a temporary
``AIRFLOW_HOME``), and runs ``example_dags/redivis_daily_load.py`` -- the file, unchanged -- with
``dag.test()`` in a child process. It then checks what the emulator received and prints a summary.

The network failure
-------------------
The emulator cuts the connection (a TCP reset) at half of the largest file, on every request that
reaches that byte, for exactly as many requests as the upload's *first try* makes there:

- the first cut still leaves Redivis the bytes before it (Cloud Storage keeps whole 256 KiB units);
  the upload engine asks the server what it holds and sends the rest again;
- each following attempt is cut at the same byte; after ``max_attempts`` attempts at that request in
  all (the connection's extra, set here to :data:`MAX_ATTEMPTS`) the engine gives up and the try
  fails.

So the fault fires ``MAX_ATTEMPTS`` times and then never again: Airflow retries the task, the
second try finds the checkpoint, asks the server for its offset and logs "Resuming Redivis upload
session <id> at byte <n> of <total>", and sends only the rest. The example DAG knows nothing of
this: the fault lives in the emulator, the limit in the connection.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import requests

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from redivis_emulator import RedivisEmulator

DAG_ID = "redivis_daily_load"
DAG_FILE_NAME = "redivis_daily_load.py"
DATASET = "demo_owner.demo_dataset"
TABLE_NAME = "daily_sales"
#: Attempts per request within one try (the connection's ``max_attempts`` extra): small, so that the
#: first try gives up after a few seconds instead of the default six attempts with longer backoff.
MAX_ATTEMPTS = 3
#: Cloud Storage keeps the bytes of a cut request in whole units of this size (docs/resumable-uploads.md).
UNIT = 256 * 1024
#: The day's files: (name, size in bytes). The largest is the one the network cut hits.
DEMO_FILES: tuple[tuple[str, int], ...] = (
    ("sales_north.csv", 40 * 2**20),
    ("sales_south.csv", 6 * 2**20),
    ("sales_west.csv", 3 * 2**19),
)
#: The whole DAG run may take this long before the demo gives up on it.
RUN_TIMEOUT = 600.0
RESUME_RE = re.compile(
    r"Resuming Redivis upload session (?P<session>\S+) at byte (?P<offset>\d+) of (?P<total>\d+)"
)


def _mib(n: float) -> str:
    return f"{n / 2**20:.1f} MiB"


def _repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


# -- the day's files ---------------------------------------------------------------------------------


def write_csv(path: Path, size: int, seed: int) -> Path:
    """A plausible sales export of about ``size`` bytes (whole rows only: Redivis parses the file)."""
    rng = random.Random(seed)  # noqa: S311 - demo data, not cryptography
    stores = [f"store_{i:03d}" for i in range(1, 120)]
    products = ["coffee", "tea", "bagel", "muffin", "juice", "sandwich", "salad", "cookie"]
    rows = [b"date,store,product,units,unit_price\n"]
    written = len(rows[0])
    while True:
        row = (
            f"2026-11-{rng.randint(1, 28):02d},{rng.choice(stores)},{rng.choice(products)},"
            f"{rng.randint(1, 40)},{rng.randint(100, 1500) / 100:.2f}\n"
        ).encode()
        if written + len(row) > size:
            break
        rows.append(row)
        written += len(row)
    path.write_bytes(b"".join(rows))
    return path


def md5_file(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)  # comparing content, as Redivis reports it
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(2**20), b""):
            digest.update(block)
    return digest.hexdigest()


# -- the fault -----------------------------------------------------------------------------------------


def first_try_cut(emulator: RedivisEmulator, target_size: int, max_attempts: int) -> int:
    """Cut the upload of the ``target_size``-byte file at its middle, for its first try only.

    Returns the byte at which the connection is cut. See the module docstring for the count.
    """
    from redivis_emulator import Fault

    at_offset = target_size // 2
    emulator.add_fault(
        Fault(
            "reset",
            origin="session",
            method="PUT",
            at_offset=at_offset,
            # The cut that saves the first half is the first of max_attempts attempts at that request: each
            # later one is cut too, the retry policy is spent, and the try fails.
            times=max_attempts,
            predicate=lambda request: request.session_size == target_size,
        )
    )
    return at_offset


# -- reading Airflow's output ----------------------------------------------------------------------------

# Airflow 3's console log: "<ts> [<level>  ] <message> [<logger>] key=value ...".
_LOG_LINE = re.compile(
    r"^(?P<ts>\d{4}-\d\d-\d\dT[\d:.]+Z?) \[(?P<level>\w+)\s*\] (?P<msg>.*?)\s+\[(?P<logger>[\w.]+)\]"
    r"(?P<kv>(?:\s+\w+=.*)?)$"
)
_STARTING = re.compile(r"\[DAG TEST\] starting task_id=(?P<task>\S+) map_index=(?P<index>-?\d+)")
_NEW_STATE = re.compile(r"new_state=(?P<state>\w+)")


@dataclass
class RunLog:
    """Turns the child's output into the few lines a person wants to read, and remembers what matters."""

    file_names: Sequence[str]
    verbose: bool = False
    started: float = field(default_factory=time.monotonic)
    task: str = ""
    tries: dict[str, int] = field(default_factory=dict)
    resumes: list[tuple[str, int, int]] = field(default_factory=list)
    retried: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    dagrun_state: str | None = None
    _in_traceback: bool = False
    _last_traceback_line: str = ""

    def label(self, task_id: str, index: int) -> str:
        if index >= 0 and task_id in ("upload", "wait_for_processing") and index < len(self.file_names):
            return f"{task_id}[{self.file_names[index]}]"
        return task_id if index < 0 else f"{task_id}[{index}]"

    def _say(self, text: str) -> str:
        return f"{time.monotonic() - self.started:6.1f}s  {text}"

    def feed(self, line: str) -> Iterable[str]:
        """The lines to show for one line of output (often none)."""
        line = line.rstrip("\n")
        if self.verbose:
            yield line
        if line.startswith("DAGRUN_STATE="):
            self.dagrun_state = line.split("=", 1)[1]
            return
        match = _LOG_LINE.match(line)
        if match is None:
            if self._in_traceback and line.strip():
                self._last_traceback_line = line.strip()
            return
        if self._in_traceback:
            self._in_traceback = False
            if not self.verbose and self._last_traceback_line:
                yield self._say(f"{self.task:<36} !! {self._last_traceback_line}")
        msg, logger, level = match["msg"].strip(), match["logger"], match["level"]
        if self.verbose:
            return
        starting = _STARTING.search(msg)
        if starting:
            self.task = self.label(starting["task"], int(starting["index"]))
            self.tries[self.task] = self.tries.get(self.task, 0) + 1
            if self.tries[self.task] > 1:
                yield self._say(f"{self.task:<36} try {self.tries[self.task]} starts")
            return
        if msg == "Task failed with exception":
            self._in_traceback, self._last_traceback_line = True, ""
            return
        if msg.startswith("Task instance state updated"):
            state = _NEW_STATE.search(match["kv"])
            if state is None:
                return
            new_state = state["state"]
            if new_state == "up_for_retry":
                self.retried.append(self.task)
                yield self._say(
                    f"{self.task:<36} try {self.tries.get(self.task, 1)} failed: Airflow retries it"
                )
            elif new_state == "failed":
                self.failed.append(self.task)
                yield self._say(f"{self.task:<36} FAILED")
            elif new_state in ("success", "deferred", "skipped"):
                yield self._say(f"{self.task:<36} {new_state}")
            return
        if msg.startswith("DagRun Finished"):
            return
        resume = RESUME_RE.search(msg)
        if resume:
            self.resumes.append((resume["session"], int(resume["offset"]), int(resume["total"])))
        # The provider's own loggers, and its operators' task loggers (airflow.task.operators.airflow_provider_redivis...).
        if "airflow_provider_redivis" in logger or level in ("error", "critical"):
            marker = "!! " if level in ("warning", "error", "critical") else ""
            yield self._say(f"{self.task:<36} {marker}{msg}")


# -- running Airflow ---------------------------------------------------------------------------------


def airflow_env(home: Path, connection: dict[str, Any], **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(home / "dags"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__UNIT_TEST_MODE="False",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home / 'airflow.db'}",
        AIRFLOW__LOGGING__LOGGING_LEVEL="INFO",
        AIRFLOW__LOGGING__COLORED_CONSOLE_LOG="False",
        AIRFLOW_CONN_REDIVIS_DEFAULT=json.dumps(connection),
        PYTHONUNBUFFERED="1",
        PYTHONWARNINGS="ignore",
        NO_PROXY="127.0.0.1,localhost",
    )
    env.update(extra)
    return env


def migrate(env: dict[str, str], log_file: Path) -> None:
    with log_file.open("a") as log:
        proc = subprocess.run(
            [sys.executable, "-m", "airflow", "db", "migrate"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            timeout=300,
            check=False,
        )
    if proc.returncode != 0:
        raise RuntimeError(f"airflow db migrate failed; its output is in {log_file}")


def run_dag(env: dict[str, str], dag_file: Path, run_log: RunLog, log_file: Path, timeout: float) -> int:
    """``dag.test()`` in a child process; its output filtered through ``run_log``. Returns its exit code."""
    proc = subprocess.Popen(  # noqa: S603 - this interpreter and this module, fixed arguments
        [sys.executable, str(Path(__file__).resolve()), "--run-dag", str(dag_file), DAG_ID],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        bufsize=1,
        start_new_session=True,  # its own process group, so a timeout stops everything it started
    )
    timed_out = threading.Event()

    def stop() -> None:
        timed_out.set()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)

    timer = threading.Timer(timeout, stop)
    timer.start()
    try:
        if proc.stdout is None:  # pragma: no cover - stdout=PIPE sets it
            raise RuntimeError("the DAG run's output cannot be read")
        with log_file.open("a") as log:
            for line in proc.stdout:
                log.write(line)
                for shown in run_log.feed(line):
                    print(shown, flush=True)
        returncode = proc.wait()
    finally:
        timer.cancel()
    if timed_out.is_set():
        print(f"The DAG run took longer than {timeout:.0f} s and was stopped.", flush=True)
        return 124
    return returncode


def _run_dag_in_this_process(dag_file: str, dag_id: str) -> int:
    """The child: load the DAG file and run it with ``dag.test()``."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("redivis_demo_dag", dag_file)
    if spec is None or spec.loader is None:
        print(f"Cannot load {dag_file}", file=sys.stderr)
        return 2
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    dag = next(obj for obj in vars(module).values() if getattr(obj, "dag_id", None) == dag_id)
    run = dag.test()
    state = str(getattr(run, "state", run)).rsplit(".", 1)[-1].lower()
    print(f"DAGRUN_STATE={state}", flush=True)
    return 0 if state == "success" else 1


# -- checking the result -----------------------------------------------------------------------------


@dataclass
class Outcome:
    problems: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)

    def check(self, ok: bool, problem: str) -> bool:
        if not ok:
            self.problems.append(problem)
        return ok


def released_version(emulator: RedivisEmulator) -> dict[str, Any] | None:
    """The dataset's current version if the DAG released one, else None."""
    response = requests.get(
        f"{emulator.base_url}/api/v1/datasets/{DATASET}/versions/current",
        headers={"Authorization": f"Bearer {emulator.token}"},
        timeout=10,
    )
    if response.status_code != 200:
        return None
    version: dict[str, Any] = response.json()
    return version if version.get("isReleased") else None


def summarize(
    emulator: RedivisEmulator,
    files: Sequence[Path],
    run_log: RunLog,
    returncode: int,
    elapsed: float,
    cut_at: int | None = None,
) -> Outcome:
    out = Outcome()
    spent = emulator.rate_limit_counts(emulator.token)  # before the checks below spend any
    total = sum(p.stat().st_size for p in files)
    sent = emulator.bytes_received("session")
    table = f"{DATASET}.{TABLE_NAME}"
    uploads = {u.get("name"): u for u in emulator.list_uploads(table)}
    completed = [p for p in files if (uploads.get(p.name) or {}).get("status") == "completed"]
    matching = [p for p in completed if md5_file(emulator.upload_bytes_path(table, p.name)) == md5_file(p)]
    saved = sum(offset for _session, offset, _total in run_log.resumes)
    version = released_version(emulator)

    out.check(
        returncode == 0 and run_log.dagrun_state == "success", f"the DAG run ended {run_log.dagrun_state}"
    )
    out.check(len(completed) == len(files), f"{len(completed)} of {len(files)} uploads completed")
    out.check(len(matching) == len(completed), "stored bytes differ from a source file (md5)")
    out.check(version is not None, "the version was not released")
    out.check(
        bool(run_log.resumes) and saved > 0,
        "no retry resumed an upload: the injected network cut did not make the first try fail",
    )

    out.lines += [
        f"  files             {len(files)} ({_mib(total)}): {', '.join(p.name for p in files)}",
        f"  bytes sent        {_mib(sent)} to the upload sessions, for {_mib(total)} of files"
        + (f" ({_mib(sent - total)} cut off in flight and sent again)" if sent > total else ""),
    ]
    for _session, offset, size in run_log.resumes:
        out.lines.append(
            f"  saved by resuming {_mib(offset)}: the retry continued at byte {offset:,} of {size:,} instead of 0"
        )
        if cut_at is not None and offset != cut_at:
            out.lines.append(
                f"                    (the cut was at byte {cut_at:,}; the server keeps a cut request's bytes in "
                f"whole 256 KiB units: {offset:,} = {offset // UNIT} x {UNIT:,})"
            )
    if not run_log.resumes:
        out.lines.append("  saved by resuming 0 bytes: no upload was resumed")
    out.lines += [
        f"  uploads           {len(completed)} of {len(files)} completed; "
        + (
            "stored bytes match the sources (md5)"
            if len(matching) == len(completed)
            else f"{len(completed) - len(matching)} differ from their source (md5)"
        ),
        f"  retried tasks     {', '.join(run_log.retried) or 'none'}",
        f"  API requests      {spent['allowed']} for {len(files)} uploads and the version, under Redivis's limit of "
        f"{emulator.rate_limit[0]} per {emulator.rate_limit[1]:.0f} s; {spent['refused']} answered 429"
        if emulator.rate_limit
        else f"  API requests      {spent['allowed']}",
        "  version           "
        + (f"released ({version.get('tag')})" if version is not None else "NOT released"),
        f"  elapsed           {elapsed:.0f} s",
    ]
    return out


# -- the demo ----------------------------------------------------------------------------------------


def run_demo(args: argparse.Namespace) -> int:
    from redivis_emulator import REDIVIS_RATE_LIMIT, RedivisEmulator

    dag_source = _repo_root() / "example_dags" / DAG_FILE_NAME
    if not dag_source.is_file():
        print(
            f"The demo runs the example DAG {dag_source}, which is not there: run it from a clone of the repository."
        )
        return 2
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="redivis-demo-"))
    home, incoming, log_file = work / "airflow", work / "incoming", work / "demo.log"
    (home / "dags").mkdir(parents=True)
    incoming.mkdir()
    shutil.copy(dag_source, home / "dags" / DAG_FILE_NAME)
    files = [write_csv(incoming / name, size, seed) for seed, (name, size) in enumerate(DEMO_FILES)]
    target = max(files, key=lambda p: p.stat().st_size)

    print(
        "Redivis provider demo: the daily-load example DAG, in real Airflow, against a local Redivis emulator"
    )
    # Redivis's own rate limit, enforced: the DAG spends the token's budget as it would on redivis.com.
    with RedivisEmulator(
        host="127.0.0.1", port=0, data_dir=work / "emulator", rate_limit=REDIVIS_RATE_LIMIT
    ) as emu:
        # The dataset and its table, as a user would have set them up: a daily full reload replaces.
        emu.create_table(f"{DATASET}.{TABLE_NAME}", merge_strategy="replace")
        cut_at = first_try_cut(emu, target.stat().st_size, MAX_ATTEMPTS)
        connection = {
            "conn_type": "redivis",
            "host": emu.base_url,
            "password": emu.token,
            "extra": {"max_attempts": MAX_ATTEMPTS, "connect_timeout": 5, "read_timeout": 30},
        }
        env = airflow_env(
            home,
            connection,
            REDIVIS_EXAMPLE_DATASET=DATASET,
            REDIVIS_EXAMPLE_TABLE=TABLE_NAME,
            REDIVIS_EXAMPLE_FILES_DIR=str(incoming),
        )
        print(f"  emulator          {emu.base_url} (no Redivis account; nothing leaves this machine)")
        print(f"  Airflow           {_airflow_version()}, AIRFLOW_HOME {home} (fresh, SQLite)")
        print(f"  DAG               {dag_source.relative_to(_repo_root())} (dag id {DAG_ID}), unchanged")
        print(f"  day's files       {len(files)}, {_mib(sum(p.stat().st_size for p in files))} in {incoming}")
        print(
            f"  network cut       at byte {cut_at:,} of {target.name} ({_mib(cut_at)}), up to "
            f"{MAX_ATTEMPTS + 1} times (1 + max_attempts={MAX_ATTEMPTS}): the upload's first try gives up"
        )
        print(
            f"                    a cut request leaves only whole 256 KiB units ({UNIT:,} bytes) on the server, "
            f"so the retry resumes at byte {cut_at // UNIT * UNIT:,} or before"
        )
        print("Migrating the Airflow metadata database ...", flush=True)
        migrate(env, log_file)
        print(f"Running {DAG_ID} with dag.test() (full log: {log_file})", flush=True)
        run_log = RunLog(file_names=sorted(p.name for p in files), verbose=args.verbose)
        run_log.started = time.monotonic()
        returncode = run_dag(env, home / "dags" / DAG_FILE_NAME, run_log, log_file, args.timeout)
        outcome = summarize(emu, files, run_log, returncode, time.monotonic() - started, cut_at=cut_at)

    print("\nSummary")
    for line in outcome.lines:
        print(line)
    if outcome.problems:
        print(
            "\nDemo FAILED: "
            + "; ".join(outcome.problems)
            + f".\nEverything is kept in {work} (log: {log_file})."
        )
        return 1
    print("\nDemo passed: the network cut cost one retry, the retry resumed, the version is released.")
    if args.keep:
        print(f"Kept {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def _airflow_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"Apache Airflow {version('apache-airflow')}"
    except PackageNotFoundError:  # only for display
        return "Apache Airflow"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="dev/demo",
        description="Run the daily-load example DAG in real Airflow against a local Redivis emulator, "
        "with a network cut that the retry resumes from.",
    )
    parser.add_argument("--verbose", action="store_true", help="show Airflow's whole output")
    parser.add_argument("--keep", action="store_true", help="keep the temporary files and Airflow home")
    parser.add_argument("--timeout", type=float, default=RUN_TIMEOUT, help="seconds the DAG run may take")
    parser.add_argument("--run-dag", nargs=2, metavar=("DAG_FILE", "DAG_ID"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.run_dag:
        return _run_dag_in_this_process(*args.run_dag)
    return run_demo(args)


if __name__ == "__main__":
    sys.exit(main())
