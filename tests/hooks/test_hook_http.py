"""RedivisHook over real HTTP: the emulator on 127.0.0.1, faults injected there, nothing mocked."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import pytest
import requests
import tenacity
from redivis_emulator import Fault, RedivisEmulator

from airflow_provider_redivis.engine.request_budget import BudgetWaitTimeoutError
from airflow_provider_redivis.engine.retry import RetryPolicy
from airflow_provider_redivis.errors import (
    RedivisAPIError,
    RedivisAuthError,
    RedivisConfigError,
    RedivisConflictError,
    RedivisError,
    RedivisNotFoundError,
    RedivisServerError,
)
from airflow_provider_redivis.hooks import uploads as uploads_module
from airflow_provider_redivis.hooks.redivis import RedivisHook
from tests.hooks.conftest import (
    DATASET,
    FAST_RETRIES,
    READ_ONLY_TOKEN,
    TABLE,
    TOKEN,
    HookLog,
    MakeConnection,
    emulator_uri,
)

TABLE_PATH = "/api/v1/tables/test_owner.test_dataset%3Anext.test_table"
CSV = b"id,name\n1,alpha\n2,beta\n"


def api_requests(emu: RedivisEmulator, method: str | None = None) -> list:
    """The API requests the emulator recorded, once each has its answer's status.

    The emulator notes the status just after writing the answer, so the client can get there first;
    wait (bounded) for every request that was answered (not reset, dropped or stalled) to settle.
    """
    deadline = time.monotonic() + 5.0
    while True:
        records = [r for r in emu.requests if r.origin == "api" and (method is None or r.method == method)]
        unsettled = [
            r for r in records if r.status is None and not {"reset", "drop_response", "stall"} & set(r.faults)
        ]
        if not unsettled or time.monotonic() > deadline:
            return records
        time.sleep(0.01)


def upload_file(
    hook: RedivisHook, emu: RedivisEmulator, name: str, data: bytes = CSV, **options: object
) -> dict:
    """The whole path the operator takes: session, bytes in one PUT, then the upload."""
    session = hook.create_resumable_upload(TABLE, len(data))
    response = hook.session.put(
        session["url"],
        data=data,
        headers={"Content-Range": f"bytes 0-{len(data) - 1}/{len(data)}"},
        timeout=hook.timeout,
    )
    assert response.status_code in (200, 201), response.text
    return hook.create_upload(TABLE, name=name, resumable_upload_id=session["id"], **options)


# --------------------------------------------------------------------------------------------------
# The token goes to the API origin only
# --------------------------------------------------------------------------------------------------
def test_token_goes_to_the_api_origin_and_never_to_the_session_origin(
    hook: RedivisHook, emulator: RedivisEmulator
) -> None:
    upload_file(hook, emulator, "first.csv")
    api = api_requests(emulator)
    session = [r for r in emulator.requests if r.origin == "session"]
    assert [r.method for r in api] == ["POST", "POST"]
    assert all(r.headers["authorization"] == f"Bearer {TOKEN}" for r in api)
    assert len(session) == 1
    assert "authorization" not in session[0].headers
    assert emulator.authorization_seen("session") == 0


def test_requests_carry_the_user_agent_and_accept_json(hook: RedivisHook, emulator: RedivisEmulator) -> None:
    hook.get_table(TABLE)
    (request,) = api_requests(emulator)
    assert request.headers["user-agent"].startswith("airflow-provider-redivis/")
    assert "apache-airflow/" in request.headers["user-agent"]
    assert request.headers["accept"] == "application/json"


class _Recorder(ThreadingHTTPServer):
    """A tiny server on 127.0.0.1: records each request's headers; redirects where ``route`` says."""

    daemon_threads = True

    def __init__(self, route: Callable[[str], str | None]) -> None:
        super().__init__(("127.0.0.1", 0), _RecorderHandler)
        self.route = route
        self.seen: list[tuple[str, str, dict[str, str]]] = []

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _RecorderHandler(BaseHTTPRequestHandler):
    server: _Recorder

    def _answer(self) -> None:
        self.server.seen.append((self.command, self.path, {k.lower(): v for k, v in self.headers.items()}))
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        target = self.server.route(self.path)
        body = b"" if target else json.dumps({"kind": "table", "servedBy": "recorder"}).encode()
        self.send_response(307 if target else 200)
        if target:
            self.send_header("Location", target)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_HEAD = do_DELETE = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def recorder_factory() -> Iterator[Callable[[Callable[[str], str | None]], _Recorder]]:
    servers: list[_Recorder] = []

    def start(route: Callable[[str], str | None]) -> _Recorder:
        server = _Recorder(route)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_a_redirect_to_another_origin_drops_the_token(
    emulator: RedivisEmulator, make_connection: MakeConnection, recorder_factory: Callable[..., _Recorder]
) -> None:
    # The "API" answers with a redirect to the emulator: same host, other port, so another origin.
    redirector = recorder_factory(lambda path: f"{emulator.base_url}{path}")
    conn_id = make_connection(f"redivis://:{TOKEN}@{redirector.base_url.removeprefix('http://')}")
    with RedivisHook(conn_id, retry_policy=FAST_RETRIES) as hook, pytest.raises(RedivisAuthError) as info:
        hook.get_table(TABLE)
    assert info.value.status == 401  # the emulator got no token
    ((_, _, first_headers),) = redirector.seen
    assert first_headers["authorization"] == f"Bearer {TOKEN}"
    (followed,) = api_requests(emulator)
    assert followed.path == TABLE_PATH
    assert "authorization" not in followed.headers


