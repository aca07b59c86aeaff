"""What gets uploaded: a local file or an fsspec / ObjectStoragePath URL, read as a seekable stream.

A retry may land on another worker, so the source is named by a path or URL that every worker can
read, and it is fingerprinted so that a new try can tell whether it still has the same bytes.
Plain Python: fsspec is imported only for URLs (Airflow already depends on it).
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from airflow_provider_redivis.errors import RedivisConfigError, SourceChangedError

if TYPE_CHECKING:
    from collections.abc import Mapping

#: The fingerprint hashes this much of the head and of the tail of the source.
FINGERPRINT_SPAN = 1024 * 1024


@dataclass(frozen=True)
class SourceFingerprint:
    """Size, a modification marker (mtime or etag) and a hash of the first and last MiB."""

    size: int
    modified: str | None
    edges_sha256: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SourceFingerprint:
        return cls(
            size=int(data["size"]), modified=data.get("modified"), edges_sha256=str(data["edges_sha256"])
        )


class UploadSource:
    """A readable, seekable source of known size."""

    def __init__(self, display: str, size: int, modified: str | None) -> None:
        self.display = display
        self.size = size
        self.modified = modified
        self._fingerprint: SourceFingerprint | None = None

    def open(self) -> IO[bytes]:
        raise NotImplementedError

    def _current_marker(self) -> tuple[int, str | None]:
        raise NotImplementedError

    def check_unchanged(self) -> None:
        """Raise :class:`SourceChangedError` if size or modification marker moved since the source was opened."""
        size, modified = self._current_marker()
        if size != self.size or modified != self.modified:
            raise SourceChangedError(
                f"{self.display} changed while it was being uploaded (size {self.size} → {size}). Nothing was "
                "created; run the task again once the file is complete."
            )

    def fingerprint(self) -> SourceFingerprint:
        """Read once per source object (a source is opened once per try), then remembered.

        The remembered value stays true while :meth:`check_unchanged` holds, and the transfer checks that.
        """
        if self._fingerprint is None:
            self._fingerprint = self._read_fingerprint()
        return self._fingerprint

    def _read_fingerprint(self) -> SourceFingerprint:
        digest = hashlib.sha256()
        with self.open() as reader:
            digest.update(reader.read(FINGERPRINT_SPAN))
            if self.size > FINGERPRINT_SPAN:
                reader.seek(max(FINGERPRINT_SPAN, self.size - FINGERPRINT_SPAN))
                digest.update(reader.read(FINGERPRINT_SPAN))
        return SourceFingerprint(size=self.size, modified=self.modified, edges_sha256=digest.hexdigest())

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.display!r}, size={self.size})"


class LocalFileSource(UploadSource):
    def __init__(self, path: Path) -> None:
        self.path = path
        size, modified = self._current_marker()
        super().__init__(str(path), size, modified)

    def _current_marker(self) -> tuple[int, str | None]:
        st = os.stat(self.path)
        return st.st_size, str(st.st_mtime_ns)

    def open(self) -> IO[bytes]:
        return open(self.path, "rb")


class FsspecSource(UploadSource):
    def __init__(self, fs: Any, path: str, display: str) -> None:
        self.fs = fs
        self.path = path
        size, modified = self._current_marker()
        super().__init__(display, size, modified)

    def _info(self) -> dict[str, Any]:
        # Caches would hide a change between tries or during the read.
        if hasattr(self.fs, "invalidate_cache"):
            self.fs.invalidate_cache(self.path)
        info: dict[str, Any] = self.fs.info(self.path)
        return info

    def _current_marker(self) -> tuple[int, str | None]:
        info = self._info()
        if info.get("type") not in (None, "file"):
            raise RedivisConfigError(
                f"{self.path!r} is a {info.get('type')}, not a file: name one file to upload."
            )
        size = info.get("size")
        if size is None:
            raise RedivisConfigError(f"The size of {self.path!r} is unknown; the resumable upload needs it.")
        for key in (
            "ETag",
            "etag",
            "md5Hash",
            "generation",
            "mtime",
            "LastModified",
            "last_modified",
            "created",
        ):
            if info.get(key) is not None:
                return int(size), f"{key}={info[key]}"
        return int(size), None

    def open(self) -> IO[bytes]:
        return self.fs.open(self.path, "rb")


def open_source(source: object) -> UploadSource:
    """Resolve ``source`` (a path, a ``file://``/``s3://``/``gs://`` URL, or an ObjectStoragePath) and check it.

    Raises :class:`RedivisConfigError` saying what to fix for a missing, unreadable, empty, directory or
    special-file source.
    """
    if hasattr(source, "fs") and hasattr(source, "path") and not isinstance(source, (str, os.PathLike)):
        # ObjectStoragePath (a universal_pathlib path): its filesystem is already resolved.
        return _checked(FsspecSource(source.fs, str(source.path), str(source)))
    if isinstance(source, os.PathLike):
        source = os.fspath(source)
    if not isinstance(source, str) or not source.strip():
        raise RedivisConfigError(f"source must be a file path or URL, got {source!r}.")
    source = source.strip()
    if "://" not in source or source.startswith("file://"):
        return _checked(_local(source.removeprefix("file://")))
    import fsspec  # Airflow depends on it; imported here so plain local uploads never need it

    try:
        fs, path = fsspec.core.url_to_fs(source)
    except (ImportError, ValueError) as exc:
        raise RedivisConfigError(
            f"Cannot open {source!r}: {exc}. Install the fsspec implementation for that scheme "
            "(for example s3fs or gcsfs) on every worker."
        ) from exc
    try:
        return _checked(FsspecSource(fs, path, source))
    except FileNotFoundError:
        raise RedivisConfigError(
            f"The source {source!r} does not exist. Check the URL and the worker's credentials."
        ) from None


def _local(path_text: str) -> LocalFileSource:
    path = Path(path_text).expanduser()
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise RedivisConfigError(
            f"The source file {path} does not exist. Check the path on the worker."
        ) from None
    except PermissionError:
        raise RedivisConfigError(
            f"The source file {path} cannot be read: permission denied for the worker's user."
        ) from None
    if stat.S_ISDIR(st.st_mode):
        raise RedivisConfigError(
            f"The source {path} is a directory: name one file, or map the operator over its files."
        )
    if not stat.S_ISREG(st.st_mode):
        raise RedivisConfigError(
            f"The source {path} is not a regular file (a pipe, socket or device): a resumable upload must be able "
            "to read the same bytes again. Write it to a file first."
        )
    if not os.access(path, os.R_OK):
        raise RedivisConfigError(
            f"The source file {path} cannot be read: permission denied for the worker's user."
        )
    return LocalFileSource(path)


def _checked(src: UploadSource) -> UploadSource:
    if src.size == 0:
        raise RedivisConfigError(
            f"The source {src.display} is empty: Redivis cannot create an upload from 0 bytes."
        )
    return src
