"""Uploads Redivis fetches itself (``transferSpecification``): no byte goes through the worker. Plain Python.

Redivis fetches from two kinds of source (the official client's tests use both, and its code passes the
specification through unread): ``gcs`` (``sourcePath`` ``bucket/path``, read as ``identity``, a Google
account linked in Redivis) and ``redivis`` (``sourcePath`` another table's reference). Anything else is
refused here, before any request.

:class:`TransferJob` creates the upload once across tries: a checkpoint in ``creating`` is saved before the
first request, so a try after a lost answer looks for the upload under its name and attaches to it when
:func:`~airflow_provider_redivis.engine.ownership.transfer_refusal_of` finds nothing that makes it another's.
"""

from __future__ import annotations

import logging
import posixpath
import re
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import requests

from airflow_provider_redivis.engine.creation import (
    MAX_CREATE_POSTS,
    VISIBILITY_WAIT,
    apply_if_exists,
    existing_upload,
)
from airflow_provider_redivis.engine.job import JobResult
from airflow_provider_redivis.engine.ownership import collision_hint, transfer_refusal_of
from airflow_provider_redivis.errors import (
    RedivisAPIError,
    RedivisConfigError,
    RedivisConflictError,
    RedivisError,
    RedivisNotFoundError,
)
from airflow_provider_redivis.references import validate_table_reference

if TYPE_CHECKING:
    from airflow_provider_redivis.checkpoint_store import CheckpointStore
    from airflow_provider_redivis.engine.options import UploadSpec
    from airflow_provider_redivis.hooks.redivis import RedivisHook

log = logging.getLogger(__name__)

#: The ``sourceType`` values Redivis fetches from (docs/redivis-api.md, "Transfers").
SOURCE_TYPES = ("gcs", "redivis")
#: The transfer checkpoint's format; a byte upload's checkpoint has an integer format and is not read here.
TRANSFER_FORMAT = "transfer-1"
_BUCKET = re.compile(r"[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]")
_STREAMED = "RedivisResumableUploadOperator, which streams the file through the worker"


@dataclass(frozen=True)
class TransferSource:
    """What Redivis fetches: checked, and how lineage and the default upload name see it."""

    source_type: str
    source_path: str
    identity: str | None = None

    def specification(self) -> dict[str, Any]:
        spec = {"sourceType": self.source_type, "sourcePath": self.source_path}
        return spec if self.identity is None else {**spec, "identity": self.identity}

    @property
    def display(self) -> str:
        return f"gs://{self.source_path}" if self.source_type == "gcs" else f"table {self.source_path}"

    @property
    def default_name(self) -> str:
        """The object's file name, or the source table's name."""
        if self.source_type == "gcs":
            return posixpath.basename(self.source_path)
        return self.source_path.rsplit(".", 1)[-1].split(":", 1)[0]