def test_a_redirect_within_the_api_origin_keeps_the_token(
    make_connection: MakeConnection, recorder_factory: Callable[..., _Recorder]
) -> None:
    server = recorder_factory(lambda path: "/api/v1/moved" if "moved" not in path else None)
    conn_id = make_connection(f"redivis://:{TOKEN}@{server.base_url.removeprefix('http://')}")
    with RedivisHook(conn_id, retry_policy=FAST_RETRIES) as hook:
        assert hook.get_table(TABLE)["servedBy"] == "recorder"
    assert [path for _, path, _ in server.seen] == [TABLE_PATH, "/api/v1/moved"]
    assert all(headers["authorization"] == f"Bearer {TOKEN}" for _, _, headers in server.seen)


def test_a_redirect_to_a_third_party_via_a_post_drops_the_token(
    emulator: RedivisEmulator, make_connection: MakeConnection, recorder_factory: Callable[..., _Recorder]
) -> None:
    elsewhere = recorder_factory(lambda path: None)
    api = recorder_factory(lambda path: f"{elsewhere.base_url}/collect")
    conn_id = make_connection(f"redivis://:{TOKEN}@{api.base_url.removeprefix('http://')}")
    with RedivisHook(conn_id, retry_policy=FAST_RETRIES) as hook:
        hook.create_table(DATASET, "t")
    ((method, path, headers),) = elsewhere.seen
    assert (method, path) == ("POST", "/collect")  # 307 keeps the method and the body
    assert "authorization" not in headers


# --------------------------------------------------------------------------------------------------
# Retries
# --------------------------------------------------------------------------------------------------
def test_503_is_retried_with_a_warning_naming_the_wait(
    hook: RedivisHook, emulator: RedivisEmulator, hook_log: HookLog
) -> None:
    caplog = hook_log(hook)
    fault = emulator.add_fault(
        Fault(
            "status",
            status=503,
            origin="api",
            headers={"Retry-After": "0"},
            times=2,
            path_contains="/tables/",
        )
    )
    assert hook.get_table(TABLE)["name"] == "test_table"
    assert fault.fired == 2
    assert [r.status for r in api_requests(emulator)] == [503, 503, 200]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        f"Redivis API GET {TABLE_PATH.removeprefix('/api/v1')} failed (HTTP 503) on attempt {n}; retrying in 0.00 s"
        for n in (1, 2)
    ]


def test_429_waits_what_retry_after_says(
    hook: RedivisHook, emulator: RedivisEmulator, hook_log: HookLog
) -> None:
    caplog = hook_log(hook)
    emulator.add_fault(Fault("status", status=429, origin="api", headers={"Retry-After": "0.3"}, times=3))
    started = time.monotonic()
    hook.get_table(TABLE)
    # Not the policy's 10-20 ms backoff: the server's 0.3 s, each time; a refusal is a wait for the token's
    # request budget, not a failed attempt: three of them pass a policy of max_attempts=4 without a warning.
    assert time.monotonic() - started >= 0.9
    assert [r.levelno for r in caplog.records if r.levelno >= logging.WARNING] == []
    waits = [r.getMessage() for r in caplog.records if "request budget" in r.getMessage()]
    assert len(waits) == 3
    assert waits[0].startswith("Redivis answered 429 (too many requests): waiting 0.3 s")
    assert [r.status for r in api_requests(emulator)] == [429, 429, 429, 200]


