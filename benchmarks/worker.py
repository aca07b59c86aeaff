"""One client under measurement, in a process of its own: ``python -m benchmarks.worker``.

The runner starts the emulator and drives this process over its stdin: a first JSON line (the job),
then one JSON line per run; each run is answered with one line ``RESULT {json}`` on stdout. Keeping the client out of the emulator's process means
the two never share a GIL, and a fresh process per memory figure means its peak belongs to one upload.

What each kind of run does:

``ceiling``        a fresh session and one streamed ``PUT`` of the whole file (``requests`` reading the
                   file object): the most this machine moves through the emulator in one request.
``operator``       the operator's own ``_send``: the hook's ``ResumableSession.upload`` with crc32c, the
                   source check and the checkpoint and XCom saves (on the operator's background writer),
                   here into :class:`DurableStateStore` (a committed SQLite row each, like a metadata DB).
``engine``         ``ResumableSession.upload`` alone, no callback: the operator's path without checkpoints.
``client``         the official ``redivis`` client's ``table.upload(name).create(path, wait_for_finish=False)``;
                   the transfer is timed around its ``perform_resumable_upload``.
``operator_execute`` the whole ``execute()`` (exists check, session, transfer, upload creation), no wait.
``triggers``       N ``RedivisUploadTrigger.run()`` coroutines in one event loop; CPU time and request times.

A job may carry ``session_origin: [emulator origin, proxy origin]``: every session URL the hook is
handed is then rewritten to go through the modelled link's proxy (the URL is only a string).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import resource
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import requests

#: Linux lets a process reset its peak RSS (VmHWM) by writing "5" here (proc(5), clear_refs).
_CLEAR_REFS = Path("/proc/self/clear_refs")
_STATUS = Path("/proc/self/status")


def memory_kib() -> dict[str, int]:
    """Current (VmRSS) and peak (VmHWM) resident memory of this process, in KiB."""
    text = _STATUS.read_text()
    found = {}
    for key in ("VmRSS", "VmHWM"):
        match = re.search(rf"^{key}:\s+(\d+) kB", text, re.MULTILINE)
        found[key] = int(match.group(1)) if match else -1
    return found


def cpu_seconds() -> float:
    """User + system CPU time of this process, all its threads (getrusage(RUSAGE_SELF))."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def reset_peak_memory() -> bool:
    """Start the peak over from the current RSS; False where the kernel does not allow it."""
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


class DurableStateStore:
    """Stands in for Airflow's task state store and XCom table: every write is a committed SQLite row.

    In a task both are writes to the metadata database (through the API server on Airflow 3), so a
    JSON document committed to disk is the closest thing that runs without Airflow's services.
    WAL with ``synchronous=FULL`` makes each commit wait for the disk, like a database's commit.
    The operator saves from a background thread: one connection shared under a lock, and a write
    that fails is counted (the operator only logs it and goes on, so it would otherwise go unseen).
    """

    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.lock = threading.Lock()
        self.failed_writes = 0
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT)")
        self.writes = 0
        self.write_seconds = 0.0

    # The accessor interface of ``context["task_state_store"]``.
    def get(self, key: str) -> Any:
        with self.lock:
            row = self.db.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def set(self, key: str, value: Any, retention: Any = None) -> None:
        started = time.perf_counter()
        try:
            with self.lock, self.db:
                self.db.execute("INSERT OR REPLACE INTO kv VALUES (?, ?)", (key, json.dumps(value)))
        except Exception:
            self.failed_writes += 1
            raise
        self.writes += 1
        self.write_seconds += time.perf_counter() - started

    def delete(self, key: str) -> None:
        with self.lock, self.db:
            self.db.execute("DELETE FROM kv WHERE key = ?", (key,))


class XComRecorder:
    """The one thing the operator asks of its task instance: ``xcom_push``, stored like a state write."""

    dag_id = "bench"
    run_id = "bench"
    task_id = "upload"
    map_index = -1

    def __init__(self, store: DurableStateStore) -> None:
        self.store = store

    def xcom_push(self, key: str, value: Any) -> None:
        self.store.set(f"xcom:{key}", value)


