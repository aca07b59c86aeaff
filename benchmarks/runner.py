"""The benchmark runner: ``python -m benchmarks [--quick]`` (or ``benchmarks/run``); ``python -m benchmarks
fleet ...`` runs :mod:`benchmarks.fleet` instead.

It starts the emulator on 127.0.0.1 in this process, writes the source files into a temporary
directory, and drives one :mod:`benchmarks.worker` subprocess per group of runs. Every figure is a
ratio or a shape whose parts come from the same run of this command, measured side by side
(interleaved), so a busy machine slows both sides alike rather than skewing the figure.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import random
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import requests
from redivis_emulator import Fault, RedivisEmulator

from airflow_provider_redivis.engine.protocol import CHUNK_UNIT
from benchmarks import report

MiB = 1024 * 1024
GiB = 1024 * MiB
REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
#: Quick runs are for development: their results go here (ignored by git), not over the real ones.
QUICK_RESULTS = REPO / "benchmarks" / "work" / "quick"
TABLE = "bench_owner.bench_dataset:next.bench_table"
TABLE_ON_EMULATOR = "bench_owner.bench_dataset.bench_table"
#: The load average above which a full run waits before starting (the machine has other users).
MAX_LOAD = 1.5


@dataclass(frozen=True)
class Link:
    """A modelled long link (:mod:`benchmarks.linkproxy`): bandwidth and round trip, and what crosses it."""

    name: str
    mbit: float
    rtt_ms: float
    sizes: tuple[int, ...]
    reps: int

    @property
    def bytes_per_second(self) -> float:
        return self.mbit * 1e6 / 8


@dataclass(frozen=True)
class Plan:
    """How big and how many: the quick plan checks that everything works, the full one measures."""

    name: str
    loopback_sizes: tuple[int, ...]
    loopback_reps: int
    #: One fixed request size beside the adaptive default, for comparison (None: no comparison).
    fixed_chunk: int | None
    links: tuple[Link, ...]
    checkpoint_size: int
    checkpoint_pairs: int
    memory_sizes: tuple[int, ...]
    interrupt_size: int
    interrupt_points: int
    triggers: int
    processing_seconds: float
    poll_interval: float


#: 400 Mbit/s at 60 ms: a good office or campus uplink to a Cloud Storage region across a continent.
LONG_LINK = "400 Mbit/s, 60 ms RTT"
#: 1 Gbit/s at 20 ms: a data-centre or cloud VM in a neighbouring region (e.g. us-east to us-central);
#: the fastest link a task worker is likely to have to Redivis's storage, so per-request costs show most.
FAST_LINK = "1 Gbit/s, 20 ms RTT"

QUICK = Plan(
    name="quick",
    loopback_sizes=(32 * MiB, 64 * MiB),
    loopback_reps=2,
    fixed_chunk=16 * MiB,
    links=(
        Link(LONG_LINK, 400, 60, (32 * MiB,), 2),
        Link(FAST_LINK, 1000, 20, (64 * MiB,), 2),
    ),
    checkpoint_size=64 * MiB,
    checkpoint_pairs=2,
    memory_sizes=(32 * MiB, 48 * MiB, 64 * MiB),
    interrupt_size=32 * MiB,
    interrupt_points=6,
    triggers=100,
    processing_seconds=6.0,
    poll_interval=5.0,
)
FULL = Plan(
    name="full",
    loopback_sizes=(256 * MiB, 1 * GiB),
    loopback_reps=5,
    fixed_chunk=64 * MiB,
    links=(
        Link(LONG_LINK, 400, 60, (256 * MiB, 1 * GiB), 3),
        Link(FAST_LINK, 1000, 20, (256 * MiB, 1 * GiB), 3),
    ),
    checkpoint_size=256 * MiB,
    checkpoint_pairs=8,
    memory_sizes=(64 * MiB, 256 * MiB, 1 * GiB),
    interrupt_size=256 * MiB,
    interrupt_points=40,
    triggers=200,
    processing_seconds=60.0,
    poll_interval=10.0,
)
FIGURES = ("throughput", "link", "checkpoint", "memory", "interrupt", "triggers")

#: The emulator option for a server that keeps NOTHING of a cut request (storage-testbench's way),
#: named in this one place. An emulator that does not accept it gets the figure "not available".
KEEP_NOTHING_OPTION = "keep_partial_requests"
#: The two kinds of server the interruptions are measured on: label -> emulator options.
SERVER_KINDS: dict[str, dict[str, Any]] = {
    "keeps 256 KiB units": {},
    "keeps nothing of a cut request": {KEEP_NOTHING_OPTION: False},
}


def mib(n: float) -> str:
    return f"{n / MiB:g} MiB" if n < GiB else f"{n / GiB:g} GiB"


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- the machine ---------------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_average() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def machine_info() -> dict[str, Any]:
    try:
        commit = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
    except OSError:
        commit = ""
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu_model(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GiB, 1),
        "requests": requests.__version__,
        "redivis_client": official_client_version(),
        "commit": commit,
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def client_python() -> str:
    """The official client's own interpreter: its niquests would replace urllib3 under the provider."""
    python = os.environ.get("REDIVIS_CLIENT_PYTHON") or str(REPO / ".venv-client" / "bin" / "python")
    if not Path(python).exists():
        raise SystemExit(f"no official client at {python}: run dev/setup-venvs (it makes .venv-client)")
    return python