@pytest.mark.parametrize("status", [408, 500, 502, 504])
def test_other_transient_statuses_are_retried(
    hook: RedivisHook, emulator: RedivisEmulator, status: int
) -> None:
    emulator.add_fault(Fault("status", status=status, origin="api"))
    hook.get_dataset(DATASET)
    assert [r.status for r in api_requests(emulator)] == [status, 200]


def test_a_reset_connection_is_retried_for_a_read(hook: RedivisHook, emulator: RedivisEmulator) -> None:
    fault = emulator.add_fault(Fault("reset", origin="api", method="GET"))
    hook.get_table(TABLE)
    assert fault.fired == 1
    assert [r.status for r in api_requests(emulator)] == [None, 200]


def test_a_read_timeout_is_retried(emulator: RedivisEmulator, make_connection: MakeConnection) -> None:
    emulator.add_fault(Fault("stall", origin="api", method="GET", seconds=2.0))
    with RedivisHook(
        make_connection(emulator_uri(emulator)), timeout=(2, 0.3), retry_policy=FAST_RETRIES
    ) as hook:
        hook.get_table(TABLE)
    assert [r.method for r in api_requests(emulator)] == ["GET", "GET"]


def test_retries_stop_at_max_attempts_and_raise_the_last_error(
    hook: RedivisHook, emulator: RedivisEmulator
) -> None:
    emulator.add_fault(Fault("status", status=503, origin="api", times=None, message="Down for maintenance."))
    with pytest.raises(RedivisServerError) as info:
        hook.get_table(TABLE)
    assert len(api_requests(emulator)) == FAST_RETRIES.max_attempts
    assert info.value.status == 503
    assert info.value.message == "Down for maintenance."
    assert "try later" in str(info.value)


def test_a_retry_after_beyond_the_waits_deadline_ends_it_at_the_deadline_saying_it_was_the_budget(
    emulator: RedivisEmulator, make_connection: MakeConnection
) -> None:
    emulator.add_fault(Fault("status", status=429, origin="api", headers={"Retry-After": "120"}, times=None))
    policy = RetryPolicy(max_attempts=5, max_total_seconds=5.0, initial_wait=0.01)
    with RedivisHook(make_connection(emulator_uri(emulator)), retry_policy=policy) as hook:
        hook.budget_deadline = time.monotonic() + 0.5
        with pytest.raises(BudgetWaitTimeoutError, match="request budget") as info:
            hook.get_table(TABLE)
    assert "Redivis answered 429" in str(info.value)
    assert len(api_requests(emulator)) == 1


def test_max_attempts_from_the_connection_extras(
    emulator: RedivisEmulator, make_connection: MakeConnection
) -> None:
    emulator.add_fault(Fault("status", status=502, origin="api", times=None))
    conn_id = make_connection(emulator_uri(emulator) + "?max_attempts=2")
    with (
        RedivisHook(conn_id, retry_args={"wait": tenacity.wait_none()}) as hook,
        pytest.raises(RedivisServerError),
    ):
        hook.get_table(TABLE)
    assert len(api_requests(emulator)) == 2


def test_the_caller_can_switch_retries_off(
    emulator: RedivisEmulator, make_connection: MakeConnection
) -> None:
    emulator.add_fault(Fault("status", status=503, origin="api"))
    conn_id = make_connection(emulator_uri(emulator))
    with (
        RedivisHook(conn_id, retry_args={"stop": tenacity.stop_after_attempt(1)}) as hook,
        pytest.raises(RedivisServerError),
    ):
        hook.get_table(TABLE)
    assert len(api_requests(emulator)) == 1


@pytest.mark.parametrize(
    ("status", "error_class"),
    [
        (400, RedivisAPIError),
        (401, RedivisAuthError),
        (403, RedivisAuthError),
        (404, RedivisNotFoundError),
        (409, RedivisConflictError),
        (410, RedivisAPIError),
        (422, RedivisAPIError),
    ],
)
def test_other_4xx_are_never_retried(
    hook: RedivisHook, emulator: RedivisEmulator, status: int, error_class: type[RedivisAPIError]
) -> None:
    emulator.add_fault(Fault("status", status=status, origin="api", times=None))
    with pytest.raises(error_class) as info:
        hook.get_table(TABLE)
    assert info.value.status == status
    assert len(api_requests(emulator)) == 1


