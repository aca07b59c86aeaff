"""What the emulator knows: owners, datasets, versions, tables, uploads, sessions; and the API's rules.

Every method takes the catalog lock for a short time and either returns a resource (a dict shaped
like the Redivis API's) or raises :class:`ApiError`. HTTP lives in ``server.py``.

Reference rules (``docs/redivis-api.md``): ``owner.dataset[:refId][:version].table[:refId]``; owners
are case-insensitive; names compare after replacing every character that is not a letter, digit
or underscore with ``_`` (case-insensitively); a ``refId`` finds the resource even after a rename.
A reference without a version means the ``next`` version when one exists, else ``current`` -- the
way the official client addresses a table it is loading into.
"""

from __future__ import annotations

import base64
import itertools
import re
import secrets
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_provider_redivis.emulator.dialects import check_dialect
from airflow_provider_redivis.emulator.sessions import ResumableSession
from airflow_provider_redivis.upload_options import UPLOAD_TYPES

if TYPE_CHECKING:
    from pathlib import Path

ALL_SCOPES = (
    "public",
    "data.overview",
    "data.metadata",
    "data.data",
    "data.edit",
    "organization.read",
    "organization.write",
)
EDIT_SCOPE = "data.edit"
MERGE_STRATEGIES = ("append", "replace")
#: Cloud Storage's largest object.
MAX_UPLOAD_SIZE = 5 * 1024**4
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 10_000

_OWNER_RE = re.compile(r"^[A-Za-z0-9_]+$")
_VERSION_RE = re.compile(r"^(?:next|current|sample|v\d+(?:[._]\d+)?)$", re.IGNORECASE)
_TYPE_BY_SUFFIX = (
    (".shp.zip", "shp.zip"),
    (".csv", "delimited"),
    (".tsv", "delimited"),
    (".psv", "delimited"),
    (".tab", "delimited"),
    (".txt", "delimited"),
    (".ndjson", "ndjson"),
    (".jsonl", "ndjson"),
    (".geojsonl", "geojsonl"),
    (".geojson", "geojson"),
    (".json", "json"),
    (".parquet", "parquet"),
    (".avro", "avro"),
    (".orc", "orc"),
    (".xlsx", "xlsx"),
    (".xls", "xls"),
    (".dta", "dta"),
    (".sas7bdat", "sas7bdat"),
    (".sav", "sav"),
    (".shp", "shp"),
    (".kml", "kml"),
)
_REF_ALPHABET = "abcdefghjkmnpqrstwxyz23456789"


class ApiError(Exception):
    """An API error, answered as ``{"error": {"status", "message"}}``."""

    def __init__(self, status: int, message: str, *, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})

    def payload(self) -> dict[str, Any]:
        return {"error": {"status": self.status, "message": self.message}}


class InsufficientScopeError(ApiError):
    """403 with Redivis's OAuth-like shape: the token lacks a scope."""

    def __init__(self, scope: str) -> None:
        super().__init__(
            403,
            f"This request needs the {scope} scope and the token does not have it. "
            f"Create an API token with {scope}.",
        )
        self.scope = scope

    def payload(self) -> dict[str, Any]:
        return {
            "error": "insufficient_scope",
            "error_description": self.message,
            "status": 403,
            "scope": self.scope,
        }


def now_ms() -> int:
    return int(time.time() * 1000)


def normalise_name(name: str) -> str:
    """Names in references: every character that is not a letter, digit or underscore becomes ``_``."""
    return re.sub(r"[^A-Za-z0-9_]", "_", name)


def name_key(name: str) -> str:
    return normalise_name(name).lower()


def infer_upload_type(name: str) -> str:
    lower = name.lower()
    for suffix in (".gz", ".gzip", ".zip"):
        if lower.endswith(suffix) and not lower.endswith(".shp.zip"):
            lower = lower[: -len(suffix)]
    for suffix, kind in _TYPE_BY_SUFFIX:
        if lower.endswith(suffix):
            return kind
    return "delimited"


# -- references --------------------------------------------------------------------------------


@dataclass(frozen=True)
class NamePart:
    name: str
    ref_id: str | None = None

    @property
    def key(self) -> str:
        return name_key(self.name)


@dataclass(frozen=True)
class DatasetRef:
    owner: str
    dataset: NamePart
    version: str | None

    def __str__(self) -> str:
        return f"{self.owner}.{self.dataset.name}"