class Client:
    """Everything one worker needs, built once: the hook, the state store, a counter for unique names."""

    def __init__(self, job: dict[str, Any], scratch: Path) -> None:
        self.table: str = job["table"]
        self.counter = 0
        self.prehash_seconds = 0.0
        if job.get("official_client"):
            return  # the official client's environment has no provider: only ``client`` runs here
        from airflow_provider_redivis.hooks.redivis import RedivisHook

        self.hook = RedivisHook()
        if job.get("session_origin"):
            self._route_sessions(*job["session_origin"])
        self.state = DurableStateStore(scratch / "state.sqlite")
        self.ti = XComRecorder(self.state)
        self._time_hashing_ahead()

    def _route_sessions(self, origin: str, proxy: str) -> None:
        """Session URLs handed out by the emulator go through the link's proxy instead."""
        create = self.hook.create_resumable_upload

        def through_proxy(table: str, size: int) -> dict[str, Any]:
            created = dict(create(table, size))
            if not created["url"].startswith(origin):
                raise RuntimeError("the emulator handed out a session URL on another origin")
            created["url"] = proxy + created["url"][len(origin) :]
            return created

        self.hook.create_resumable_upload = through_proxy  # type: ignore[method-assign]

    def _time_hashing_ahead(self) -> None:
        """Time the engine's reads of the source that only hash (ahead of its final request): a diagnostic."""
        from airflow_provider_redivis.engine import checksums

        original = checksums.SourceChecksums.hash_range
        client = self

        def hash_range(checksums_self: Any, reader: Any, upto: int) -> None:
            if upto <= checksums_self.position:
                return original(checksums_self, reader, upto)
            started = time.perf_counter()
            try:
                return original(checksums_self, reader, upto)
            finally:
                client.prehash_seconds += time.perf_counter() - started

        checksums.SourceChecksums.hash_range = hash_range  # type: ignore[method-assign]

    def fresh_connections(self) -> None:
        """Drop the hook's pooled connections: the measured upload opens its own, as a task's first PUT
        (and the one-PUT ceiling's fresh session) does, handshake included, over a modelled link too."""
        self.hook.close()

    def unique_name(self, stem: str) -> str:
        self.counter += 1
        return f"{stem}_{os.getpid()}_{self.counter}_{time.monotonic_ns()}.csv"

    # -- the kinds of run: each returns (prepare, measured) so that memory is taken around the second

    def ceiling(self, run: dict[str, Any]) -> tuple[dict[str, Any], Any]:
        path = run["path"]
        size = os.path.getsize(path)
        created = self.hook.create_resumable_upload(self.table, size)
        info: dict[str, Any] = {"session_id": created["id"]}

        def measured() -> None:
            with open(path, "rb") as body, requests.Session() as http:
                response = http.put(
                    created["url"],
                    data=body,
                    headers={"Content-Range": f"bytes 0-{size - 1}/{size}"},
                    timeout=(10, 3600),
                )
                if response.status_code not in (200, 201):
                    raise RuntimeError(f"the single PUT was answered {response.status_code}")
            info["requests"] = 1

        return info, measured

    def operator(self, run: dict[str, Any]) -> tuple[dict[str, Any], Any]:
        from airflow_provider_redivis.checkpoint_store import TaskStateCheckpointStore
        from airflow_provider_redivis.engine.job import UploadJob
        from airflow_provider_redivis.engine.options import UploadSpec
        from airflow_provider_redivis.engine.sources import open_source

        name = self.unique_name("op")
        source = open_source(run["path"])
        store = TaskStateCheckpointStore(self.state)
        # The operator's transfer, as its upload job runs it (checkpoint saves and XCom included).
        spec = UploadSpec(table=self.table, name=name, chunk_size=run.get("chunk_size"))
        job = UploadJob(self.hook, store, spec, source, report=lambda k, v: self.ti.xcom_push(key=k, value=v))
        checkpoint = job.new_session()
        self.fresh_connections()
        info: dict[str, Any] = {"session_id": checkpoint.session_id}

        def measured() -> None:
            writes, seconds, failed = self.state.writes, self.state.write_seconds, self.state.failed_writes
            job.send(checkpoint, 0)
            info["state_writes"] = self.state.writes - writes
            info["state_write_seconds"] = self.state.write_seconds - seconds
            if self.state.failed_writes > failed:
                raise RuntimeError("the operator's checkpoint or XCom writes failed; see the worker's log")

        return info, measured

    def engine(self, run: dict[str, Any]) -> tuple[dict[str, Any], Any]:
        from airflow_provider_redivis.engine.sources import open_source

        source = open_source(run["path"])
        created = self.hook.create_resumable_upload(self.table, source.size)
        self.fresh_connections()
        session = self.hook.resumable_session(created["url"], source.size, chunk_size=run.get("chunk_size"))
        info: dict[str, Any] = {"session_id": created["id"]}

        def measured() -> None:
            with source.open() as reader:
                session.upload(reader, 0, check_source=source.check_unchanged)

        return info, measured

    def operator_execute(self, run: dict[str, Any]) -> tuple[dict[str, Any], Any]:
        from airflow_provider_redivis.operators.upload import RedivisResumableUploadOperator

        operator = RedivisResumableUploadOperator(
            task_id="upload",
            source=run["path"],
            table=self.table,
            upload_name=self.unique_name("exec"),
            chunk_size=run.get("chunk_size"),
            wait_for_completion=False,
        )
        context = {"ti": self.ti, "task_state_store": self.state}
        info: dict[str, Any] = {}

        def measured() -> None:
            info["upload_uri"] = operator.execute(context)["uri"]

        return info, measured

    def client(self, run: dict[str, Any]) -> tuple[dict[str, Any], Any]:
        import redivis
        import redivis.classes.Upload as upload_module

        # The transfer is its own function in the client: time it, whichever path the size picks.
        originals = {
            name: getattr(upload_module, name)
            for name in ("perform_resumable_upload", "perform_standard_upload")
        }
        info: dict[str, Any] = {"transfer_seconds": None}

        def timed(function: Any) -> Any:
            def transfer(*args: Any, **kwargs: Any) -> Any:
                started = time.perf_counter()
                try:
                    return function(*args, **kwargs)
                finally:
                    info["transfer_seconds"] = time.perf_counter() - started

            return transfer

        upload = redivis.table(self.table).upload(self.unique_name("client"))

        def measured() -> None:
            for name, function in originals.items():
                setattr(upload_module, name, timed(function))
            try:
                upload.create(run["path"], type="delimited", wait_for_finish=False, progress=False)
            finally:
                for name, function in originals.items():
                    setattr(upload_module, name, function)
            info["upload_uri"] = upload.uri
            if info["transfer_seconds"] is None:
                raise RuntimeError(
                    "the redivis client sent the file without its upload functions (<= 1 MiB?)"
                )

        return info, measured

    def run_one(self, run: dict[str, Any], *, memory: bool) -> dict[str, Any]:
        info, measured = getattr(self, run["kind"])(run)
        result: dict[str, Any] = {**run, **info}
        if memory:
            baseline = memory_kib()["VmRSS"]
            result["peak_reset"] = reset_peak_memory()
        self.prehash_seconds = 0.0
        started, cpu_started = time.perf_counter(), cpu_seconds()
        measured()
        result["prehash_seconds"] = self.prehash_seconds
        result["seconds"] = time.perf_counter() - started
        # All of this process's threads: the hashing, the reads, the sends, the checkpoint writer.
        result["cpu_seconds"] = cpu_seconds() - cpu_started
        if memory:
            peak = memory_kib()["VmHWM"]
            result["baseline_kib"] = baseline
            result["peak_kib"] = peak
            result["peak_over_baseline_kib"] = peak - baseline
        result.update(info)
        return result