def test_a_real_404_is_not_retried(hook: RedivisHook, emulator: RedivisEmulator) -> None:
    with pytest.raises(RedivisNotFoundError):
        hook.get_table("test_owner.test_dataset:next.no_such_table")
    assert len(api_requests(emulator)) == 1


def test_create_upload_checks_its_options_first_and_parses_json_text(
    hook: RedivisHook, emulator: RedivisEmulator
) -> None:
    """A bad option is a RedivisConfigError naming it, with nothing asked of Redivis (it was a bare ValueError)."""
    session = hook.create_resumable_upload(TABLE, 10)
    with pytest.raises(RedivisConfigError, match="metadata must be a mapping"):
        hook.create_upload(TABLE, name="m.csv", resumable_upload_id=session["id"], metadata="{'a': 1}")
    assert not [r for r in api_requests(emulator, "POST") if r.path.endswith("/uploads")]
    upload = upload_file(hook, emulator, "j.csv", metadata='{"a": {"label": "A"}}', delimiter=",")
    assert (upload["metadata"], upload["delimiter"]) == ({"a": {"label": "A"}}, ",")


# create_upload is not idempotent: an attempt that got no answer may have created the upload.
def test_create_upload_is_not_retried_after_a_reset(hook: RedivisHook, emulator: RedivisEmulator) -> None:
    emulator.add_fault(Fault("reset", origin="api", method="POST", path_contains="/uploads"))
    with pytest.raises(requests.ConnectionError):
        upload_file(hook, emulator, "once.csv")
    assert len([r for r in api_requests(emulator, "POST") if r.path.endswith("/uploads")]) == 1


def test_create_upload_is_not_retried_when_the_answer_is_lost(
    hook: RedivisHook, emulator: RedivisEmulator
) -> None:
    emulator.add_fault(Fault("drop_response", origin="api", method="POST", path_contains="/uploads"))
    with pytest.raises(requests.ConnectionError):
        upload_file(hook, emulator, "once.csv")
    # The upload exists: a blind retry would have hit a name conflict or made a second one.
    assert [u["name"] for u in emulator.list_uploads(TABLE)] == ["once.csv"]
    assert hook.upload_exists(TABLE, "once.csv")


def test_create_upload_is_not_retried_after_a_read_timeout(
    emulator: RedivisEmulator, make_connection: MakeConnection
) -> None:
    emulator.add_fault(Fault("stall", origin="api", method="POST", path_contains="/uploads", seconds=2.0))
    with (
        RedivisHook(
            make_connection(emulator_uri(emulator)), timeout=(2, 0.3), retry_policy=FAST_RETRIES
        ) as hook,
        pytest.raises(requests.Timeout),
    ):
        upload_file(hook, emulator, "slow.csv")
    assert len([r for r in api_requests(emulator, "POST") if r.path.endswith("/uploads")]) == 1


@pytest.mark.parametrize("status", [429, 503])
def test_create_upload_is_retried_when_the_server_refused_it(
    hook: RedivisHook, emulator: RedivisEmulator, status: int
) -> None:
    emulator.add_fault(
        Fault(
            "status",
            status=status,
            origin="api",
            method="POST",
            path_contains="/uploads",
            headers={"Retry-After": "0"},
        )
    )
    upload = upload_file(hook, emulator, "refused-once.csv")
    assert upload["name"] == "refused-once.csv"
    assert [u["name"] for u in emulator.list_uploads(TABLE)] == ["refused-once.csv"]


@pytest.mark.parametrize("status", [500, 502, 504])
def test_create_upload_is_not_retried_on_an_ambiguous_server_error(
    hook: RedivisHook, emulator: RedivisEmulator, status: int
) -> None:
    emulator.add_fault(Fault("status", status=status, origin="api", method="POST", path_contains="/uploads"))
    with pytest.raises(RedivisServerError):
        upload_file(hook, emulator, "ambiguous.csv")
    assert len([r for r in api_requests(emulator, "POST") if r.path.endswith("/uploads")]) == 1