def official_client_version() -> str:
    return subprocess.run(
        [client_python(), "-c", "import redivis; print(redivis.__version__)"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()


def wait_for_quiet_machine(limit_seconds: float) -> list[float]:
    """Wait (bounded) until the 1-minute load average is at most MAX_LOAD; return the load at start."""
    deadline = time.monotonic() + limit_seconds
    while True:
        load = load_average()
        if not load or load[0] <= MAX_LOAD or time.monotonic() >= deadline:
            if load and load[0] > MAX_LOAD:
                say(f"load average still {load[0]} after waiting; measuring anyway (noted in the results)")
            return load
        say(f"load average {load[0]} > {MAX_LOAD}: waiting 30 s for the machine to quieten")
        time.sleep(30)


# -- files and the emulator -----------------------------------------------------------------------


def make_source(directory: Path, size: int) -> Path:
    """A CSV of ``size`` bytes (valid rows, so the emulator's processing is as for a real load)."""
    path = directory / f"source_{size}.csv"
    if path.exists() and path.stat().st_size == size:
        return path
    rng = random.Random(size)
    header = b"id,amount,label\n"
    rows = b"".join(
        b"%d,%d.%02d,%s\n"
        % (i, rng.randrange(10**6), rng.randrange(100), bytes(rng.choices(b"abcdefgh", k=12)))
        for i in range(40_000)
    )
    block = rows[: len(rows) - len(rows) % CHUNK_UNIT] or rows
    with open(path, "wb") as out:
        out.write(header)
        left = size - len(header)
        while left > 0:
            piece = block[:left]
            out.write(piece)
            left -= len(piece)
    return path


class EmulatorOptionUnavailable(Exception):
    """The emulator in this tree does not accept an option a figure needs (it lands in another branch)."""


class Emulator:
    """The emulator for one group of measurements, and the bookkeeping the figures need.

    ``options`` go to :class:`RedivisEmulator` as they are (the kind of server, for the interruptions);
    one it does not accept raises :class:`EmulatorOptionUnavailable`.
    """

    def __init__(
        self,
        directory: Path,
        *,
        processing_delay: float = 0.05,
        skip_processing: bool = False,
        options: dict[str, Any] | None = None,
    ) -> None:
        self.data_dir = directory
        try:
            self.emu = RedivisEmulator(
                host="127.0.0.1",
                port=0,
                tables=(TABLE_ON_EMULATOR,),
                data_dir=directory,
                processing_delay=processing_delay,
                **(options or {}),
            )
        except TypeError as exc:
            raise EmulatorOptionUnavailable(str(exc)) from None
        self.freed: set[str] = set()
        self.skip_processing = skip_processing

    def standing_faults(self) -> None:
        """Clear the faults; then, if asked, end every upload's processing at once (no parse).

        The throughput runs that create an upload (the client's, the operator's ``execute``) would
        otherwise have the emulator parse a GiB of CSV in the background of the next measurement.
        """
        self.emu.clear_faults()
        if self.skip_processing:
            self.emu.add_fault(
                Fault("fail_processing", times=None, message="benchmark: processing skipped on purpose")
            )

    def __enter__(self) -> Emulator:
        self.emu.__enter__()
        self.standing_faults()
        return self

    def __exit__(self, *exc: object) -> None:
        self.emu.__exit__(*exc)

    @property
    def api_url(self) -> str:
        return f"{self.emu.base_url}/api/v1"

    def worker_env(self, home: Path, *, api_base: str | None = None) -> dict[str, str]:
        """The worker's environment; ``api_base``: reach the API there (a link's proxy) instead."""
        base = api_base or self.emu.base_url
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "REDIVIS", "PYTEST"))}
        env.update(
            AIRFLOW_HOME=str(home),
            AIRFLOW__CORE__LOAD_EXAMPLES="False",
            AIRFLOW__CORE__UNIT_TEST_MODE="False",
            AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home / 'airflow.db'}",
            AIRFLOW_CONN_REDIVIS_DEFAULT=json.dumps(
                {"conn_type": "redivis", "host": base, "password": self.emu.token}
            ),
            REDIVIS_API_ENDPOINT=f"{base}/api/v1",
            REDIVIS_API_TOKEN=self.emu.token,
            PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")])),
            NO_PROXY="*",
            PYTHONUNBUFFERED="1",
        )
        return env

    def wait_until_processed(self, upload_uri: str) -> None:
        for upload in self.emu.list_uploads(TABLE_ON_EMULATOR):
            if upload.get("uri") == upload_uri:
                self.emu.wait_for_processing(TABLE_ON_EMULATOR, upload["name"], timeout=300)

    def free_finished(self) -> None:
        """Drop the stored bytes of every finished session: a full run would otherwise fill the disk."""
        for session_id, session in self.emu.sessions.items():
            if session_id not in self.freed:
                Path(session.path).unlink(missing_ok=True)
                self.freed.add(session_id)

    def request_count(self, origin: str | None = None) -> int:
        return sum(1 for r in self.emu.requests if origin is None or r.origin == origin)

    def session_gaps(self, session_id: str) -> list[float]:
        """Seconds the server sat idle between one request to that session and the next (its own clock)."""
        puts = [
            r
            for r in self.emu.requests
            if r.origin == "session" and r.method == "PUT" and r.session_id == session_id and r.body_bytes
        ]
        return [b.started_at - (a.started_at + a.duration) for a, b in itertools.pairwise(puts)]

    def session_puts(self, session_id: str) -> list[int]:
        """Body bytes of each PUT that carried bytes to that session, in order (status queries left out)."""
        return [
            r.body_bytes
            for r in self.emu.requests
            if r.origin == "session" and r.method == "PUT" and r.session_id == session_id and r.body_bytes
        ]


