"""The API's rules for bytes: resumable sessions, temp uploads, and uploads made from them.

Mixins of :class:`~redivis_emulator.catalog.Catalog`, on top of :class:`CatalogState`.
"""

from __future__ import annotations

import itertools
import secrets
import uuid
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from redivis_emulator.errors import ApiError
from redivis_emulator.model import InlineUploadData, Table, TempUpload, Upload, now_ms
from redivis_emulator.references import name_key, parse_table_reference
from redivis_emulator.sessions import ServerSession
from redivis_emulator.state import CatalogState
from redivis_emulator.transfers import check_transfer_specification
from redivis_emulator.vocabulary import MAX_UPLOAD_SIZE, UPLOAD_TYPES, infer_upload_type

if TYPE_CHECKING:
    from pathlib import Path


class SessionRules(CatalogState):
    """``resumableUpload`` sessions and ``tempUploads`` (the official client's route to a session)."""

    def _new_session(
        self, table: Table, size: int | None, temp_upload_id: str | None = None
    ) -> ServerSession:
        session_id = uuid.uuid4().hex
        # The URL is its own credential: an unguessable token, on another origin than the API.
        token = secrets.token_urlsafe(32)
        session = ServerSession(
            session_id=session_id,
            token=token,
            url=f"{self.session_base_url}/upload/resumable/{token}",
            path=self.data_dir / "sessions" / f"{session_id}.bin",
            size=size,
            ttl=self.session_ttl,
            table=table.display_reference,
            temp_upload_id=temp_upload_id,
            # tempUploads sessions start with the XML API's handshake (x-goog-resumable: start).
            dialect=self.temp_session_dialect if temp_upload_id is not None else self.session_dialect,
            keep_partial=self.keep_partial_requests,
        )
        self.sessions[session_id] = session
        self.sessions_by_token[token] = session
        return session

    def create_resumable_upload(self, reference: str, size: str | None) -> dict[str, Any]:
        try:
            total = int(size) if size is not None else None
        except ValueError:
            total = None
        if total is None or total < 0:
            raise ApiError(
                400, "Query parameter 'size' is required: the file's size in bytes (an integer >= 0)."
            )
        if total > MAX_UPLOAD_SIZE:
            raise ApiError(400, f"size {total} is larger than the largest upload ({MAX_UPLOAD_SIZE} bytes).")
        with self.lock:
            table = self._table(parse_table_reference(reference))
            self._writable(table)
            session = self._new_session(table, total)
            return {"kind": "resumableUpload", "id": session.id, "url": session.url}

    def create_temp_uploads(self, reference: str, body: Mapping[str, Any]) -> dict[str, Any]:
        specs = body.get("tempUploads")
        if not isinstance(specs, list) or not specs:
            raise ApiError(
                400, 'Body must be {"tempUploads": [{"size": N, "name": ..., "resumable": bool}]}.'
            )
        with self.lock:
            table = self._table(parse_table_reference(reference))
            self._writable(table)
            results = []
            for spec in specs:
                if not isinstance(spec, Mapping):
                    raise ApiError(400, "Each tempUploads entry is an object with size, name and resumable.")
                size = spec.get("size")
                if isinstance(size, bool) or not isinstance(size, int) or size < 0:
                    raise ApiError(400, f"tempUploads[].size must be a non-negative integer, got {size!r}.")
                temp_id = f"tu_{uuid.uuid4().hex[:16]}"
                token = secrets.token_urlsafe(32)
                temp = TempUpload(
                    id=temp_id,
                    token=token,
                    table=table,
                    name=str(spec.get("name") or temp_id),
                    size=size,
                    resumable=bool(spec.get("resumable")),
                    path=self.data_dir / "temp" / f"{temp_id}.bin",
                )
                self.temp_uploads[temp_id] = temp
                self.temp_by_token[token] = temp
                results.append(
                    {
                        "kind": "tempUpload",
                        "id": temp_id,
                        "url": f"{self.base_url}/tempUploads/{token}",
                        "name": temp.name,
                        "size": size,
                        "resumable": temp.resumable,
                    }
                )
            return {"kind": "tempUploadList", "results": results}

    def temp_upload(self, token: str) -> TempUpload:
        with self.lock:
            temp = self.temp_by_token.get(token)
            if temp is None:
                raise ApiError(404, "Unknown temp upload URL.")
            return temp

    def start_temp_session(self, temp: TempUpload, size: int | None) -> ServerSession:
        with self.lock:
            # Like Cloud Storage: without x-upload-content-length the total is unknown until a chunk names it.
            session = self._new_session(temp.table, size, temp.id)
            temp.session = session
            return session

    def session_by_token(self, token: str) -> ServerSession | None:
        with self.lock:
            return self.sessions_by_token.get(token)

    def session(self, session_id: str) -> ServerSession:
        with self.lock:
            session = self.sessions.get(session_id)
            if session is None:
                raise KeyError(f"No resumable session with id {session_id!r}.")
            return session


