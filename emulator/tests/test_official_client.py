"""Proof of fidelity: the official ``redivis`` client (0.21.1) uploads through the emulator unchanged.

The client reads its endpoint and token from the environment at import time, so it runs in a
subprocess pointed at the emulator: ``REDIVIS_API_ENDPOINT`` is the base URL *with* ``/api/v1``. That
subprocess is the client's own environment (``REDIVIS_TEST_CLIENT_PYTHON``, ``.venv-client`` by
``dev/test``): its niquests replaces urllib3 wherever it is installed, so it is kept away from the
provider's.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest
from redivis_emulator import RedivisEmulator

from emulator.tests.conftest import TABLE

#: An interpreter with the official client installed (dev/setup-venvs: .venv-client).
CLIENT_PYTHON = os.environ.get("REDIVIS_TEST_CLIENT_PYTHON", "")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not CLIENT_PYTHON,
        reason="set REDIVIS_TEST_CLIENT_PYTHON to an interpreter with redivis==0.21.1 (dev/test does)",
    ),
]


def run_client(emu: RedivisEmulator, home: Path, code: str) -> str:
    env = {
        **os.environ,
        "REDIVIS_API_ENDPOINT": emu.api_url,
        "REDIVIS_API_TOKEN": emu.token,
        "HOME": str(home),  # the client looks for ~/.redivis credentials
    }
    result = subprocess.run([CLIENT_PYTHON, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    return result.stdout


def write_delimited(path: Path, size: int) -> int:
    rows = 0
    with open(path, "w", encoding="utf-8", newline="") as fh:
        fh.write("id,name,amount,note\n")
        while fh.tell() < size:
            fh.write(f'{rows},customer {rows},{rows * 1.25:.2f},"note, with comma {rows % 97}"\n')
            rows += 1
    return rows


def md5_of(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def test_official_client_uploads_40_mib(redivis_emulator: RedivisEmulator, tmp_path: Path) -> None:
    emu = redivis_emulator
    source = tmp_path / "sales 2026.csv"
    rows = write_delimited(source, 40 * 1024 * 1024)
    code = (
        "import redivis\n"
        f"upload = redivis.table({TABLE!r}).upload({source.name!r}).create({str(source)!r}, "
        "wait_for_finish=True, progress=False)\n"
        "print(upload.properties['status'], upload.properties['numRows'])\n"
    )
    out = run_client(emu, tmp_path, code)
    assert out.split() == ["completed", str(rows)]

    [upload] = emu.list_uploads(TABLE)
    assert upload["name"] == source.name
    assert upload["status"] == "completed"
    assert upload["numRows"] == rows
    assert upload["size"] == source.stat().st_size
    assert md5_of(emu.upload_bytes_path(TABLE, source.name)) == md5_of(source) == upload["hash"]

    # What the client did: tempUploads, the x-goog-resumable handshake, one whole-file PUT, HEAD, POST, polls.
    calls = [(r.method, r.origin, r.path.rsplit("/", 1)[-1]) for r in emu.requests]
    assert calls[0] == ("POST", "api", "tempUploads")
    assert calls[1][:2] == ("POST", "api")
    assert calls[2][:2] == ("PUT", "session")
    assert calls[3] == ("HEAD", "api", "sales%202026_csv")
    assert calls[4] == ("POST", "api", "uploads")
    assert all(call[0] == "GET" for call in calls[5:])
    put = emu.requests[2]
    assert put.body_bytes == source.stat().st_size
    assert put.content_range == f"bytes 0-{source.stat().st_size - 1}/{source.stat().st_size}"
    # The official client sends its Redivis token to the session URL too: the emulator sees it.
    assert emu.authorization_seen("session") == 1
    # Its session started with the XML API's handshake, so it was answered in the xml dialect.
    [session] = emu.sessions.values()
    assert (session.dialect, session.complete) == ("xml", True)


def test_official_client_small_files_and_replace_on_conflict(
    redivis_emulator: RedivisEmulator, tmp_path: Path
) -> None:
    emu = redivis_emulator
    small = tmp_path / "small.csv"
    small.write_text("a,b\n1,2\n3,4\n")
    medium = tmp_path / "medium.csv"
    medium_rows = write_delimited(medium, 2 * 1024 * 1024)  # above 1 MiB, below 32 MiB: one plain PUT
    code = (
        "import redivis\n"
        f"table = redivis.table({TABLE!r})\n"
        f"table.upload('small.csv').create({str(small)!r}, progress=False)\n"
        f"table.upload('small.csv').create({str(small)!r}, replace_on_conflict=True, progress=False)\n"
        f"table.upload('medium.csv').create({str(medium)!r}, progress=False)\n"
        "try:\n"
        f"    table.upload('small.csv').create({str(small)!r}, progress=False)\n"
        "except Exception as exc:\n"
        "    print('refused:', type(exc).__name__)\n"
    )
    out = run_client(emu, tmp_path, code)
    assert "refused: ValueError" in out
    uploads = {u["name"]: u for u in emu.list_uploads(TABLE)}
    assert sorted(uploads) == ["medium.csv", "small.csv"]
    assert uploads["small.csv"]["numRows"] == 2
    assert uploads["medium.csv"]["numRows"] == medium_rows
    assert md5_of(emu.upload_bytes_path(TABLE, "medium.csv")) == md5_of(medium)
    multipart = [r for r in emu.requests if r.method == "POST" and r.path.endswith("/uploads")]
    assert multipart[0].headers["content-type"].startswith("multipart/form-data")


def test_official_client_transfers_from_gcs_and_from_another_table(tmp_path: Path) -> None:
    """The client's own two transfer shapes (its tests' test_external_transfer and test_redivis_upload)."""
    gcs = tmp_path / "gcs" / "bucket"
    gcs.mkdir(parents=True)
    (gcs / "test.csv").write_text("a,b\n1,2\n3,4\n")
    other = "test_owner.test_dataset.other"
    with RedivisEmulator(tables=[TABLE, other], data_dir=tmp_path / "data", gcs_root=tmp_path / "gcs") as emu:
        code = (
            "import redivis\n"
            f"redivis.table({other!r}).upload('test.csv').create(transfer_specification="
            "{'sourceType': 'gcs', 'sourcePath': 'bucket/test.csv', 'identity': 'me@example.com'})\n"
            f"redivis.table({TABLE!r}).upload('test').create(transfer_specification="
            f"{{'sourceType': 'redivis', 'sourcePath': {other!r}}})\n"
        )
        run_client(emu, tmp_path, code)
        assert emu.get_upload(other, "test.csv")["numRows"] == 2
        assert emu.get_upload(TABLE, "test")["numRows"] == 2
