"""Airflow 3.3 run the way a user runs it: ``airflow scheduler``, ``api-server``, ``dag-processor`` and
``triggerer`` as separate processes sharing one AIRFLOW_HOME, driven over the public REST API.

Used by the end-to-end tests (LocalExecutor on SQLite) and by ``scripts/celery/two_workers.py``
(CeleryExecutor on PostgreSQL, with extra worker processes). Every process starts in its own process
group and :meth:`AirflowDeployment.stop` ends each group (SIGTERM, then SIGKILL after a bounded wait),
plus any descendant that left its group, such as a task runner. Everything listens on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import psutil

from tests.airflow.harness import migrated_template
from tests.airflow.marking import airflow_starting, starts_airflow

T = TypeVar("T")

REPO = Path(__file__).resolve().parents[2]

#: How long one service may take to stop after SIGTERM before it gets SIGKILL.
STOP_GRACE_SECONDS = 10.0


class DeploymentError(RuntimeError):
    """The deployment did not reach the expected state; the message carries the services' log tails."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(
    what: str, probe: Callable[[], T | None], *, timeout: float, interval: float = 0.5, on_timeout: str = ""
) -> T:
    """Call ``probe`` until it returns something other than None; raise after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result is not None:
            return result
        if time.monotonic() >= deadline:
            raise DeploymentError(f"Timed out after {timeout:.0f} s waiting for {what}.{on_timeout}")
        time.sleep(interval)


@dataclass
class Service:
    """One long-running ``airflow ...`` process, in its own process group, output to a file."""

    name: str
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    #: Set once the service was told to stop: its end is then no failure.
    stopping: bool = False
    _descendants: dict[int, psutil.Process] = field(default_factory=dict)

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.cwd.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as out:
            self.process = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, so the whole service stops at once
            )

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def remember_descendants(self) -> None:
        """Note the service's current descendants: task runners leave its process group (setpgid)."""
        if not self.alive() or self.pid is None:
            return
        with contextlib.suppress(psutil.Error):
            self._descendants.update((p.pid, p) for p in psutil.Process(self.pid).children(recursive=True))

    def terminate(self) -> None:
        """SIGTERM to the service's process group; :meth:`stop` finishes the job."""
        self.stopping = True
        self.remember_descendants()
        if self.alive() and self.pid is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGTERM)

    def stop(self, deadline: float | None = None) -> None:
        """Wait for the service until ``deadline`` (monotonic), then SIGKILL its group and descendants."""
        if self.process is None:
            return
        self.terminate()
        deadline = time.monotonic() + STOP_GRACE_SECONDS if deadline is None else deadline
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=max(deadline - time.monotonic(), 0.1))
        # Whatever of the group is still there (the leader may be gone while its children are not).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=STOP_GRACE_SECONDS)
        kill_all(self._descendants.values())

    def tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def kill_all(procs: Iterable[psutil.Process]) -> None:
    """SIGKILL each process that still runs; psutil refuses a pid that was reused by another process."""
    killed = []
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.kill()
            killed.append(proc)
    psutil.wait_procs(killed, timeout=STOP_GRACE_SECONDS)


