"""Upload types inferred from file names, the names Redivis would reject, and the options it reads."""

from __future__ import annotations

from datetime import datetime

import pytest

from airflow_provider_redivis.engine.options import (
    UploadSpec,
    check_upload_arguments,
    infer_upload_type,
    validate_upload_name,
    validate_upload_type,
)
from airflow_provider_redivis.errors import RedivisConfigError


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


# -- the options Redivis reads: checked, rendered, before the first byte ---------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"delimiter": "||"}, "delimiter must be one character (for a tab, pass '\\t'), got '||'"),
        ({"delimiter": ""}, "delimiter must be one character"),
        ({"quote_character": "''"}, "quote_character must be one character"),
        ({"escape_character": 5}, "escape_character must be one character"),
        ({"has_header_row": "true"}, "has_header_row must be True, False or None"),
        ({"skip_bad_records": 1}, "skip_bad_records must be True, False or None"),
        ({"null_markers": "NA"}, "null_markers must be a list of strings"),
        ({"null_markers": ["NA", None]}, "null_markers must be a list of strings"),
        ({"schema": {"name": "id"}}, "schema must be a list of columns"),
        ({"metadata": ["id"]}, "metadata must be a mapping of variable names"),
        ({"metadata": {1: {"label": "x"}}}, "metadata must be a mapping of variable names"),
        ({"metadata": "{'id': {'label': 'Row id'}}"}, r"end it with '\| tojson'"),
        ({"metadata": '"just text"'}, "metadata must be a mapping of variable names"),
        ({"metadata": {"id": {"since": datetime(2026, 1, 1)}}}, "metadata holds a value JSON cannot carry"),
        ({"schema": [{"name": "x", "min": float("nan")}]}, "schema holds a value JSON cannot carry"),
        ({"delimeter": ","}, "Unknown upload options"),
    ],
)
def test_a_bad_upload_option_names_the_parameter_and_what_to_give(options: dict, message: str) -> None:
    with pytest.raises(RedivisConfigError, match=message):
        check_upload_arguments(options=options)


def test_the_json_text_of_a_structured_option_is_parsed() -> None:
    """What '{{ ... | tojson }}' renders: the object it stands for goes to Redivis."""
    checked = check_upload_arguments(
        options={
            "metadata": '{"id": {"label": "Row id"}}',
            "schema": '[{"name": "id", "type": "integer"}]',
            "null_markers": '["NA", ""]',
            "delimiter": "\t",
            "has_header_row": True,
        }
    )
    assert checked == {
        "metadata": {"id": {"label": "Row id"}},
        "schema": [{"name": "id", "type": "integer"}],
        "null_markers": ["NA", ""],
        "delimiter": "\t",
        "has_header_row": True,
    }


def test_the_spec_carries_the_checked_options() -> None:
    spec = UploadSpec(table="o.d:next.t", name="x.csv", options={"metadata": '{"a": {}}', "delimiter": None})
    assert spec.options == {"metadata": {"a": {}}, "delimiter": None}
