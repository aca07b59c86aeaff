"""The upload job is plain Python: it imports with Airflow out of reach."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

BLOCK_AIRFLOW = """
import sys

class Block:
    def find_spec(self, name, path=None, target=None):
        if name == "airflow" or name.startswith("airflow."):
            raise ImportError("airflow is out of reach: " + name)

sys.meta_path.insert(0, Block())
import airflow_provider_redivis.upload_job
import airflow_provider_redivis.upload_creation
print("ok")
"""


def test_upload_job_imports_without_airflow() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-c", BLOCK_AIRFLOW],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"