@dataclass(frozen=True)
class TableRef:
    dataset: DatasetRef
    table: NamePart

    def __str__(self) -> str:
        return f"{self.dataset}.{self.table.name}"


def _split_qualifiers(text: str) -> tuple[str, list[str]]:
    name, *qualifiers = text.split(":")
    return name, qualifiers


def _dataset_part(owner: str, part: str, original: str) -> DatasetRef:
    if not _OWNER_RE.match(owner):
        raise ApiError(
            400, f"Invalid owner {owner!r} in reference {original!r}: owners are letters, digits and _."
        )
    name, qualifiers = _split_qualifiers(part)
    if not name:
        raise ApiError(400, f"Invalid reference {original!r}: the dataset name is empty.")
    version: str | None = None
    ref_id: str | None = None
    for qualifier in qualifiers:
        if _VERSION_RE.match(qualifier) and version is None:
            version = qualifier.lower()
        elif ref_id is None and qualifier:
            ref_id = qualifier.lower()
        else:
            raise ApiError(400, f"Invalid reference {original!r}: unexpected ':{qualifier}'.")
    return DatasetRef(owner=owner.lower(), dataset=NamePart(name, ref_id), version=version)


def parse_dataset_reference(text: str) -> DatasetRef:
    """``owner.dataset[:refId][:version]``."""
    parts = text.strip().split(".")
    if len(parts) != 2:
        raise ApiError(400, f"Invalid dataset reference {text!r}: write it as owner.dataset[:version].")
    return _dataset_part(parts[0], parts[1], text)


def parse_table_reference(text: str) -> TableRef:
    """``owner.dataset[:refId][:version].table[:refId]``."""
    parts = text.strip().split(".")
    if len(parts) != 3:
        raise ApiError(
            400,
            f"Invalid table reference {text!r}: write it as owner.dataset[:version].table (one path segment).",
        )
    dataset = _dataset_part(parts[0], parts[1], text)
    name, qualifiers = _split_qualifiers(parts[2])
    if not name or len(qualifiers) > 1:
        raise ApiError(400, f"Invalid table reference {text!r}: the table part is name[:refId].")
    return TableRef(dataset, NamePart(name, qualifiers[0].lower() if qualifiers else None))


def version_number(tag: str) -> int | None:
    """``v3``, ``v3_0``, ``v3.0`` -> 3 (minor versions are not modelled)."""
    match = re.match(r"^v(\d+)(?:[._](\d+))?$", tag, re.IGNORECASE)
    if match is None or (match.group(2) not in (None, "0")):
        return None
    return int(match.group(1))


# -- entities ----------------------------------------------------------------------------------


@dataclass(eq=False)
class Owner:
    name: str
    kind: str = "user"
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    datasets: list[Dataset] = field(default_factory=list)


@dataclass(eq=False)
class Dataset:
    owner: Owner
    name: str
    ref_id: str
    id: str
    description: str | None = None
    public_access_level: str = "none"
    created_at: int = field(default_factory=now_ms)
    versions: list[Version] = field(default_factory=list)

    @property
    def next_version(self) -> Version | None:
        last = self.versions[-1] if self.versions else None
        return last if last is not None and not last.released else None

    @property
    def current_version(self) -> Version | None:
        released = [v for v in self.versions if v.released]
        return released[-1] if released else None

    @property
    def reference(self) -> str:
        return f"{self.owner.name}.{normalise_name(self.name)}:{self.ref_id}"


@dataclass(eq=False)
class Version:
    dataset: Dataset
    number: int
    id: str
    created_at: int = field(default_factory=now_ms)
    released: bool = False
    released_at: int | None = None
    release_status: str | None = None
    release_error: str | None = None
    release_notes: str | None = None
    tables: list[Table] = field(default_factory=list)

    @property
    def tag(self) -> str:
        return f"v{self.number}.0"

    @property
    def ref_tag(self) -> str:
        return f"v{self.number}_0"