# -- the waiting side ----------------------------------------------------------------------------


class RequestClock:
    """Records when each HTTP request leaves this process: the rate the emulator sees, over time."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self._original = requests.Session.send

    def __enter__(self) -> RequestClock:
        clock = self

        def send(session: requests.Session, request: requests.PreparedRequest, **kwargs: Any) -> Any:
            clock.times.append(time.monotonic())
            return clock._original(session, request, **kwargs)

        requests.Session.send = send  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        requests.Session.send = self._original  # type: ignore[method-assign]


def wait_with_triggers(job: dict[str, Any], scratch: Path) -> dict[str, Any]:
    from airflow_provider_redivis.triggers.upload import RedivisUploadTrigger

    # A triggerer writes each trigger's log lines to a file: pay the same formatting and writing.
    handler = logging.FileHandler(scratch / "triggers.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logging.getLogger().addHandler(handler)
    logging.getLogger().setLevel(logging.INFO)

    triggers = [
        RedivisUploadTrigger(upload_uri=uri, poll_interval=job["poll_interval"], timeout=job["timeout"])
        for uri in job["upload_uris"]
    ]

    async def first_event(trigger: RedivisUploadTrigger) -> tuple[dict[str, Any], float]:
        async for event in trigger.run():
            return event.payload, time.monotonic()
        raise RuntimeError("the trigger ended without an event")

    async def all_of_them() -> list[tuple[dict[str, Any], float]]:
        return list(await asyncio.gather(*(first_event(t) for t in triggers)))

    with RequestClock() as clock:
        cpu_started, wall_started = time.process_time(), time.monotonic()
        events = asyncio.run(all_of_them())
        cpu, wall = time.process_time() - cpu_started, time.monotonic() - wall_started
    reasons: dict[str, int] = {}
    for payload, _ in events:
        reasons[payload.get("reason", "?")] = reasons.get(payload.get("reason", "?"), 0) + 1
    return {
        "kind": "triggers",
        "triggers": len(triggers),
        "cpu_seconds": cpu,
        "wall_seconds": wall,
        "reasons": reasons,
        "event_seconds": sorted(at - wall_started for _, at in events),
        "request_seconds": [at - wall_started for at in clock.times],
        "threads_default_executor": min(32, (os.cpu_count() or 1) + 4),
    }


def main() -> int:
    """The first stdin line is the job; for uploads, each further line is one run, answered at once."""
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    job = json.loads(sys.stdin.readline())
    with tempfile.TemporaryDirectory(prefix="redivis-bench-worker-") as tmp:
        scratch = Path(tmp)
        if job.get("kind") == "triggers":
            _answer(wait_with_triggers(job, scratch))
            return 0
        client = Client(job, scratch)
        _answer({"ready": True})
        # One run at a time: between two runs the runner frees the emulator's disk and reads its logs.
        for line in sys.stdin:
            if line.strip():
                _answer(client.run_one(json.loads(line), memory=job.get("memory", False)))
    return 0


def _answer(result: Any) -> None:
    sys.stdout.write("RESULT " + json.dumps(result) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    raise SystemExit(main())
