"""Uploads Redivis fetches itself: TransferJob against the emulator over HTTP, a folder standing in for the bucket.

Created once across tries: a lost answer is followed by a look under the name, and the upload found is
attached to only when nothing shows it is another's. Sources Redivis cannot fetch are refused before any request.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import pytest
from redivis_emulator import Fault, RedivisEmulator

from airflow_provider_redivis.engine.options import UploadSpec
from airflow_provider_redivis.engine.transfer import TransferCheckpoint, TransferJob, transfer_source
from airflow_provider_redivis.errors import RedivisConfigError, RedivisConflictError, RedivisError
from tests.job_support import TABLE, MemoryStore, hook_for

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from airflow_provider_redivis.hooks.redivis import RedivisHook

OTHER = "test_owner.test_dataset.other_table"
DATA = b"id,name\n" + b"".join(f"{i},n{i}\n".encode() for i in range(75))
GS = "gs://bucket/exports/sales.csv"
ME = "me@example.com"


@pytest.fixture
def emu(tmp_path: Path) -> Iterator[RedivisEmulator]:
    (tmp_path / "gcs" / "bucket" / "exports").mkdir(parents=True)
    (tmp_path / "gcs" / "bucket" / "exports" / "sales.csv").write_bytes(DATA)
    with RedivisEmulator(
        tables=[TABLE, OTHER],
        data_dir=tmp_path / "data",
        gcs_root=tmp_path / "gcs",
        gcs_identities={ME: ["bucket"], "nobody@example.com": []},
    ) as emulator:
        yield emulator


@pytest.fixture
def hook(emu: RedivisEmulator, monkeypatch: pytest.MonkeyPatch) -> RedivisHook:
    return hook_for(emu, monkeypatch)


def run(
    hook: RedivisHook, store: MemoryStore, source: str = GS, identity: str | None = ME, **spec: Any
) -> dict[str, Any]:
    transfer = transfer_source(source, identity=identity)
    job = TransferJob(
        hook,
        store,
        UploadSpec(table=TABLE, name=spec.pop("name", "sales.csv"), **spec),
        transfer,
        visibility_wait=1.0,
    )
    return job.run().upload


def posts_to_uploads(emu: RedivisEmulator) -> int:
    return sum(1 for r in emu.requests if r.method == "POST" and r.path.endswith("/uploads"))


def test_redivis_fetches_the_object_and_no_byte_passes_the_worker(
    emu: RedivisEmulator, hook: RedivisHook
) -> None:
    store = MemoryStore()
    upload = run(hook, store)
    done = hook.wait_for_upload(upload["uri"], timeout=10)
    assert (done["status"], done["numRows"], done["size"]) == ("completed", 75, len(DATA))
    assert emu.bytes_received("session") == 0
    assert emu.bytes_received("api") < 2000
    assert len([r for r in emu.requests if r.method == "POST"]) == 1  # only the create
    assert store.value is not None
    assert store.value["upload_uri"] == upload["uri"]


def test_a_lost_answer_is_followed_by_a_look_and_the_upload_is_attached(
    emu: RedivisEmulator, hook: RedivisHook
) -> None:
    emu.add_fault(Fault("drop_response", origin="api", method="POST", path_contains="/uploads", times=1))
    upload = run(hook, MemoryStore())
    (only,) = emu.list_uploads(TABLE)
    assert upload["uri"] == only["uri"]
    assert posts_to_uploads(emu) == 1


def test_a_retry_attaches_to_the_upload_its_first_try_created_and_never_creates_a_second(
    emu: RedivisEmulator, hook: RedivisHook
) -> None:
    store = MemoryStore()
    # Try 1: the name is free; the create is handled but its answer lost, and every look after fails.
    emu.add_fault(Fault("drop_response", origin="api", method="POST", path_contains="/uploads", times=None))
    emu.add_fault(
        Fault("status", origin="api", method="GET", path_contains="/uploads/", status=503, nth=2, times=None)
    )
    with pytest.raises(RedivisError):
        run(hook, store)
    emu.clear_faults()
    assert store.value is not None
    assert store.value["upload_uri"] is None
    assert len(emu.list_uploads(TABLE)) == 1
    # Try 2: finds it under its name and attaches; no second request to create.
    upload = run(hook, store)
    (only,) = emu.list_uploads(TABLE)
    assert upload["uri"] == only["uri"]
    assert posts_to_uploads(emu) == 1
    assert store.value["upload_uri"] == only["uri"]
    # Try 3 (after a failure past creation): attaches by uri.
    assert run(hook, store)["uri"] == only["uri"]
    assert posts_to_uploads(emu) == 1


def test_an_upload_of_the_name_made_before_this_task_looked_is_never_adopted(
    emu: RedivisEmulator, hook: RedivisHook
) -> None:
    theirs = hook.create_upload(
        TABLE, name="sales.csv", transfer_specification=transfer_source(GS, identity=ME).specification()
    )
    # This task's checkpoint says it looked for the name (and found it free) two minutes after that upload was made.
    later = datetime.now(timezone.utc) + timedelta(minutes=2)
    store = MemoryStore(
        TransferCheckpoint(
            TABLE, "sales.csv", transfer_source(GS, identity=ME).specification(), later
        ).to_json()
    )
    with pytest.raises(RedivisConflictError, match="that this task did not create"):
        run(hook, store)
    assert store.value is None  # the next try starts clean and meets if_exists
    assert [u["uri"] for u in emu.list_uploads(TABLE)] == [theirs["uri"]]
    assert posts_to_uploads(emu) == 1


def test_a_name_taken_before_the_first_request_is_a_conflict_not_an_attachment(
    emu: RedivisEmulator, hook: RedivisHook
) -> None:
    hook.create_upload(
        TABLE, name="sales.csv", transfer_specification={"sourceType": "redivis", "sourcePath": OTHER}
    )
    with pytest.raises(RedivisConflictError, match=r"already has an upload named 'sales\.csv'"):
        run(hook, MemoryStore())
    assert len(emu.list_uploads(TABLE)) == 1


def test_another_table_is_copied(emu: RedivisEmulator, hook: RedivisHook) -> None:
    first = run(hook, MemoryStore(), name="first.csv")
    hook.wait_for_upload(first["uri"], timeout=10)
    transfer = transfer_source(source_table=TABLE)
    job = TransferJob(hook, MemoryStore(), UploadSpec(table=OTHER, name=transfer.default_name), transfer)
    done = hook.wait_for_upload(job.run().upload["uri"], timeout=10)
    assert (done["name"], done["status"], done["numRows"]) == ("test_table", "completed", 75)


@pytest.mark.parametrize(
    ("path", "identity", "message"),
    [
        ("gs://bucket/exports/missing.csv", ME, "No such object: gs://bucket/exports/missing.csv"),
        (GS, "nobody@example.com", "nobody@example.com does not have storage.objects.get access"),
    ],
)
def test_what_redivis_cannot_fetch_fails_the_upload_with_its_reason(
    hook: RedivisHook, path: str, identity: str, message: str
) -> None:
    done = hook.wait_for_upload(run(hook, MemoryStore(), path, identity)["uri"], timeout=10)
    assert done["status"] == "failed"
    assert message in done["errorMessage"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"source": "s3://bucket/sales.csv", "identity": ME}, "use RedivisResumableUploadOperator"),
        ({"source": "/data/sales.csv", "identity": ME}, "only from Google Cloud Storage"),
        ({"source": "https://example.com/sales.csv"}, "only from Google Cloud Storage"),
        ({"source": "gs://bucket/exports/"}, "names no single object"),
        ({"source": "gs://bucket"}, "names no single object"),
        ({"source": "gs://bucket/exports/*.csv", "identity": ME}, "no wildcard"),
        ({"source": "gs://Bad_Bucket!/x.csv", "identity": ME}, "does not name a Cloud Storage bucket"),
        ({"source": GS}, "needs identity"),
        ({"source": GS, "identity": "  "}, "needs identity"),
        ({"source_table": OTHER, "identity": ME}, "identity is for a gs:// source only"),
        ({"source_table": "not a table"}, "table"),
        ({}, "Give either source"),
        ({"source": GS, "source_table": OTHER, "identity": ME}, "not both"),
    ],
)
def test_a_source_redivis_cannot_fetch_is_refused_with_what_to_do(
    kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(RedivisConfigError, match=message.replace("*", r"\*")):
        transfer_source(**kwargs)