@dataclass(eq=False)
class Table:
    version: Version
    name: str
    ref_id: str
    id: str
    merge_strategy: str = "append"
    description: str | None = None
    is_file_index: bool = False
    inherited_rows: int = 0
    inherited_bytes: int = 0
    created_at: int = field(default_factory=now_ms)
    updated_at: int = field(default_factory=now_ms)
    uploads: list[Upload] = field(default_factory=list)

    @property
    def key(self) -> str:
        return name_key(self.name)

    @property
    def reference(self) -> str:
        """The canonical reference, with refIds and the concrete version: stays valid after release."""
        ds = self.version.dataset
        return f"{ds.reference}:{self.version.ref_tag}.{normalise_name(self.name)}:{self.ref_id}"

    @property
    def display_reference(self) -> str:
        ds = self.version.dataset
        return f"{ds.owner.name}.{normalise_name(ds.name)}.{normalise_name(self.name)}"


@dataclass(eq=False)
class Upload:
    table: Table
    id: str
    name: str
    type: str
    options: dict[str, Any]
    path: Path | None
    size: int | None
    md5: str | None
    status: str | None
    created_at: int = field(default_factory=now_ms)
    updated_at: int = field(default_factory=now_ms)
    num_rows: int | None = None
    bad_records: int | None = None
    error_message: str | None = None
    completed_seq: int = 0
    deleted: bool = False
    fail_message: str | None = None

    @property
    def key(self) -> str:
        return name_key(self.name)

    @property
    def uri(self) -> str:
        return f"/tables/{self.table.reference}/uploads/{self.id}"


@dataclass(eq=False)
class TempUpload:
    id: str
    token: str
    table: Table
    name: str
    size: int
    resumable: bool
    path: Path
    received: int | None = None
    md5: str | None = None
    session: ResumableSession | None = None
    consumed_by: str | None = None

    def completed_source(self) -> tuple[Path, int, str] | None:
        """(file, size, md5) once every byte is here."""
        if self.session is not None:
            info = self.session.info()
            if info.complete and info.md5 is not None:
                return info.path, info.held, info.md5
            return None
        if self.received is not None and self.md5 is not None:
            return self.path, self.received, self.md5
        return None


@dataclass(frozen=True)
class UploadSource:
    """Bytes that arrived with the upload.post request itself (the multipart form)."""

    path: Path
    size: int
    md5: str