class Proxy:
    """A :mod:`benchmarks.linkproxy` process in front of one origin: its own process, so no shared GIL."""

    def __init__(self, upstream: str, link: Link) -> None:
        parts = urlsplit(upstream)
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "benchmarks.linkproxy",
                "--upstream",
                f"{parts.hostname}:{parts.port}",
                "--mbit",
                str(link.mbit),
                "--rtt-ms",
                str(link.rtt_ms),
            ],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("LISTENING "):
            self.close()
            raise RuntimeError(f"the link proxy did not start (said {line!r})")
        self.url = f"http://127.0.0.1:{int(line.split()[1])}"
        self.stats = ""

    def close(self) -> None:
        try:
            out, _ = self.proc.communicate(timeout=30)  # closes its stdin: the proxy's signal to stop
            self.stats = (out or "").strip()
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=30)


class Worker:
    """A :mod:`benchmarks.worker` subprocess: send a run, read its result."""

    def __init__(self, env: dict[str, str], job: dict[str, Any]) -> None:
        # The official client's runs go to a worker in its own environment.
        python = client_python() if job.get("official_client") else sys.executable
        self.proc = subprocess.Popen(
            [python, "-m", "benchmarks.worker"],
            cwd=REPO,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self._send(job)
        if job.get("kind") != "triggers":
            self.read()  # "ready": imports and the hook are done before anything is timed

    def _send(self, message: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(message) + "\n")
        self.proc.stdin.flush()

    def read(self) -> Any:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("RESULT "):
                return json.loads(line[len("RESULT ") :])
        code = self.proc.wait(timeout=60)
        raise RuntimeError(f"the benchmark worker ended (exit code {code}) without a result; see its stderr")

    def run(self, run: dict[str, Any]) -> dict[str, Any]:
        self._send(run)
        result: dict[str, Any] = self.read()
        return result

    def close(self) -> None:
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=30)

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- the figures ----------------------------------------------------------------------------------


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


#: The 1-minute load average after every run: other users of the machine show up here.
LOAD_SAMPLES: list[float] = []


def run_and_free(emu: Emulator, worker: Worker, run: dict[str, Any]) -> dict[str, Any]:
    cpu_started = time.process_time()
    result = worker.run(run)
    # This process is the emulator while the worker runs (the runner itself only waits on a pipe;
    # the link proxies run in processes of their own).
    result["emulator_cpu_seconds"] = time.process_time() - cpu_started
    LOAD_SAMPLES.extend(load_average()[:1])
    if result.get("session_id"):
        result["request_bytes"] = emu.session_puts(result["session_id"])
        result["request_gaps_ms"] = [round(1000 * g, 2) for g in emu.session_gaps(result["session_id"])]
    if result.get("upload_uri"):
        # Processing reads the stored bytes: let it finish before they go.
        emu.wait_until_processed(result["upload_uri"])
    emu.free_finished()
    return result


def throughput_groups(plan: Plan) -> list[list[dict[str, Any]]]:
    """One repetition: each measured run beside its own ceiling, so that a pair shares the moment.

    The defaults' group also holds the official client and the whole ``execute()``, so their ratios
    come from neighbours too. ``chunk_size`` None is the default: requests sized from the rate.
    """
    groups = [
        [
            {"kind": "ceiling"},
            {"kind": "operator", "chunk_size": None},
            {"kind": "client"},
            {"kind": "operator_execute", "chunk_size": None},
        ]
    ]
    if plan.fixed_chunk:
        groups.append([{"kind": "ceiling"}, {"kind": "operator", "chunk_size": plan.fixed_chunk}])
    return groups


