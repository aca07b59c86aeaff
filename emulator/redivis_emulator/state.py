"""The catalog's state and its lookups: what the API's rules (``catalog.py``, ``uploads.py``) build on.

Every public method takes the lock for a short time and either returns a resource (a dict shaped
like the Redivis API's) or raises :class:`~redivis_emulator.errors.ApiError`. A reference without a
version means the ``next`` version when one exists, else ``current`` -- the way the official client
addresses a table it is loading into.
"""

from __future__ import annotations

import itertools
import secrets
import threading
from typing import TYPE_CHECKING, Any

from redivis_emulator import resources
from redivis_emulator.dialects import check_dialect
from redivis_emulator.errors import ApiError
from redivis_emulator.model import Dataset, Owner, Table, Upload, Version, table_num_rows
from redivis_emulator.references import (
    OWNER_RE,
    VERSION_RE,
    DatasetRef,
    TableRef,
    name_key,
    normalise_name,
    parse_table_reference,
    version_number,
)

if TYPE_CHECKING:
    from collections.abc import Collection, Mapping
    from pathlib import Path

    from redivis_emulator.model import TempUpload
    from redivis_emulator.sessions import ServerSession

_REF_ALPHABET = "abcdefghjkmnpqrstwxyz23456789"


class CatalogState:
    """All state, behind one lock: ids, owners, sessions, temp uploads; finding things by reference."""

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
        gcs_root: Path | None = None,
        gcs_identities: Mapping[str, Collection[str]] | None = None,
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
        #: What stands in for Cloud Storage, and who may read which bucket (transfers.py).
        self.gcs_root = gcs_root
        self.gcs_identities = gcs_identities
        self.owners: dict[str, Owner] = {}
        self.sessions: dict[str, ServerSession] = {}
        self.sessions_by_token: dict[str, ServerSession] = {}
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
            if ref not in self._ref_ids and not VERSION_RE.match(ref):
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
            if not OWNER_RE.match(name):
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

    # -- rendering (resources.py, with this catalog's base URL) --------------------------------

    def version_resource(self, version: Version) -> dict[str, Any]:
        return resources.version_resource(version)

    def dataset_resource(self, dataset: Dataset, version: Version | None = None) -> dict[str, Any]:
        return resources.dataset_resource(self.base_url, dataset, version)

    def table_num_rows(self, table: Table) -> tuple[int, int]:
        return table_num_rows(table)

    def table_resource(self, table: Table) -> dict[str, Any]:
        return resources.table_resource(self.base_url, table)

    def upload_resource(self, upload: Upload) -> dict[str, Any]:
        return resources.upload_resource(self.base_url, upload)

    page = staticmethod(resources.page)
