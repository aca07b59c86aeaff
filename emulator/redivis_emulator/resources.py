"""The API's resources: how the model is rendered as the JSON Redivis answers, and paging.

Pure functions of the model (and the API origin's ``base_url`` for ``url`` fields); the caller holds
the catalog lock.
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

from redivis_emulator.errors import ApiError
from redivis_emulator.model import can_release, table_num_rows
from redivis_emulator.references import normalise_name
from redivis_emulator.vocabulary import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE

if TYPE_CHECKING:
    from redivis_emulator.model import Dataset, Table, Upload, Version


def version_summary(version: Version | None) -> dict[str, Any] | None:
    if version is None:
        return None
    ds = version.dataset
    return {
        "kind": "version",
        "tag": version.tag,
        # Redivis: the version's zero-based ordinal in its dataset.
        "index": ds.versions.index(version),
        "label": None,
        "uri": f"/datasets/{ds.reference}/versions/{version.ref_tag}",
        "datasetUri": f"/datasets/{ds.reference}:{version.ref_tag}",
        "isReleased": version.released,
        "isDeleted": False,
    }


def version_resource(version: Version) -> dict[str, Any]:
    ds = version.dataset
    index = ds.versions.index(version)
    previous = ds.versions[index - 1] if index > 0 else None
    following = ds.versions[index + 1] if index + 1 < len(ds.versions) else None
    resource = version_summary(version) or {}
    resource.update(
        {
            "id": version.id,
            "canRelease": can_release(version)[0],
            "status": version.release_status,
            "releaseErrorMessage": version.release_error,
            "releaseNotes": version.release_notes,
            "createdAt": version.created_at,
            "updatedAt": version.released_at or version.created_at,
            "releasedAt": version.released_at,
            "previousVersion": version_summary(previous),
            "nextVersion": version_summary(following),
            "tableCount": len(version.tables),
        }
    )
    return resource


def dataset_resource(base_url: str, dataset: Dataset, version: Version | None = None) -> dict[str, Any]:
    """``version``: the version the reference named; without one, as Redivis does, the current (latest
    released) version, or the next one while nothing is released."""
    if version is None:
        version = dataset.current_version or dataset.next_version
    scoped = f"{normalise_name(dataset.name)}:{dataset.ref_id}"
    return {
        "kind": "dataset",
        "id": dataset.id,
        "uri": f"/datasets/{dataset.reference}",
        "url": f"{base_url}/datasets/{dataset.ref_id}",
        "name": dataset.name,
        "referenceId": dataset.ref_id,
        "qualifiedReference": f"{dataset.owner.name}.{scoped}",
        "scopedReference": scoped,
        "owner": {"kind": dataset.owner.kind, "name": dataset.owner.name, "id": dataset.owner.id},
        "description": dataset.description,
        "publicAccessLevel": dataset.public_access_level,
        "createdAt": dataset.created_at,
        "nextVersion": version_summary(dataset.next_version),
        "version": version_summary(version),
    }


def table_resource(base_url: str, table: Table) -> dict[str, Any]:
    version = table.version
    ds = version.dataset
    rows, size = table_num_rows(table)
    scoped = f"{normalise_name(table.name)}:{table.ref_id}"
    return {
        "kind": "table",
        "id": table.id,
        "uri": f"/tables/{table.reference}",
        "url": f"{base_url}/datasets/{ds.ref_id}/tables/{table.ref_id}",
        "name": table.name,
        "referenceId": table.ref_id,
        "qualifiedReference": f"{ds.reference}:{version.ref_tag}.{scoped}",
        "scopedReference": scoped,
        "description": table.description,
        "uploadMergeStrategy": table.merge_strategy,
        "isFileIndex": table.is_file_index,
        "numRows": rows,
        "numBytes": size,
        "uploadCount": sum(1 for u in table.uploads if not u.deleted),
        "createdAt": table.created_at,
        "updatedAt": table.updated_at,
        "container": {
            "kind": "dataset",
            "uri": f"/datasets/{ds.reference}:{version.ref_tag}",
            "qualifiedReference": f"{ds.reference}:{version.ref_tag}",
        },
        "version": version_summary(version),
    }


def upload_resource(base_url: str, upload: Upload) -> dict[str, Any]:
    opts = upload.options
    return {
        "kind": "upload",
        "id": upload.id,
        "uri": upload.uri,
        "url": f"{base_url}/uploads/{upload.id}",
        "name": upload.name,
        "type": upload.type,
        "status": upload.status,
        "errorMessage": upload.error_message,
        "hash": upload.md5,
        "size": upload.size,
        "numBytes": upload.size,
        "numRows": upload.num_rows,
        "badRecordsCount": upload.bad_records,
        "hasHeaderRow": opts.get("hasHeaderRow"),
        "delimiter": opts.get("delimiter"),
        "quoteCharacter": opts.get("quoteCharacter"),
        "escapeCharacter": opts.get("escapeCharacter"),
        "skipBadRecords": opts.get("skipBadRecords"),
        "hasQuotedNewlines": opts.get("hasQuotedNewlines"),
        "allowJaggedRows": opts.get("allowJaggedRows"),
        "nullMarkers": opts.get("nullMarkers"),
        "metadata": opts.get("metadata"),
        "schema": opts.get("schema"),
        "createdAt": upload.created_at,
        "updatedAt": upload.updated_at,
    }


def page(items: list[dict[str, Any]], max_results: str | None, page_token: str | None) -> dict[str, Any]:
    try:
        size = int(max_results) if max_results else DEFAULT_PAGE_SIZE
    except ValueError:
        raise ApiError(400, f"maxResults must be a positive integer, got {max_results!r}.") from None
    if size < 1:
        raise ApiError(400, f"maxResults must be a positive integer, got {max_results!r}.")
    size = min(size, MAX_PAGE_SIZE)
    start = 0
    if page_token:
        try:
            start = int(base64.urlsafe_b64decode(page_token.encode() + b"==").decode().removeprefix("o:"))
        except (ValueError, UnicodeDecodeError):
            raise ApiError(
                400, "Invalid pageToken: pass back the nextPageToken of the previous page."
            ) from None
    chunk = items[start : start + size]
    following = start + size
    token = (
        base64.urlsafe_b64encode(f"o:{following}".encode()).decode().rstrip("=")
        if following < len(items)
        else None
    )
    return {"kind": "list", "results": chunk, "nextPageToken": token}
