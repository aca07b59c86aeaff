"""The ``redivis://owner/dataset/table`` asset URI: one asset per table, across versions, in one normal form."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from airflow_provider_redivis.assets import (
    asset_for_table,
    convert_asset_to_openlineage,
    create_asset,
    sanitize_uri,
    table_asset,
    table_uri,
)
from airflow_provider_redivis.errors import RedivisConfigError


def sanitized(uri: str) -> str:
    return urlunsplit(sanitize_uri(urlsplit(uri)))


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("redivis://imathews/example_dataset/sales_2026", "redivis://imathews/example_dataset/sales_2026"),
        # Owners are case-insensitive.
        ("redivis://IMathews/example_dataset/sales", "redivis://imathews/example_dataset/sales"),
        # Version tags and refId suffixes do not change which table it is.
        ("redivis://imathews/example_dataset:next/sales", "redivis://imathews/example_dataset/sales"),
        ("redivis://imathews/example_dataset:v1_2/sales", "redivis://imathews/example_dataset/sales"),
        (
            "redivis://imathews/example_dataset:abc1:current/sales:xy9",
            "redivis://imathews/example_dataset/sales",
        ),
        ("redivis://imathews/example_dataset%3Anext/sales", "redivis://imathews/example_dataset/sales"),
        # Names replace every character that is not a letter, digit or underscore with '_'.
        ("redivis://imathews/example%20dataset/sales-2026", "redivis://imathews/example_dataset/sales_2026"),
        ("redivis://imathews/example_dataset/sales/", "redivis://imathews/example_dataset/sales"),
        ("REDIVIS://imathews/d/t", "redivis://imathews/d/t"),
        # A dataset alone: the asset of its releases, across versions.
        ("redivis://IMathews/example_dataset:v1_2", "redivis://imathews/example_dataset"),
    ],
)
def test_sanitize_uri_normal_form(uri: str, expected: str) -> None:
    assert sanitized(uri) == expected
    assert sanitized(expected) == expected  # idempotent: Airflow may apply it again


@pytest.mark.parametrize(
    "uri",
    [
        "redivis:///dataset/table",  # no owner
        "redivis://own-er/dataset/table",  # owners are [A-Za-z0-9_] only
        "redivis://user@owner/dataset/table",
        "redivis://owner:8080/dataset/table",
        "redivis://owner/dataset/table/extra",
        "redivis://owner//table",
        "redivis://owner/:next/table",  # a version tag with no name
        "redivis://owner/dataset/table?version=next",
        "redivis://owner/dataset/table#frag",
        "https://owner/dataset/table",
    ],
)
def test_sanitize_uri_rejects_what_names_no_table(uri: str) -> None:
    with pytest.raises(ValueError, match=r"redivis|Redivis"):
        sanitize_uri(urlsplit(uri))


def test_every_version_of_a_table_is_one_asset() -> None:
    uris = {
        table_uri(ref)
        for ref in (
            "IMathews.example_dataset:next.sales_2026",
            "imathews.example_dataset:v1_2.sales_2026",
            "imathews.example_dataset:current.sales_2026",
            "imathews.example_dataset:abc1:next.sales_2026:xy9",
            "imathews.example_dataset.sales_2026",
        )
    }
    assert uris == {"redivis://imathews/example_dataset/sales_2026"}


def test_table_asset_is_an_airflow_asset_with_the_normal_uri() -> None:
    from airflow.providers.common.compat.sdk import Asset

    asset = table_asset("imathews.example dataset:next.sales 2026")
    assert isinstance(asset, Asset)
    assert asset.uri == "redivis://imathews/example_dataset/sales_2026"
    assert table_asset("a.b.c") == table_asset("A.b:next.c")


def test_table_asset_rejects_a_bad_reference() -> None:
    with pytest.raises(RedivisConfigError, match=r"owner\.dataset:next\.table"):
        table_asset("not a table")
    with pytest.raises(RedivisConfigError, match="asset URI"):
        table_asset("owner.:next.table")  # a version tag with no dataset name


def test_asset_for_table_leaves_templates_out() -> None:
    assert asset_for_table("{{ params.table }}") is None
    assert asset_for_table("owner.{% if x %}a{% endif %}.t") is None
    assert asset_for_table(None) is None
    asset = asset_for_table("owner.dataset:next.table")
    assert asset is not None
    assert asset.uri == "redivis://owner/dataset/table"


def test_create_asset_is_the_lineage_factory() -> None:
    asset = create_asset(table="owner.dataset:next.table", extra={"source": "test"})
    assert asset.uri == "redivis://owner/dataset/table"
    assert asset.extra == {"source": "test"}


def test_openlineage_conversion_names_the_table(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.providers.common.compat.openlineage import facet

    class FakeDataset:
        """Stands in for OpenLineage's Dataset, which is not installed here."""

        def __init__(self, namespace: str, name: str) -> None:
            self.namespace, self.name = namespace, name

    monkeypatch.setattr(facet, "Dataset", FakeDataset)
    dataset = convert_asset_to_openlineage(table_asset("Owner.ds:next.t"), None)
    assert (dataset.namespace, dataset.name) == ("redivis", "owner.ds.t")


#: Registers the handler the way the provider info will, then lets Airflow build assets.
REGISTERED_CHECK = """
import json, warnings
from airflow.providers.common.compat.sdk import Asset
good = Asset(uri="redivis://IMathews/example:next/sales-2026").uri
try:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Asset(uri="redivis://own-er/x/y")
    bad = [str(w.message) for w in caught if "Redivis asset URI" in str(w.message)]
except ValueError as exc:
    bad = [str(exc)]
print(json.dumps({"good": good, "bad": bad}))
"""


@pytest.mark.slow
def test_airflow_applies_the_handler_to_hand_written_uris(tmp_path: Path) -> None:
    """Through Airflow's own provider discovery: normalised, and a bad URI refused (3.x) or warned (2.x)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env["AIRFLOW_HOME"] = str(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-c", REGISTERED_CHECK],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["good"] == "redivis://imathews/example/sales_2026"
    assert result["bad"]
    assert "owner made of letters, digits and underscores" in result["bad"][0]