def transfer_source(
    source: object = None, source_table: object = None, identity: object = None
) -> TransferSource:
    """The source Redivis is to fetch, or a :class:`RedivisConfigError` that says what to give instead.

    :param source: a ``gs://bucket/path/to/object`` URL.
    :param source_table: or another Redivis table's reference (``owner.dataset[:version].table``).
    :param identity: for ``gs://``: the Google account, linked in Redivis, that can read the object.
    """
    if (source is None) == (source_table is None):
        raise RedivisConfigError(
            "Give either source (a gs://bucket/path URL) or source_table (another Redivis table), not both or neither."
        )
    if source_table is not None:
        if identity is not None:
            raise RedivisConfigError(
                "identity is for a gs:// source only: a copy of another Redivis table uses the token's access."
            )
        return TransferSource("redivis", validate_table_reference(str(source_table)))
    text = str(source)
    scheme, sep, rest = text.partition("://")
    if not sep or scheme != "gs":
        raise RedivisConfigError(
            f"Redivis fetches by itself only from Google Cloud Storage (gs://bucket/path) or another Redivis "
            f"table (source_table=...); {text!r} is neither. For a local path, s3://, http(s):// or any other "
            f"source, use {_STREAMED}."
        )
    bucket, _, name = rest.partition("/")
    if not _BUCKET.fullmatch(bucket) or ".." in bucket:
        raise RedivisConfigError(
            f"{text!r} does not name a Cloud Storage bucket: write gs://bucket/path/to/file.csv "
            "(a bucket is lower-case letters, digits, '-', '_' and '.')."
        )
    if not name or name.endswith("/") or any(ch in name for ch in "*?["):
        raise RedivisConfigError(
            f"{text!r} names no single object: give the path of one file, such as gs://{bucket}/exports/sales.csv "
            "(no folder, no wildcard)."
        )
    if not isinstance(identity, str) or not identity.strip():
        raise RedivisConfigError(
            "A gs:// source needs identity: the Google account, linked to your Redivis account, that can read "
            "the object (e.g. identity='loader@project.iam.gserviceaccount.com' or your Google email)."
        )
    return TransferSource("gcs", f"{bucket}/{name}", identity.strip())


@dataclass(frozen=True)
class TransferCheckpoint:
    """What a retry needs: which upload, from which source, asked since when, and its uri once known."""

    table: str
    upload_name: str
    specification: dict[str, Any]
    creating_since: datetime
    upload_uri: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "format": TRANSFER_FORMAT,
            "table": self.table,
            "upload_name": self.upload_name,
            "specification": self.specification,
            "creating_since": self.creating_since.isoformat(),
            "upload_uri": self.upload_uri,
        }

    @classmethod
    def from_json(cls, data: object) -> TransferCheckpoint | None:
        """The checkpoint, or None for anything else (another format, damaged)."""
        if not isinstance(data, dict) or data.get("format") != TRANSFER_FORMAT:
            return None
        try:
            since = datetime.fromisoformat(str(data["creating_since"]))
            return cls(
                table=str(data["table"]),
                upload_name=str(data["upload_name"]),
                specification=dict(data["specification"]),
                creating_since=since if since.tzinfo else since.replace(tzinfo=timezone.utc),
                upload_uri=data.get("upload_uri"),
            )
        except (KeyError, TypeError, ValueError):
            return None


