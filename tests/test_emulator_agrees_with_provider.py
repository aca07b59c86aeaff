"""One truth for the vocabulary the provider and the emulator share, though neither imports the other.

The provider holds the client's view (``engine.options``, ``references``), the emulator
(redivis-emulator) the server's (``redivis_emulator.vocabulary``, ``redivis_emulator.references``).
Each is a copy of ``docs/redivis-api.md``; these tests fail when one copy changes without the other.
"""

from __future__ import annotations

import pytest
from redivis_emulator import references as server_references
from redivis_emulator import vocabulary as server

from airflow_provider_redivis import references as client_references
from airflow_provider_redivis.engine import options as client

NAMES = [
    "sales.csv",
    "sales.CSV",
    "sales.csv.gz",
    "sales.csv.zip",
    "sales.csv.bz2",
    "sales.tsv",
    "sales.psv",
    "sales.txt",
    "events.jsonl",
    "events.ndjson.gz",
    "table.parquet",
    "table.avro",
    "table.orc",
    "book.xlsx",
    "book.xls",
    "stata.dta",
    "sas.sas7bdat",
    "spss.sav",
    "shapes.shp",
    "shapes.shp.zip",
    "places.kml",
    "places.geojson",
    "places.geojsonl",
    "data.json",
    "no_extension",
    "archive.tar",
]


def test_the_upload_types_are_the_same() -> None:
    assert server.UPLOAD_TYPES == client.UPLOAD_TYPES


@pytest.mark.parametrize("name", NAMES)
def test_a_type_the_provider_infers_is_the_one_the_emulator_infers(name: str) -> None:
    """The provider sends a type only when it knows it; the server's inference then agrees. When the
    provider sends none (None), the server decides, and what it decides is a type the provider knows."""
    inferred = client.infer_upload_type(name)
    assert server.infer_upload_type(name) in client.UPLOAD_TYPES
    if inferred is not None:
        assert server.infer_upload_type(name) == inferred


@pytest.mark.parametrize(
    "name", ["daily_sales", "Daily Sales", "sales-2026.v1", "Café ünïcode", "a:b/c", "__x__"]
)
def test_names_normalise_alike(name: str) -> None:
    assert server_references.normalise_name(name) == client_references.normalise_name(name)


@pytest.mark.parametrize(
    "reference",
    [
        "owner.dataset.table",
        "owner.dataset:next.table",
        "Owner.my dataset:v1_2.table name",
        "owner.dataset:abcd:current.table:efgh",
    ],
)
def test_a_table_reference_the_provider_accepts_the_emulator_parses(reference: str) -> None:
    client_ref = client_references.TableReference.parse(reference)
    server_ref = server_references.parse_table_reference(reference)
    assert server_ref.dataset.owner == client_ref.owner.lower()
    assert server_ref.dataset.version == (client_ref.version.lower() if client_ref.version else None)


def test_the_transfer_source_types_agree() -> None:
    from redivis_emulator import transfers as server_transfers

    from airflow_provider_redivis.engine import transfer as client_transfer

    assert client_transfer.SOURCE_TYPES == server_transfers.SOURCE_TYPES == ("gcs", "redivis")