class UploadRules(CatalogState):
    """Uploads: create (from a session, a temp upload, or inline bytes), find, list, delete."""

    def _unique_name(self, table: Table, name: str) -> str:
        taken = {u.key for u in table.uploads if not u.deleted}
        if name_key(name) not in taken:
            return name
        if self.on_name_conflict == "error":
            raise ApiError(
                409,
                f"An upload named {name!r} already exists on table {table.name!r} in this version. "
                "Choose another name, or delete the existing upload first.",
            )
        stem, dot, suffix = name.rpartition(".")
        if not dot:
            stem, suffix = name, ""
        for n in itertools.count(1):
            candidate = f"{stem} ({n}){'.' + suffix if suffix else ''}"
            if name_key(candidate) not in taken:
                return candidate
        raise AssertionError("unreachable")

    def create_upload(
        self, reference: str, body: Mapping[str, Any], inline: InlineUploadData | None = None
    ) -> Upload:
        name = body.get("name")
        if not isinstance(name, str) or not name.strip():
            raise ApiError(400, "An upload needs a non-empty 'name'.")
        sources = [
            key
            for key in ("resumableUploadId", "tempUploadId", "transferSpecification")
            if body.get(key) is not None
        ]
        if inline is not None:
            sources.append("data")
        if len(sources) > 1:
            raise ApiError(400, f"Give one source for the upload's bytes, not {' and '.join(sources)}.")
        transfer = body.get("transferSpecification")
        if transfer is not None:
            transfer = check_transfer_specification(transfer, self.gcs_root, self.gcs_identities)
        upload_type = body.get("type") or infer_upload_type(name)
        # A copy of another table may leave the type out: it takes its source's.
        copy = transfer is not None and transfer["sourceType"] == "redivis" and not body.get("type")
        if upload_type not in UPLOAD_TYPES and not (copy and upload_type is None):
            raise ApiError(400, f"Unknown upload type {upload_type!r}; use one of {', '.join(UPLOAD_TYPES)}.")
        options = {
            key: body.get(key)
            for key in (
                "hasHeaderRow",
                "skipBadRecords",
                "hasQuotedNewlines",
                "allowJaggedRows",
                "quoteCharacter",
                "escapeCharacter",
                "nullMarkers",
                "delimiter",
                "metadata",
                "schema",
            )
        }
        options["transferSpecification"] = transfer
        delimiter = options.get("delimiter")
        if delimiter is not None and (not isinstance(delimiter, str) or len(delimiter) != 1):
            raise ApiError(400, f"delimiter must be one character, got {delimiter!r}.")
        quote = options.get("quoteCharacter")
        if quote is not None and (not isinstance(quote, str) or len(quote) != 1):
            raise ApiError(400, f"quoteCharacter must be one character, got {quote!r}.")
        with self.lock:
            table = self._table(parse_table_reference(reference))
            self._writable(table)
            path: Path | None = None
            size: int | None = None
            md5: str | None = None
            consume: ServerSession | TempUpload | None = None
            if body.get("resumableUploadId") is not None:
                session = self.sessions.get(str(body["resumableUploadId"]))
                if session is None:
                    raise ApiError(400, f"Unknown resumableUploadId {body['resumableUploadId']!r}.")
                info = session.info()
                if info.expired or info.cancelled:
                    raise ApiError(
                        400, "The resumable upload expired; start a new one and send the bytes again."
                    )
                if info.table != table.display_reference:
                    raise ApiError(400, f"The resumable upload belongs to table {info.table}, not this one.")
                if info.failed is not None:
                    raise ApiError(
                        400,
                        f"The resumable upload made no object ({info.failed}); start a new one and send "
                        "the bytes again.",
                    )
                if not info.complete or info.md5 is None:
                    size_text = "unknown" if info.size is None else str(info.size)
                    raise ApiError(
                        400,
                        f"The resumable upload is incomplete: it holds {info.held} of {size_text} bytes. "
                        "Send the rest of the bytes to its url, then create the upload.",
                    )
                if session.consumed_by is not None:
                    raise ApiError(
                        400, f"The resumable upload was already used by upload {session.consumed_by}."
                    )
                path, size, md5, consume = info.path, info.held, info.md5, session
            elif body.get("tempUploadId") is not None:
                temp = self.temp_uploads.get(str(body["tempUploadId"]))
                if temp is None:
                    raise ApiError(400, f"Unknown tempUploadId {body['tempUploadId']!r}.")
                if temp.table is not table:
                    raise ApiError(400, "The temp upload belongs to another table.")
                source = temp.completed_source()
                if source is None:
                    raise ApiError(400, "The temp upload has not received all its bytes yet.")
                if temp.consumed_by is not None:
                    raise ApiError(400, f"The temp upload was already used by upload {temp.consumed_by}.")
                path, size, md5 = source
                consume = temp
            elif inline is not None:
                path, size, md5 = inline.path, inline.size, inline.md5
            final_name = self._unique_name(table, name.strip())
            has_content = path is not None or body.get("transferSpecification") is not None
            upload = Upload(
                table=table,
                id=self._next_id(),
                name=final_name,
                type=upload_type,
                options=options,
                path=path,
                size=size,
                md5=md5,
                status="queued" if has_content else None,
            )
            if consume is not None:
                consume.consumed_by = upload.id
            table.uploads.append(upload)
            table.updated_at = now_ms()
            return upload

    def _upload(self, table: Table, name_or_id: str) -> Upload:
        live = [u for u in table.uploads if not u.deleted]
        for upload in live:
            if upload.id == name_or_id:
                return upload
        key = name_key(name_or_id)
        for upload in live:
            if upload.key == key:
                return upload
        raise ApiError(404, f"Upload {name_or_id!r} not found on table {table.name!r}.")

    def get_upload(self, reference: str, name_or_id: str) -> dict[str, Any]:
        with self.lock:
            table = self._table(parse_table_reference(reference))
            return self.upload_resource(self._upload(table, name_or_id))

    def find_upload(self, reference: str, name_or_id: str) -> Upload:
        with self.lock:
            return self._upload(self._table(parse_table_reference(reference)), name_or_id)

    def delete_upload(self, reference: str, name_or_id: str) -> dict[str, Any]:
        with self.lock:
            table = self._table(parse_table_reference(reference))
            upload = self._upload(table, name_or_id)
            self._writable(table)
            upload.deleted = True
            table.updated_at = now_ms()
            return self.upload_resource(upload)

    def list_uploads(self, reference: str, max_results: str | None, token: str | None) -> dict[str, Any]:
        with self.lock:
            table = self._table(parse_table_reference(reference))
            items = [self.upload_resource(u) for u in table.uploads if not u.deleted]
            return self.page(items, max_results, token)

    def all_uploads(self) -> Iterable[tuple[Table, Upload]]:
        with self.lock:
            return [
                (table, upload)
                for owner in self.owners.values()
                for dataset in owner.datasets
                for version in dataset.versions
                for table in version.tables
                for upload in table.uploads
                if not upload.deleted
            ]