class TransferJob:
    """Checkpoint → if_exists → create once (or attach to the upload this task created)."""

    def __init__(
        self,
        hook: RedivisHook,
        store: CheckpointStore,
        spec: UploadSpec,
        source: TransferSource,
        *,
        visibility_wait: float = VISIBILITY_WAIT,
    ) -> None:
        self.hook = hook
        self.store = store
        self.spec = spec
        self.source = source
        self.visibility_wait = visibility_wait

    def run(self) -> JobResult:
        checkpoint = self._usable_checkpoint()
        if checkpoint is not None and checkpoint.upload_uri:
            log.info("Upload %s was created by an earlier try; attaching to it", checkpoint.upload_uri)
            try:
                return JobResult(self.hook.get_upload_by_uri(checkpoint.upload_uri))
            except RedivisNotFoundError:
                self.store.delete()
                raise RedivisError(
                    f"Upload {checkpoint.upload_uri}, which an earlier try created, is not in Redivis (was it "
                    "deleted?). The checkpoint was dropped: the next try creates it again."
                ) from None
        if checkpoint is None:
            since = datetime.now(timezone.utc)  # before the look: whatever shows later was made after it
            existing = apply_if_exists(self.hook, self.spec.table, self.spec.name, self.spec.if_exists)
            if existing is not None:
                return JobResult(existing, skipped=True)
            checkpoint = TransferCheckpoint(
                self.spec.table, self.spec.name, self.source.specification(), since
            )
            self.store.save(checkpoint.to_json())  # before the request: a retry knows it may have been made
            return JobResult(self._create(checkpoint, may_exist=False))
        log.info(
            "An earlier try asked Redivis to create upload %r; looking for it first", checkpoint.upload_name
        )
        return JobResult(self._create(checkpoint, may_exist=True))

    def _usable_checkpoint(self) -> TransferCheckpoint | None:
        checkpoint = TransferCheckpoint.from_json(self.store.load())
        if checkpoint is None:
            return None
        wanted = (self.spec.table, self.spec.name, self.source.specification())
        if (checkpoint.table, checkpoint.upload_name, checkpoint.specification) != wanted:
            log.warning(
                "The checkpoint is for upload %r of %s from %s; this try creates %r from %s: starting anew",
                checkpoint.upload_name,
                checkpoint.table,
                checkpoint.specification,
                self.spec.name,
                self.source.specification(),
            )
            return None
        return checkpoint

    def _create(self, checkpoint: TransferCheckpoint, *, may_exist: bool) -> dict[str, Any]:
        for _ in range(MAX_CREATE_POSTS):
            if may_exist:
                found = self._lookup(checkpoint, wait=False)
                if found is not None:
                    return self._attach(checkpoint, found)
            try:
                upload = self.hook.create_upload(
                    checkpoint.table,
                    name=checkpoint.upload_name,
                    upload_type=self.spec.upload_type,
                    transfer_specification=checkpoint.specification,
                    **self.spec.options,
                )
            except (requests.ConnectionError, requests.Timeout):
                log.warning(
                    "The answer to creating upload %r was lost; looking for it", checkpoint.upload_name
                )
                may_exist = True
                continue
            except RedivisAPIError as exc:
                if exc.status != 409:
                    raise
                # The name is taken: by our own earlier request only if one was sent.
                holder = self._lookup(checkpoint, wait=True) if may_exist else None
                if holder is None:
                    raise self._collision(checkpoint) from None
                return self._attach(checkpoint, holder)
            return self._created(checkpoint, upload)
        raise RedivisError(
            f"Creating upload {checkpoint.upload_name!r} lost its answer {MAX_CREATE_POSTS} times; the next try "
            "looks for it and attaches if it was created."
        )

    def _lookup(self, checkpoint: TransferCheckpoint, *, wait: bool) -> dict[str, Any] | None:
        deadline = time.monotonic() + (self.visibility_wait if wait else 0.0)
        pause = 0.5
        while True:
            found = existing_upload(self.hook, checkpoint.table, checkpoint.upload_name)
            if found is not None or time.monotonic() + pause > deadline:
                return found
            time.sleep(pause)
            pause = min(pause * 2, 5.0)

    def _attach(self, checkpoint: TransferCheckpoint, upload: dict[str, Any]) -> dict[str, Any]:
        refusal = transfer_refusal_of(
            checkpoint.upload_name, checkpoint.specification, checkpoint.creating_since, upload
        )
        if refusal is not None:
            raise self._collision(checkpoint, refusal)
        log.info(
            "Upload %r (%s) is the one this task asked for; attaching",
            checkpoint.upload_name,
            upload.get("uri"),
        )
        return self._created(checkpoint, upload)

    def _created(self, checkpoint: TransferCheckpoint, upload: dict[str, Any]) -> dict[str, Any]:
        self.store.save(replace(checkpoint, upload_uri=upload["uri"]).to_json())
        log.info(
            "Redivis fetches %s into upload %s; no byte passes through this worker",
            self.source.display,
            upload.get("uri"),
        )
        return upload

    def _collision(self, checkpoint: TransferCheckpoint, refusal: str | None = None) -> RedivisConflictError:
        self.store.delete()  # never attach to someone else's upload: the next try starts clean
        reason = f" ({refusal})" if refusal else ""
        return RedivisConflictError(
            409,
            f"table {checkpoint.table} already has an upload named {checkpoint.upload_name!r} that this task did not "
            f"create{reason}; it was left as it is and nothing was created",
            hint=collision_hint(checkpoint.upload_name),
        )
