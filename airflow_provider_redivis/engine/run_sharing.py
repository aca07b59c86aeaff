"""What the mapped instances of one task tell each other within a DAG run, so that a fleet of uploads on one
token asks Redivis once for what every upload needs to know.

Through XCom of the task itself, in the run (``ti.xcom_pull`` of every map index: one call on Airflow 3.3,
one query on 2.11), each mapped instance finds:

- the names its siblings are loading (each publishes its own, a *claim*, before it checks its name), and
  a sibling's listing of the table's upload names (:class:`~airflow_provider_redivis.engine.names.NamesSeen`).
  An instance's first try answers ``if_exists`` from a listing at most ``MAX_AGE`` old, plus the claims,
  and asks Redivis only about a name either holds; with no fresh listing, it lists the table itself and
  publishes the listing for the instances after it. A later try (a retry, a cleared task) asks about its
  name: its first may have met a name taken after the listing. (Airflow clears an instance's own XCom
  when a try starts, so a try cannot tell the next one; its try number can.)
- the table's web URL, for the "Redivis table" button: read from Redivis by the first instance that needs it.

An unmapped task shares nothing and asks Redivis, and so does an instance that cannot read its siblings'
XCom (an Airflow that does not return them): sharing only ever saves requests, it decides nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from airflow_provider_redivis.engine.names import NamesSeen, list_names

if TYPE_CHECKING:
    from airflow_provider_redivis.hooks.redivis import RedivisHook

log = logging.getLogger(__name__)

XCOM_NAMES = "redivis_upload_names"
XCOM_TABLE = "redivis_table"


class RunSharing:
    """One task instance's view of what its mapped siblings in the DAG run know of ``table``.

    :param ti: the running task instance (``context["ti"]``).
    :param table: the table reference, as validated.
    """

    def __init__(self, ti: Any, table: str) -> None:
        self.ti = ti
        self.table = table
        map_index = getattr(ti, "map_index", None)
        #: None for an unmapped task: it has no siblings to share with.
        self.map_index = map_index if isinstance(map_index, int) and map_index >= 0 else None

    def claim(self, name: str) -> None:
        """Tell the siblings this instance loads ``name``: a sibling loading the same name asks Redivis."""
        if self.map_index is not None:
            self._publish(name, None)

    def known_names(self, hook: RedivisHook, name: str, own: NamesSeen | None = None) -> NamesSeen | None:
        """A fresh look at the table with the siblings' claims added, to answer ``if_exists`` for ``name``.

        :param own: a look this try took itself (the SQL transfer's, before its query), used while fresh.
        :returns: ``own``, else a sibling's fresh listing; with neither, this instance lists the table and
            publishes the listing. None (ask Redivis about the name) for an unmapped task without ``own``,
            and for any try but an instance's first: it may follow one whose name was taken after the
            listing it relied on.
        """
        own = own if own is not None and own.fresh() else None
        if self.map_index is None:
            return own
        records = [r for r in self._records(XCOM_NAMES) if r.get("map_index") != self.map_index]
        claimed = [r["name"] for r in records if isinstance(r.get("name"), str)]
        if own is not None:
            return own.with_names(claimed)
        if getattr(self.ti, "try_number", None) != 1:
            return None
        listings = [NamesSeen.from_json(r.get("listing")) for r in records]
        fresh = [seen for seen in listings if seen is not None and seen.table == self.table and seen.fresh()]
        if fresh:
            listing = max(fresh, key=lambda seen: seen.at)
        else:
            listing = list_names(hook, self.table)
            self._publish(name, listing)
        return listing.with_names(claimed)

    def table_url(self, hook: RedivisHook) -> str | None:
        """The table's ``url`` as Redivis returned it: a sibling's if one has it, else read and published."""
        if self.map_index is not None:
            for record in self._records(XCOM_TABLE):
                if isinstance(record.get("url"), str):
                    return str(record["url"])
        url = hook.get_table(self.table).get("url")
        if not isinstance(url, str):
            return None
        if self.map_index is not None:
            self._push(XCOM_TABLE, {"table": self.table, "url": url})
        return url

    def _records(self, key: str) -> list[Mapping[str, Any]]:
        """The siblings' (and this instance's own) records under ``key`` for this table."""
        try:
            pulled = self.ti.xcom_pull(task_ids=self.ti.task_id, key=key)
        except Exception as exc:  # sharing only saves requests: without it, Redivis is asked
            log.info(
                "Could not read what the task's other instances know (%s); asking Redivis", type(exc).__name__
            )
            return []
        # Airflow 3.3 returns a single value alone, not in a list.
        items = [] if pulled is None else [pulled] if isinstance(pulled, Mapping) else list(pulled)
        return [item for item in items if isinstance(item, Mapping) and item.get("table") == self.table]

    def _publish(self, name: str, listing: NamesSeen | None) -> None:
        record = {
            "table": self.table,
            "name": name,
            "map_index": self.map_index,
            "listing": None if listing is None else listing.to_json(),
        }
        self._push(XCOM_NAMES, record)

    def _push(self, key: str, value: dict[str, Any]) -> None:
        try:
            self.ti.xcom_push(key=key, value=value)
        except Exception as exc:  # the siblings then ask Redivis themselves; this upload goes on
            log.warning(
                "Could not tell the task's other instances what this one knows (%s)", type(exc).__name__
            )