def throughput(emu: Emulator, home: Path, files: dict[int, Path], plan: Plan) -> dict[str, Any]:
    """Loopback: the operator's path (defaults) vs one streamed PUT vs the official client, per file size."""
    out: dict[str, Any] = {"sizes": {}, "fixed_chunk": plan.fixed_chunk}
    rng = random.Random(1)
    for size in plan.loopback_sizes:
        path = str(files[size])
        runs: list[dict[str, Any]] = []
        with (
            Worker(emu.worker_env(home), {"table": TABLE}) as ours,
            Worker(emu.worker_env(home), {"table": TABLE, "official_client": True}) as theirs,
        ):
            for rep in range(plan.loopback_reps):
                say(f"throughput, loopback, {mib(size)}: repetition {rep + 1}/{plan.loopback_reps}")
                groups = throughput_groups(plan)
                rng.shuffle(groups)
                for number, group in enumerate(groups):
                    rng.shuffle(group)
                    for run in group:
                        context = {"path": path, "size": size, "rep": rep, "group": f"{rep}.{number}"}
                        worker = theirs if run["kind"] == "client" else ours
                        runs.append(run_and_free(emu, worker, {**run, **context}))
        out["sizes"][str(size)] = summarize_throughput(runs, size, plan)
    return out


def _find(
    runs: list[dict[str, Any]], kind: str, group: str | None = None, **match: Any
) -> list[dict[str, Any]]:
    return [
        r
        for r in runs
        if r["kind"] == kind
        and (group is None or r["group"] == group)
        and all(r.get(k) == v for k, v in match.items())
    ]


def _operator_summary(
    runs: list[dict[str, Any]], measured: list[dict[str, Any]], size: int
) -> dict[str, Any]:
    """Ratio to the ceiling of its own group, rate, requests and CPU of the operator runs given."""
    ratios = [_find(runs, "ceiling", r["group"])[0]["seconds"] / r["seconds"] for r in measured]
    times = [r["seconds"] for r in measured]
    per_gib = GiB / size
    return {
        "ratio_to_ceiling": median(ratios),
        "ratios": ratios,
        "mib_per_s": size / MiB / median(times),
        "seconds": times,
        "requests": [len(r.get("request_bytes", [])) for r in measured],
        "request_mib": [round(b / MiB, 2) for b in measured[0].get("request_bytes", [])] if measured else [],
        # The server's idle time between two requests of an upload (answer, turnaround, next request's
        # start), and the time the engine spent hashing ahead of its final request (nothing on the wire).
        "gaps_ms": [r.get("request_gaps_ms", []) for r in measured],
        "median_gap_ms": median([g for r in measured for g in r.get("request_gaps_ms", [])]),
        "prehash_ms": median([1000 * r.get("prehash_seconds", 0.0) for r in measured]),
        "cpu_s_per_gib": median([r["cpu_seconds"] * per_gib for r in measured]),
        "cpu_s_per_gib_all": [r["cpu_seconds"] * per_gib for r in measured],
        "state_writes": [r.get("state_writes") for r in measured],
    }


def summarize_throughput(runs: list[dict[str, Any]], size: int, plan: Plan) -> dict[str, Any]:
    ceilings = [r["seconds"] for r in _find(runs, "ceiling")]
    per_gib = GiB / size
    fixed = plan.fixed_chunk
    cpu = {
        label: {
            "client_cpu_s_per_gib": median([r["cpu_seconds"] * per_gib for r in found]),
            "emulator_cpu_s_per_gib": median([r["emulator_cpu_seconds"] * per_gib for r in found]),
            "wall_s_per_gib": median([r["seconds"] * per_gib for r in found]),
        }
        for label, found in (
            ("one streamed PUT", _find(runs, "ceiling")),
            ("operator, defaults (adaptive requests)", _find(runs, "operator", chunk_size=None)),
            (
                f"operator, fixed {(fixed or 0) // MiB} MiB requests",
                _find(runs, "operator", chunk_size=fixed),
            ),
            ("redivis client", _find(runs, "client")),
        )
        if found
    }
    pairs = []
    for client in _find(runs, "client"):
        ours = _find(runs, "operator", client["group"], chunk_size=None)[0]
        execute = _find(runs, "operator_execute", client["group"])[0]
        pairs.append((client["transfer_seconds"], ours["seconds"], client["seconds"], execute["seconds"]))
    return {
        "ceiling_mib_per_s": size / MiB / median(ceilings),
        "ceiling_seconds": ceilings,
        "defaults": _operator_summary(runs, _find(runs, "operator", chunk_size=None), size),
        "fixed": _operator_summary(runs, _find(runs, "operator", chunk_size=fixed), size) if fixed else None,
        "cpu": cpu,
        "client": {
            "transfer_seconds": [p[0] for p in pairs],
            "operator_seconds": [p[1] for p in pairs],
            "create_seconds": [p[2] for p in pairs],
            "operator_execute_seconds": [p[3] for p in pairs],
            "mib_per_s": size / MiB / median([p[0] for p in pairs]),
            "ratio_transfer": median([p[0] / p[1] for p in pairs]),
            "ratio_end_to_end": median([p[2] / p[3] for p in pairs]),
        },
        "runs": runs,
    }