def test_a_delete_whose_answer_was_lost_counts_as_done_on_the_retry(
    hook: RedivisHook, emulator: RedivisEmulator
) -> None:
    upload = upload_file(hook, emulator, "to-delete.csv")
    emulator.add_fault(Fault("drop_response", origin="api", method="DELETE"))
    hook.delete_upload(upload["uri"])
    assert [r.status for r in api_requests(emulator, "DELETE")] == [None, 404]
    assert emulator.list_uploads(TABLE) == []


def test_a_plain_404_on_delete_is_an_error(hook: RedivisHook, emulator: RedivisEmulator) -> None:
    upload = upload_file(hook, emulator, "gone.csv")
    hook.delete_upload(upload["uri"])
    with pytest.raises(RedivisNotFoundError):
        hook.delete_upload(upload["uri"])


# --------------------------------------------------------------------------------------------------
# Errors: both body shapes, HEAD's header, hints, truncation, no token
# --------------------------------------------------------------------------------------------------
def test_error_shape_with_a_nested_object(hook: RedivisHook) -> None:
    with pytest.raises(RedivisNotFoundError) as info:
        hook.get_table("test_owner.test_dataset:next.missing")
    error = info.value
    assert error.status == 404
    assert error.code is None
    assert "missing" in error.message
    assert error.method == "GET"
    assert error.path == "/tables/test_owner.test_dataset%3Anext.missing"
    assert "Check the reference" in str(error)


def test_error_shape_insufficient_scope(emulator: RedivisEmulator, make_connection: MakeConnection) -> None:
    conn_id = make_connection(emulator_uri(emulator, READ_ONLY_TOKEN))
    with RedivisHook(conn_id, retry_policy=FAST_RETRIES) as hook:
        assert hook.get_table(TABLE)["name"] == "test_table"  # reading needs no data.edit
        with pytest.raises(RedivisAuthError) as info:
            hook.create_resumable_upload(TABLE, 10)
    error = info.value
    assert (error.status, error.code) == (403, "insufficient_scope")
    assert "data.edit" in error.message
    assert error.hint == "Create a token with the data.edit scope and put it in the connection's password"
    assert READ_ONLY_TOKEN not in str(error)


def test_error_shape_insufficient_scope_names_the_scope_the_server_asked_for(
    hook: RedivisHook, emulator: RedivisEmulator
) -> None:
    body = {
        "error": "insufficient_scope",
        "error_description": "Needs more",
        "status": 403,
        "scope": "data.data",
    }
    emulator.add_fault(Fault("status", status=403, origin="api", body=body))
    with pytest.raises(RedivisAuthError) as info:
        hook.get_table(TABLE)
    assert (info.value.code, info.value.message) == ("insufficient_scope", "Needs more")
    assert "with the data.data scope" in str(info.value)


def test_a_bad_token_says_to_check_the_connection_password(
    emulator: RedivisEmulator, make_connection: MakeConnection
) -> None:
    with (
        RedivisHook(
            make_connection(emulator_uri(emulator, "wrong-token-0000")), retry_policy=FAST_RETRIES
        ) as hook,
        pytest.raises(RedivisAuthError) as info,
    ):
        hook.get_table(TABLE)
    assert info.value.status == 401
    assert "connection's password" in str(info.value)
    assert "wrong-token-0000" not in str(info.value)


def test_head_errors_come_from_the_error_payload_header(
    emulator: RedivisEmulator, make_connection: MakeConnection
) -> None:
    with (
        RedivisHook(
            make_connection(emulator_uri(emulator, "wrong-token-1111")), retry_policy=FAST_RETRIES
        ) as hook,
        pytest.raises(RedivisAuthError) as info,
    ):
        hook.upload_exists(TABLE, "anything.csv")
    assert info.value.status == 401
    assert info.value.method == "HEAD"
    assert info.value.message.startswith("Missing or invalid API token")


def test_head_error_with_a_custom_message(hook: RedivisHook, emulator: RedivisEmulator) -> None:
    emulator.add_fault(
        Fault("status", status=403, origin="api", method="HEAD", message="You may not see this table.")
    )
    with pytest.raises(RedivisAuthError) as info:
        hook.upload_exists(TABLE, "x.csv")
    assert info.value.message == "You may not see this table."
    (head,) = api_requests(emulator, "HEAD")
    assert head.status == 403


