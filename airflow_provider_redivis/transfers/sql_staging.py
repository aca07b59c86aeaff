"""Staged mode's file: where it goes, how it is written, and how a retry knows it is complete.

The rows are written under a temporary name, renamed into place (atomically on a local disk), then a
marker (``{file}.complete.json``) is written beside it with the query's fingerprint, the row and byte
counts. A retry that finds the marker of the same query and a file of the size it names reuses the
file instead of running the query again. A local Path or an ObjectStoragePath (a URL) alike.
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
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_provider_redivis.errors import RedivisError
from airflow_provider_redivis.sources import open_source
from airflow_provider_redivis.transfers.sql_encoding import EncodeStats

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from contextlib import AbstractContextManager

log = logging.getLogger(__name__)

#: The marker beside a complete staged file: its presence (with the right size) is the proof.
MARKER_SUFFIX = ".complete.json"
#: The default ``staging_path`` lives under this directory of the worker's temp dir.
DEFAULT_STAGING_DIR = "airflow-redivis-staging"
_UNSAFE = re.compile(r"[^A-Za-z0-9._=-]+")


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


def complete_staged(path: Any, fingerprint: str) -> dict[str, Any] | None:
    """The marker of a complete staged file of this query, or None (with the reason logged)."""
    marker_path = sibling(path, MARKER_SUFFIX)
    try:
        if not marker_path.exists():
            return None
        marker = json.loads(marker_path.read_text())
    except (OSError, ValueError) as exc:
        log.warning("Writing the query's rows again: the staged file's marker cannot be read (%s)", exc)
        return None
    if not isinstance(marker, dict) or marker.get("query") != fingerprint:
        log.warning("Writing the query's rows again: the staged file %s is of another query", path)
        return None
    try:
        size = open_source(path).size
    except RedivisError as exc:
        log.warning("Writing the query's rows again: the staged file is unusable (%s)", exc)
        return None
    if size != marker.get("bytes"):
        log.warning(
            "Writing the query's rows again: the staged file has %d bytes, its marker says %s",
            size,
            marker.get("bytes"),
        )
        return None
    return marker


def stage(
    path: Any,
    rows: Callable[[EncodeStats], AbstractContextManager[Iterator[bytes]]],
    fingerprint: str,
    file_format: str,
) -> dict[str, Any]:
    """Write ``rows``' blocks to a temporary name, rename it into place, then write the marker."""
    if isinstance(path, Path):
        path.parent.mkdir(parents=True, exist_ok=True)
    else:
        with contextlib.suppress(Exception):
            path.parent.mkdir(parents=True, exist_ok=True)
    partial = sibling(path, f".partial-{uuid.uuid4().hex[:8]}")
    stats = EncodeStats()
    started = time.monotonic()
    try:
        with rows(stats) as blocks, partial.open("wb") as out:
            for block in blocks:
                out.write(block)
            if isinstance(path, Path):
                out.flush()
                os.fsync(out.fileno())
        if isinstance(path, Path):
            os.replace(partial, path)
        else:
            partial.rename(path)
    except BaseException:
        with contextlib.suppress(Exception):
            partial.unlink()
        raise
    marker = {
        "query": fingerprint,
        "format": file_format,
        "rows": stats.rows,
        "bytes": stats.bytes,
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
    return marker


def write_marker(path: Any, marker: dict[str, Any]) -> None:
    marker_path = sibling(path, MARKER_SUFFIX)
    text = json.dumps(marker, sort_keys=True)
    if isinstance(path, Path):
        temporary = sibling(path, f"{MARKER_SUFFIX}.partial-{uuid.uuid4().hex[:8]}")
        temporary.write_text(text)
        os.replace(temporary, marker_path)
    else:
        marker_path.write_text(text)  # one object PUT: there or not


def remove_staged(path: Any, keep: bool) -> None:
    """Delete the staged file and its marker, unless ``keep`` (``keep_staged_file``)."""
    if keep:
        log.info("Keeping the staged file %s (keep_staged_file=True)", path)
        return
    for victim in (sibling(path, MARKER_SUFFIX), path):
        try:
            victim.unlink()
        except FileNotFoundError:
            pass
        except Exception as exc:
            log.warning("Could not delete the staged file %s (%s)", victim, exc)
    log.info("Deleted the staged file %s", path)
