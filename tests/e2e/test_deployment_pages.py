"""The deployment harness reads every task instance of a run, however many pages the API answers in (a fleet
of 200 mapped uploads is four pages of 50, Airflow's default)."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.e2e.deployment import AirflowDeployment


class PagedTaskInstances:
    """Answers ``GET .../taskInstances`` as Airflow 3's API does: ``limit`` 50 unless asked, 100 at most."""

    def __init__(self, total: int) -> None:
        self.total = total

    def api(self, method: str, path: str) -> dict[str, Any]:
        query = parse_qs(urlsplit(path).query)
        limit = min(int(query.get("limit", ["50"])[0]), 100)
        offset = int(query.get("offset", ["0"])[0])
        rows = [{"task_id": "upload", "map_index": i} for i in range(offset, min(offset + limit, self.total))]
        return {"task_instances": rows, "total_entries": self.total}


def test_task_instances_reads_every_page() -> None:
    api = PagedTaskInstances(230)
    found = AirflowDeployment.task_instances(api, "fleet", "manual__2026-12-07")  # type: ignore[arg-type]
    assert [ti["map_index"] for ti in found] == list(range(230))
