"""What Redivis accepts for an upload (its types and names), and :class:`UploadSpec`, the one place every
argument of an upload is checked. Plain Python: the client's view.

The emulator (redivis-emulator) keeps the server's own copy in ``redivis_emulator.vocabulary``;
``tests/test_emulator_agrees_with_provider.py`` holds the two to one truth.
"""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_provider_redivis.engine.checkpoint import TRANSPORTS
from airflow_provider_redivis.engine.checksums import validate_checksum
from airflow_provider_redivis.engine.protocol import validate_chunk_size
from airflow_provider_redivis.errors import RedivisConfigError
from airflow_provider_redivis.references import validate_table_reference

if TYPE_CHECKING:
    from collections.abc import Mapping

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


#: Options Redivis reads as one character.
ONE_CHARACTER_OPTIONS = ("delimiter", "quote_character", "escape_character")
#: Options that are True, False or None (Redivis's default).
FLAG_OPTIONS = ("has_header_row", "skip_bad_records", "has_quoted_newlines", "allow_jagged_rows")
#: Options that are a list or a mapping (or its JSON text, what a template renders): its type, the type of
#: its items (a mapping's: its keys), and what to tell the user.
STRUCTURED_OPTIONS: dict[str, tuple[type, type, str]] = {
    "null_markers": (list, str, "a list of strings, such as ['NA', '']"),
    "schema": (list, dict, "a list of columns, such as [{'name': 'id', 'type': 'integer'}]"),
    "metadata": (
        dict,
        str,
        "a mapping of variable names to their metadata, such as {'id': {'label': 'Row id'}}",
    ),
}
UPLOAD_OPTIONS = (*ONE_CHARACTER_OPTIONS, *FLAG_OPTIONS, *STRUCTURED_OPTIONS)


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _structured(name: str, value: Any) -> Any:
    """A list or mapping option, JSON text parsed: a template renders to text, and ``| tojson`` to JSON."""
    kind, item, wanted = STRUCTURED_OPTIONS[name]
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise RedivisConfigError(
                f"{name} must be {wanted}, or the JSON text of one; got text that is not JSON: {_shown(value)}. "
                f"A template renders a Python object as Python text: end it with '| tojson' "
                f"(e.g. '{{{{ var.json.{name} | tojson }}}}'), or set render_template_as_native_obj=True on the DAG."
            ) from None
    fits = isinstance(value, kind)  # tested apart: isinstance against a variable type would narrow to object
    if not fits or not all(isinstance(part, item) for part in value):
        raise RedivisConfigError(f"{name} must be {wanted}; got {_shown(value)}.")
    try:
        json.dumps(value, allow_nan=False)  # as requests encodes a JSON body
    except (TypeError, ValueError) as exc:
        raise RedivisConfigError(
            f"{name} holds a value JSON cannot carry ({exc}): use text, numbers, booleans, lists and mappings."
        ) from None
    return value


def check_upload_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """Redivis's upload options (delimiter, header row, ..., schema, metadata): checked, JSON text parsed."""
    unknown = sorted(set(options) - set(UPLOAD_OPTIONS))
    if unknown:
        raise RedivisConfigError(
            f"Unknown upload options {unknown}; the options are {', '.join(UPLOAD_OPTIONS)}."
        )
    checked = dict(options)
    for name, value in options.items():
        if value is None:
            continue
        if name in ONE_CHARACTER_OPTIONS and (not isinstance(value, str) or len(value) != 1):
            tab = " (for a tab, pass '\\t')" if name == "delimiter" else ""
            raise RedivisConfigError(
                f"{name} must be one character{tab}, got {_shown(value)}; Redivis reads no other."
            )
        if name in FLAG_OPTIONS and not isinstance(value, bool):
            raise RedivisConfigError(
                f"{name} must be True, False or None (Redivis's default), got {_shown(value)}."
            )
        if name in STRUCTURED_OPTIONS:
            checked[name] = _structured(name, value)
    return checked


def check_upload_arguments(
    *,
    table: str | None = None,
    name: str | None = None,
    upload_type: str | None = None,
    transport: str = "resumable_upload",
    if_exists: str = "fail",
    chunk_size: int | None = None,
    checksum: str | None = "auto",
    options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Every argument of an upload, checked here and nowhere else, each with the message that says what to do.

    The operator calls it at DAG parse for what is not a template (``table`` or ``name`` None: not known
    yet; an option that is a template left out); :class:`UploadSpec` calls it with the rendered values,
    before anything is sent. Returns the upload ``options`` as they go to Redivis (JSON text parsed).
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
    return check_upload_options(options or {})


@dataclass
class UploadSpec:
    """What to upload where, and how, checked; the upload options as they go to Redivis (JSON text parsed)."""

    table: str
    name: str
    upload_type: str | None = None
    transport: str = "resumable_upload"
    if_exists: str = "fail"
    chunk_size: int | None = None
    checksum: str | None = "auto"
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.options = check_upload_arguments(
            table=self.table,
            name=self.name,
            upload_type=self.upload_type,
            transport=self.transport,
            if_exists=self.if_exists,
            chunk_size=self.chunk_size,
            checksum=self.checksum,
            options=self.options,
        )
        self.table = validate_table_reference(self.table)
