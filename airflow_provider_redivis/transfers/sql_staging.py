"""Staged mode's file: where it goes, how it is written, and how a retry knows it is complete and its own.

The rows are written under a partial name of the task instance's own (``{file}.partial-<hash of dag,
run, task, map index>``: a try killed while writing leaves one its next try removes, and no other
task's is touched), renamed into place (atomically on a local disk), then a marker (``{file}.complete.json``) is written beside it naming the task instance (dag, run, task, map
index), the query's fingerprint, the row and byte counts and the file's modification marker (mtime or
etag). A try reuses the file instead of running the query again only
when the marker is of this task instance and this query and the file is still the one it describes;
anything else there (another run's file, kept or left by a failure) is replaced by this try's own, and
only a file whose marker is this task instance's is ever deleted. A local Path or an ObjectStoragePath
(a URL) alike.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_provider_redivis.engine.sources import open_source
from airflow_provider_redivis.errors import RedivisError, SourceChangedError
from airflow_provider_redivis.transfers.sql_encoding import EncodeStats

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from contextlib import AbstractContextManager

    from airflow_provider_redivis.engine.sources import UploadSource

log = logging.getLogger(__name__)

#: The marker beside a complete staged file: its presence (with the right size) is the proof.
MARKER_SUFFIX = ".complete.json"
#: The default ``staging_path`` lives under this directory of the worker's temp dir.
DEFAULT_STAGING_DIR = "airflow-redivis-staging"
_UNSAFE = re.compile(r"[^A-Za-z0-9._=-]+")


def task_instance_of(context: Any) -> dict[str, Any]:
    """The task instance a staged file belongs to: its retries share it, nothing else does."""
    ti = context["ti"]
    map_index = getattr(ti, "map_index", -1)
    return {
        "dag_id": str(ti.dag_id),
        "run_id": str(ti.run_id),
        "task_id": str(ti.task_id),
        "map_index": -1 if map_index is None else int(map_index),
    }


def _owner_tag(owner: dict[str, Any]) -> str:
    """A short name of the task instance for its partial files: every try of it uses the same ones."""
    material = json.dumps(owner, sort_keys=True).encode("utf-8")
    return hashlib.sha256(material).hexdigest()[:16]


def default_staging_path(context: Any, file_format: str) -> Path:
    """``{tmp}/airflow-redivis-staging/{dag_id}/{run_id}/{task_id}[.{map_index}].{csv|parquet}``."""
    ti = context["ti"]

    def safe(text: object) -> str:
        return _UNSAFE.sub("_", str(text)).strip("._") or "_"

    map_index = getattr(ti, "map_index", -1)
    name = safe(ti.task_id) + (f".{map_index}" if map_index is not None and map_index >= 0 else "")
    return (
        Path(tempfile.gettempdir())
        / DEFAULT_STAGING_DIR
        / safe(ti.dag_id)
        / safe(ti.run_id)
        / f"{name}.{file_format}"
    )


def staged_path(target: Any, context: Any, file_format: str) -> Any:
    """The staged file for ``staging_path=target``: a local Path, or an ObjectStoragePath for a URL."""
    if target is None or (isinstance(target, str) and not target.strip()):
        return default_staging_path(context, file_format)
    if isinstance(target, os.PathLike) and not hasattr(target, "fs"):
        return Path(os.fspath(target))
    if isinstance(target, str):
        text = target.strip()
        if "://" not in text or text.startswith("file://"):
            return Path(text.removeprefix("file://")).expanduser()
        from airflow.providers.common.compat.sdk import ObjectStoragePath

        return ObjectStoragePath(text)
    return target  # an ObjectStoragePath


def sibling(path: Any, suffix: str) -> Any:
    return path.with_name(path.name + suffix)


def query_fingerprint(
    sql: object, parameters: Any, file_format: str, null_marker: str, postgres_copy: bool | None
) -> str:
    """What makes two tries' files the same: the query, its parameters and how it is written."""
    material = json.dumps(
        [sql, parameters, file_format, null_marker, postgres_copy],
        default=str,
        sort_keys=True,
    )
    return hashlib.sha256(material.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class StagedFile:
    """A complete staged file of this task instance: its marker, and the source the upload reads.

    ``source`` was checked against the marker (size and modification marker); the upload's engine
    checks it stays unchanged while it reads, so the bytes sent are the ones this task instance wrote.
    """

    path: Any
    marker: dict[str, Any]
    source: UploadSource


def describe_owner(owner: object) -> str:
    if not isinstance(owner, dict):
        return "an unknown task instance (no owner in its marker)"
    return (
        f"dag {owner.get('dag_id')!r}, run {owner.get('run_id')!r}, task {owner.get('task_id')!r}, "
        f"map index {owner.get('map_index')}"
    )


def read_marker(path: Any) -> dict[str, Any] | None:
    """The marker beside ``path``, or None when there is none (or it cannot be read: logged)."""
    marker_path = sibling(path, MARKER_SUFFIX)
    try:
        if not marker_path.exists():
            return None
        marker = json.loads(marker_path.read_text())
    except (OSError, ValueError) as exc:
        log.warning("The staged file's marker %s cannot be read (%s)", marker_path, exc)
        return None
    return marker if isinstance(marker, dict) else None


def _described_by(source: UploadSource, marker: dict[str, Any]) -> bool:
    return source.size == marker.get("bytes") and source.modified == marker.get("modified")


def complete_staged(path: Any, fingerprint: str, owner: dict[str, Any]) -> StagedFile | None:
    """This task instance's complete staged file of this query, or None (with the reason logged)."""
    marker = read_marker(path)
    if marker is None:
        return None
    if marker.get("task_instance") != owner:
        log.warning(
            "Running the query: the staged file %s belongs to %s, not to this task instance; this try writes "
            "its own in its place",
            path,
            describe_owner(marker.get("task_instance")),
        )
        return None
    if marker.get("query") != fingerprint:
        log.warning("Writing the query's rows again: the staged file %s is of another query", path)
        return None
    try:
        source = open_source(path)
    except RedivisError as exc:
        log.warning("Writing the query's rows again: the staged file is unusable (%s)", exc)
        return None
    if not _described_by(source, marker):
        log.warning(
            "Writing the query's rows again: the staged file changed after its marker was written "
            "(%d bytes, modified %s; the marker says %s bytes, modified %s)",
            source.size,
            source.modified,
            marker.get("bytes"),
            marker.get("modified"),
        )
        return None
    log.info(
        "Reusing the complete staged file %s of this task instance (%s rows, %s bytes, written %s): the query is "
        "not run again",
        path,
        marker.get("rows"),
        marker.get("bytes"),
        marker.get("written_at"),
    )
    return StagedFile(path, marker, source)


def stage(
    path: Any,
    rows: Callable[[EncodeStats], AbstractContextManager[Iterator[bytes]]],
    fingerprint: str,
    file_format: str,
    owner: dict[str, Any],
) -> StagedFile:
    """Write ``rows``' blocks to this task instance's partial name, rename it into place, then write the marker.

    The partial name is the same for every try of the task instance: what a killed try left there is
    removed before this one writes, and no other task's file is touched.
    """
    local = isinstance(path, Path)
    if local:
        path.parent.mkdir(parents=True, exist_ok=True)
    else:
        with contextlib.suppress(Exception):
            path.parent.mkdir(parents=True, exist_ok=True)
    partial = sibling(path, f".partial-{_owner_tag(owner)}")
    stats = EncodeStats()
    started = time.monotonic()
    written_mtime: int | None = None
    created = False
    try:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()  # a killed try's leftover: the name is this task instance's
        with rows(stats) as blocks, _create(partial, local) as out:
            created = True
            for block in blocks:
                out.write(block)
            if local:
                out.flush()
                os.fsync(out.fileno())
                written_mtime = os.fstat(out.fileno()).st_mtime_ns
        if local:
            os.replace(partial, path)
        else:
            partial.rename(path)
    except BaseException:
        if created:
            with contextlib.suppress(Exception):
                partial.unlink()
        raise
    source = _written(path, stats.bytes, written_mtime)
    marker = {
        "task_instance": owner,
        "query": fingerprint,
        "format": file_format,
        "rows": stats.rows,
        "bytes": stats.bytes,
        "modified": source.modified,
        "columns": list(stats.columns),
        "has_quoted_newlines": stats.has_quoted_newlines,
        "written_at": datetime.now(timezone.utc).isoformat(),
    }
    write_marker(path, marker)
    seconds = time.monotonic() - started
    log.info(
        "Staged %d rows (%d bytes) at %s in %.1f s (%.0f rows/s)",
        stats.rows,
        stats.bytes,
        path,
        seconds,
        stats.rows / seconds if seconds > 0 else 0.0,
    )
    return StagedFile(path, marker, source)


def _create(partial: Any, local: bool) -> Any:
    """The partial file, opened for writing; on a local disk only if no other live try just created it."""
    try:
        return partial.open("xb" if local else "wb")
    except FileExistsError:
        raise SourceChangedError(
            f"Another try of this task instance is writing {partial} at this moment; this try stops and the "
            "next one writes the staged file again."
        ) from None


def _written(path: Any, size: int, mtime_ns: int | None) -> UploadSource:
    """The file this try just renamed into place, refused if another task replaced it meanwhile."""
    try:
        source = open_source(path)
    except RedivisError:
        source = None
    if source is None or source.size != size or (mtime_ns is not None and source.modified != str(mtime_ns)):
        raise SourceChangedError(
            f"The staged file {path} was replaced by another task while this one wrote it: runs that overlap "
            "need a staging_path of their own (e.g. with {{ run_id }}). The next try writes it again."
        )
    return source


def write_marker(path: Any, marker: dict[str, Any]) -> None:
    marker_path = sibling(path, MARKER_SUFFIX)
    text = json.dumps(marker, sort_keys=True)
    if isinstance(path, Path):
        temporary = sibling(path, f"{MARKER_SUFFIX}.partial-{_owner_tag(marker['task_instance'])}")
        temporary.write_text(text)
        os.replace(temporary, marker_path)
    else:
        marker_path.write_text(text)  # one object PUT: there or not


def remove_staged(path: Any, keep: bool, owner: dict[str, Any]) -> None:
    """Delete the staged file and its marker, unless ``keep`` (``keep_staged_file``) or they are not ours.

    Only a file whose marker names this task instance, and which is still the file that marker
    describes, is deleted: another run may have written its own in its place since.
    """
    if keep:
        log.info("Keeping the staged file %s (keep_staged_file=True)", path)
        return
    marker = read_marker(path)
    if marker is None or marker.get("task_instance") != owner:
        log.warning(
            "Left the staged file %s as it is: its marker is not this task instance's (another run wrote its "
            "own there)",
            path,
        )
        return
    try:
        source: UploadSource | None = open_source(path)
    except RedivisError:
        source = None
    ours = source is not None and _described_by(source, marker)
    for victim in (sibling(path, MARKER_SUFFIX), path) if ours else (sibling(path, MARKER_SUFFIX),):
        try:
            victim.unlink()
        except FileNotFoundError:
            pass
        except Exception as exc:
            log.warning("Could not delete the staged file %s (%s)", victim, exc)
    if ours:
        log.info("Deleted the staged file %s", path)
    else:
        log.warning("Deleted the marker of %s only: the file there is no longer the one it describes", path)
