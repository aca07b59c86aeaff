"""Table and dataset references: validation, normalisation and the one URL encoding Redivis accepts."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote

from airflow_provider_redivis.errors import RedivisConfigError

_OWNER = r"[A-Za-z0-9_]+"
# A name may carry a ':refId' suffix, a dataset also a ':version' tag ('next', 'current', 'v1_2').
_TABLE_RE = re.compile(rf"^(?P<owner>{_OWNER})\.(?P<dataset>[^.]+)\.(?P<table>[^.]+)$")
_DATASET_RE = re.compile(rf"^(?P<owner>{_OWNER})\.(?P<dataset>[^.]+)$")


def is_template(value: object) -> bool:
    """A Jinja template not rendered yet: checked when it renders, at run time."""
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def encode_reference(ref: str) -> str:
    """One path segment: Redivis wants the whole reference percent-encoded, ':' and '/' included."""
    return quote(ref, safe="")


def _check(ref: object, kind: str, pattern: re.Pattern[str], example: str) -> re.Match[str]:
    if not isinstance(ref, str) or not ref.strip():
        raise RedivisConfigError(
            f"A Redivis {kind} reference must be a non-empty string like {example!r}, got {ref!r}."
        )
    match = pattern.match(ref.strip())
    if match is None:
        raise RedivisConfigError(
            f"{ref!r} is not a Redivis {kind} reference. Write it as {example!r} "
            "(owner, dataset[:version] and table separated by dots)."
        )
    return match


@dataclass(frozen=True)
class TableReference:
    """``owner.dataset[:version].table``, as the user wrote it."""

    owner: str
    dataset: str
    table: str

    @classmethod
    def parse(cls, ref: str) -> TableReference:
        m = _check(ref, "table", _TABLE_RE, "owner.dataset:next.table")
        return cls(owner=m["owner"], dataset=m["dataset"], table=m["table"])

    @property
    def dataset_reference(self) -> str:
        return f"{self.owner}.{self.dataset}"

    @property
    def version(self) -> str | None:
        """The version tag in the dataset part (``next``, ``current``, ``v1_2``), or None."""
        parts = self.dataset.split(":")
        for part in parts[1:]:
            if part == "next" or part == "current" or re.fullmatch(r"v\d+(_\d+)?", part):
                return part
        return None

    def __str__(self) -> str:
        return f"{self.owner}.{self.dataset}.{self.table}"


def validate_table_reference(ref: str) -> str:
    """Return the stripped reference, or raise RedivisConfigError saying how to write it."""
    return str(TableReference.parse(ref))


def validate_dataset_reference(ref: str) -> str:
    m = _check(ref, "dataset", _DATASET_RE, "owner.dataset")
    return f"{m['owner']}.{m['dataset']}"


def normalise_name(name: str) -> str:
    """Names in references replace every character that is not a letter, digit or underscore with '_'."""
    return re.sub(r"[^A-Za-z0-9_]", "_", name)