def test_a_long_non_json_error_body_is_truncated(hook: RedivisHook, emulator: RedivisEmulator) -> None:
    page = "<html><body>" + "Bad gateway. " * 2000 + "</body></html>"
    emulator.add_fault(Fault("status", status=400, origin="api", body=page))
    with pytest.raises(RedivisAPIError) as info:
        hook.get_table(TABLE)
    assert info.value.message.startswith("<html><body>Bad gateway.")
    assert "more characters)" in info.value.message
    assert len(str(info.value)) < 1000


def test_a_server_echoing_the_token_does_not_put_it_in_the_error(
    hook: RedivisHook, emulator: RedivisEmulator
) -> None:
    body = {"error": {"status": 400, "message": f"Token {TOKEN} is malformed"}}
    emulator.add_fault(Fault("status", status=400, origin="api", body=body))
    with pytest.raises(RedivisAPIError) as info:
        hook.get_table(TABLE)
    assert TOKEN not in str(info.value)
    assert TOKEN not in repr(info.value)
    assert info.value.message == "Token *** is malformed"


def test_a_2xx_that_is_not_json_is_an_error_pointing_at_the_host(
    hook: RedivisHook, emulator: RedivisEmulator
) -> None:
    emulator.add_fault(Fault("status", status=200, origin="api", body="<html>login page</html>"))
    with pytest.raises(RedivisAPIError, match=r"not JSON.*points at Redivis"):
        hook.get_table(TABLE)


def test_redivis_warnings_are_logged_once(
    hook: RedivisHook, emulator: RedivisEmulator, hook_log: HookLog
) -> None:
    caplog = hook_log(hook)
    emulator.add_fault(
        Fault(
            "status",
            status=200,
            origin="api",
            times=2,
            headers={"X-REDIVIS-WARNING": "This%20endpoint%20is%20deprecated"},
            body={"kind": "table", "name": "t"},
        )
    )
    hook.get_table(TABLE)
    hook.get_table(TABLE)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["Redivis: This endpoint is deprecated"]


