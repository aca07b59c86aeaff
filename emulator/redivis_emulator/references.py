"""References and names, as the server reads them (``docs/redivis-api.md``).

``owner.dataset[:refId][:version].table[:refId]``; owners are case-insensitive; names compare after
replacing every character that is not a letter, digit or underscore with ``_`` (case-insensitively);
a ``refId`` finds the resource even after a rename.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from redivis_emulator.errors import ApiError

OWNER_RE = re.compile(r"^[A-Za-z0-9_]+$")
VERSION_RE = re.compile(r"^(?:next|current|sample|v\d+(?:[._]\d+)?)$", re.IGNORECASE)


def normalise_name(name: str) -> str:
    """Names in references: every character that is not a letter, digit or underscore becomes ``_``."""
    return re.sub(r"[^A-Za-z0-9_]", "_", name)


def name_key(name: str) -> str:
    return normalise_name(name).lower()


@dataclass(frozen=True)
class NamePart:
    name: str
    ref_id: str | None = None

    @property
    def key(self) -> str:
        return name_key(self.name)


@dataclass(frozen=True)
class DatasetRef:
    owner: str
    dataset: NamePart
    version: str | None

    def __str__(self) -> str:
        return f"{self.owner}.{self.dataset.name}"


@dataclass(frozen=True)
class TableRef:
    dataset: DatasetRef
    table: NamePart

    def __str__(self) -> str:
        return f"{self.dataset}.{self.table.name}"


def _split_qualifiers(text: str) -> tuple[str, list[str]]:
    name, *qualifiers = text.split(":")
    return name, qualifiers


def _dataset_part(owner: str, part: str, original: str) -> DatasetRef:
    if not OWNER_RE.match(owner):
        raise ApiError(
            400, f"Invalid owner {owner!r} in reference {original!r}: owners are letters, digits and _."
        )
    name, qualifiers = _split_qualifiers(part)
    if not name:
        raise ApiError(400, f"Invalid reference {original!r}: the dataset name is empty.")
    version: str | None = None
    ref_id: str | None = None
    for qualifier in qualifiers:
        if VERSION_RE.match(qualifier) and version is None:
            version = qualifier.lower()
        elif ref_id is None and qualifier:
            ref_id = qualifier.lower()
        else:
            raise ApiError(400, f"Invalid reference {original!r}: unexpected ':{qualifier}'.")
    return DatasetRef(owner=owner.lower(), dataset=NamePart(name, ref_id), version=version)


def parse_dataset_reference(text: str) -> DatasetRef:
    """``owner.dataset[:refId][:version]``."""
    parts = text.strip().split(".")
    if len(parts) != 2:
        raise ApiError(400, f"Invalid dataset reference {text!r}: write it as owner.dataset[:version].")
    return _dataset_part(parts[0], parts[1], text)


def parse_table_reference(text: str) -> TableRef:
    """``owner.dataset[:refId][:version].table[:refId]``."""
    parts = text.strip().split(".")
    if len(parts) != 3:
        raise ApiError(
            400,
            f"Invalid table reference {text!r}: write it as owner.dataset[:version].table (one path segment).",
        )
    dataset = _dataset_part(parts[0], parts[1], text)
    name, qualifiers = _split_qualifiers(parts[2])
    if not name or len(qualifiers) > 1:
        raise ApiError(400, f"Invalid table reference {text!r}: the table part is name[:refId].")
    return TableRef(dataset, NamePart(name, qualifiers[0].lower() if qualifiers else None))


def version_number(tag: str) -> int | None:
    """``v3``, ``v3_0``, ``v3.0`` -> 3 (minor versions are not modelled)."""
    match = re.match(r"^v(\d+)(?:[._](\d+))?$", tag, re.IGNORECASE)
    if match is None or (match.group(2) not in (None, "0")):
        return None
    return int(match.group(1))
