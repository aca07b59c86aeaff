"""The Redivis API as docs/redivis-api.md describes it: auth, error shapes, references, datasets, versions, uploads."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import pytest
import requests
from redivis_emulator import Fault, RedivisEmulator

from emulator.tests.conftest import TABLE, TIMEOUT, table_path

UploadBytes = Callable[..., dict[str, Any]]
DATASET = "test_owner.test_dataset"


def dataset_path(dataset: str = DATASET) -> str:
    return f"/datasets/{quote(dataset, safe='')}"


def wait_for_version(api: requests.Session, emu: RedivisEmulator, tag: str, status: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while True:
        version = api.get(f"{emu.api_url}{dataset_path()}/versions/{tag}", timeout=TIMEOUT).json()
        if version["status"] == status:
            return version
        assert time.monotonic() < deadline, f"version never reached {status}: {version}"
        time.sleep(0.02)


# -- auth and error shapes ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization", [None, "Bearer wrong-token", "Basic dGVzdC10b2tlbg==", "test-token"]
)
def test_401_without_a_valid_token(emu: RedivisEmulator, authorization: str | None) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    response = requests.get(f"{emu.api_url}{table_path()}", headers=headers, timeout=TIMEOUT)
    assert response.status_code == 401
    error = response.json()["error"]
    assert error["status"] == 401
    assert "Bearer" in error["message"]
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_403_insufficient_scope_for_writes_with_a_read_only_token(tmp_path: Path) -> None:
    tokens = {"reader": ["data.overview", "data.data"], "writer": ["data.edit"]}
    with RedivisEmulator(tokens=tokens, tables=[TABLE], data_dir=tmp_path) as emu:
        url = f"{emu.api_url}{table_path()}"
        reader = {"Authorization": "Bearer reader"}
        assert requests.get(url, headers=reader, timeout=TIMEOUT).status_code == 200
        response = requests.post(
            f"{url}/resumableUpload", params={"size": 1}, headers=reader, timeout=TIMEOUT
        )
        assert response.status_code == 403
        assert response.json() == {
            "error": "insufficient_scope",
            "error_description": response.json()["error_description"],
            "status": 403,
            "scope": "data.edit",
        }
        assert "data.edit" in response.json()["error_description"]
        writer = {"Authorization": "Bearer writer"}
        assert (
            requests.post(
                f"{url}/resumableUpload", params={"size": 1}, headers=writer, timeout=TIMEOUT
            ).status_code
            == 200
        )


def test_404_uses_the_simple_error_shape(emu: RedivisEmulator, api: requests.Session) -> None:
    response = api.get(f"{emu.api_url}{table_path('test_owner.test_dataset.nope')}", timeout=TIMEOUT)
    assert response.status_code == 404
    assert set(response.json()) == {"error"}
    assert set(response.json()["error"]) == {"status", "message"}
    assert "nope" in response.json()["error"]["message"]


def test_head_errors_travel_in_the_error_payload_header(emu: RedivisEmulator, api: requests.Session) -> None:
    response = api.head(f"{emu.api_url}{table_path()}/uploads/missing_csv", timeout=TIMEOUT)
    assert response.status_code == 404
    assert response.content == b""
    payload = json.loads(unquote(response.headers["X-REDIVIS-ERROR-PAYLOAD"]))
    assert payload["error"]["status"] == 404
    unauthenticated = requests.head(f"{emu.api_url}{table_path()}", timeout=TIMEOUT)
    assert unauthenticated.status_code == 401
    assert json.loads(unquote(unauthenticated.headers["X-REDIVIS-ERROR-PAYLOAD"]))["error"]["status"] == 401


def test_head_of_an_existing_upload_is_200(
    emu: RedivisEmulator, api: requests.Session, upload_bytes: UploadBytes
) -> None:
    upload_bytes("Sales 2026.11.csv", b"a\n1\n")
    # The official client's segment: '.' replaced by '_', percent-encoded.
    segment = quote("Sales 2026.11.csv".replace(".", "_"), safe="")
    response = api.head(f"{emu.api_url}{table_path()}/uploads/{segment}", timeout=TIMEOUT)
    assert response.status_code == 200
    assert "X-REDIVIS-ERROR-PAYLOAD" not in response.headers


def test_unknown_endpoints_and_methods(emu: RedivisEmulator, api: requests.Session) -> None:
    assert api.get(f"{emu.api_url}/nothing/here", timeout=TIMEOUT).status_code == 404
    assert api.delete(f"{emu.api_url}{table_path()}/resumableUpload", timeout=TIMEOUT).status_code == 405
    assert api.get(f"{emu.base_url}/elsewhere", timeout=TIMEOUT).status_code == 404


def test_bad_json_body_is_400(emu: RedivisEmulator, api: requests.Session) -> None:
    response = api.post(
        f"{emu.api_url}{table_path()}/uploads",
        data=b"{not json",
        headers={"Content-Type": "application/json"},
        timeout=TIMEOUT,
    )
    assert response.status_code == 400
    assert "JSON" in response.json()["error"]["message"]


# -- references --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "reference",
    [
        "test_owner.test_dataset.test_table",
        "test_owner.test_dataset:next.test_table",
        "TEST_Owner.test_dataset.test_table",
        "test_owner.Test Dataset.test-table",
        "test_owner.test_dataset:v1_0.test_table",
    ],
)
def test_reference_forms(emu: RedivisEmulator, api: requests.Session, reference: str) -> None:
    response = api.get(f"{emu.api_url}{table_path(reference)}", timeout=TIMEOUT)
    assert response.status_code == 200, response.text
    assert response.json()["name"] == "test_table"


def test_reference_with_ref_ids_and_the_returned_uri(emu: RedivisEmulator, api: requests.Session) -> None:
    table = api.get(f"{emu.api_url}{table_path()}", timeout=TIMEOUT).json()
    qualified = table["qualifiedReference"]
    assert ":" in qualified
    assert api.get(f"{emu.api_url}{table_path(qualified)}", timeout=TIMEOUT).status_code == 200
    # The uri is used as is, unencoded, as the official client does.
    assert api.get(f"{emu.api_url}{table['uri']}", timeout=TIMEOUT).json()["id"] == table["id"]
    # A refId finds the table whatever the name says.
    _, _, table_part = qualified.split(".")
    renamed = qualified.replace(table_part, f"old_name:{table['referenceId']}")
    assert api.get(f"{emu.api_url}{table_path(renamed)}", timeout=TIMEOUT).json()["id"] == table["id"]


def test_malformed_reference_is_400(emu: RedivisEmulator, api: requests.Session) -> None:
    response = api.get(f"{emu.api_url}/tables/{quote('only.two', safe='')}", timeout=TIMEOUT)
    assert response.status_code == 400
    assert "owner.dataset" in response.json()["error"]["message"]


def test_current_is_404_before_any_release(emu: RedivisEmulator, api: requests.Session) -> None:
    response = api.get(
        f"{emu.api_url}{table_path('test_owner.test_dataset:current.test_table')}", timeout=TIMEOUT
    )
    assert response.status_code == 404


# -- datasets, versions, tables ----------------------------------------------------------------


def test_dataset_and_its_next_version(emu: RedivisEmulator, api: requests.Session) -> None:
    dataset = api.get(f"{emu.api_url}{dataset_path()}", timeout=TIMEOUT).json()
    assert dataset["kind"] == "dataset"
    assert dataset["nextVersion"]["tag"] == "v1.0"
    # Nothing released yet: the untagged dataset is at its next version.
    assert dataset["version"]["tag"] == "v1.0"
    assert dataset["version"]["isReleased"] is False
    assert dataset["version"]["index"] == 0
    version = api.get(f"{emu.api_url}{dataset_path()}/versions/next", timeout=TIMEOUT).json()
    assert version["isReleased"] is False
    assert version["canRelease"] is True
    assert version["status"] is None


def test_creating_a_next_version_when_one_exists_is_an_error(
    emu: RedivisEmulator, api: requests.Session
) -> None:
    response = api.post(f"{emu.api_url}{dataset_path()}/versions", timeout=TIMEOUT)
    assert response.status_code == 409
    assert "already has a next version" in response.json()["error"]["message"]


def test_release_is_asynchronous_and_then_a_new_version_can_be_made(
    emu: RedivisEmulator, api: requests.Session, upload_bytes: UploadBytes
) -> None:
    upload_bytes("a.csv", b"x\n1\n2\n")
    emu.wait_for_processing(TABLE, "a.csv")
    released = api.post(
        f"{emu.api_url}{dataset_path()}/versions/next/release",
        json={"releaseNotes": "first"},
        timeout=TIMEOUT,
    )
    assert released.status_code == 200
    assert released.json()["status"] == "queued"
    assert released.json()["isReleased"] is False
    version = wait_for_version(api, emu, "v1_0", "completed")
    assert version["isReleased"] is True
    assert version["releaseNotes"] == "first"
    dataset = api.get(f"{emu.api_url}{dataset_path()}", timeout=TIMEOUT).json()
    # Untagged, the dataset is at its current (latest released) version.
    assert dataset["version"]["tag"] == "v1.0"
    assert dataset["version"]["isReleased"] is True
    assert dataset["nextVersion"] is None
    listed = api.get(f"{emu.api_url}{dataset_path()}/versions", timeout=TIMEOUT).json()["results"]
    assert [(v["tag"], v["index"], v["isReleased"]) for v in listed] == [("v1.0", 0, True)]
    assert listed[0]["releasedAt"] >= listed[0]["createdAt"]
    # Uploads only go to an unreleased version.
    refused = api.post(f"{emu.api_url}{table_path()}/resumableUpload", params={"size": 3}, timeout=TIMEOUT)
    assert refused.status_code == 400
    assert "is released" in refused.json()["error"]["message"]
    assert ":next" in refused.json()["error"]["message"]
    # The next version inherits the table and its rows.
    created = api.post(f"{emu.api_url}{dataset_path()}/versions", timeout=TIMEOUT)
    assert created.status_code == 200
    assert created.json()["tag"] == "v2.0"
    table = api.get(
        f"{emu.api_url}{table_path('test_owner.test_dataset:next.test_table')}", timeout=TIMEOUT
    ).json()
    assert table["numRows"] == 2
    current = api.get(
        f"{emu.api_url}{table_path('test_owner.test_dataset:current.test_table')}", timeout=TIMEOUT
    )
    assert current.json()["numRows"] == 2


def test_can_release_is_false_while_an_upload_runs_or_has_failed(tmp_path: Path) -> None:
    with (
        RedivisEmulator(tables=[TABLE], data_dir=tmp_path, processing_delay=0.3) as emu,
        requests.Session() as api,
    ):
        api.headers["Authorization"] = f"Bearer {emu.token}"
        emu.add_fault(Fault("fail_processing"))
        created = api.post(
            f"{emu.api_url}{table_path()}/uploads",
            files={"metadata": (None, json.dumps({"name": "f.csv"})), "data": ("f.csv", b"a\n1\n")},
            timeout=TIMEOUT,
        )
        assert created.status_code == 200
        version = api.get(f"{emu.api_url}{dataset_path()}/versions/next", timeout=TIMEOUT).json()
        assert version["canRelease"] is False
        refused = api.post(f"{emu.api_url}{dataset_path()}/versions/next/release", timeout=TIMEOUT)
        assert refused.status_code == 400
        assert "still processing" in refused.json()["error"]["message"]
        assert emu.wait_for_processing(TABLE, "f.csv")["status"] == "failed"
        refused = api.post(f"{emu.api_url}{dataset_path()}/versions/next/release", timeout=TIMEOUT)
        assert "failed" in refused.json()["error"]["message"]
        assert api.delete(f"{emu.api_url}{created.json()['uri']}", timeout=TIMEOUT).status_code == 200
        assert (
            api.get(f"{emu.api_url}{dataset_path()}/versions/next", timeout=TIMEOUT).json()["canRelease"]
            is True
        )


def test_a_failed_release_reports_its_error(emu: RedivisEmulator, api: requests.Session) -> None:
    emu.add_fault(
        Fault("fail_processing", path_contains="/release", message="Table test_table has no variables")
    )
    api.post(f"{emu.api_url}{dataset_path()}/versions/next/release", timeout=TIMEOUT)
    version = wait_for_version(api, emu, "next", "failed")
    assert version["isReleased"] is False
    assert version["releaseErrorMessage"] == "Table test_table has no variables"


def test_create_table_with_merge_strategy(emu: RedivisEmulator, api: requests.Session) -> None:
    url = f"{emu.api_url}{dataset_path()}/tables"
    created = api.post(url, json={"name": "Daily Load", "uploadMergeStrategy": "replace"}, timeout=TIMEOUT)
    assert created.status_code == 200
    assert created.json()["uploadMergeStrategy"] == "replace"
    assert api.get(f"{emu.api_url}{table_path('test_owner.test_dataset.daily_load')}", timeout=TIMEOUT).ok
    assert api.post(url, json={"name": "daily load"}, timeout=TIMEOUT).status_code == 409
    assert (
        api.post(url, json={"name": "x", "uploadMergeStrategy": "merge"}, timeout=TIMEOUT).status_code == 400
    )
    listed = api.get(url, timeout=TIMEOUT).json()
    assert sorted(t["name"] for t in listed["results"]) == ["Daily Load", "test_table"]
    patched = api.patch(
        f"{emu.api_url}{table_path('test_owner.test_dataset.daily_load')}",
        json={"uploadMergeStrategy": "append"},
        timeout=TIMEOUT,
    )
    assert patched.json()["uploadMergeStrategy"] == "append"


def test_create_a_dataset_and_the_current_user(emu: RedivisEmulator, api: requests.Session) -> None:
    created = api.post(
        f"{emu.api_url}/users/new_owner/datasets", json={"name": "Fresh Data"}, timeout=TIMEOUT
    )
    assert created.status_code == 200
    assert created.json()["nextVersion"]["tag"] == "v1.0"
    assert api.get(f"{emu.api_url}{dataset_path('new_owner.fresh_data')}", timeout=TIMEOUT).ok
    assert api.get(f"{emu.api_url}/users/me", timeout=TIMEOUT).json()["kind"] == "user"


# -- uploads -----------------------------------------------------------------------------------


def test_upload_names_are_unique(
    emu: RedivisEmulator, api: requests.Session, upload_bytes: UploadBytes
) -> None:
    upload_bytes("a.csv", b"x\n1\n")
    # 'a_csv' is the same name once normalised.
    response = api.post(f"{emu.api_url}{table_path()}/uploads", json={"name": "a_csv"}, timeout=TIMEOUT)
    assert response.status_code == 409
    assert "already exists" in response.json()["error"]["message"]


def test_rename_on_conflict_mode(tmp_path: Path) -> None:
    with RedivisEmulator(tables=[TABLE], data_dir=tmp_path, on_name_conflict="rename") as emu:
        headers = {"Authorization": f"Bearer {emu.token}"}
        for _ in range(2):
            requests.post(
                f"{emu.api_url}{table_path()}/uploads", json={"name": "a.csv"}, headers=headers, timeout=10
            )
        assert [u["name"] for u in emu.list_uploads(TABLE)] == ["a.csv", "a (1).csv"]


def test_get_delete_and_reuse_a_name(
    emu: RedivisEmulator, api: requests.Session, upload_bytes: UploadBytes
) -> None:
    upload = upload_bytes("a.csv", b"x\n1\n")
    assert api.get(f"{emu.api_url}{upload['uri']}", timeout=TIMEOUT).json()["name"] == "a.csv"
    assert api.get(f"{emu.api_url}{table_path()}/uploads/a_csv", timeout=TIMEOUT).json()["id"] == upload["id"]
    assert api.delete(f"{emu.api_url}{upload['uri']}", timeout=TIMEOUT).status_code == 200
    assert api.get(f"{emu.api_url}{upload['uri']}", timeout=TIMEOUT).status_code == 404
    assert api.head(f"{emu.api_url}{table_path()}/uploads/a_csv", timeout=TIMEOUT).status_code == 404
    upload_bytes("a.csv", b"x\n1\n")


def test_list_uploads_pages(emu: RedivisEmulator, api: requests.Session) -> None:
    for i in range(5):
        api.post(
            f"{emu.api_url}{table_path()}/uploads", json={"name": f"u{i}", "type": "stream"}, timeout=TIMEOUT
        )
    names: list[str] = []
    token = None
    for _ in range(10):
        params: dict[str, Any] = {"maxResults": 2}
        if token:
            params["pageToken"] = token
        page = api.get(f"{emu.api_url}{table_path()}/uploads", params=params, timeout=TIMEOUT).json()
        assert len(page["results"]) <= 2
        names += [u["name"] for u in page["results"]]
        token = page["nextPageToken"]
        if not token:
            break
    assert names == [f"u{i}" for i in range(5)]
    everything = api.get(f"{emu.api_url}{table_path()}/uploads", timeout=TIMEOUT).json()
    assert everything["nextPageToken"] is None
    assert len(everything["results"]) == 5
    bad = api.get(f"{emu.api_url}{table_path()}/uploads", params={"pageToken": "!!"}, timeout=TIMEOUT)
    assert bad.status_code == 400
    assert (
        api.get(f"{emu.api_url}{table_path()}/uploads", params={"maxResults": 0}, timeout=TIMEOUT).status_code
        == 400
    )


def test_upload_without_content_has_null_status(emu: RedivisEmulator, api: requests.Session) -> None:
    created = api.post(
        f"{emu.api_url}{table_path()}/uploads", json={"name": "s", "type": "stream"}, timeout=TIMEOUT
    )
    assert created.json()["status"] is None


def test_upload_validation(emu: RedivisEmulator, api: requests.Session) -> None:
    url = f"{emu.api_url}{table_path()}/uploads"
    assert api.post(url, json={}, timeout=TIMEOUT).status_code == 400
    assert api.post(url, json={"name": "x", "type": "pdf"}, timeout=TIMEOUT).status_code == 400
    assert api.post(url, json={"name": "x", "delimiter": ",,"}, timeout=TIMEOUT).status_code == 400
    both = api.post(url, json={"name": "x", "resumableUploadId": "a", "tempUploadId": "b"}, timeout=TIMEOUT)
    assert both.status_code == 400
    unknown = api.post(url, json={"name": "x", "resumableUploadId": "nope"}, timeout=TIMEOUT)
    assert "Unknown resumableUploadId" in unknown.json()["error"]["message"]


def test_temp_upload_single_put(emu: RedivisEmulator, api: requests.Session) -> None:
    data = b"a,b\n1,2\n"
    listing = api.post(
        f"{emu.api_url}{table_path()}/tempUploads",
        json={"tempUploads": [{"size": len(data), "name": "t.csv", "resumable": False}]},
        timeout=TIMEOUT,
    ).json()
    assert listing["kind"] == "tempUploadList"
    temp = listing["results"][0]
    assert temp["kind"] == "tempUpload"
    assert temp["resumable"] is False
    early = api.post(
        f"{emu.api_url}{table_path()}/uploads",
        json={"name": "t.csv", "tempUploadId": temp["id"]},
        timeout=TIMEOUT,
    )
    assert early.status_code == 400
    assert requests.put(temp["url"], data=data, timeout=TIMEOUT).status_code == 200
    created = api.post(
        f"{emu.api_url}{table_path()}/uploads",
        json={"name": "t.csv", "tempUploadId": temp["id"]},
        timeout=TIMEOUT,
    )
    assert created.status_code == 200
    assert emu.wait_for_processing(TABLE, "t.csv")["numRows"] == 1


def test_temp_upload_resumable_handshake(emu: RedivisEmulator, api: requests.Session) -> None:
    data = b"a,b\n" + b"1,2\n" * 1000
    temp = api.post(
        f"{emu.api_url}{table_path()}/tempUploads",
        json={"tempUploads": [{"size": len(data), "name": "r.csv", "resumable": True}]},
        timeout=TIMEOUT,
    ).json()["results"][0]
    assert api.post(temp["url"], timeout=TIMEOUT).status_code == 400  # no x-goog-resumable: start
    start = api.post(
        temp["url"],
        headers={"x-goog-resumable": "start", "x-upload-content-length": str(len(data))},
        timeout=TIMEOUT,
    )
    assert start.status_code == 201
    location = start.headers["Location"]
    assert location.startswith(emu.session_base_url)
    done = requests.put(
        location,
        data=data,
        headers={"Content-Range": f"bytes 0-{len(data) - 1}/{len(data)}"},
        timeout=TIMEOUT,
    )
    assert done.status_code == 200
    created = api.post(
        f"{emu.api_url}{table_path()}/uploads",
        json={"name": "r.csv", "tempUploadId": temp["id"]},
        timeout=TIMEOUT,
    )
    assert created.status_code == 200
    assert emu.wait_for_processing(TABLE, "r.csv")["numRows"] == 1000


def test_multipart_upload_for_small_files(emu: RedivisEmulator, api: requests.Session) -> None:
    data = b"id;name\n1;a\n2;b\n"
    created = api.post(
        f"{emu.api_url}{table_path()}/uploads",
        files={"metadata": (None, json.dumps({"name": "m.csv", "delimiter": ";"})), "data": ("m.csv", data)},
        timeout=TIMEOUT,
    )
    assert created.status_code == 200
    upload = emu.wait_for_processing(TABLE, "m.csv")
    assert (upload["numRows"], upload["size"]) == (2, len(data))
    assert emu.upload_bytes_path(TABLE, "m.csv").read_bytes() == data