def link_throughput(emu: Emulator, home: Path, files: dict[int, Path], plan: Plan) -> dict[str, Any]:
    """Over each modelled link: the operator's path (defaults) vs one streamed PUT, both through the proxy.

    Both origins sit behind a proxy of their own (the API's and the session URLs'); the worker
    rewrites each session URL to the session proxy. Session creation is outside both timings.
    """
    out: dict[str, Any] = {}
    for link in plan.links:
        proxies = [Proxy(emu.emu.base_url, link), Proxy(emu.emu.session_base_url, link)]
        api, sessions = proxies
        # Requests through a proxy name the proxy's address in their Host header.
        emu.emu.allow_hosts(*(urlsplit(p.url).netloc for p in proxies))
        try:
            job = {"table": TABLE, "session_origin": [emu.emu.session_base_url, sessions.url]}
            cases: dict[str, Any] = {}
            with Worker(emu.worker_env(home, api_base=api.url), job) as worker:
                for size in link.sizes:
                    runs: list[dict[str, Any]] = []
                    for rep in range(link.reps):
                        say(f"link {link.name}, {mib(size)}: repetition {rep + 1}/{link.reps}")
                        # Interleaved, alternating which goes first.
                        kinds = ("ceiling", "operator") if rep % 2 == 0 else ("operator", "ceiling")
                        for kind in kinds:
                            run = {"kind": kind, "chunk_size": None, "path": str(files[size]), "size": size}
                            runs.append(run_and_free(emu, worker, {**run, "rep": rep, "group": str(rep)}))
                    cases[str(size)] = summarize_link(runs, size, link)
        finally:
            for proxy in proxies:
                proxy.close()
        out[link.name] = {
            "mbit": link.mbit,
            "rtt_ms": link.rtt_ms,
            "cap_mib_per_s": link.bytes_per_second / MiB,
            "sizes": cases,
            "proxy_stats": [p.stats for p in proxies],
        }
    return out


def summarize_link(runs: list[dict[str, Any]], size: int, link: Link) -> dict[str, Any]:
    ours = _find(runs, "operator")
    summary = _operator_summary(runs, ours, size)
    ceilings = [r["seconds"] for r in _find(runs, "ceiling")]
    # What each request after the first cost, beyond one PUT's time: the round trip, the server's answer,
    # and the sizer's ramp (a request that ends before its rate is known).
    extra = [
        (r["seconds"] - _find(runs, "ceiling", r["group"])[0]["seconds"]) / (len(r["request_bytes"]) - 1)
        for r in ours
        if len(r.get("request_bytes", [])) > 1
    ]
    return {
        **summary,
        "ceiling_mib_per_s": size / MiB / median(ceilings),
        "ceiling_seconds": ceilings,
        "ideal_seconds": size / link.bytes_per_second,
        "extra_ms_per_request": 1000 * median(extra) if extra else None,
        "ceiling_cpu_s_per_gib": median([r["cpu_seconds"] * GiB / size for r in _find(runs, "ceiling")]),
        "runs": runs,
    }


def checkpoint_cost(emu: Emulator, home: Path, files: dict[int, Path], plan: Plan) -> dict[str, Any]:
    """The operator's path with and without its checkpoint saves, pairs in alternating order."""
    size = plan.checkpoint_size
    path = str(files[size])
    pairs: list[dict[str, Any]] = []
    with Worker(emu.worker_env(home), {"table": TABLE}) as worker:
        for i in range(plan.checkpoint_pairs):
            say(f"checkpoint cost {mib(size)}: pair {i + 1}/{plan.checkpoint_pairs}")
            kinds = ("engine", "operator") if i % 2 == 0 else ("operator", "engine")
            pair: dict[str, Any] = {}
            for kind in kinds:
                result = run_and_free(
                    emu, worker, {"kind": kind, "chunk_size": None, "path": path, "size": size}
                )
                pair[kind] = result["seconds"]
                if kind == "operator":
                    pair["state_writes"] = result["state_writes"]
                    pair["state_write_seconds"] = result["state_write_seconds"]
                    pair["requests"] = len(result.get("request_bytes", []))
            pairs.append(pair)
    costs = [p["operator"] / p["engine"] - 1 for p in pairs]
    return {
        "size": size,
        "pairs": pairs,
        "cost_median": median(costs),
        "cost_of_medians": median([p["operator"] for p in pairs]) / median([p["engine"] for p in pairs]) - 1,
        "costs": costs,
        # The writes run on the operator's background thread: their time overlaps the transfer.
        "write_share": median([p["state_write_seconds"] / p["operator"] for p in pairs]),
    }


def memory(emu: Emulator, home: Path, files: dict[int, Path], plan: Plan) -> dict[str, Any]:
    """Peak RSS over the pre-upload baseline, one fresh process per upload."""
    rows: list[dict[str, Any]] = []
    for size in plan.memory_sizes:
        for kind in ("operator", "client", "ceiling"):
            say(f"memory: {kind} {mib(size)}")
            job = {"table": TABLE, "memory": True, "official_client": kind == "client"}
            with Worker(emu.worker_env(home), job) as worker:
                run = {"kind": kind, "chunk_size": None, "path": str(files[size]), "size": size}
                result = run_and_free(emu, worker, run)
            rows.append(
                {
                    "kind": kind,
                    "size": size,
                    "baseline_mib": result["baseline_kib"] / 1024,
                    "peak_mib": result["peak_kib"] / 1024,
                    "over_baseline_mib": result["peak_over_baseline_kib"] / 1024,
                    "peak_reset": result["peak_reset"],
                    "requests": len(result.get("request_bytes", [])),
                }
            )
    ours = [r["over_baseline_mib"] for r in rows if r["kind"] == "operator"]
    return {
        "rows": rows,
        "operator_max_over_baseline_mib": max(ours),
        "operator_spread_mib": max(ours) - min(ours),
    }


