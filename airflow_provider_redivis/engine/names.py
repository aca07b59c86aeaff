"""What one look at a table's upload names showed, and when. Plain Python, no Airflow import.

``if_exists`` must act before any byte is sent, which costs a request per upload when each one asks
Redivis about its own name. A look taken once (a listing of the table's uploads, or the answer about
one name) can answer for a while instead, with a precise and limited promise: it proves that a name was
**absent when the look began**, nothing more. A name a look shows, or does not cover, is asked of
Redivis before ``if_exists`` acts on it; a look older than :data:`MAX_AGE` answers nothing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from airflow_provider_redivis.references import normalise_name

if TYPE_CHECKING:
    from collections.abc import Iterable

    from airflow_provider_redivis.hooks.redivis import RedivisHook

#: Seconds a look answers ``if_exists`` for, by the clocks of the workers that took and read it.
MAX_AGE = 300.0
#: A look dated this far ahead of the reader's clock (another worker's clock runs fast) still counts.
CLOCK_SLACK = 60.0
#: A table with more uploads than this is not listed (at most 6 requests): each name is asked instead.
MAX_LISTED = 500


def name_key(name: str) -> str:
    """How names compare here: Redivis reads every character but a letter, digit or ``_`` as ``_``, and case
    is ignored as well, so that two names Redivis might hold as one never look different."""
    return normalise_name(name).lower()


@dataclass(frozen=True)
class NamesSeen:
    """The upload names a table held when a look at it began.

    :param table: the table reference the look was made with.
    :param at: ``time.time()`` when the look began.
    :param present: name keys (:func:`name_key`) the look found.
    :param looked_for: the keys looked for; None when the whole table was listed.
    """

    table: str
    at: float
    present: frozenset[str]
    looked_for: frozenset[str] | None = None

    def age(self, now: float | None = None) -> float:
        return (time.time() if now is None else now) - self.at

    def fresh(self, now: float | None = None) -> bool:
        return -CLOCK_SLACK <= self.age(now) <= MAX_AGE

    def says_absent(self, name: str, now: float | None = None) -> bool:
        """True only when this look covered ``name``, did not find it, and is still fresh."""
        key = name_key(name)
        covered = self.looked_for is None or key in self.looked_for
        return covered and key not in self.present and self.fresh(now)

    def with_names(self, names: Iterable[str]) -> NamesSeen:
        """This look, holding ``names`` as well (names other tasks of the run are loading)."""
        return replace(self, present=self.present | {name_key(n) for n in names})

    def describe(self) -> str:
        what = "listing of the table's uploads" if self.looked_for is None else "look-up of the name"
        return f"a {what} {max(self.age(), 0.0):.0f} s ago"

    def to_json(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "at": self.at,
            "present": sorted(self.present),
            "looked_for": None if self.looked_for is None else sorted(self.looked_for),
        }

    @classmethod
    def from_json(cls, data: object) -> NamesSeen | None:
        """The look ``data`` holds, or None when it is not one (written by something else)."""
        if not isinstance(data, dict):
            return None
        table, at, present, looked_for = (data.get(k) for k in ("table", "at", "present", "looked_for"))
        if not isinstance(table, str) or isinstance(at, bool) or not isinstance(at, (int, float)):
            return None
        keys, covered = _keys(present), None if looked_for is None else _keys(looked_for)
        if keys is None or (looked_for is not None and covered is None):
            return None
        return cls(table, float(at), keys, covered)


def _keys(value: object) -> frozenset[str] | None:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        return None
    return frozenset(value)


def absent_name(table: str, name: str, at: float) -> NamesSeen:
    """A look-up that found no upload named ``name`` (begun at ``at``)."""
    return NamesSeen(table, at, frozenset(), frozenset({name_key(name)}))


def list_names(hook: RedivisHook, table: str) -> NamesSeen:
    """List the table's upload names (``GET /tables/{t}/uploads``, 100 a page).

    A table with more than :data:`MAX_LISTED` uploads, or an upload without a name, gives a look that
    covers no name: it answers nothing, and is not worth taking again while fresh.
    """
    at = time.time()
    names = [upload.get("name") for upload in hook.list_uploads(table, max_results=MAX_LISTED + 1)]
    if len(names) > MAX_LISTED or not all(isinstance(n, str) for n in names):
        return NamesSeen(table, at, frozenset(), frozenset())
    return NamesSeen(table, at, frozenset(name_key(str(n)) for n in names))
