"""One try reads the source's fingerprint once, even when a stale checkpoint sends it to a new session."""

from __future__ import annotations

import logging
import os
from datetime import datetime, timedelta, timezone
from typing import IO, TYPE_CHECKING, Any

from airflow_provider_redivis.engine.checkpoint import UploadCheckpoint
from airflow_provider_redivis.engine.job import UploadJob
from airflow_provider_redivis.engine.options import UploadSpec
from airflow_provider_redivis.engine.sealing import SessionUrlSeal
from airflow_provider_redivis.engine.sources import FINGERPRINT_SPAN, LocalFileSource
from airflow_provider_redivis.hooks.redivis import RedivisHook

if TYPE_CHECKING:
    from pathlib import Path

    import pytest
    from redivis_emulator import RedivisEmulator

TABLE = "test_owner.test_dataset.test_table"


class CountingSource(LocalFileSource):
    """A local file that counts how often it is opened."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.opens = 0

    def open(self) -> IO[bytes]:
        self.opens += 1
        return super().open()


class MemoryStore:
    description = "a dict"
    keep_after_last_try = True

    def __init__(self, value: dict[str, Any]) -> None:
        self.value: dict[str, Any] | None = value

    def load(self) -> Any:
        return self.value

    def save(self, value: dict[str, Any]) -> None:
        self.value = value

    def delete(self) -> None:
        self.value = None


def test_a_stale_checkpoint_does_not_read_the_fingerprint_twice(
    redivis_emulator: RedivisEmulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    path = tmp_path / "data.csv"
    path.write_bytes(os.urandom(3 * FINGERPRINT_SPAN))
    emu = redivis_emulator
    monkeypatch.setenv(
        "AIRFLOW_CONN_REDIVIS_FP", f"redivis://:{emu.token}@{emu.base_url.removeprefix('http://')}"
    )
    hook = RedivisHook("redivis_fp")
    # The last try's checkpoint: the same bytes, but its session is past its 24 hours.
    stale = UploadCheckpoint(
        table=TABLE,
        upload_name="data.csv",
        session_id="old-session",
        session_url=f"{emu.base_url}/never-asked",
        total_size=path.stat().st_size,
        fingerprint=LocalFileSource(path).fingerprint(),
        offset=FINGERPRINT_SPAN,
        created_at=datetime.now(timezone.utc) - timedelta(hours=25),
    )
    store = MemoryStore(stale.to_json(SessionUrlSeal(hook.settings.token)))
    source = CountingSource(path)
    caplog.set_level(logging.WARNING, logger="airflow_provider_redivis.engine.job")

    with hook:
        result = UploadJob(
            hook, store, UploadSpec(table=TABLE, name="data.csv"), source, visibility_wait=0
        ).run()

    assert result.upload["name"] == "data.csv"
    assert "has expired" in caplog.text  # the checkpoint was read, compared, and found stale
    # One open to fingerprint (compared with the checkpoint, then stored in the new one), one to send.
    assert source.opens == 2