def parse_range(content_range: str | None) -> tuple[int, int] | None:
    """(first, last) of ``bytes a-b/n``; None for a status query or no header."""
    if not content_range or "*" in content_range.split("/", 1)[0]:
        return None
    first, last = content_range.split(" ", 1)[1].split("/", 1)[0].split("-")
    return int(first), int(last)


def interruptions(scratch: Path, home: Path, files: dict[int, Path], plan: Plan, seed: int) -> dict[str, Any]:
    """On each kind of server (:data:`SERVER_KINDS`), the same seeded cuts."""
    out: dict[str, Any] = {}
    for number, (label, options) in enumerate(SERVER_KINDS.items()):
        try:
            emu = Emulator(scratch / f"emulator-interrupt-{number}", skip_processing=True, options=options)
        except EmulatorOptionUnavailable as exc:
            say(f"interruptions on a server that {label}: not available ({exc})")
            out[label] = {"available": False, "options": options, "reason": str(exc)}
            continue
        with emu:
            out[label] = {
                "available": True,
                "options": options,
                **interruptions_on(emu, home, files, plan, seed, label),
            }
    return out


def interruptions_on(
    emu: Emulator, home: Path, files: dict[int, Path], plan: Plan, seed: int, label: str
) -> dict[str, Any]:
    """A connection reset at a random byte of each upload: what was sent again vs what the server lost."""
    size = plan.interrupt_size
    rng = random.Random(seed)
    trials: list[dict[str, Any]] = []
    with Worker(emu.worker_env(home), {"table": TABLE}) as worker:
        for i in range(plan.interrupt_points):
            point = rng.randrange(1, size)
            say(f"interruption ({label}) {i + 1}/{plan.interrupt_points} at byte {point}")
            start = len(emu.emu.requests)
            fault = emu.emu.add_fault(
                Fault("reset", method="PUT", origin="session", at_offset=point, times=1)
            )
            result = run_and_free(
                emu, worker, {"kind": "operator", "chunk_size": None, "path": str(files[size]), "size": size}
            )
            emu.standing_faults()
            puts = [r for r in emu.emu.requests[start:] if r.origin == "session" and r.method == "PUT"]
            sent = sum(r.body_bytes for r in puts)
            cut_index = next((k for k, r in enumerate(puts) if r.status is None), None)
            trial: dict[str, Any] = {"point": point, "fired": fault.fired, "seconds": result["seconds"]}
            if cut_index is not None:
                cut_range = parse_range(puts[cut_index].content_range)
                first = cut_range[0] if cut_range else 0
                reached = first + puts[cut_index].body_bytes
                resumed = next(
                    (
                        parse_range(r.content_range)
                        for r in puts[cut_index + 1 :]
                        if parse_range(r.content_range)
                    ),
                    None,
                )
                held_after = resumed[0] if resumed else size
                trial.update(
                    reached=reached,
                    held_after_cut=held_after,
                    unkept=reached - held_after,
                    resent=sent - size,
                    excess=(sent - size) - (reached - held_after),
                    cut_request_bytes=(cut_range[1] - cut_range[0] + 1) if cut_range else None,
                )
            trials.append(trial)
    measured = [t for t in trials if "excess" in t]
    return {
        "size": size,
        "seed": seed,
        "trials": trials,
        "cuts": len(measured),
        "resent_total": sum(t["resent"] for t in measured),
        "unkept_total": sum(t["unkept"] for t in measured),
        "max_excess": max((t["excess"] for t in measured), default=None),
        "max_resent": max((t["resent"] for t in measured), default=None),
        "max_cut_request_bytes": max((t["cut_request_bytes"] or 0 for t in measured), default=None),
        "within_unkept": sum(1 for t in measured if t["excess"] <= 0),
        "within_one_request": sum(
            1
            for t in measured
            if t["cut_request_bytes"] is not None and t["resent"] <= t["cut_request_bytes"]
        ),
    }


def create_waiting_uploads(emu: Emulator, count: int) -> list[str]:
    """``count`` small uploads, created back to back so that all are processing when the wait starts."""
    body = b"id,amount,label\n1,2.00,x\n"
    table = quote(TABLE, safe="")
    uris = []
    with requests.Session() as http:
        http.headers["Authorization"] = f"Bearer {emu.emu.token}"
        for i in range(count):
            created = http.post(
                f"{emu.api_url}/tables/{table}/resumableUpload", params={"size": len(body)}, timeout=30
            )
            created.raise_for_status()
            session = created.json()
            sent = requests.put(
                session["url"],
                data=body,
                headers={"Content-Range": f"bytes 0-{len(body) - 1}/{len(body)}"},
                timeout=30,
            )
            if sent.status_code not in (200, 201):
                raise RuntimeError(f"the emulator answered {sent.status_code} to a small upload")
            upload = http.post(
                f"{emu.api_url}/tables/{table}/uploads",
                json={"name": f"waiting_{i}.csv", "type": "delimited", "resumableUploadId": session["id"]},
                timeout=30,
            )
            upload.raise_for_status()
            uris.append(upload.json()["uri"])
    return uris


