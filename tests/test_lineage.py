"""OpenLineage names: the source by OpenLineage's conventions, the table as the redivis:// asset names it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from airflow_provider_redivis.lineage import source_dataset_name, table_dataset_name


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("/data/in/sales.csv", ("file", "/data/in/sales.csv")),
        ("file:///data/in/sales.csv", ("file", "/data/in/sales.csv")),
        ("s3://exports/sales/2026-12-01.csv", ("s3://exports", "sales/2026-12-01.csv")),
        ("gs://bucket/a/b.parquet", ("gs://bucket", "a/b.parquet")),
        (
            "abfss://container@account.dfs.core.windows.net/x.csv",
            ("abfss://container@account.dfs.core.windows.net", "x.csv"),
        ),
        ("sftp://host:22/home/u/f.csv", ("sftp://host:22", "/home/u/f.csv")),
    ],
)
def test_source_names_follow_openlineage_conventions(source: str, expected: tuple[str, str]) -> None:
    assert source_dataset_name(source) == expected


def test_a_relative_local_path_is_named_by_its_absolute_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert source_dataset_name("in/sales.csv") == ("file", os.path.join(str(tmp_path), "in/sales.csv"))
    assert source_dataset_name(Path("in/sales.csv")) == ("file", os.path.join(str(tmp_path), "in/sales.csv"))


def test_an_object_storage_path_is_named_by_its_url() -> None:
    from airflow.providers.common.compat.sdk import ObjectStoragePath

    assert source_dataset_name(ObjectStoragePath("s3://exports/sales.csv", conn_id="aws_default")) == (
        "s3://exports",
        "sales.csv",
    )


@pytest.mark.parametrize(
    "table", ["Owner.Sales Data:next.Daily", "owner.sales_data.daily", "owner.sales_data:v3.daily:7"]
)
def test_the_table_is_named_as_the_asset_converter_names_it(table: str) -> None:
    from airflow_provider_redivis.assets import asset_for_table, convert_asset_to_openlineage

    converted = convert_asset_to_openlineage(asset_for_table(table), None)
    assert table_dataset_name(table) == (converted.namespace, converted.name)
