"""The emulator's data: owners, datasets, versions, tables, uploads, temp uploads; and the rules that
read them alone (what a table holds, whether a version can be released). No locking here: the
catalog holds the lock while it calls these."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from redivis_emulator.references import name_key, normalise_name

if TYPE_CHECKING:
    from pathlib import Path

    from redivis_emulator.sessions import ServerSession


def now_ms() -> int:
    return int(time.time() * 1000)


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
    #: None only for a copy of another table (``sourceType`` redivis) given no type: the copy takes its source's.
    type: str | None
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
    #: The rows a copy of another table took (its own count, not parsed again).
    copied_rows: int | None = None

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
    session: ServerSession | None = None
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
class InlineUploadData:
    """Bytes that arrived with the upload.post request itself (the multipart form)."""

    path: Path
    size: int
    md5: str


def table_num_rows(table: Table) -> tuple[int, int]:
    """(numRows, numBytes): a version's uploads stack; ``replace`` drops the inherited rows, ``append`` keeps them.

    Until a ``replace`` table's version has a completed upload it still shows what it inherited.
    """
    completed = [u for u in table.uploads if u.status == "completed" and not u.deleted]
    rows = sum(u.num_rows or 0 for u in completed)
    size = sum(u.size or 0 for u in completed)
    if table.merge_strategy == "replace" and completed:
        return rows, size
    return table.inherited_rows + rows, table.inherited_bytes + size


def can_release(version: Version) -> tuple[bool, str]:
    """(True, "") when the version can be released now, else (False, why)."""
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