@starts_airflow
class AirflowDeployment:
    """An AIRFLOW_HOME under ``root`` and the Airflow services that run it.

    ``python`` is the interpreter of the Airflow installation; its ``airflow`` script starts the services.
    ``env`` adds or overrides environment variables (connections, executor, database) for every service.
    """

    SERVICES = ("api-server", "scheduler", "dag-processor", "triggerer")

    def __init__(
        self,
        root: Path,
        *,
        python: str = sys.executable,
        env: Mapping[str, str] | None = None,
        services: Iterable[str] = SERVICES,
    ) -> None:
        airflow_starting("an Airflow deployment")
        self.root = root
        self.python = python
        self.airflow = str(Path(python).parent / "airflow")
        self.dags = root / "dags"
        self.logs = root / "logs"
        self.service_logs = root / "service-logs"
        self.dags.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.api_url = f"http://127.0.0.1:{self.port}"
        self.env = self._base_env()
        self.env.update(env or {})
        self.services: dict[str, Service] = {}
        self.service_names = tuple(services)
        self._token: str | None = None

    def _base_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PYTEST"))}
        env.update(
            AIRFLOW_HOME=str(self.root),
            AIRFLOW__CORE__DAGS_FOLDER=str(self.dags),
            AIRFLOW__CORE__LOAD_EXAMPLES="False",
            AIRFLOW__CORE__UNIT_TEST_MODE="False",
            AIRFLOW__CORE__EXECUTOR="LocalExecutor",
            AIRFLOW__CORE__PARALLELISM="2",
            AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION="False",
            AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{self.root / 'airflow.db'}",
            # Every component and the task runners share these; without them each would invent its own.
            AIRFLOW__API_AUTH__JWT_SECRET=secrets.token_urlsafe(64),
            AIRFLOW__API__SECRET_KEY=secrets.token_urlsafe(32),
            AIRFLOW__CORE__FERNET_KEY="",
            # The API server on 127.0.0.1 and a free port; task runners reach the execution API there.
            AIRFLOW__API__HOST="127.0.0.1",
            AIRFLOW__API__PORT=str(self.port),
            AIRFLOW__API__WORKERS="1",
            AIRFLOW__API__BASE_URL=self.api_url,
            AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"{self.api_url}/execution/",
            AIRFLOW__CORE__AUTH_MANAGER="airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
            AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS="True",
            # Log servers are not started (--skip-serve-logs); their ports still stay off the default ones.
            AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT=str(free_port()),
            AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT=str(free_port()),
            AIRFLOW__LOGGING__LOGGING_LEVEL="INFO",
            # A worker that dies without a word is noticed within seconds rather than five minutes.
            AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT="20",
            AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL="2",
            AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL="2",
            AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC="2",
            AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK="False",
            AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL="5",
            AIRFLOW__TRIGGERER__CAPACITY="10",
            # Nothing reaches beyond this machine: no example DAGs, no usage data, no proxies.
            AIRFLOW__USAGE_DATA_COLLECTION__ENABLED="False",
            SCARF_ANALYTICS="false",
            DO_NOT_TRACK="1",
            NO_PROXY="*",
            no_proxy="*",
            PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
            PYTHONUNBUFFERED="1",
        )
        return env

    # -- lifecycle ------------------------------------------------------------------------------

    def run_cli(self, *args: str, timeout: float = 300, env: Mapping[str, str] | None = None) -> str:
        proc = subprocess.run(
            [self.airflow, *args],
            env={**self.env, **(env or {})},
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if proc.returncode != 0:
            raise DeploymentError(
                f"airflow {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
            )
        return proc.stdout

    def migrate(self) -> None:
        sqlite = f"sqlite:///{self.root / 'airflow.db'}"
        if self.env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == sqlite:
            # The default database: a copy of what `airflow db migrate` made once for this run's tests.
            shutil.copyfile(migrated_template(self.python), self.root / "airflow.db")
        else:
            self.run_cli("db", "migrate")

    def service_argv(self, name: str) -> list[str]:
        if name == "api-server":
            return [
                self.airflow,
                "api-server",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                "1",
            ]
        if name in ("scheduler", "triggerer"):
            return [self.airflow, name, "--skip-serve-logs"]
        return [self.airflow, name]

    def start_service(
        self,
        name: str,
        argv: list[str] | None = None,
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> Service:
        if name in self.services:
            raise DeploymentError(f"service {name} already started")
        service = Service(
            name=name,
            argv=argv or self.service_argv(name),
            env={**self.env, **(env or {})},
            cwd=cwd or self.root,
            log_path=self.service_logs / f"{name}.log",
        )
        self.services[name] = service
        service.start()
        return service

    def stop_service(self, name: str) -> None:
        """Stop one service (SIGTERM, then SIGKILL after the grace); :meth:`start_service` starts it again."""
        self.services.pop(name).stop()

    def start(self, *, timeout: float = 120) -> None:
        """Migrate the database, start the services, and wait until the API server reports them healthy."""
        self.migrate()
        for name in self.service_names:
            self.start_service(name)
        self.wait_healthy(timeout=timeout)

    def stop(self) -> None:
        """Stop every service, whatever state it is in; never raises for a process already gone."""
        services = list(self.services.values())
        for service in services:
            with contextlib.suppress(Exception):
                service.terminate()
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for service in services:
            with contextlib.suppress(Exception):
                service.stop(deadline)

    def __enter__(self) -> AirflowDeployment:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def diagnostics(self, lines: int = 40) -> str:
        parts = []
        for service in self.services.values():
            state = (
                "running" if service.alive() else f"exited {service.process and service.process.returncode}"
            )
            parts.append(
                f"--- {service.name} ({state}), last lines of {service.log_path}:\n{service.tail(lines)}"
            )
        return "\n" + "\n".join(parts)

    def listening_addresses(self) -> set[tuple[str, int]]:
        """Every (address, port) a process of the services listens on (TCP)."""
        found: set[tuple[str, int]] = set()
        for service in self.services.values():
            if not service.alive() or service.pid is None:
                continue
            with contextlib.suppress(psutil.Error):
                leader = psutil.Process(service.pid)
                for proc in [leader, *leader.children(recursive=True)]:
                    with contextlib.suppress(psutil.Error):
                        for conn in proc.net_connections(kind="tcp"):
                            if conn.status == psutil.CONN_LISTEN:
                                found.add((conn.laddr.ip, conn.laddr.port))
        return found

    def check_services(self) -> None:
        dead = [s.name for s in self.services.values() if not s.alive() and not s.stopping]
        if dead:
            raise DeploymentError(f"Airflow service(s) exited: {', '.join(dead)}{self.diagnostics()}")

    # -- REST API -------------------------------------------------------------------------------

    def _request(self, method: str, path: str, body: object = None, *, auth: bool = True) -> tuple[int, Any]:
        request = urllib.request.Request(  # noqa: S310 - our own API server on 127.0.0.1
            self.api_url + path, method=method, data=None if body is None else json.dumps(body).encode()
        )
        request.add_header("Content-Type", "application/json")
        if auth:
            request.add_header("Authorization", f"Bearer {self.token()}")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
                raw = response.read()
                return response.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                return exc.code, json.loads(raw)
            except ValueError:
                return exc.code, raw.decode(errors="replace")

    def api(self, method: str, path: str, body: object = None) -> Any:
        status, payload = self._request(method, path, body)
        if status >= 400:
            raise DeploymentError(f"{method} {path} answered {status}: {payload}")
        return payload

    def token(self) -> str:
        """A token from the simple auth manager, which makes everyone an admin here (all_admins)."""
        if self._token is None:
            status, payload = self._request("GET", "/auth/token", auth=False)
            if status >= 400 or not isinstance(payload, dict):
                raise DeploymentError(f"GET /auth/token answered {status}: {payload}")
            self._token = str(payload["access_token"])
        return self._token

    def health(self) -> dict[str, Any] | None:
        try:
            status, payload = self._request("GET", "/api/v2/monitor/health", auth=False)
        except (OSError, urllib.error.URLError):
            return None
        return payload if status == 200 and isinstance(payload, dict) else None

    def wait_healthy(self, *, timeout: float = 120) -> None:
        wanted = {"scheduler", "triggerer", "dag_processor"} & {
            s.replace("-", "_") for s in self.service_names
        }

        def probe() -> bool | None:
            self.check_services()
            health = self.health()
            if health is None:
                return None
            if all(health.get(component, {}).get("status") == "healthy" for component in wanted):
                return True
            return None

        wait_for(
            "the Airflow services to report healthy", probe, timeout=timeout, on_timeout=self.diagnostics()
        )

    def wait_for_dag(self, dag_id: str, *, timeout: float = 90) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            self.check_services()
            status, payload = self._request("GET", f"/api/v2/dags/{dag_id}")
            if status == 200:
                return payload  # type: ignore[no-any-return]
            errors = self.api("GET", "/api/v2/importErrors").get("import_errors", [])
            if errors:
                raise DeploymentError(f"The DAG processor could not import a DAG file: {errors}")
            return None

        return wait_for(f"DAG {dag_id} to be parsed", probe, timeout=timeout, on_timeout=self.diagnostics())

    def trigger(
        self, dag_id: str, *, logical_date: datetime | None = None, conf: dict[str, Any] | None = None
    ) -> str:
        body = {
            "logical_date": None if logical_date is None else logical_date.isoformat(),
            "conf": conf or {},
        }
        run = self.api("POST", f"/api/v2/dags/{dag_id}/dagRuns", body)
        return str(run["dag_run_id"])

    def dag_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id)}")  # type: ignore[no-any-return]

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        """Every task instance of the run, page after page (the API answers 50 by default, 100 at most)."""
        found: list[dict[str, Any]] = []
        base = f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id)}/taskInstances"
        while True:
            page = self.api("GET", f"{base}?limit=100&offset={len(found)}")
            found.extend(page["task_instances"])
            if not page["task_instances"] or len(found) >= page["total_entries"]:
                return found

    @staticmethod
    def _ti_path(dag_id: str, run_id: str, task_id: str, map_index: int) -> str:
        path = f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id)}/taskInstances/{task_id}"
        return path if map_index < 0 else f"{path}/{map_index}"

    def task_instance(
        self, dag_id: str, run_id: str, task_id: str, *, map_index: int = -1
    ) -> dict[str, Any] | None:
        """The task instance, or None while it does not exist (a mapped task before its expansion)."""
        path = self._ti_path(dag_id, run_id, task_id, map_index)
        status, payload = self._request("GET", path)
        if status == 404:
            return None
        if status >= 400:
            raise DeploymentError(f"GET {path} answered {status}: {payload}")
        return payload  # type: ignore[no-any-return]

    def task_tries(
        self, dag_id: str, run_id: str, task_id: str, *, map_index: int = -1
    ) -> list[dict[str, Any]]:
        """Every try of the task instance, from its history, with hostname, pid and state."""
        payload = self.api("GET", self._ti_path(dag_id, run_id, task_id, map_index) + "/tries")
        return sorted(payload["task_instances"], key=lambda ti: ti["try_number"])

    def wait_for_run(self, dag_id: str, run_id: str, *, timeout: float = 240) -> str:
        """Wait until the DAG run ends; return its state ("success" or "failed")."""

        def probe() -> str | None:
            self.check_services()
            state = self.dag_run(dag_id, run_id)["state"]
            return state if state in ("success", "failed") else None

        return wait_for(f"DAG run {run_id} to finish", probe, timeout=timeout, on_timeout=self.diagnostics())

    # -- task logs and processes ----------------------------------------------------------------

    def task_log(
        self,
        dag_id: str,
        run_id: str,
        task_id: str,
        try_number: int,
        *,
        map_index: int = -1,
        logs: Path | None = None,
    ) -> str:
        """The task log file of one try, as written under ``logs`` (default AIRFLOW_HOME/logs).

        The path follows Airflow's default ``[logging] log_filename_template``.
        """
        logs = logs or self.logs
        path = self._task_log_path(logs, dag_id, run_id, task_id, try_number, map_index)
        if not path.exists():
            raise DeploymentError(f"No log file {path}; log files present: {_log_files(logs)}")
        return path.read_text(errors="replace")

    def trigger_log(
        self, dag_id: str, run_id: str, task_id: str, try_number: int, *, map_index: int = -1
    ) -> str:
        """What the triggerer wrote while it ran the try's trigger (``attempt=N.log.trigger.ID.log``)."""
        task_log = self._task_log_path(self.logs, dag_id, run_id, task_id, try_number, map_index)
        found = sorted(task_log.parent.glob(f"{task_log.name}.trigger.*.log"))
        if not found:
            raise DeploymentError(
                f"No trigger log next to {task_log}; log files present: {_log_files(self.logs)}"
            )
        return "\n".join(path.read_text(errors="replace") for path in found)

    @staticmethod
    def _task_log_path(
        logs: Path, dag_id: str, run_id: str, task_id: str, try_number: int, map_index: int
    ) -> Path:
        folder = logs / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}"
        if map_index >= 0:
            folder /= f"map_index={map_index}"
        return folder / f"attempt={try_number}.log"


