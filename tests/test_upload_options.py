"""Upload types inferred from file names, and the names Redivis would reject."""

from __future__ import annotations

import pytest

from airflow_provider_redivis.errors import RedivisConfigError
from airflow_provider_redivis.upload_options import (
    infer_upload_type,
    validate_upload_name,
    validate_upload_type,
)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("sales.csv", "delimited"),
        ("SALES.CSV.GZ", "delimited"),
        ("rows.tsv", "delimited"),
        ("events.jsonl", "ndjson"),
        ("part-0001.parquet", "parquet"),
        ("survey.sav", "sav"),
        ("shapes.shp.zip", "shp.zip"),
        ("notes.docx", None),
        ("no_extension", None),
    ],
)
def test_type_from_the_file_name(name: str, expected: str | None) -> None:
    assert infer_upload_type(name) == expected


def test_unknown_type_names_the_known_ones() -> None:
    with pytest.raises(RedivisConfigError, match="delimited, stream"):
        validate_upload_type("csv")


@pytest.mark.parametrize("name", ["sales.csv", "ünïcödé 2026.csv", "a" * 255])
def test_good_names(name: str) -> None:
    assert validate_upload_name(name) == name