def busiest_window(stamps: list[float], seconds: float) -> int:
    """The most of the sorted ``stamps`` in any window ``[t, t + seconds)``: no fixed window of that
    length (a rate limit's) holds more."""
    peak = left = 0
    for right, at in enumerate(stamps):
        while at - stamps[left] >= seconds:
            left += 1
        peak = max(peak, right - left + 1)
    return peak


def triggers(home: Path, scratch: Path, plan: Plan) -> dict[str, Any]:
    """N deferred waits in one event loop: CPU time of that process and the request rate it causes."""
    # The emulator spends one processing_delay queued and one running: half the time each.
    with Emulator(scratch / "emulator-triggers", processing_delay=plan.processing_seconds / 2) as emu:
        say(f"triggers: creating {plan.triggers} uploads that process for {plan.processing_seconds:g} s")
        created_at = time.monotonic()
        uris = create_waiting_uploads(emu, plan.triggers)
        creation_seconds = time.monotonic() - created_at
        before = emu.request_count("api")
        say(f"triggers: {plan.triggers} triggers waiting in one event loop")
        job = {
            "kind": "triggers",
            "upload_uris": uris,
            "poll_interval": plan.poll_interval,
            "timeout": plan.processing_seconds * 10 + 600,
        }
        with Worker(emu.worker_env(home), job) as worker:
            result: dict[str, Any] = worker.read()
        api_requests = emu.request_count("api") - before
    stamps = sorted(result.pop("request_seconds"))
    window = report.RATE_LIMIT_INTERVAL_SECONDS
    wall = result["wall_seconds"]
    return {
        **result,
        "processing_seconds": plan.processing_seconds,
        "creation_seconds": creation_seconds,
        "poll_interval": plan.poll_interval,
        "emulator_api_requests": api_requests,
        "client_requests": len(stamps),
        # The busiest 100 s: the most one of Redivis's 100-second windows could see (the whole run if shorter).
        "peak_requests_in_100s": busiest_window(stamps, window),
        "average_requests_per_100s": api_requests / (max(wall, window) / window),
        "requests_per_trigger": api_requests / max(1, result["triggers"]),
        "cpu_percent_of_one_core": 100.0 * result["cpu_seconds"] / wall,
        "cpu_ms_per_status_check": 1000.0 * result["cpu_seconds"] / max(1, len(stamps)),
    }


# -- how long it takes ----------------------------------------------------------------------------

#: Assumptions of the estimate, for a quiet 2-core machine (from the earlier full runs): the rate of a
#: loopback upload (client and emulator sharing the cores), the fixed cost of each run (session,
#: bookkeeping, freeing the bytes) and of each worker process (Airflow's imports).
EST_LOOPBACK_MIB_PER_S = 250.0
EST_RUN_SECONDS = 0.6
EST_WORKER_SECONDS = 4.0
EST_WRITE_MIB_PER_S = 150.0


def estimate_seconds(plan: Plan, figures: tuple[str, ...]) -> dict[str, float]:
    """Seconds each figure of ``plan`` should take on a quiet 2-core machine (printed before a run)."""

    def loopback(size: int) -> float:
        return size / MiB / EST_LOOPBACK_MIB_PER_S + EST_RUN_SECONDS

    parts: dict[str, float] = {}
    sizes: set[int] = set()
    if "throughput" in figures:
        per_rep = 6 if plan.fixed_chunk else 4  # ceiling, defaults, client, execute (+ ceiling, fixed)
        parts["throughput"] = sum(
            EST_WORKER_SECONDS + plan.loopback_reps * per_rep * loopback(size) for size in plan.loopback_sizes
        )
        sizes |= set(plan.loopback_sizes)
    if "link" in figures:
        parts["link"] = sum(
            2 * EST_WORKER_SECONDS
            + link.reps * 2 * (size / link.bytes_per_second * 1.03 + 3 * link.rtt_ms / 1000 + EST_RUN_SECONDS)
            for link in plan.links
            for size in link.sizes
        )
        sizes |= {s for link in plan.links for s in link.sizes}
    if "checkpoint" in figures:
        parts["checkpoint"] = EST_WORKER_SECONDS + 2 * plan.checkpoint_pairs * loopback(plan.checkpoint_size)
        sizes.add(plan.checkpoint_size)
    if "memory" in figures:
        parts["memory"] = sum(3 * (EST_WORKER_SECONDS + loopback(size)) for size in plan.memory_sizes)
        sizes |= set(plan.memory_sizes)
    if "interrupt" in figures:
        per_cut = loopback(plan.interrupt_size) + 1.0  # the reset, the status query, the resume
        parts["interrupt"] = len(SERVER_KINDS) * (EST_WORKER_SECONDS + plan.interrupt_points * per_cut)
        sizes.add(plan.interrupt_size)
    if "triggers" in figures:
        parts["triggers"] = plan.triggers * 0.03 + plan.processing_seconds * 1.6 + EST_WORKER_SECONDS
    parts["source files"] = sum(sizes) / MiB / EST_WRITE_MIB_PER_S
    parts["total"] = sum(parts.values())
    return {k: round(v) for k, v in parts.items()}