def test_no_log_line_holds_the_token_or_a_session_query(
    hook: RedivisHook, emulator: RedivisEmulator, hook_log: HookLog, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog = hook_log(hook)
    emulator.add_fault(Fault("status", status=503, origin="api", headers={"Retry-After": "0"}))
    emulator.add_fault(Fault("status", status=400, origin="api", method="DELETE", message=f"bad {TOKEN}"))
    upload = upload_file(hook, emulator, "logged.csv")
    list(hook.list_uploads(TABLE))
    with pytest.raises(RedivisAPIError):
        hook.delete_upload(upload["uri"])
    debug = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert f"Redivis API POST {TABLE_PATH.removeprefix('/api/v1')}/resumableUpload" in debug
    assert all("?" not in line and "size=" not in line for line in debug)
    output = caplog.text + "".join(capfd.readouterr())
    assert TOKEN not in output
    assert "/upload/resumable/" not in output


# --------------------------------------------------------------------------------------------------
# Each method
# --------------------------------------------------------------------------------------------------
def test_tables_and_uploads_end_to_end(hook: RedivisHook, emulator: RedivisEmulator) -> None:
    table = hook.get_table(TABLE)
    assert (table["name"], table["uploadMergeStrategy"]) == ("test_table", "append")

    upload = upload_file(
        hook,
        emulator,
        "sales 2026.11.csv",
        upload_type="delimited",
        delimiter=",",
        has_header_row=True,
        skip_bad_records=False,
        has_quoted_newlines=False,
        allow_jagged_rows=True,
        quote_character='"',
        escape_character="\\",
        null_markers=["NA", ""],
    )
    assert upload["name"] == "sales 2026.11.csv"
    assert upload["type"] == "delimited"
    # snake_case options arrive as Redivis's camelCase fields.
    assert (upload["delimiter"], upload["hasHeaderRow"], upload["skipBadRecords"]) == (",", True, False)
    assert (upload["allowJaggedRows"], upload["hasQuotedNewlines"]) == (True, False)
    assert (upload["quoteCharacter"], upload["escapeCharacter"]) == ('"', "\\")
    assert upload["nullMarkers"] == ["NA", ""]

    (create_session, create_upload) = api_requests(emulator, "POST")
    assert create_session.path == f"{TABLE_PATH}/resumableUpload"
    assert parse_qs(create_session.query) == {"size": [str(len(CSV))]}
    assert create_session.body_bytes == 0
    assert create_upload.path == f"{TABLE_PATH}/uploads"

    # By name, '.' becomes '_' and the rest is percent-encoded as one segment.
    by_name = hook.get_upload(TABLE, "sales 2026.11.csv")
    assert by_name["uri"] == upload["uri"]
    assert api_requests(emulator, "GET")[-1].path == f"{TABLE_PATH}/uploads/sales%202026_11_csv"
    assert hook.get_upload_by_uri(upload["uri"])["id"] == upload["id"]
    assert hook.get_upload_by_uri(hook.api_url + upload["uri"])["id"] == upload["id"]
    assert hook.upload_exists(TABLE, "sales 2026.11.csv") is True
    assert hook.upload_exists(TABLE, "other.csv") is False

    done = emulator.wait_for_processing(TABLE, "sales 2026.11.csv", timeout=30)
    assert done["status"] == "completed"
    assert [u["name"] for u in hook.list_uploads(TABLE)] == ["sales 2026.11.csv"]

    hook.delete_upload(upload["uri"])
    assert hook.upload_exists(TABLE, "sales 2026.11.csv") is False
    assert list(hook.list_uploads(TABLE)) == []


def test_list_uploads_follows_page_tokens(
    hook: RedivisHook, emulator: RedivisEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = [f"part_{i}.csv" for i in range(5)]
    for name in names:
        upload_file(hook, emulator, name)
    monkeypatch.setattr(uploads_module, "LIST_PAGE_SIZE", 2)
    emulator.clear_requests()

    assert [u["name"] for u in hook.list_uploads(TABLE)] == names
    queries = [parse_qs(r.query) for r in api_requests(emulator, "GET")]
    assert [q["maxResults"] for q in queries] == [["2"], ["2"], ["2"]]
    assert "pageToken" not in queries[0]
    assert all("pageToken" in q for q in queries[1:])

    emulator.clear_requests()
    assert [u["name"] for u in hook.list_uploads(TABLE, max_results=3)] == names[:3]
    assert [parse_qs(r.query)["maxResults"] for r in api_requests(emulator, "GET")] == [["2"], ["1"]]
    emulator.clear_requests()
    assert list(hook.list_uploads(TABLE, max_results=0)) == []
    assert api_requests(emulator) == []


def test_list_uploads_stops_on_a_server_that_repeats_its_page_token(
    hook: RedivisHook, emulator: RedivisEmulator
) -> None:
    page = {"kind": "list", "results": [{"name": "same.csv"}], "nextPageToken": "again"}
    emulator.add_fault(Fault("status", status=200, origin="api", method="GET", times=None, body=page))
    with pytest.raises(RedivisError, match="same page token twice"):
        list(hook.list_uploads(TABLE))
    assert len(api_requests(emulator)) == 2


def test_list_uploads_checks_max_results_before_any_request(
    hook: RedivisHook, emulator: RedivisEmulator
) -> None:
    with pytest.raises(RedivisError, match="max_results"):
        hook.list_uploads(TABLE, max_results=-1)
    assert api_requests(emulator) == []


def _wait_for_release(hook: RedivisHook, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        version = hook.get_version(DATASET, "current")
        if version.get("isReleased"):
            return version
        time.sleep(0.05)
    pytest.fail("the release did not finish in time")


def test_datasets_versions_and_tables(hook: RedivisHook, emulator: RedivisEmulator) -> None:
    dataset = hook.get_dataset(DATASET)
    assert dataset["name"] == "test_dataset"
    assert dataset["nextVersion"] is not None
    assert hook.get_version(DATASET)["isReleased"] is False
    assert api_requests(emulator, "GET")[-1].path == "/api/v1/datasets/test_owner.test_dataset/versions/next"

    with pytest.raises(RedivisConflictError, match="already has a next version"):
        hook.create_next_version(DATASET)

    table = hook.create_table(DATASET, "daily_totals", merge_strategy="replace", description="Totals per day")
    assert (table["name"], table["uploadMergeStrategy"]) == ("daily_totals", "replace")
    assert table["description"] == "Totals per day"
    with pytest.raises(RedivisConflictError):
        hook.create_table(DATASET, "daily_totals")
    with pytest.raises(RedivisError, match="'append' or 'replace'"):
        hook.create_table(DATASET, "x", merge_strategy="upsert")

    upload_file(hook, emulator, "first.csv")
    emulator.wait_for_processing(TABLE, "first.csv", timeout=30)
    released = hook.release_version(DATASET, release_notes="First load")
    assert released["releaseNotes"] == "First load"
    assert _wait_for_release(hook)["releaseNotes"] == "First load"
    assert hook.get_dataset(DATASET)["nextVersion"] is None

    created = hook.create_next_version(DATASET)
    assert created["isReleased"] is False
    assert hook.get_dataset(DATASET)["nextVersion"] is not None


# Names with spaces, '/', '#', '?', ':' and non-ASCII: one segment each, as the emulator received it.
@pytest.mark.parametrize(
    ("name", "segment"),
    [
        ("Sales 2026", "Sales%202026"),
        ("north/south", "north%2Fsouth"),
        ("issue #7", "issue%20%237"),
        ("why?", "why%3F"),
        ("données_été", "donn%C3%A9es_%C3%A9t%C3%A9"),
        ("销售", "%E9%94%80%E5%94%AE"),
    ],
)
def test_table_references_are_one_encoded_path_segment(
    hook: RedivisHook, emulator: RedivisEmulator, name: str, segment: str
) -> None:
    hook.create_table(DATASET, name)
    table = hook.get_table(f"{DATASET}:next.{name}")
    assert table["name"] == name
    assert (
        api_requests(emulator, "GET")[-1].path == f"/api/v1/tables/test_owner.test_dataset%3Anext.{segment}"
    )


@pytest.mark.parametrize(
    ("upload_name", "segment"),
    [
        ("q1: a/b #c?.csv", "q1%3A%20a%2Fb%20%23c%3F_csv"),
        ("résumé.tsv", "r%C3%A9sum%C3%A9_tsv"),
    ],
)
def test_upload_names_are_one_encoded_path_segment(
    hook: RedivisHook, emulator: RedivisEmulator, upload_name: str, segment: str
) -> None:
    upload_file(hook, emulator, upload_name)
    assert hook.upload_exists(TABLE, upload_name)
    assert hook.get_upload(TABLE, upload_name)["name"] == upload_name
    paths = [r.path for r in api_requests(emulator) if r.method in ("HEAD", "GET")]
    assert paths == [f"{TABLE_PATH}/uploads/{segment}"] * 2


def test_a_resource_uri_from_elsewhere_is_refused(hook: RedivisHook, emulator: RedivisEmulator) -> None:
    for uri in ("https://evil.example/api/v1/tables/x", "//evil.example/x", "tables/x", ""):
        with pytest.raises(RedivisError, match="resource uri"):
            hook.get_upload_by_uri(uri)
    assert api_requests(emulator) == []


# --------------------------------------------------------------------------------------------------
# test_connection
# --------------------------------------------------------------------------------------------------
def test_test_connection_succeeds_with_a_valid_token(hook: RedivisHook, emulator: RedivisEmulator) -> None:
    ok, message = hook.test_connection()
    assert ok is True
    assert message == f"Connected to {emulator.base_url}/api/v1 as test_owner."
    (request,) = api_requests(emulator)
    assert request.path == "/api/v1/users/me"


def test_test_connection_reports_a_bad_token(
    emulator: RedivisEmulator, make_connection: MakeConnection
) -> None:
    hook = RedivisHook(make_connection(emulator_uri(emulator, "bad-token-2222")), retry_policy=FAST_RETRIES)
    ok, message = hook.test_connection()
    assert ok is False
    assert "401" in message
    assert "connection's password" in message
    assert "bad-token-2222" not in message


def test_test_connection_reports_an_unreachable_server(make_connection: MakeConnection) -> None:
    with RedivisEmulator() as stopped:
        uri = emulator_uri(stopped)
    hook = RedivisHook(make_connection(uri), retry_policy=FAST_RETRIES)
    ok, message = hook.test_connection()
    assert ok is False
    assert message.startswith(f"Could not reach {stopped.base_url}/api/v1: ConnectionError")


def test_test_connection_reports_a_configuration_error(make_connection: MakeConnection) -> None:
    ok, message = RedivisHook(make_connection("redivis://")).test_connection()
    assert ok is False
    assert "no API token" in message
