"""The scenario both end-to-end proofs share: the daily-load example DAG uploads one file to the emulator,
the worker running the upload dies when the emulator holds half of it, and the retry resumes.

Used by ``tests/e2e/test_scheduler_kill.py`` (LocalExecutor) and ``scripts/celery/two_workers.py``
(CeleryExecutor, two workers).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests.e2e.deployment import REPO, DeploymentError, log_messages, wait_for

if TYPE_CHECKING:
    from redivis_emulator import RedivisEmulator

    from tests.e2e.deployment import AirflowDeployment

DAG_ID = "redivis_daily_load"
DAG_FILE = REPO / "example_dags" / "redivis_daily_load.py"
UPLOAD_TASK = "upload"
SENSOR_TASK = "wait_for_processing"
DATASET = "e2e_owner.e2e_dataset"
TABLE_NAME = "daily_sales"
TABLE = f"{DATASET}.{TABLE_NAME}"
#: The example DAG's ``chunk_size`` for its uploads (16 MiB); checked against what the emulator saw.
EXAMPLE_CHUNK_SIZE = 16 * 1024 * 1024
#: Four chunks: the worker dies once the emulator holds two of them.
FILE_SIZE = 4 * EXAMPLE_CHUNK_SIZE
SOURCE_NAME = "sales_part1.csv"
#: Each chunk waits this long at the emulator, so the test sees the transfer half way (loopback is fast).
STALL_SECONDS = 1.5
#: The emulator's seconds per processing step (queued, running): the sensor finds the upload still
#: processing and defers.
PROCESSING_STEP_SECONDS = 6.0

RESUME_LINE = re.compile(r"Resuming Redivis upload session (\S+) at byte (\d+) of (\d+)")


def write_csv(path: Path, size: int = FILE_SIZE) -> Path:
    """A one-column CSV of exactly ``size`` bytes: a header, then random base64 lines."""
    header = b"payload\n"
    body = base64.encodebytes(os.urandom(size))[: size - len(header) - 1]
    path.write_bytes(header + body + b"\n")
    if path.stat().st_size != size:
        raise AssertionError(f"wrote {path.stat().st_size} bytes, wanted {size}")
    return path


def md5_of(path: Path) -> str:
    digest = hashlib.md5()
    with path.open("rb") as source:
        for block in iter(lambda: source.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def example_env(emu: RedivisEmulator, files_dir: Path) -> dict[str, str]:
    """The environment that points the unchanged example DAG at the emulator and the day's files."""
    connection = {"conn_type": "redivis", "host": emu.base_url, "password": emu.token}
    return {
        "AIRFLOW_CONN_REDIVIS_DEFAULT": json.dumps(connection),
        "REDIVIS_EXAMPLE_DATASET": DATASET,
        "REDIVIS_EXAMPLE_TABLE": TABLE_NAME,
        "REDIVIS_EXAMPLE_FILES_DIR": str(files_dir),
        # The emulator's table merges by "append"; the DAG refuses a table whose strategy differs.
        "REDIVIS_EXAMPLE_MERGE_STRATEGY": "append",
        # Only the run the proof triggers: no run for the "@daily" schedule.
        "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
    }


def install_dag(dags_folder: Path) -> Path:
    """The example DAG file, copied unchanged."""
    dags_folder.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy(DAG_FILE, dags_folder / DAG_FILE.name))


def wait_for_first_upload_try(
    airflow: AirflowDeployment, run_id: str, *, timeout: float = 120
) -> dict[str, Any]:
    """The upload's task instance once its first try runs."""

    def probe() -> dict[str, Any] | None:
        airflow.check_services()
        ti = airflow.task_instance(DAG_ID, run_id, UPLOAD_TASK, map_index=0)
        if ti is None:
            return None
        if ti.get("try_number", 0) > 1 or ti.get("state") in ("success", "failed", "up_for_retry"):
            raise DeploymentError(f"The upload's first try ended before the test could interrupt it: {ti}")
        return ti if ti.get("state") == "running" else None

    return wait_for("the upload's first try to run", probe, timeout=timeout, on_timeout=airflow.diagnostics())


def wait_until_half_held(emu: RedivisEmulator, *, timeout: float = 120) -> int:
    """Bytes the emulator holds once it is at least half of the file (and not all of it)."""

    def probe() -> int | None:
        held = max((session.held for session in emu.sessions.values()), default=0)
        if held >= FILE_SIZE:
            raise DeploymentError("The upload finished before it could be interrupted; raise STALL_SECONDS.")
        return held if held >= FILE_SIZE // 2 else None

    return wait_for("the emulator to hold half of the file", probe, timeout=timeout, interval=0.05)


@dataclass(frozen=True)
class ResumeEvidence:
    """What the emulator and the second try's log say about the resumed upload."""

    session_id: str
    resumed_at: int
    bytes_received: int
    largest_chunk: int
    uploads: int
    stored_md5: str
    source_md5: str

    def summary(self) -> str:
        return (
            f"try 2 resumed session {self.session_id} at byte {self.resumed_at} of {FILE_SIZE}; "
            f"the emulator received {self.bytes_received} bytes for a {FILE_SIZE}-byte file "
            f"(at most {FILE_SIZE + EXAMPLE_CHUNK_SIZE} allowed), largest chunk {self.largest_chunk}; "
            f"{self.uploads} upload; md5 {self.stored_md5} (source {self.source_md5})"
        )


def resume_evidence(emu: RedivisEmulator, second_try_log: str, source: Path) -> ResumeEvidence:
    messages = log_messages(second_try_log)
    resumed = next((m for m in (RESUME_LINE.search(line) for line in messages) if m), None)
    if resumed is None:
        raise AssertionError("No resume line in the second try's log:\n" + "\n".join(messages))
    if int(resumed.group(3)) != FILE_SIZE:
        raise AssertionError(f"The resumed session is for {resumed.group(3)} bytes, not {FILE_SIZE}")
    puts = [r for r in emu.requests if r.origin == "session" and r.method == "PUT"]
    uploads = [u for u in emu.list_uploads(TABLE) if u["name"] == source.name]
    stored = emu.upload_bytes_path(TABLE, source.name) if uploads else None
    return ResumeEvidence(
        session_id=resumed.group(1),
        resumed_at=int(resumed.group(2)),
        bytes_received=emu.bytes_received(origin="session"),
        largest_chunk=max((r.body_bytes for r in puts), default=0),
        uploads=len(uploads),
        stored_md5=md5_of(stored) if stored is not None else "",
        source_md5=md5_of(source),
    )


def assert_resumed(evidence: ResumeEvidence, emu: RedivisEmulator, held_at_kill: int) -> None:
    """The checks both proofs make on the outcome."""
    # Try 2 continued try 1's session from what the emulator held, not from byte 0.
    assert held_at_kill <= evidence.resumed_at < FILE_SIZE, evidence
    assert list(emu.sessions) == [evidence.session_id], "a second session means the upload started over"
    # Nothing was sent twice beyond the chunk in flight when the worker died.
    assert evidence.largest_chunk <= EXAMPLE_CHUNK_SIZE, evidence
    assert evidence.bytes_received <= FILE_SIZE + EXAMPLE_CHUNK_SIZE, evidence
    # One upload in the table, holding exactly the source's bytes.
    assert evidence.uploads == 1, evidence
    assert evidence.stored_md5 == evidence.source_md5, evidence
