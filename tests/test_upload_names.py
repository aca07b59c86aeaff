"""``if_exists`` from a look at the table's upload names, and a missing table: the job against the emulator.

A look (a listing, or the answer about one name) proves a name absent only while fresh and only for the
names it covered; every other case asks Redivis, and ``if_exists`` acts before any byte is sent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from airflow_provider_redivis.engine import names as engine_names
from airflow_provider_redivis.engine.creation import apply_if_exists
from airflow_provider_redivis.engine.job import UploadJob
from airflow_provider_redivis.engine.names import MAX_AGE, NamesSeen, absent_name, list_names
from airflow_provider_redivis.engine.options import UploadSpec
from airflow_provider_redivis.engine.sources import LocalFileSource
from airflow_provider_redivis.errors import (
    RedivisAPIError,
    RedivisConflictError,
    RedivisNotFoundError,
    is_final,
)
from tests.job_support import TABLE, MemoryStore, hook_for, write_random

if TYPE_CHECKING:
    from pathlib import Path

    from redivis_emulator import RedivisEmulator

TRANSPORTS = ["resumable_upload", "temp_upload"]


def seed(emu: RedivisEmulator, *names: str) -> None:
    """Uploads someone else made, created in the emulator directly (no API request)."""
    for name in names:
        emu.catalog.create_upload(TABLE, {"name": name, "type": "delimited"})


def api_calls(emu: RedivisEmulator) -> list[str]:
    return [
        f"{r.method} {r.path}" for r in emu.requests if r.origin == "api" and r.path.startswith("/api/v1/")
    ]


def test_a_listing_reads_every_page_and_compares_names_as_redivis_does(
    redivis_emulator: RedivisEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    emu = redivis_emulator
    seed(emu, "Sales 2026.11.csv", *(f"part{i}.csv" for i in range(149)))
    with hook_for(emu, monkeypatch) as hook:
        seen = list_names(hook, TABLE)
    assert api_calls(emu) == [f"GET /api/v1/tables/{TABLE}/uploads"] * 2  # 150 uploads, 100 a page
    assert not seen.says_absent("sales_2026_11_csv")  # the same name to Redivis
    assert not seen.says_absent("SALES 2026-11.CSV")
    assert not seen.says_absent("part148.csv")
    assert seen.says_absent("part149.csv")


def test_a_table_with_too_many_uploads_gives_a_look_that_answers_nothing(
    redivis_emulator: RedivisEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine_names, "MAX_LISTED", 3)
    seed(redivis_emulator, "a.csv", "b.csv", "c.csv", "d.csv")
    with hook_for(redivis_emulator, monkeypatch) as hook:
        seen = list_names(hook, TABLE)
    assert not seen.says_absent("e.csv")  # not listed: asked of Redivis
    assert NamesSeen.from_json(seen.to_json()) == seen


def test_a_look_answers_only_while_fresh_and_only_for_what_it_covered() -> None:
    listing = NamesSeen(TABLE, 1000.0, frozenset({"a_csv"}))
    assert listing.says_absent("b.csv", now=1000.0 + MAX_AGE)
    assert not listing.says_absent("b.csv", now=1000.0 + MAX_AGE + 1)  # too old
    assert listing.says_absent("b.csv", now=1000.0 - 59)  # the reader's clock a little behind
    assert not listing.says_absent("b.csv", now=1000.0 - 61)
    assert not listing.says_absent("A.csv", now=1000.0)
    assert not listing.with_names(["b.csv"]).says_absent("b.csv", now=1000.0)  # a sibling loads it
    one = absent_name(TABLE, "b.csv", 1000.0)
    assert one.says_absent("b.csv", now=1000.0)
    assert not one.says_absent("c.csv", now=1000.0)  # it did not look for that name
    assert NamesSeen.from_json(one.to_json()) == one
    assert NamesSeen.from_json({"table": TABLE, "at": "soon", "present": []}) is None


@pytest.mark.parametrize("if_exists", ["fail", "skip", "replace"])
def test_if_exists_trusts_a_fresh_absence_and_asks_about_anything_else(
    redivis_emulator: RedivisEmulator, monkeypatch: pytest.MonkeyPatch, if_exists: str
) -> None:
    emu = redivis_emulator
    seed(emu, "theirs.csv")
    (theirs,) = emu.list_uploads(TABLE)
    with hook_for(emu, monkeypatch) as hook:
        listing = list_names(hook, TABLE)
        emu.clear_requests()
        # Absent in a fresh listing: Redivis is not asked.
        assert apply_if_exists(hook, TABLE, "mine.csv", if_exists, listing) is None
        assert api_calls(emu) == []
        # Held in the listing: asked once (one GET serves every if_exists), and if_exists acts on the answer.
        if if_exists == "fail":
            with pytest.raises(RedivisConflictError, match=r"already has an upload named 'theirs\.csv'"):
                apply_if_exists(hook, TABLE, "theirs.csv", if_exists, listing)
        else:
            found = apply_if_exists(hook, TABLE, "theirs.csv", if_exists, listing)
            assert found == (theirs if if_exists == "skip" else None)
    calls = api_calls(emu)
    assert calls[0] == f"GET /api/v1/tables/{TABLE}/uploads/theirs_csv"
    if if_exists == "replace":
        assert len(calls) == 2
        assert calls[1].startswith("DELETE ")
        assert calls[1].endswith(f"/uploads/{theirs['id']}")
        assert emu.list_uploads(TABLE) == []
    else:
        assert len(calls) == 1
        assert [u["uri"] for u in emu.list_uploads(TABLE)] == [theirs["uri"]]


def test_a_stale_listing_is_not_trusted(
    redivis_emulator: RedivisEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    emu = redivis_emulator
    stale = NamesSeen(TABLE, 0.0, frozenset())  # taken long ago: theirs.csv came since
    seed(emu, "theirs.csv")
    with (
        hook_for(emu, monkeypatch) as hook,
        pytest.raises(RedivisConflictError, match="already has an upload"),
    ):
        apply_if_exists(hook, TABLE, "theirs.csv", "fail", stale)


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("listed", [False, True], ids=["asked", "listed"])
def test_a_missing_table_fails_before_any_byte_and_says_what_to_do(
    redivis_emulator: RedivisEmulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    transport: str,
    listed: bool,
) -> None:
    emu = redivis_emulator
    missing = "test_owner.test_dataset.no_such_table"
    path = write_random(tmp_path / "data.csv", 1000)
    with hook_for(emu, monkeypatch) as hook:
        job = UploadJob(
            hook,
            MemoryStore(),
            UploadSpec(table=missing, name="data.csv", transport=transport),
            LocalFileSource(path),
            known_names=(lambda: list_names(hook, missing)) if listed else None,
        )
        with pytest.raises(RedivisNotFoundError) as caught:
            job.run()
    assert is_final(caught.value)
    message = str(caught.value)
    assert "not found" in message
    assert "Check the reference (owner.dataset:version.table)" in message
    assert "uploads go to the 'next' version" in message
    assert emu.bytes_received("session") == 0
    assert emu.sessions == {}
    assert all(r.status == 404 for r in emu.requests if r.origin == "api")


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_the_session_request_itself_refuses_a_missing_table(
    redivis_emulator: RedivisEmulator, monkeypatch: pytest.MonkeyPatch, transport: str
) -> None:
    """What the guarantee rests on: Redivis (and so the emulator) answers 404 to a session for a missing table,
    on either transport, with nothing created."""
    missing = "test_owner.test_dataset.no_such_table"
    with hook_for(redivis_emulator, monkeypatch) as hook:
        ask = hook.create_temp_upload if transport == "temp_upload" else hook.create_resumable_upload
        with pytest.raises(RedivisAPIError) as caught:
            ask(missing, 1000)
    assert caught.value.status == 404
    assert "Table" in caught.value.message
    assert "not found" in caught.value.message
    assert redivis_emulator.sessions == {}
