"""Table and dataset references: validation, and the one path-segment encoding Redivis accepts."""

from __future__ import annotations

from urllib.parse import unquote

import pytest

from airflow_provider_redivis.errors import RedivisConfigError
from airflow_provider_redivis.references import (
    TableReference,
    encode_reference,
    is_template,
    normalise_name,
    validate_dataset_reference,
    validate_table_reference,
)


@pytest.mark.parametrize(
    ("ref", "encoded"),
    [
        ("imathews.example_dataset:next.sales_2026", "imathews.example_dataset%3Anext.sales_2026"),
        ("owner.my dataset.my table", "owner.my%20dataset.my%20table"),
        ("owner.a/b.c", "owner.a%2Fb.c"),
        ("owner.ds.t#1", "owner.ds.t%231"),
        ("owner.ds.what?x=1", "owner.ds.what%3Fx%3D1"),
        ("owner.ds.100%", "owner.ds.100%25"),
        ("owner.ds.a+b&c", "owner.ds.a%2Bb%26c"),
        ("owner.données.tableau_é", "owner.donn%C3%A9es.tableau_%C3%A9"),
        ("owner.数据.表", "owner.%E6%95%B0%E6%8D%AE.%E8%A1%A8"),
    ],
)
def test_encode_reference_makes_one_path_segment(ref: str, encoded: str) -> None:
    assert encode_reference(ref) == encoded
    assert "/" not in encode_reference(ref)
    assert unquote(encode_reference(ref)) == ref


def test_encode_reference_keeps_only_unreserved_characters() -> None:
    allowed = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~%")
    every_ascii = "".join(chr(c) for c in range(32, 127))
    assert set(encode_reference(every_ascii)) <= allowed


@pytest.mark.parametrize(
    "ref",
    [
        "imathews.example_dataset:next.sales_2026",
        "owner.dataset.table",
        "owner.dataset:v1_2.table",
        "owner.dataset:abc123:next.table:xyz",
        "owner.my dataset.my table",
        "owner.a/b.c#d?e",
        "owner.données.tableau",
    ],
)
def test_valid_table_references(ref: str) -> None:
    assert validate_table_reference(ref) == ref
    assert validate_table_reference(f"  {ref}\n") == ref


@pytest.mark.parametrize(
    "ref",
    ["", "   ", "owner.dataset", "owner", "owner.ds.t.extra", "ow-ner.ds.t", ".ds.t", "owner..t", None, 42],
)
def test_invalid_table_references_say_how_to_write_one(ref: object) -> None:
    with pytest.raises(RedivisConfigError, match=r"owner\.dataset"):
        validate_table_reference(ref)  # type: ignore[arg-type]


def test_table_reference_parts_and_version() -> None:
    ref = TableReference.parse("imathews.example_dataset:next.sales_2026")
    assert (ref.owner, ref.dataset, ref.table) == ("imathews", "example_dataset:next", "sales_2026")
    assert ref.dataset_reference == "imathews.example_dataset:next"
    assert ref.version == "next"
    assert str(ref) == "imathews.example_dataset:next.sales_2026"
    assert TableReference.parse("o.d:v1_2.t").version == "v1_2"
    assert TableReference.parse("o.d:current.t").version == "current"
    assert TableReference.parse("o.d:refid.t").version is None
    assert TableReference.parse("o.d.t").version is None


@pytest.mark.parametrize(
    ("ref", "expected"),
    [("owner.dataset", "owner.dataset"), (" owner.dataset:next ", "owner.dataset:next")],
)
def test_dataset_references(ref: str, expected: str) -> None:
    assert validate_dataset_reference(ref) == expected


@pytest.mark.parametrize("ref", ["owner", "owner.ds.t", "", "bad owner.ds"])
def test_invalid_dataset_references(ref: str) -> None:
    with pytest.raises(RedivisConfigError, match=r"owner\.dataset"):
        validate_dataset_reference(ref)


@pytest.mark.parametrize(
    ("name", "expected"),
    [("sales 2026.csv", "sales_2026_csv"), ("a-b/c", "a_b_c"), ("plain_name1", "plain_name1"), ("é", "_")],
)
def test_normalise_name(name: str, expected: str) -> None:
    assert normalise_name(name) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [("{{ params.table }}", True), ("{% if x %}a{% endif %}", True), ("owner.ds.t", False), (None, False)],
)
def test_is_template(value: object, expected: bool) -> None:
    assert is_template(value) is expected
