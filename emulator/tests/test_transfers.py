"""Uploads Redivis fetches itself (``transferSpecification``): a folder for Cloud Storage, a copy of another table.

Request mistakes are refused at create (400); what only fetching tells fails the upload with an errorMessage.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
import requests
from redivis_emulator import RedivisEmulator

from emulator.tests.conftest import TABLE, TIMEOUT, table_path

OTHER = "test_owner.test_dataset.other_table"
DATA = b"id,name\n" + b"".join(f"{i},n{i}\n".encode() for i in range(120))


@pytest.fixture
def gcs(tmp_path: Path) -> Path:
    root = tmp_path / "gcs"
    (root / "bucket" / "exports").mkdir(parents=True)
    (root / "bucket" / "exports" / "sales.csv").write_bytes(DATA)
    (root / "private").mkdir()
    (root / "private" / "sales.csv").write_bytes(DATA)
    return root


@pytest.fixture
def emu(gcs: Path, tmp_path: Path) -> Any:
    with RedivisEmulator(
        tables=[TABLE, OTHER],
        data_dir=tmp_path / "data",
        gcs_root=gcs,
        gcs_identities={"me@example.com": ["bucket"], "nobody@example.com": []},
    ) as emulator:
        yield emulator


def create(emu: RedivisEmulator, body: dict[str, Any], table: str = TABLE) -> requests.Response:
    return requests.post(
        f"{emu.api_url}{table_path(table)}/uploads",
        json=body,
        headers={"Authorization": f"Bearer {emu.token}"},
        timeout=TIMEOUT,
    )


def gcs_spec(path: str = "bucket/exports/sales.csv", identity: str = "me@example.com") -> dict[str, Any]:
    return {"sourceType": "gcs", "sourcePath": path, "identity": identity}


def test_a_gcs_object_is_fetched_and_processed_like_bytes(emu: RedivisEmulator) -> None:
    answer = create(emu, {"name": "sales.csv", "transferSpecification": gcs_spec()})
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "queued"
    upload = emu.wait_for_processing(TABLE, "sales.csv", timeout=10)
    assert upload["status"] == "completed", upload["errorMessage"]
    assert (upload["numRows"], upload["size"], upload["hash"]) == (
        120,
        len(DATA),
        hashlib.md5(DATA).hexdigest(),
    )
    assert emu.upload_bytes_path(TABLE, "sales.csv").read_bytes() == DATA
    assert emu.bytes_received("session") == 0  # nothing came through a session


def test_another_table_is_copied(emu: RedivisEmulator) -> None:
    assert create(emu, {"name": "first.csv", "transferSpecification": gcs_spec()}, OTHER).status_code == 200
    emu.wait_for_processing(OTHER, "first.csv", timeout=10)
    answer = create(
        emu, {"name": "copy", "transferSpecification": {"sourceType": "redivis", "sourcePath": OTHER}}
    )
    assert answer.status_code == 200, answer.text
    upload = emu.wait_for_processing(TABLE, "copy", timeout=10)
    assert upload["status"] == "completed", upload["errorMessage"]
    assert (upload["numRows"], upload["size"], upload["type"]) == (120, len(DATA), "delimited")
    assert emu.get_table(TABLE)["numRows"] == 120


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"sourceType": "s3", "sourcePath": "bucket/x.csv"}, "Unknown transferSpecification.sourceType 's3'"),
        ({"sourceType": "gcs", "identity": "me@example.com"}, "sourcePath is required"),
        ({"sourceType": "redivis", "sourcePath": ""}, "sourcePath is required"),
        ({"sourceType": "gcs", "sourcePath": "bucket"}, "must be bucket/path/to/object"),
        ({"sourceType": "gcs", "sourcePath": "bucket/x.csv"}, "identity is required for gcs"),
        (gcs_spec(identity="stranger@example.com"), "not a Google account linked to your Redivis account"),
        ({"sourceType": "redivis", "sourcePath": "not a reference"}, "not a table reference"),
        ("gcs", "must be an object"),
    ],
)
def test_a_bad_specification_is_refused_at_create(emu: RedivisEmulator, spec: Any, message: str) -> None:
    answer = create(emu, {"name": "sales.csv", "transferSpecification": spec})
    assert answer.status_code == 400
    assert message in answer.json()["error"]["message"]
    assert emu.list_uploads(TABLE) == []


def test_a_transfer_and_a_temp_upload_together_are_refused(emu: RedivisEmulator) -> None:
    answer = create(emu, {"name": "s.csv", "tempUploadId": "tu_x", "transferSpecification": gcs_spec()})
    assert answer.status_code == 400
    assert "not tempUploadId and transferSpecification" in answer.json()["error"]["message"]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (gcs_spec("bucket/exports/missing.csv"), "No such object: gs://bucket/exports/missing.csv"),
        (gcs_spec("bucket/../private/sales.csv"), "No such object"),
        (gcs_spec("private/sales.csv"), "me@example.com does not have storage.objects.get access"),
        (
            gcs_spec(identity="nobody@example.com"),
            "nobody@example.com does not have storage.objects.get access",
        ),
        ({"sourceType": "redivis", "sourcePath": "test_owner.test_dataset.nothing"}, "was not found"),
        ({"sourceType": "redivis", "sourcePath": TABLE}, "cannot copy the table it is being added to"),
    ],
)
def test_what_cannot_be_fetched_fails_the_upload(emu: RedivisEmulator, spec: Any, message: str) -> None:
    answer = create(emu, {"name": "sales.csv", "transferSpecification": spec})
    assert answer.status_code == 200, answer.text
    upload = emu.wait_for_processing(TABLE, "sales.csv", timeout=10)
    assert upload["status"] == "failed"
    assert message in upload["errorMessage"]


def test_without_identities_any_identity_reads_any_bucket(gcs: Path, tmp_path: Path) -> None:
    with RedivisEmulator(tables=[TABLE], data_dir=tmp_path / "d", gcs_root=gcs) as emu:
        assert create(
            emu, {"name": "p.csv", "transferSpecification": gcs_spec("private/sales.csv", "x@y.z")}
        ).ok
        assert emu.wait_for_processing(TABLE, "p.csv", timeout=10)["status"] == "completed"


def test_without_a_gcs_root_a_gcs_transfer_is_refused(redivis_emulator: RedivisEmulator) -> None:
    answer = create(redivis_emulator, {"name": "s.csv", "transferSpecification": gcs_spec()})
    assert answer.status_code == 400
    assert "--gcs-root" in answer.json()["error"]["message"]