def _log_files(logs: Path) -> list[str]:
    return sorted(p.relative_to(logs).as_posix() for p in logs.rglob("*.log"))


def log_messages(text: str) -> list[str]:
    """The messages of a task log: Airflow 3 writes one JSON object per line (``event`` is the message)."""
    messages = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            messages.append(line)
            continue
        messages.append(str(record.get("event", line)) if isinstance(record, dict) else line)
    return messages


@dataclass(frozen=True)
class TaskProcesses:
    """The processes running one task instance try: the task runner and the supervisor that forked it."""

    runner: psutil.Process
    supervisor: psutil.Process | None


def find_task_processes(ti_id: str, *, within: Iterable[int] | None = None) -> TaskProcesses | None:
    """The task runner of task instance ``ti_id`` and its supervisor, or None if not running.

    Airflow's task runner sets its process title to ``airflow worker -- <ti id>``; its parent is the
    supervisor (the LocalExecutor worker process, or the Celery pool process). ``within`` limits the
    search to the descendants of those pids (the services of one deployment).
    """
    candidates: Iterable[psutil.Process]
    if within is None:
        candidates = psutil.process_iter()
    else:
        found: list[psutil.Process] = []
        for pid in within:
            with contextlib.suppress(psutil.Error):
                found.extend(psutil.Process(pid).children(recursive=True))
        candidates = found
    for proc in candidates:
        try:
            cmdline = " ".join(proc.cmdline())
        except psutil.Error:
            continue
        # The supervisor's title names the ti id too ("airflow worker -- LocalExecutor: <id>"): match exactly.
        if cmdline.strip() == f"airflow worker -- {ti_id}":
            try:
                parent = proc.parent()
            except psutil.Error:
                parent = None
            return TaskProcesses(runner=proc, supervisor=parent)
    return None
