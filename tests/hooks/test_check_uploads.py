"""RedivisHook.check_uploads: several uploads of one table checked with one listing, against the emulator."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from redivis_emulator import Fault

from airflow_provider_redivis.engine.status import UploadCheck, UploadOutcome, UploadTarget
from airflow_provider_redivis.errors import RedivisNotFoundError
from airflow_provider_redivis.hooks import uploads as uploads_module
from airflow_provider_redivis.hooks.redivis import RedivisHook
from tests.triggers.emulated_uploads import TABLE, create_upload, emulator_fixture

if TYPE_CHECKING:
    from redivis_emulator import RedivisEmulator

emulator = emulator_fixture(processing_delay=0.05)
slow_emulator = emulator_fixture(processing_delay=120.0)


def api_requests(emu: RedivisEmulator) -> list[tuple[str, str]]:
    """(method, path below /api/v1) of every API request, listings as ``LIST``."""
    return [
        (
            "LIST" if r.method == "GET" and r.path.endswith("/uploads") else r.method,
            r.path.removeprefix("/api/v1"),
        )
        for r in emu.requests
        if r.origin == "api"
    ]


def by_uri(upload: dict[str, Any]) -> UploadTarget:
    return UploadTarget(upload_uri=upload["uri"], upload_name=upload["name"])


def check_of(result: UploadCheck | Exception) -> UploadCheck:
    assert isinstance(result, UploadCheck), result
    return result


def test_many_uploads_of_a_table_cost_one_listing(emulator: RedivisEmulator) -> None:
    made = [create_upload(f"part_{i}.csv") for i in range(12)]
    for upload in made[:6]:
        emulator.wait_for_processing(TABLE, upload["name"], timeout=10)
    targets = [by_uri(u) for u in made]
    table_uri = targets[0].table_uri
    assert table_uri is not None
    assert made[0]["uri"].startswith(table_uri + "/uploads/")
    emulator.clear_requests()

    results = RedivisHook().check_uploads(targets, table_uri)

    assert [kind for kind, _ in api_requests(emulator)] == ["LIST"]
    assert set(results) == set(targets)
    for target, upload in zip(targets, made, strict=True):
        check = check_of(results[target])
        assert check.upload is not None
        assert check.upload["uri"] == upload["uri"]
        assert check.upload["name"] == upload["name"]
    assert all(check_of(results[t]).outcome is UploadOutcome.COMPLETED for t in targets[:6])


def test_one_upload_is_checked_with_its_own_get(slow_emulator: RedivisEmulator) -> None:
    target = by_uri(create_upload("alone.csv"))
    slow_emulator.clear_requests()
    results = RedivisHook().check_uploads([target], target.table_uri)
    assert check_of(results[target]).upload is not None
    assert api_requests(slow_emulator) == [("GET", target.upload_uri)]


def test_an_upload_by_name_missing_from_the_listing_is_not_created_yet(
    slow_emulator: RedivisEmulator,
) -> None:
    existing = by_uri(create_upload("here.csv"))
    later = UploadTarget(table=TABLE, upload_name="later.csv")
    slow_emulator.clear_requests()
    results = RedivisHook().check_uploads([existing, later], later.table_uri)
    assert check_of(results[later]).upload is None
    assert check_of(results[later]).seen.startswith("not created yet at ")
    assert check_of(results[existing]).outcome is UploadOutcome.PENDING
    assert [kind for kind, _ in api_requests(slow_emulator)] == ["LIST"]  # no GET by name, no table GET


def test_a_name_redivis_would_match_otherwise_is_asked_for_on_its_own(slow_emulator: RedivisEmulator) -> None:
    create_upload("Sales 2026.csv")
    other = by_uri(create_upload("other.csv"))
    # Redivis finds an upload by name as it writes references: case and punctuation aside.
    target = UploadTarget(table=TABLE, upload_name="sales_2026.csv")
    slow_emulator.clear_requests()
    results = RedivisHook().check_uploads([target, other], target.table_uri)
    found = check_of(results[target]).upload
    assert found is not None
    assert found["name"] == "Sales 2026.csv"
    assert [kind for kind, _ in api_requests(slow_emulator)] == ["LIST", "GET"]


def test_a_deleted_upload_is_confirmed_by_its_own_get_and_ends_only_its_wait(
    slow_emulator: RedivisEmulator,
) -> None:
    gone, kept = by_uri(create_upload("gone.csv")), by_uri(create_upload("kept.csv"))
    RedivisHook(redivis_conn_id="redivis_setup").delete_upload(str(gone.upload_uri))
    slow_emulator.clear_requests()
    results = RedivisHook().check_uploads([gone, kept], gone.table_uri)
    assert isinstance(results[gone], RedivisNotFoundError)
    assert "nothing left to wait for" in str(results[gone])
    assert check_of(results[kept]).upload is not None
    assert api_requests(slow_emulator) == [("LIST", f"{gone.table_uri}/uploads"), ("GET", gone.upload_uri)]


def test_a_transient_listing_failure_is_every_uploads_pending_check(slow_emulator: RedivisEmulator) -> None:
    targets = [by_uri(create_upload(f"t{i}.csv")) for i in range(3)]
    slow_emulator.add_fault(
        Fault("status", method="GET", predicate=lambda info: info.path.endswith("/uploads"), status=503)
    )
    slow_emulator.clear_requests()
    results = RedivisHook().check_uploads(targets, targets[0].table_uri)
    for target in targets:
        check = check_of(results[target])
        assert check.outcome is UploadOutcome.PENDING
        assert check.upload is None
        assert "answering with an error (HTTP 503" in check.seen
    assert len(api_requests(slow_emulator)) == 1


def test_a_refused_listing_leaves_each_upload_to_its_own_answer(emulator: RedivisEmulator) -> None:
    missing = "test_owner.test_dataset.no_such_table"
    targets = [UploadTarget(table=missing, upload_name=f"{i}.csv") for i in range(2)]
    results = RedivisHook().check_uploads(targets, targets[0].table_uri)
    for target in targets:
        assert isinstance(results[target], RedivisNotFoundError)  # the table's 404, as a wait of its own gets
        assert "404" in str(results[target])


def test_a_long_listing_stops_where_a_get_each_costs_less(
    slow_emulator: RedivisEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(uploads_module, "LIST_PAGE_SIZE", 2)  # 2 uploads a page: 4 pages for these 7
    made = [create_upload(f"n{i}.csv") for i in range(7)]
    targets = [by_uri(made[-1]), by_uri(made[-2])]  # on the last pages
    slow_emulator.clear_requests()
    results = RedivisHook().check_uploads(targets, targets[0].table_uri)
    assert all(check_of(results[t]).upload is not None for t in targets)
    # Two targets: at most two pages, then one GET each.
    assert [kind for kind, _ in api_requests(slow_emulator)] == ["LIST", "LIST", "GET", "GET"]
