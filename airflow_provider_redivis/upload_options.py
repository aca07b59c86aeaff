"""What Redivis accepts for an upload (its types and names), and :class:`UploadSpec`, the one place every
argument of an upload is checked. Plain Python: the client's view.

The emulator (redivis-emulator) keeps the server's own copy in ``redivis_emulator.vocabulary``;
``tests/test_emulator_agrees_with_provider.py`` holds the two to one truth.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_redivis.checkpoint import TRANSPORTS
from airflow_provider_redivis.checksums import validate_checksum
from airflow_provider_redivis.errors import RedivisConfigError
from airflow_provider_redivis.references import validate_table_reference
from airflow_provider_redivis.upload_protocol import validate_chunk_size

#: Redivis's upload types (docs/redivis-api.md, "Uploads").
UPLOAD_TYPES = (
    "delimited",
    "stream",
    "avro",
    "ndjson",
    "parquet",
    "orc",
    "xls",
    "xlsx",
    "dta",
    "sas7bdat",
    "sav",
    "geojson",
    "geojsonl",
    "json",
    "shp",
    "shp.zip",
    "kml",
)
_TYPE_BY_SUFFIX = {
    ".csv": "delimited",
    ".tsv": "delimited",
    ".txt": "delimited",
    ".psv": "delimited",
    ".jsonl": "ndjson",
    ".ndjson": "ndjson",
    ".shp.zip": "shp.zip",
}
#: What to do when the table has an upload of that name already.
IF_EXISTS = ("fail", "replace", "skip")
#: The longest upload name this provider sends; Redivis names are short identifiers of files.
MAX_UPLOAD_NAME_LENGTH = 255


def infer_upload_type(name: str) -> str | None:
    """The upload type from the file name (``sales.csv.gz`` → delimited), or None to let Redivis decide."""
    lowered = name.lower()
    if not lowered.endswith(".shp.zip"):
        for compression in (".gz", ".zip", ".bz2"):
            lowered = lowered.removesuffix(compression)
    for suffix, upload_type in _TYPE_BY_SUFFIX.items():
        if lowered.endswith(suffix):
            return upload_type
    extension = posixpath.splitext(lowered)[1].lstrip(".")
    return extension if extension in UPLOAD_TYPES else None


def validate_upload_type(upload_type: object) -> str | None:
    if upload_type is not None and upload_type not in UPLOAD_TYPES:
        raise RedivisConfigError(
            f"upload_type {upload_type!r} is not a Redivis upload type. Use one of: {', '.join(UPLOAD_TYPES)}."
        )
    return upload_type


def validate_upload_name(name: object) -> str:
    """A name Redivis will take: not empty, not too long, no slash or control character."""
    if not isinstance(name, str) or not name.strip():
        raise RedivisConfigError(f"upload_name must be a non-empty string, got {name!r}.")
    if len(name) > MAX_UPLOAD_NAME_LENGTH:
        raise RedivisConfigError(
            f"upload_name is {len(name)} characters; Redivis accepts at most {MAX_UPLOAD_NAME_LENGTH}."
        )
    if any(ch in name for ch in "/\\") or any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        raise RedivisConfigError(
            f"upload_name {name!r} contains a slash or a control character, which Redivis rejects: use a plain "
            "file name such as 'sales_2026_11.csv'."
        )
    return name


def check_upload_arguments(
    *,
    table: str | None = None,
    name: str | None = None,
    upload_type: str | None = None,
    transport: str = "resumable_upload",
    if_exists: str = "fail",
    chunk_size: int | None = None,
    checksum: str | None = "auto",
) -> None:
    """Every argument of an upload, checked here and nowhere else, each with the message that says what to do.

    The operator calls it at DAG parse for what is not a template (``table`` or ``name`` None: not known
    yet); :class:`UploadSpec` calls it with the rendered values.
    """
    if table is not None:
        validate_table_reference(table)
    if name is not None:
        validate_upload_name(name)
    validate_upload_type(upload_type)
    if transport not in TRANSPORTS:
        raise RedivisConfigError(f"transport must be one of {', '.join(TRANSPORTS)}; got {transport!r}.")
    if if_exists not in IF_EXISTS:
        raise RedivisConfigError(f"if_exists must be one of {', '.join(IF_EXISTS)}; got {if_exists!r}.")
    validate_chunk_size(chunk_size)
    validate_checksum(checksum)


@dataclass
class UploadSpec:
    """What to upload where, and how, checked; the upload options go to Redivis as they are."""

    table: str
    name: str
    upload_type: str | None = None
    transport: str = "resumable_upload"
    if_exists: str = "fail"
    chunk_size: int | None = None
    checksum: str | None = "auto"
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_upload_arguments(
            table=self.table,
            name=self.name,
            upload_type=self.upload_type,
            transport=self.transport,
            if_exists=self.if_exists,
            chunk_size=self.chunk_size,
            checksum=self.checksum,
        )
        self.table = validate_table_reference(self.table)
