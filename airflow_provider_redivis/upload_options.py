"""What Redivis accepts for an upload: its types and names. Plain Python: the client's view.

The emulator (redivis-emulator) keeps the server's own copy in ``redivis_emulator.vocabulary``;
``tests/test_emulator_agrees_with_provider.py`` holds the two to one truth.
"""

from __future__ import annotations

import posixpath

from airflow_provider_redivis.errors import RedivisConfigError

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
