"""The ``redivis://owner/dataset/table`` asset URI: one asset per table, whatever the version; and
``redivis://owner/dataset``, the asset of a dataset whose releases an ``AssetWatcher`` watches
(``triggers.release.release_asset``).

Airflow calls :func:`sanitize_uri` on every asset URI with the ``redivis`` scheme once the provider
registers it (``asset-uris`` on Airflow 3, ``dataset-uris`` on Airflow 2). The same normalisation
runs in :func:`table_asset`, so an asset built here is already in its final form whether or not
the handler is registered.

Normal form, following the reference rules of the Redivis API:

- the owner (host part) is lower case and only ``[a-z0-9_]``: owners are case-insensitive;
- dataset and table names have every character that is not a letter, digit or underscore
  replaced by ``_``, as Redivis does in references;
- version tags (``:next``, ``:current``, ``:v1_2``) and ``:refId`` suffixes are dropped, so
  ``imathews.example:next.sales`` and ``imathews.example:v1_2.sales`` are the same asset: the
  table a recurring load feeds, across its versions.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any
from urllib.parse import SplitResult, unquote, urlsplit, urlunsplit

from airflow_provider_redivis.errors import RedivisConfigError
from airflow_provider_redivis.references import (
    TableReference,
    is_template,
    normalise_name,
    validate_dataset_reference,
)

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Asset

SCHEME = "redivis"

_OWNER_RE = re.compile(r"[a-z0-9_]+")


def _name(segment: str, kind: str, uri: str) -> str:
    # ':' starts a version tag or a refId suffix; neither identifies the table across versions.
    name = unquote(segment).split(":", 1)[0].strip()
    if not name:
        raise ValueError(f"Redivis asset URI {uri!r} has an empty {kind} name.")
    return normalise_name(name)


def sanitize_uri(uri: SplitResult) -> SplitResult:
    """Airflow's URI handler for the ``redivis`` scheme: validate and bring to the normal form.

    Raises ValueError (what Airflow expects from a handler) when the URI cannot name a table.
    """
    text = urlunsplit(uri)
    if uri.scheme.lower() != SCHEME:
        raise ValueError(f"{text!r} is not a redivis:// URI.")
    if "@" in uri.netloc or ":" in uri.netloc:
        raise ValueError(
            f"Redivis asset URI {text!r} carries user info or a port; write it as redivis://owner/dataset/table."
        )
    owner = unquote(uri.netloc).lower()
    if not _OWNER_RE.fullmatch(owner):
        raise ValueError(
            f"Redivis asset URI {text!r} needs an owner made of letters, digits and underscores, "
            "as in redivis://owner/dataset/table."
        )
    segments = uri.path.removeprefix("/").rstrip("/").split("/")
    if len(segments) not in (1, 2) or not all(segments):
        raise ValueError(
            f"Redivis asset URI {text!r} must name one dataset and at most one table: "
            "redivis://owner/dataset/table, or redivis://owner/dataset for the dataset's releases."
        )
    if uri.query or uri.fragment:
        # Nothing in a query could make a different table; accepting one would split one table into many assets.
        raise ValueError(f"Redivis asset URI {text!r} takes no query or fragment.")
    names = [_name(segments[0], "dataset", text)]
    if len(segments) == 2:
        names.append(_name(segments[1], "table", text))
    return SplitResult(scheme=SCHEME, netloc=owner, path="/" + "/".join(names), query="", fragment="")


def table_uri(table_ref: str) -> str:
    """``owner.dataset[:version].table`` → ``redivis://owner/dataset/table`` in normal form."""
    ref = TableReference.parse(table_ref)
    raw = SplitResult(
        scheme=SCHEME,
        netloc=ref.owner,
        path=f"/{ref.dataset.split(':', 1)[0]}/{ref.table.split(':', 1)[0]}",
        query="",
        fragment="",
    )
    try:
        return urlunsplit(sanitize_uri(raw))
    except ValueError as exc:
        raise RedivisConfigError(f"Table reference {table_ref!r} does not make an asset URI: {exc}") from exc


def table_asset(table_ref: str, *, extra: dict[str, Any] | None = None) -> Asset:
    """The asset of a Redivis table (``Dataset`` on Airflow 2), the same for every version of it."""
    from airflow.providers.common.compat.sdk import Asset

    uri = table_uri(table_ref)
    return Asset(uri=uri, extra=extra)


def asset_for_table(table_ref: str | None) -> Asset | None:
    """The outlet an operator declares for ``table_ref``; None while the reference is still a template.

    Outlets are fixed when the DAG is parsed, before templates render, so a templated table has no
    asset to declare: the caller leaves it out rather than guess.
    """
    if table_ref is None or is_template(table_ref):
        return None
    return table_asset(table_ref)


def create_asset(*, table: str, extra: dict[str, Any] | None = None) -> Asset:
    """The asset factory Airflow's lineage collector calls for the ``redivis`` scheme."""
    return table_asset(table, extra=extra)


def convert_asset_to_openlineage(asset: Any, lineage_context: Any) -> Any:
    """OpenLineage dataset for a ``redivis://`` asset: namespace ``redivis``, name ``owner.dataset.table``."""
    from airflow.providers.common.compat.openlineage.facet import Dataset as OpenLineageDataset

    parts = sanitize_uri(urlsplit(asset.uri))
    return OpenLineageDataset(
        namespace=SCHEME, name=".".join([parts.netloc, *parts.path.strip("/").split("/")])
    )


def dataset_uri(dataset_ref: str) -> str:
    """``owner.dataset`` → ``redivis://owner/dataset`` in normal form (the asset of its releases)."""
    ref = validate_dataset_reference(dataset_ref)
    owner, dataset = ref.split(".", 1)
    raw = SplitResult(scheme=SCHEME, netloc=owner, path=f"/{dataset.split(':', 1)[0]}", query="", fragment="")
    try:
        return urlunsplit(sanitize_uri(raw))
    except ValueError as exc:
        raise RedivisConfigError(
            f"Dataset reference {dataset_ref!r} does not make an asset URI: {exc}"
        ) from exc
