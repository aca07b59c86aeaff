"""Uploads Redivis fetches itself: ``transferSpecification`` with ``sourceType`` ``gcs`` or ``redivis``.

What a request gets wrong is refused when the upload is created (400): an unknown ``sourceType``, a
missing ``sourcePath`` or ``identity``, an identity that is no Google account linked to the user. What
only fetching can tell (a missing object, an identity without access to the bucket, a source table that
is not there) fails the upload while it processes: ``status`` ``failed`` with an ``errorMessage``.

A folder stands in for Cloud Storage (``gcs_root``): ``sourcePath`` ``bucket/path/file.csv`` is
``gcs_root/bucket/path/file.csv``. ``gcs_identities`` maps each linked identity to the buckets it may
read; None links every identity to every bucket.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from redivis_emulator.errors import ApiError
from redivis_emulator.model import table_num_rows
from redivis_emulator.references import parse_table_reference

if TYPE_CHECKING:
    from pathlib import Path

    from redivis_emulator.model import Upload
    from redivis_emulator.state import CatalogState

#: The source types Redivis fetches from (the official client's tests use these two).
SOURCE_TYPES = ("gcs", "redivis")


def check_transfer_specification(
    spec: object, gcs_root: Path | None, gcs_identities: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The specification as the upload records it; a 400 for what the request itself gets wrong."""
    if not isinstance(spec, Mapping):
        raise ApiError(400, "transferSpecification must be an object with sourceType and sourcePath.")
    source_type = spec.get("sourceType")
    if source_type not in SOURCE_TYPES:
        raise ApiError(
            400,
            f"Unknown transferSpecification.sourceType {source_type!r}; use one of {', '.join(SOURCE_TYPES)}.",
        )
    path = spec.get("sourcePath")
    if not isinstance(path, str) or not path.strip():
        raise ApiError(400, "transferSpecification.sourcePath is required.")
    if source_type == "redivis":
        try:
            parse_table_reference(path)
        except ApiError as exc:
            raise ApiError(
                400, f"transferSpecification.sourcePath is not a table reference: {exc.message}"
            ) from None
        return {"sourceType": source_type, "sourcePath": path}
    bucket, _, name = path.partition("/")
    if not bucket or not name or name.endswith("/"):
        raise ApiError(400, f"transferSpecification.sourcePath {path!r} must be bucket/path/to/object.")
    identity = spec.get("identity")
    if not isinstance(identity, str) or not identity.strip():
        raise ApiError(
            400,
            "transferSpecification.identity is required for gcs: a Google account linked to your account.",
        )
    if gcs_root is None:
        raise ApiError(400, "This emulator serves no Cloud Storage: start it with gcs_root (--gcs-root).")
    if gcs_identities is not None and identity not in gcs_identities:
        raise ApiError(
            400,
            f"Identity {identity!r} is not a Google account linked to your Redivis account; link it in your "
            "Redivis settings, or name one that is.",
        )
    return {"sourceType": source_type, "sourcePath": path, "identity": identity}


def fetch(catalog: CatalogState, upload: Upload) -> str | None:
    """Fetch the upload's source into its own file (path, size, md5 set); an error message when it cannot."""
    spec = upload.options["transferSpecification"]
    target = catalog.data_dir / "transfers" / f"{upload.id}.bin"
    target.parent.mkdir(parents=True, exist_ok=True)
    if spec["sourceType"] == "gcs":
        found = _gcs_object(catalog, spec)
        if isinstance(found, str):
            return found
        shutil.copyfile(found, target)
        rows = None
    else:
        with catalog.lock:
            try:
                source = catalog._table(parse_table_reference(spec["sourcePath"]))
            except ApiError:
                return f"Table {spec['sourcePath']} was not found, or you do not have access to it."
            if source is upload.table:
                return "An upload cannot copy the table it is being added to."
            done = [u for u in source.uploads if u.status == "completed" and not u.deleted]
            files = [u.path for u in done if u.path is not None]
            rows = table_num_rows(source)[0]
            kinds = {u.type for u in done}
        with open(target, "wb") as out:
            for part in files:
                with open(part, "rb") as fh:
                    shutil.copyfileobj(fh, out)
        if upload.type is None:
            upload.type = kinds.pop() if len(kinds) == 1 else "delimited"
    md5 = hashlib.md5()  # noqa: S324 - a checksum, not security
    with open(target, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            md5.update(block)
    with catalog.lock:
        upload.path, upload.size, upload.md5 = target, target.stat().st_size, md5.hexdigest()
        upload.copied_rows = rows
    return None


def _gcs_object(catalog: CatalogState, spec: Mapping[str, Any]) -> Path | str:
    """The object's file, or why it cannot be read, in Cloud Storage's words."""
    root = catalog.gcs_root
    bucket, _, name = str(spec["sourcePath"]).partition("/")
    identity = spec["identity"]
    allowed = catalog.gcs_identities
    if root is None:
        return "This emulator serves no Cloud Storage."
    if allowed is not None and bucket not in allowed.get(identity, ()):
        return (
            f"{identity} does not have storage.objects.get access to the Google Cloud Storage object "
            f"gs://{bucket}/{name}: grant that account read access to bucket {bucket} (Storage Object Viewer)."
        )
    # Object names are flat keys: "..", or a link out of the bucket's folder, names no object.
    folder = (root / bucket).resolve()
    path = (root / bucket / name).resolve()
    if folder.parent != root.resolve() or not path.is_relative_to(folder) or not path.is_file():
        return f"No such object: gs://{bucket}/{name}. Check the path; the object must exist when Redivis fetches it."
    return path
