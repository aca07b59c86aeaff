"""The emulator's own copy of Redivis's vocabulary: scopes, merge strategies, upload types, limits.

This is the server's view of the API (``docs/redivis-api.md``). The provider keeps its own copy as the
client's view (``airflow_provider_redivis.engine.options``); neither package imports the other, and
``tests/test_emulator_agrees_with_provider.py`` in the provider's test suite asserts that the two agree.
"""

from __future__ import annotations

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


def infer_upload_type(name: str) -> str:
    lower = name.lower()
    for suffix in (".gz", ".gzip", ".zip"):
        if lower.endswith(suffix) and not lower.endswith(".shp.zip"):
            lower = lower[: -len(suffix)]
    for suffix, kind in _TYPE_BY_SUFFIX:
        if lower.endswith(suffix):
            return kind
    return "delimited"