class Catalog:
    """All state, behind one lock; the API's rules as methods."""

    def __init__(
        self,
        data_dir: Path,
        *,
        base_url: str,
        session_base_url: str,
        session_ttl: float,
        on_name_conflict: str = "error",
        session_dialect: str = "json",
        temp_session_dialect: str = "xml",
        keep_partial_requests: bool = True,
    ) -> None:
        if on_name_conflict not in ("error", "rename"):
            raise ValueError("on_name_conflict is 'error' (409) or 'rename' (append ' (1)', ...).")
        self.lock = threading.RLock()
        self.data_dir = data_dir
        self.base_url = base_url
        self.session_base_url = session_base_url
        self.session_ttl = session_ttl
        self.on_name_conflict = on_name_conflict
        #: Defaults for new sessions (see RedivisEmulator): dialects and the rule for a cut request.
        self.session_dialect = check_dialect(session_dialect)
        self.temp_session_dialect = check_dialect(temp_session_dialect)
        self.keep_partial_requests = keep_partial_requests
        self.owners: dict[str, Owner] = {}
        self.sessions: dict[str, ResumableSession] = {}
        self.sessions_by_token: dict[str, ResumableSession] = {}
        self.temp_uploads: dict[str, TempUpload] = {}
        self.temp_by_token: dict[str, TempUpload] = {}
        self._ids = itertools.count(1_000_001)
        self._completions = itertools.count(1)
        self._ref_ids: set[str] = set()

    # -- ids -----------------------------------------------------------------------------------

    def _next_id(self) -> str:
        return str(next(self._ids))

    def _new_ref_id(self) -> str:
        while True:
            ref = "".join(secrets.choice(_REF_ALPHABET) for _ in range(4))
            if ref not in self._ref_ids and not _VERSION_RE.match(ref):
                self._ref_ids.add(ref)
                return ref

    def next_completion(self) -> int:
        return next(self._completions)

    # -- setup ---------------------------------------------------------------------------------

    def _owner(self, name: str, *, create: bool = False, kind: str = "user") -> Owner:
        key = name.lower()
        owner = self.owners.get(key)
        if owner is None:
            if not create:
                raise ApiError(404, f"User or organization {name!r} not found.")
            if not _OWNER_RE.match(name):
                raise ApiError(400, f"Invalid owner name {name!r}: use letters, digits and _.")
            owner = Owner(name=name, kind=kind)
            self.owners[key] = owner
        return owner

    def _new_dataset(self, owner: Owner, name: str, description: str | None, access: str) -> Dataset:
        if any(name_key(d.name) == name_key(name) for d in owner.datasets):
            raise ApiError(409, f"A dataset named {name!r} already exists for {owner.name}.")
        dataset = Dataset(
            owner=owner,
            name=name,
            ref_id=self._new_ref_id(),
            id=self._next_id(),
            description=description,
            public_access_level=access,
        )
        # A new dataset starts with an unreleased version to load into.
        dataset.versions.append(Version(dataset=dataset, number=1, id=self._next_id()))
        owner.datasets.append(dataset)
        return dataset

    def ensure_table(self, reference: str, merge_strategy: str = "append") -> Table:
        """Create owner, dataset (with a next version) and table as needed; the table in ``next``."""
        with self.lock:
            ref = parse_table_reference(reference)
            owner = self._owner(ref.dataset.owner, create=True)
            dataset = next((d for d in owner.datasets if name_key(d.name) == ref.dataset.dataset.key), None)
            if dataset is None:
                dataset = self._new_dataset(owner, ref.dataset.dataset.name, None, "none")
            version = dataset.next_version
            if version is None:
                version = self._create_next_version(dataset)
            table = next((t for t in version.tables if t.key == ref.table.key), None)
            if table is None:
                table = self._new_table(version, ref.table.name, merge_strategy, None, False)
            return table

    # -- resolution ----------------------------------------------------------------------------

    def _dataset(self, ref: DatasetRef) -> Dataset:
        owner = self._owner(ref.owner)
        for dataset in owner.datasets:
            if ref.dataset.ref_id is not None:
                if dataset.ref_id == ref.dataset.ref_id:
                    return dataset
            elif name_key(dataset.name) == ref.dataset.key:
                return dataset
        raise ApiError(404, f"Dataset {ref} not found (or this token may not see it).")

    def _version(self, dataset: Dataset, tag: str | None) -> Version:
        if tag is None:
            version = dataset.next_version or dataset.current_version
            if version is None:
                raise ApiError(404, f"Dataset {dataset.reference} has no version.")
            return version
        tag = tag.lower()
        if tag == "next":
            if dataset.next_version is None:
                raise ApiError(
                    404,
                    f"Dataset {dataset.reference} has no next (unreleased) version. "
                    "Create one with POST /datasets/{dataset}/versions.",
                )
            return dataset.next_version
        if tag == "current":
            if dataset.current_version is None:
                raise ApiError(404, f"Dataset {dataset.reference} has no released version yet.")
            return dataset.current_version
        if tag == "sample":
            raise ApiError(404, "Samples are not modelled by the emulator.")
        number = version_number(tag if tag.startswith("v") else f"v{tag}")
        for version in dataset.versions:
            if version.number == number:
                return version
        raise ApiError(404, f"Version {tag} of dataset {dataset.reference} not found.")

    def _table(self, ref: TableRef) -> Table:
        dataset = self._dataset(ref.dataset)
        version = self._version(dataset, ref.dataset.version)
        for table in version.tables:
            if ref.table.ref_id is not None:
                if table.ref_id == ref.table.ref_id:
                    return table
            elif table.key == ref.table.key:
                return table
        raise ApiError(404, f"Table {ref} not found in version {version.tag} of {dataset.reference}.")

    def table(self, reference: str) -> Table:
        with self.lock:
            return self._table(parse_table_reference(reference))

    @staticmethod
    def _writable(table: Table) -> None:
        """Uploads and table edits go only into the next (unreleased) version."""
        version = table.version
        if version.released:
            raise ApiError(
                400,
                f"Version {version.tag} of {version.dataset.reference} is released and cannot change. "
                f"Load into the next version: reference the table as "
                f"{version.dataset.owner.name}.{normalise_name(version.dataset.name)}:next."
                f"{normalise_name(table.name)}, creating the version first if needed "
                "(POST /datasets/{dataset}/versions).",
            )
        if version.release_status in ("queued", "running"):
            raise ApiError(400, f"Version {version.tag} is being released; it cannot change now.")

    # -- rendering -----------------------------------------------------------------------------

    def _version_summary(self, version: Version | None) -> dict[str, Any] | None:
        if version is None:
            return None
        ds = version.dataset
        return {
            "kind": "version",
            "tag": version.tag,
            "uri": f"/datasets/{ds.reference}/versions/{version.ref_tag}",
            "datasetUri": f"/datasets/{ds.reference}:{version.ref_tag}",
            "isReleased": version.released,
        }

    def version_resource(self, version: Version) -> dict[str, Any]:
        ds = version.dataset
        index = ds.versions.index(version)
        previous = ds.versions[index - 1] if index > 0 else None
        following = ds.versions[index + 1] if index + 1 < len(ds.versions) else None
        resource = self._version_summary(version) or {}
        resource.update(
            {
                "id": version.id,
                "canRelease": self._can_release(version)[0],
                "status": version.release_status,
                "releaseErrorMessage": version.release_error,
                "releaseNotes": version.release_notes,
                "createdAt": version.created_at,
                "releasedAt": version.released_at,
                "previousVersion": self._version_summary(previous),
                "nextVersion": self._version_summary(following),
                "tableCount": len(version.tables),
            }
        )
        return resource

    def dataset_resource(self, dataset: Dataset, version: Version | None = None) -> dict[str, Any]:
        scoped = f"{normalise_name(dataset.name)}:{dataset.ref_id}"
        return {
            "kind": "dataset",
            "id": dataset.id,
            "uri": f"/datasets/{dataset.reference}",
            "url": f"{self.base_url}/datasets/{dataset.ref_id}",
            "name": dataset.name,
            "referenceId": dataset.ref_id,
            "qualifiedReference": f"{dataset.owner.name}.{scoped}",
            "scopedReference": scoped,
            "owner": {"kind": dataset.owner.kind, "name": dataset.owner.name, "id": dataset.owner.id},
            "description": dataset.description,
            "publicAccessLevel": dataset.public_access_level,
            "createdAt": dataset.created_at,
            "currentVersion": self._version_summary(dataset.current_version),
            "nextVersion": self._version_summary(dataset.next_version),
            "version": self._version_summary(version),
        }

    def table_num_rows(self, table: Table) -> tuple[int, int]:
        """(numRows, numBytes): a version's uploads stack; ``replace`` drops the inherited rows, ``append`` keeps them.

        Until a ``replace`` table's version has a completed upload it still shows what it inherited.
        """
        completed = [u for u in table.uploads if u.status == "completed" and not u.deleted]
        rows = sum(u.num_rows or 0 for u in completed)
        size = sum(u.size or 0 for u in completed)
        if table.merge_strategy == "replace" and completed:
            return rows, size
        return table.inherited_rows + rows, table.inherited_bytes + size

    def table_resource(self, table: Table) -> dict[str, Any]:
        version = table.version
        ds = version.dataset
        rows, size = self.table_num_rows(table)
        scoped = f"{normalise_name(table.name)}:{table.ref_id}"
        return {
            "kind": "table",
            "id": table.id,
            "uri": f"/tables/{table.reference}",
            "url": f"{self.base_url}/datasets/{ds.ref_id}/tables/{table.ref_id}",
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
            "version": self._version_summary(version),
        }

    def upload_resource(self, upload: Upload) -> dict[str, Any]:
        opts = upload.options
        return {
            "kind": "upload",
            "id": upload.id,
            "uri": upload.uri,
            "url": f"{self.base_url}/uploads/{upload.id}",
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

    # -- paging --------------------------------------------------------------------------------

    @staticmethod
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

    # -- users and datasets --------------------------------------------------------------------

    def get_user(self, name: str) -> dict[str, Any]:
        with self.lock:
            owner = self._owner(name)
            return {"kind": owner.kind, "id": owner.id, "name": owner.name, "uri": f"/users/{owner.name}"}

    def me(self) -> dict[str, Any]:
        with self.lock:
            first = next(iter(self.owners.values()), None)
            name = first.name if first is not None else "emulator_user"
            return {"kind": "user", "name": name, "uri": f"/users/{name}"}

    def create_dataset(self, owner_name: str, kind: str, body: Mapping[str, Any]) -> dict[str, Any]:
        name = body.get("name")
        if not isinstance(name, str) or not name.strip():
            raise ApiError(400, "A dataset needs a non-empty 'name'.")
        with self.lock:
            owner = self._owner(owner_name, create=True, kind=kind)
            description = body.get("description")
            dataset = self._new_dataset(
                owner,
                name.strip(),
                description if isinstance(description, str) else None,
                str(body.get("publicAccessLevel") or "none"),
            )
            return self.dataset_resource(dataset, dataset.next_version)

    def list_datasets(self, owner_name: str, max_results: str | None, token: str | None) -> dict[str, Any]:
        with self.lock:
            owner = self._owner(owner_name)
            return self.page([self.dataset_resource(d) for d in owner.datasets], max_results, token)

    def get_dataset(self, reference: str) -> dict[str, Any]:
        with self.lock:
            ref = parse_dataset_reference(reference)
            dataset = self._dataset(ref)
            version = self._version(dataset, ref.version) if ref.version else None
            return self.dataset_resource(dataset, version)

    # -- versions ------------------------------------------------------------------------------

    def _create_next_version(self, dataset: Dataset) -> Version:
        current = dataset.current_version
        number = (dataset.versions[-1].number + 1) if dataset.versions else 1
        version = Version(dataset=dataset, number=number, id=self._next_id())
        if current is not None:
            # The next version starts with the current tables and their rows (the 'append' trap).
            for old in current.tables:
                rows, size = self.table_num_rows(old)
                version.tables.append(
                    Table(
                        version=version,
                        name=old.name,
                        ref_id=old.ref_id,
                        id=self._next_id(),
                        merge_strategy=old.merge_strategy,
                        description=old.description,
                        is_file_index=old.is_file_index,
                        inherited_rows=rows,
                        inherited_bytes=size,
                    )
                )
        dataset.versions.append(version)
        return version

    def create_next_version(self, reference: str) -> dict[str, Any]:
        with self.lock:
            dataset = self._dataset(parse_dataset_reference(reference))
            if dataset.next_version is not None:
                raise ApiError(
                    409,
                    f"Dataset {dataset.reference} already has a next version ({dataset.next_version.tag}). "
                    "Load into it, or release it before creating another.",
                )
            return self.version_resource(self._create_next_version(dataset))

    def list_versions(self, reference: str, max_results: str | None, token: str | None) -> dict[str, Any]:
        with self.lock:
            dataset = self._dataset(parse_dataset_reference(reference))
            items = [self.version_resource(v) for v in reversed(dataset.versions)]
            return self.page(items, max_results, token)

    def get_version(self, reference: str, tag: str) -> dict[str, Any]:
        with self.lock:
            dataset = self._dataset(parse_dataset_reference(reference))
            return self.version_resource(self._version(dataset, tag))

    def _can_release(self, version: Version) -> tuple[bool, str]:
        if version.released:
            return False, f"Version {version.tag} is already released."
        if version.release_status in ("queued", "running"):
            return False, f"Version {version.tag} is being released already."
        for table in version.tables:
            for upload in table.uploads:
                if upload.deleted:
                    continue
                if upload.status in ("queued", "running"):
                    return False, (
                        f"Upload {upload.name!r} on table {table.name!r} is still processing; "
                        "wait for it to finish, then release."
                    )
                if upload.status == "failed":
                    return False, (
                        f"Upload {upload.name!r} on table {table.name!r} failed; delete it (or fix and "
                        "re-upload) before releasing."
                    )
        return True, ""

    def start_release(
        self, reference: str, tag: str, body: Mapping[str, Any]
    ) -> tuple[Version, dict[str, Any]]:
        with self.lock:
            dataset = self._dataset(parse_dataset_reference(reference))
            if tag.lower() != "next":
                raise ApiError(400, "Only the next version can be released: POST .../versions/next/release.")
            version = self._version(dataset, "next")
            ok, why = self._can_release(version)
            if not ok:
                raise ApiError(400, f"Cannot release {dataset.reference}: {why}")
            notes = body.get("releaseNotes")
            version.release_notes = notes if isinstance(notes, str) else version.release_notes
            version.release_status = "queued"
            version.release_error = None
            return version, self.version_resource(version)

    # -- tables --------------------------------------------------------------------------------

    def _new_table(
        self, version: Version, name: str, merge: str, description: str | None, file_index: bool
    ) -> Table:
        if merge not in MERGE_STRATEGIES:
            raise ApiError(400, f"uploadMergeStrategy must be 'append' or 'replace', got {merge!r}.")
        if any(t.key == name_key(name) for t in version.tables):
            raise ApiError(409, f"A table named {name!r} already exists in version {version.tag}.")
        table = Table(
            version=version,
            name=name,
            ref_id=self._new_ref_id(),
            id=self._next_id(),
            merge_strategy=merge,
            description=description,
            is_file_index=file_index,
        )
        version.tables.append(table)
        return table

    def create_table(self, reference: str, body: Mapping[str, Any]) -> dict[str, Any]:
        name = body.get("name")
        if not isinstance(name, str) or not name.strip():
            raise ApiError(400, "A table needs a non-empty 'name'.")
        with self.lock:
            ref = parse_dataset_reference(reference)
            dataset = self._dataset(ref)
            version = self._version(dataset, ref.version or "next")
            if version.released:
                raise ApiError(400, f"Tables are created in the next version; {version.tag} is released.")
            description = body.get("description")
            table = self._new_table(
                version,
                name.strip(),
                str(body.get("uploadMergeStrategy") or "append"),
                description if isinstance(description, str) else None,
                bool(body.get("isFileIndex")),
            )
            return self.table_resource(table)

    def list_tables(self, reference: str, max_results: str | None, token: str | None) -> dict[str, Any]:
        with self.lock:
            ref = parse_dataset_reference(reference)
            version = self._version(self._dataset(ref), ref.version)
            return self.page([self.table_resource(t) for t in version.tables], max_results, token)

    def get_table(self, reference: str) -> dict[str, Any]:
        with self.lock:
            return self.table_resource(self._table(parse_table_reference(reference)))

    def update_table(self, reference: str, body: Mapping[str, Any]) -> dict[str, Any]:
        with self.lock:
            table = self._table(parse_table_reference(reference))
            self._writable(table)
            if "uploadMergeStrategy" in body:
                merge = body["uploadMergeStrategy"]
                if merge not in MERGE_STRATEGIES:
                    raise ApiError(400, f"uploadMergeStrategy must be 'append' or 'replace', got {merge!r}.")
                table.merge_strategy = str(merge)
            if isinstance(body.get("name"), str) and body["name"].strip():
                new_name = body["name"].strip()
                if any(t is not table and t.key == name_key(new_name) for t in table.version.tables):
                    raise ApiError(409, f"A table named {new_name!r} already exists in this version.")
                table.name = new_name
            if "description" in body:
                table.description = body["description"]
            table.updated_at = now_ms()
            return self.table_resource(table)

    # -- sessions and temp uploads -------------------------------------------------------------

    def _new_session(
        self, table: Table, size: int | None, temp_upload_id: str | None = None
    ) -> ResumableSession:
        session_id = uuid.uuid4().hex
        # The URL is its own credential: an unguessable token, on another origin than the API.
        token = secrets.token_urlsafe(32)
        session = ResumableSession(
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

    def start_temp_session(self, temp: TempUpload, size: int | None) -> ResumableSession:
        with self.lock:
            # Like Cloud Storage: without x-upload-content-length the total is unknown until a chunk names it.
            session = self._new_session(temp.table, size, temp.id)
            temp.session = session
            return session

    def session_by_token(self, token: str) -> ResumableSession | None:
        with self.lock:
            return self.sessions_by_token.get(token)

    def session(self, session_id: str) -> ResumableSession:
        with self.lock:
            session = self.sessions.get(session_id)
            if session is None:
                raise KeyError(f"No resumable session with id {session_id!r}.")
            return session

    # -- uploads -------------------------------------------------------------------------------

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
        self, reference: str, body: Mapping[str, Any], inline: UploadSource | None = None
    ) -> Upload:
        name = body.get("name")
        if not isinstance(name, str) or not name.strip():
            raise ApiError(400, "An upload needs a non-empty 'name'.")
        upload_type = body.get("type") or infer_upload_type(name)
        if upload_type not in UPLOAD_TYPES:
            raise ApiError(400, f"Unknown upload type {upload_type!r}; use one of {', '.join(UPLOAD_TYPES)}.")
        sources = [
            key
            for key in ("resumableUploadId", "tempUploadId", "transferSpecification")
            if body.get(key) is not None
        ]
        if inline is not None:
            sources.append("data")
        if len(sources) > 1:
            raise ApiError(400, f"Give one source for the upload's bytes, not {' and '.join(sources)}.")
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
                "transferSpecification",
            )
        }
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
            consume: ResumableSession | TempUpload | None = None
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
                type=str(upload_type),
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