# -- the command ----------------------------------------------------------------------------------


def command_line(argv: list[str]) -> str:
    return " ".join(["python -m benchmarks", *map(shlex.quote, argv)])


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Measure the provider's upload and wait paths against the local Redivis emulator.",
        epilog="`python -m benchmarks fleet --help`: the fleet benchmark (mapped uploads at Redivis's request "
        "limit under a real Airflow), a subcommand of its own.",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="small files, few repetitions (for development)")
    mode.add_argument(
        "--full",
        action="store_true",
        help=f"256 MiB and 1 GiB files, all repetitions (default; about "
        f"{estimate_seconds(FULL, FIGURES)['total'] / 60:.0f} min on a quiet 2-core machine)",
    )
    parser.add_argument(
        "--only", action="append", choices=FIGURES, help="measure only these figures (repeatable)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="results directory (default: benchmarks/results, quick: benchmarks/work/quick)",
    )
    parser.add_argument(
        "--tmp", type=Path, help="where the source files and the emulator's bytes go (default: a temp dir)"
    )
    parser.add_argument("--seed", type=int, default=20261124, help="seed of the interruption points")
    parser.add_argument(
        "--max-load-wait", type=float, default=600.0, help="seconds to wait for load <= 1.5 first"
    )
    parser.add_argument(
        "--plot-python",
        help="an interpreter with matplotlib for the chart (default: this one if it has matplotlib, "
        "else a venv the runner makes under benchmarks/work/ and installs matplotlib into)",
    )
    parser.add_argument(
        "--estimate", action="store_true", help="print how long the plan should take, and exit"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["fleet"]:
        from benchmarks import fleet  # its own module: it starts a whole Airflow deployment

        return fleet.main(argv[1:])
    args = parse_args(argv)
    plan = QUICK if args.quick else FULL
    out = args.out or (QUICK_RESULTS if args.quick else RESULTS)
    figures = tuple(args.only or FIGURES)
    estimate = estimate_seconds(plan, figures)
    shown = ", ".join(f"{k} {v} s" for k, v in estimate.items() if k != "total")
    say(
        f"{plan.name} plan, {', '.join(figures)}: estimated {estimate['total'] / 60:.1f} min on a quiet "
        f"2-core machine ({shown})"
        + (
            f", after waiting up to {args.max_load_wait / 60:g} min for load <= {MAX_LOAD}"
            if plan is FULL
            else ""
        )
    )
    if args.estimate:
        return 0
    info = machine_info()
    info["load_before"] = wait_for_quiet_machine(args.max_load_wait if plan is FULL else 0)
    info["estimated_seconds"] = estimate["total"]
    results: dict[str, Any] = {
        "command": command_line(argv),
        "plan": asdict(plan),
        "machine": info,
    }
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="redivis-bench-", dir=args.tmp) as tmp:
        scratch = Path(tmp)
        home = scratch / "airflow-home"
        home.mkdir()
        sizes = set()
        if "throughput" in figures:
            sizes |= set(plan.loopback_sizes)
        if "link" in figures:
            sizes |= {s for link in plan.links for s in link.sizes}
        if "checkpoint" in figures:
            sizes.add(plan.checkpoint_size)
        if "memory" in figures:
            sizes |= set(plan.memory_sizes)
        if "interrupt" in figures:
            sizes.add(plan.interrupt_size)
        files = {}
        for size in sorted(sizes):
            say(f"writing a {mib(size)} source file")
            files[size] = make_source(scratch, size)
        with Emulator(scratch / "emulator", skip_processing=True) as emu:
            if "throughput" in figures:
                results["throughput"] = throughput(emu, home, files, plan)
            if "link" in figures:
                results["link"] = link_throughput(emu, home, files, plan)
            if "checkpoint" in figures:
                results["checkpoint"] = checkpoint_cost(emu, home, files, plan)
            if "memory" in figures:
                results["memory"] = memory(emu, home, files, plan)
        if "interrupt" in figures:
            results["interrupt"] = interruptions(scratch, home, files, plan, args.seed)
        if "triggers" in figures:
            results["triggers"] = triggers(home, scratch, plan)
    info["load_after"] = load_average()
    info["load_max_during"] = max(LOAD_SAMPLES, default=None)
    info["duration_seconds"] = round(time.monotonic() - started, 1)
    out.mkdir(parents=True, exist_ok=True)
    report.write(results, out, plot_python=args.plot_python or os.environ.get("REDIVIS_BENCH_PLOT_PYTHON"))
    print(report.summary_text(results), flush=True)
    say(f"results in {out} ({info['duration_seconds'] / 60:.1f} min; estimated {estimate['total'] / 60:.1f})")
    return 0
