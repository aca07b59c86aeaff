"""OpenLineage for the upload: the source in, the Redivis table out, with the upload's row count and size.

Imported only when the OpenLineage provider asks (``get_openlineage_facets_on_complete``), so the
provider works without it. Dataset names follow OpenLineage's naming conventions: a local file is
namespace ``file`` and its absolute path; an object store is ``{scheme}://{bucket}`` and the key; any
other URL is ``{scheme}://{authority}`` and its path. The table is named as the ``redivis://`` asset
converter names it, so lineage from either joins.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from airflow_provider_redivis.assets import SCHEME, table_uri

#: Object stores whose namespace is the bucket.
_BUCKET_SCHEMES = frozenset({"s3", "s3a", "s3n", "gs", "gcs", "abfs", "abfss", "wasb", "wasbs", "az", "adl"})


def source_dataset_name(source: Any) -> tuple[str, str]:
    """(namespace, name) of the source: a path, a ``file://``/``s3://``/... URL, or an ObjectStoragePath."""
    protocol, bucket = getattr(source, "protocol", None), getattr(source, "bucket", None)
    if isinstance(protocol, str) and isinstance(
        bucket, str
    ):  # an ObjectStoragePath: its URL carries the conn id
        if protocol in ("file", "local"):
            return "file", str(getattr(source, "path", source))
        return f"{protocol}://{bucket}", str(getattr(source, "key", "")).lstrip("/")
    text = os.fspath(source) if isinstance(source, os.PathLike) else str(source)
    parts = urlsplit(text)
    if len(parts.scheme) <= 1:  # no scheme (or a drive letter): a local path
        return "file", os.path.abspath(text)
    if parts.scheme == "file":
        return "file", parts.path
    if parts.scheme in _BUCKET_SCHEMES:
        return f"{parts.scheme}://{parts.netloc}", parts.path.lstrip("/")
    return f"{parts.scheme}://{parts.netloc}", parts.path or "/"


def table_dataset_name(table: str) -> tuple[str, str]:
    """(namespace, name) of a table reference, as the ``redivis://`` asset converter gives it."""
    parts = urlsplit(table_uri(table))
    owner, dataset, name = parts.netloc, *parts.path.strip("/").split("/")
    return SCHEME, f"{owner}.{dataset}.{name}"


def operator_lineage(
    source: Any, table: str, upload: Mapping[str, Any], *, source_is_table: bool = False
) -> Any:
    """The ``OperatorLineage`` of one finished upload; ``source_is_table``: the source is another Redivis table."""
    from airflow.providers.common.compat.openlineage.facet import (
        Dataset,
        OutputDataset,
        OutputStatisticsOutputDatasetFacet,
        SchemaDatasetFacet,
        SchemaDatasetFacetFields,
    )
    from airflow.providers.openlineage.extractors import OperatorLineage

    in_namespace, in_name = table_dataset_name(source) if source_is_table else source_dataset_name(source)
    out_namespace, out_name = table_dataset_name(table)
    output_facets: dict[str, Any] = {}
    schema = upload.get("schema")
    if isinstance(schema, list) and schema:
        output_facets["schema"] = SchemaDatasetFacet(
            fields=[
                SchemaDatasetFacetFields(name=str(field.get("name")), type=field.get("type"))
                for field in schema
                if isinstance(field, Mapping) and field.get("name")
            ]
        )
    statistics: dict[str, Any] = {}
    if isinstance(upload.get("numRows"), int):
        statistics["outputStatistics"] = OutputStatisticsOutputDatasetFacet(
            rowCount=upload["numRows"],
            size=upload.get("size") if isinstance(upload.get("size"), int) else None,
        )
    output = OutputDataset(
        namespace=out_namespace, name=out_name, facets=output_facets, outputFacets=statistics
    )
    return OperatorLineage(inputs=[Dataset(namespace=in_namespace, name=in_name)], outputs=[output])
