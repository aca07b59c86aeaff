"""What the emulator knows and the API's rules: :class:`Catalog`, assembled from its parts.

- ``state.py``: the state behind one lock, ids, and resolving references;
- ``catalog.py`` (here): users, datasets, versions and tables;
- ``uploads.py``: resumable sessions, temp uploads and uploads.

The model is in ``model.py``, its JSON in ``resources.py``, reference rules in ``references.py``,
the API's vocabulary in ``vocabulary.py`` and its errors in ``errors.py``; the names this module
exported before the split are still importable from it. HTTP lives in ``handler.py`` and ``api.py``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from redivis_emulator.errors import ApiError, InsufficientScopeError
from redivis_emulator.model import (
    Dataset,
    InlineUploadData,
    Owner,
    Table,
    TempUpload,
    Upload,
    Version,
    can_release,
    now_ms,
)
from redivis_emulator.references import (
    DatasetRef,
    NamePart,
    TableRef,
    name_key,
    normalise_name,
    parse_dataset_reference,
    parse_table_reference,
    version_number,
)
from redivis_emulator.uploads import SessionRules, UploadRules
from redivis_emulator.vocabulary import (
    ALL_SCOPES,
    DEFAULT_PAGE_SIZE,
    EDIT_SCOPE,
    MAX_PAGE_SIZE,
    MAX_UPLOAD_SIZE,
    MERGE_STRATEGIES,
    UPLOAD_TYPES,
    infer_upload_type,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "ALL_SCOPES",
    "DEFAULT_PAGE_SIZE",
    "EDIT_SCOPE",
    "MAX_PAGE_SIZE",
    "MAX_UPLOAD_SIZE",
    "MERGE_STRATEGIES",
    "UPLOAD_TYPES",
    "ApiError",
    "Catalog",
    "Dataset",
    "DatasetRef",
    "InlineUploadData",
    "InsufficientScopeError",
    "NamePart",
    "Owner",
    "Table",
    "TableRef",
    "TempUpload",
    "Upload",
    "Version",
    "infer_upload_type",
    "name_key",
    "normalise_name",
    "now_ms",
    "parse_dataset_reference",
    "parse_table_reference",
    "version_number",
]


class Catalog(UploadRules, SessionRules):
    """All state, behind one lock; the API's rules as methods."""

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

    def start_release(
        self, reference: str, tag: str, body: Mapping[str, Any]
    ) -> tuple[Version, dict[str, Any]]:
        with self.lock:
            dataset = self._dataset(parse_dataset_reference(reference))
            if tag.lower() != "next":
                raise ApiError(400, "Only the next version can be released: POST .../versions/next/release.")
            version = self._version(dataset, "next")
            ok, why = can_release(version)
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
