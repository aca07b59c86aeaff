"""Real Airflow for tests: a fresh AIRFLOW_HOME with a migrated metadata database, DAG files in its DAGs
folder, and ``dag.test()`` run in a subprocess of the chosen interpreter (Airflow 3.3 or 2.11).

The emulator runs in the test process; the DAG's tasks reach it over HTTP on 127.0.0.1.
"""

from __future__ import annotations

import atexit
import fcntl
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
from dataclasses import dataclass
from pathlib import Path

from tests.airflow.marking import airflow_starting, starts_airflow

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent

#: The interpreter with Airflow 2.11 installed; set by ``dev/test``.
AIRFLOW2_PYTHON_ENV = "REDIVIS_TEST_AIRFLOW2_PYTHON"


#: Interpreter → a freshly migrated airflow.db to copy.
_TEMPLATE_DBS: dict[str, Path] = {}
#: Where the templates are made once for every process of a test run (tests/conftest.py sets it: the
#: xdist workers share it); unset, each process makes its own in a temporary folder.
TEMPLATE_ROOT: Path | None = None


def airflow2_python() -> str | None:
    return os.environ.get(AIRFLOW2_PYTHON_ENV) or None


@dataclass
class DagRunResult:
    returncode: int
    output: str

    @property
    def succeeded(self) -> bool:
        return (
            self.returncode == 0
            and "DAGRUN_STATE=" in self.output
            and "DAGRUN_STATE=success" in self.output.replace("DagRunState.SUCCESS", "success")
        )


def home_env(root: Path) -> dict[str, str]:
    """This process's environment, less any AIRFLOW* and PYTEST* variable, for an AIRFLOW_HOME at ``root``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PYTEST"))}
    # The tests' floor for waits that poll on their own (tests/conftest.py), unless a test sets its own.
    if floor := os.environ.get("AIRFLOW__REDIVIS__MIN_POLL_INTERVAL"):
        env["AIRFLOW__REDIVIS__MIN_POLL_INTERVAL"] = floor
    env.update(
        AIRFLOW_HOME=str(root),
        AIRFLOW__CORE__DAGS_FOLDER=str(root / "dags"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__UNIT_TEST_MODE="False",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{root / 'airflow.db'}",
        AIRFLOW__LOGGING__LOGGING_LEVEL="INFO",
        PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        NO_PROXY="*",
    )
    return env


@starts_airflow
class AirflowHome:
    """An AIRFLOW_HOME under ``root`` for interpreter ``python``; the DB is migrated on first use."""

    def __init__(self, root: Path, python: str = sys.executable) -> None:
        airflow_starting("an AIRFLOW_HOME")
        self.root = root
        self.python = python
        self.dags = root / "dags"
        self.dags.mkdir(parents=True, exist_ok=True)
        self._migrated = False

    def env(self, connections: dict[str, dict[str, object]] | None = None, **extra: str) -> dict[str, str]:
        env = home_env(self.root)
        for conn_id, conn in (connections or {}).items():
            env[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps(conn)
        env.update(extra)
        return env

    def migrate(self) -> None:
        """A migrated metadata database: a copy of :func:`migrated_template` (migrating takes ~10 s)."""
        if self._migrated:
            return
        shutil.copyfile(migrated_template(self.python), self.root / "airflow.db")
        self._migrated = True

    def write_dag(self, name: str, source: str) -> Path:
        path = self.dags / f"{name}.py"
        path.write_text(textwrap.dedent(source))
        return path

    def dag_test(
        self,
        dag_file: Path,
        dag_id: str,
        *,
        connections: dict[str, dict[str, object]] | None = None,
        timeout: float = 240,
        **extra_env: str,
    ) -> DagRunResult:
        self.migrate()
        proc = subprocess.run(
            [self.python, str(HERE / "dag_runner.py"), str(dag_file), dag_id],
            env=self.env(connections, **extra_env),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd=self.root,
        )
        output = proc.stdout + "\n" + proc.stderr
        logs = self.root / "logs"
        if logs.exists():
            # Task logs go to files as well as the console, depending on the Airflow version.
            for log_file in sorted(logs.rglob("*.log")):
                output += f"\n=== {log_file.relative_to(logs)} ===\n" + log_file.read_text(errors="replace")
        return DagRunResult(proc.returncode, output)

    def cli(
        self, *args: str, connections: dict[str, dict[str, object]] | None = None, timeout: float = 240
    ) -> DagRunResult:
        """``airflow <args>`` in this home (``tasks clear``, ``tasks test`` ...), its output and exit code."""
        self.migrate()
        proc = subprocess.run(
            [str(Path(self.python).parent / "airflow"), *args],
            env=self.env(connections),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd=self.root,
        )
        return DagRunResult(proc.returncode, proc.stdout + "\n" + proc.stderr)

    def query(self, sql: str) -> list[tuple[object, ...]]:
        """Rows from this home's metadata database, read after a run."""
        with sqlite3.connect(self.root / "airflow.db") as db:
            return list(db.execute(sql))

    def database_text(self) -> str:
        """Every row of every table as text: to prove that a secret is nowhere in the database."""
        with sqlite3.connect(self.root / "airflow.db") as db:
            tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
            return "\n".join(repr(row) for table in tables for row in db.execute(f'SELECT * FROM "{table}"'))  # noqa: S608

    def cleanup(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def migrated_template(python: str) -> Path:
    """An airflow.db that ``airflow db migrate`` of ``python``'s Airflow made: made once, then copied."""
    template = _TEMPLATE_DBS.get(python)
    if template is not None:
        return template
    if TEMPLATE_ROOT is None:
        folder = Path(tempfile.mkdtemp(prefix="redivis-airflow-db-"))
        atexit.register(shutil.rmtree, folder, True)
    else:
        folder = TEMPLATE_ROOT / hashlib.sha256(python.encode()).hexdigest()[:16]
        folder.mkdir(parents=True, exist_ok=True)
    template = folder / "airflow.db"
    # One process migrates; another that asks meanwhile waits on the lock, then copies its result.
    with open(folder / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not template.exists():
            home = folder / "home"
            (home / "dags").mkdir(parents=True, exist_ok=True)
            proc = subprocess.run(
                [str(Path(python).parent / "airflow"), "db", "migrate"],
                env=home_env(home),
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
            if proc.returncode != 0:
                raise RuntimeError(f"airflow db migrate failed:\n{proc.stdout}\n{proc.stderr}")
            (home / "airflow.db").rename(template)  # whole or not at all
    _TEMPLATE_DBS[python] = template
    return template


def redivis_connection(base_url: str, token: str, **extra: object) -> dict[str, object]:
    """The ``redivis_default`` connection for an emulator at ``base_url``, as AIRFLOW_CONN_* JSON."""
    conn: dict[str, object] = {"conn_type": "redivis", "host": base_url, "password": token}
    if extra:
        conn["extra"] = extra
    return conn
