"""Sources: what can be uploaded, how it is fingerprinted, and the clear errors for what cannot."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pytest

from airflow_provider_redivis.engine.sources import FINGERPRINT_SPAN, open_source
from airflow_provider_redivis.errors import RedivisConfigError, SourceChangedError

if TYPE_CHECKING:
    from pathlib import Path


def write(path: Path, size: int, seed: int = 0) -> Path:
    path.write_bytes(bytes((i * 7 + seed) % 251 for i in range(size)))
    return path


def test_local_file_reads_back_and_fingerprints(tmp_path: Path) -> None:
    src = open_source(write(tmp_path / "a.csv", 3 * FINGERPRINT_SPAN))
    assert src.size == 3 * FINGERPRINT_SPAN
    with src.open() as fh:
        assert fh.read() == (tmp_path / "a.csv").read_bytes()
    assert src.fingerprint() == open_source(str(tmp_path / "a.csv")).fingerprint()


def test_file_url_is_a_local_file(tmp_path: Path) -> None:
    path = write(tmp_path / "b.csv", 10)
    assert open_source(f"file://{path}").size == 10


def test_fsspec_memory_url(tmp_path: Path) -> None:
    import fsspec

    fs = fsspec.filesystem("memory")
    fs.pipe("/bucket/c.csv", b"x" * 5000)
    src = open_source("memory://bucket/c.csv")
    assert src.size == 5000
    with src.open() as fh:
        fh.seek(4000)
        assert fh.read() == b"x" * 1000


def test_fingerprint_sees_a_change_in_the_tail(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", 4 * FINGERPRINT_SPAN)
    before = open_source(path).fingerprint()
    with open(path, "r+b") as fh:
        fh.seek(4 * FINGERPRINT_SPAN - 10)
        fh.write(b"CHANGED!!!")
    os.utime(path, ns=(1, int(before.modified or 0)))  # same mtime: only the content hash can tell
    assert open_source(path).fingerprint() != before


def test_change_during_the_read_is_detected(tmp_path: Path) -> None:
    path = write(tmp_path / "e.csv", 100)
    src = open_source(path)
    with open(path, "ab") as fh:
        fh.write(b"more")
    with pytest.raises(SourceChangedError, match="changed while it was being uploaded"):
        src.check_unchanged()


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(RedivisConfigError, match="does not exist"):
        open_source(tmp_path / "nope.csv")


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(RedivisConfigError, match="is a directory"):
        open_source(tmp_path)


def test_fifo_is_not_a_regular_file(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(RedivisConfigError, match="not a regular file"):
        open_source(fifo)


def test_device_is_not_a_regular_file() -> None:
    with pytest.raises(RedivisConfigError, match="not a regular file"):
        open_source("/dev/zero")


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "empty.csv").write_bytes(b"")
    with pytest.raises(RedivisConfigError, match="is empty"):
        open_source(tmp_path / "empty.csv")


@pytest.mark.parametrize("bad", ["", "   ", None, 42])
def test_not_a_path(bad: object) -> None:
    with pytest.raises(RedivisConfigError, match="source must be"):
        open_source(bad)


def test_unknown_scheme_says_what_to_install() -> None:
    with pytest.raises(RedivisConfigError, match="Install the fsspec implementation"):
        open_source("nosuchscheme://bucket/file.csv")
