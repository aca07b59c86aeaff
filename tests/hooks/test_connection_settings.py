"""From an Airflow connection to the hook's base URL, token, timeouts and retry policy (no network)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import requests

from airflow_provider_redivis import __version__
from airflow_provider_redivis.engine.retry import RetryPolicy
from airflow_provider_redivis.errors import RedivisConfigError
from airflow_provider_redivis.hooks.auth import OriginBearerAuth
from airflow_provider_redivis.hooks.connection import is_loopback_host, resolve_base_url, user_agent
from airflow_provider_redivis.hooks.redivis import RedivisHook
from tests.hooks.conftest import TOKEN, HookLog, MakeConnection


@pytest.mark.parametrize(
    ("uri", "api_url"),
    [
        (f"redivis://:{TOKEN}@", "https://redivis.com/api/v1"),
        (f"redivis://:{TOKEN}@redivis.com", "https://redivis.com/api/v1"),
        (f"redivis://:{TOKEN}@redivis.example.org:8443", "https://redivis.example.org:8443/api/v1"),
        (f"redivis://:{TOKEN}@127.0.0.1:8765", "http://127.0.0.1:8765/api/v1"),
        (f"redivis://:{TOKEN}@localhost:8765", "http://localhost:8765/api/v1"),
        (f"redivis://:{TOKEN}@127.0.0.1:8765?scheme=https", "https://127.0.0.1:8765/api/v1"),
        (f"redivis://:{TOKEN}@http%3A%2F%2F127.0.0.1%3A8765", "http://127.0.0.1:8765/api/v1"),
        (f"redivis://:{TOKEN}@https%3A%2F%2Fredivis.com%2Fapi%2Fv1%2F", "https://redivis.com/api/v1"),
    ],
)
def test_uri_forms(make_connection: MakeConnection, uri: str, api_url: str) -> None:
    hook = RedivisHook(make_connection(uri))
    assert hook.api_url == api_url
    assert hook.settings.token == TOKEN


def test_default_connection_id_with_only_a_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_REDIVIS_DEFAULT", f"redivis://:{TOKEN}@")
    hook = RedivisHook()
    assert hook.redivis_conn_id == "redivis_default"
    assert hook.api_url == "https://redivis.com/api/v1"
    assert hook.timeout == (10.0, 60.0)
    assert hook.retry_policy == RetryPolicy()
    assert hook.settings.verify is True


def test_json_connection_with_a_base_url_host(make_connection: MakeConnection) -> None:
    conn_id = make_connection(host="http://127.0.0.1:8765", password=TOKEN)
    assert RedivisHook(conn_id).api_url == "http://127.0.0.1:8765/api/v1"


def test_port_field_is_used_when_the_host_has_none(make_connection: MakeConnection) -> None:
    conn_id = make_connection(host="127.0.0.1", port=9000, password=TOKEN)
    assert RedivisHook(conn_id).api_url == "http://127.0.0.1:9000/api/v1"


@pytest.mark.parametrize(
    ("host", "port", "scheme", "expected"),
    [
        (None, None, None, "https://redivis.com"),
        ("", None, None, "https://redivis.com"),
        ("https://redivis.com/", None, None, "https://redivis.com"),
        ("https://redivis.com/api/v1", None, None, "https://redivis.com"),
        ("https://proxy.example.org/redivis/", None, None, "https://proxy.example.org/redivis"),
        ("REDIVIS.COM", None, None, "https://redivis.com"),
        ("127.0.0.1", 8765, None, "http://127.0.0.1:8765"),
        ("127.1.2.3", None, None, "http://127.1.2.3"),
        ("::1", 8765, None, "http://[::1]:8765"),
        ("[::1]:8765", None, None, "http://[::1]:8765"),
        ("localhost", 1, "https", "https://localhost:1"),
        ("redivis.com", None, "HTTPS", "https://redivis.com"),
        # The scheme's own port is dropped: the UI form needs a port for its Test button (443, 80).
        ("https://redivis.com:443", 443, None, "https://redivis.com"),
        ("https://redivis.com", 443, None, "https://redivis.com"),
        ("", 443, None, "https://redivis.com"),
        ("http://127.0.0.1", 80, None, "http://127.0.0.1"),
        ("https://127.0.0.1", 80, None, "https://127.0.0.1:80"),
        ("http://127.0.0.1", 8765, None, "http://127.0.0.1:8765"),
        # Port 0 is what Airflow 3.3's UI sends for an empty port field: no port.
        ("http://127.0.0.1:8765", 0, None, "http://127.0.0.1:8765"),
        ("127.0.0.1", 0, None, "http://127.0.0.1"),
    ],
)
def test_resolve_base_url(host: str | None, port: int | None, scheme: str | None, expected: str) -> None:
    assert resolve_base_url(host, port, scheme) == expected


@pytest.mark.parametrize(
    ("host", "port", "scheme", "message"),
    [
        ("http://redivis.com", None, None, "loopback"),
        ("redivis.com", None, "http", "loopback"),
        ("http://10.0.0.5:8765", None, None, "loopback"),
        ("http://127.0.0.1.example.org", None, None, "loopback"),
        ("ftp://redivis.com", None, None, "base URL"),
        ("https://redivis.com", None, "http", "keep one"),
        ("https://redivis.com:444", 443, None, "keep one"),
        ("https://user:pw@redivis.com", None, None, "password field"),
        ("https://redivis.com/?x=1", None, None, "without '\\?'"),
        ("redivis.com", None, "gopher", "'https' or 'http'"),
        ("https://redivis.com:99999", None, None, "invalid port"),
    ],
)
def test_bad_base_urls_are_refused_with_what_to_do(
    host: str, port: int | None, scheme: str | None, message: str
) -> None:
    with pytest.raises(RedivisConfigError, match=message):
        resolve_base_url(host, port, scheme)


def test_plain_http_to_a_remote_host_is_refused_before_any_request(make_connection: MakeConnection) -> None:
    hook = RedivisHook(make_connection(f"redivis://:{TOKEN}@redivis.example.org:80?scheme=http"))
    with pytest.raises(RedivisConfigError, match=r"unencrypted.*Use https://"):
        hook.get_table("owner.dataset.table")
    assert hook._session is None  # nothing was ever sent


@pytest.mark.parametrize(
    ("name", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.255.0.9", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("LOCALHOST.", True),
        ("api.localhost", True),
        ("10.0.0.1", False),
        ("0.0.0.0", False),  # noqa: S104 - a value under test; nothing binds to it
        ("redivis.com", False),
        ("localhost.example.org", False),
    ],
)
def test_is_loopback_host(name: str, loopback: bool) -> None:
    assert is_loopback_host(name) is loopback


def test_extras_set_timeouts_retries_and_tls(make_connection: MakeConnection, tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text("not really a certificate")
    conn_id = make_connection(
        host="https://redivis.com",
        password=TOKEN,
        extra={
            "connect_timeout": "3.5",
            "read_timeout": 20,
            "max_attempts": "4",
            "max_retry_seconds": 90,
            "verify": str(bundle),
        },
    )
    hook = RedivisHook(conn_id)
    assert hook.timeout == (3.5, 20.0)
    assert hook.retry_policy.max_attempts == 4
    assert hook.retry_policy.max_total_seconds == 90.0
    assert hook.settings.verify == str(bundle)
    assert hook.session.verify == str(bundle)


def test_max_retry_seconds_caps_the_connections_budget_and_keeps_the_rest(
    make_connection: MakeConnection,
) -> None:
    conn_id = make_connection(password=TOKEN, extra={"max_attempts": "4", "max_retry_seconds": 90})
    assert RedivisHook(conn_id, max_retry_seconds=15).retry_policy == RetryPolicy(
        max_attempts=4, max_total_seconds=15.0
    )
    assert RedivisHook(conn_id, max_retry_seconds=500).retry_policy.max_total_seconds == 90.0  # lower wins
    given = RetryPolicy(max_attempts=3, max_total_seconds=40.0, initial_wait=0.0, max_wait=0.5)
    capped = RedivisHook(conn_id, retry_policy=given, max_retry_seconds=10).retry_policy
    assert capped == RetryPolicy(max_attempts=3, max_total_seconds=10.0, initial_wait=0.0, max_wait=0.5)
    with pytest.raises(RedivisConfigError, match="max_retry_seconds"):
        RedivisHook(conn_id, max_retry_seconds=0)


def test_extras_written_by_the_airflow_2_form_are_read_too(make_connection: MakeConnection) -> None:
    conn_id = make_connection(
        password=TOKEN,
        extra={"extra__redivis__connect_timeout": "2", "extra__redivis__verify": False},
    )
    hook = RedivisHook(conn_id)
    assert hook.timeout == (2.0, 60.0)
    assert hook.settings.verify is False


def test_extras_written_by_the_airflow_3_form_mean_only_what_was_typed(
    make_connection: MakeConnection,
) -> None:
    # What Airflow 3.3's form saves when only the connect timeout was typed: every other field null.
    extra = {
        "connect_timeout": 30,
        "read_timeout": None,
        "max_attempts": None,
        "max_retry_seconds": None,
        "verify": None,
        "scheme": None,
    }
    hook = RedivisHook(make_connection(host="http://127.0.0.1", port=8765, password=TOKEN, extra=extra))
    assert hook.api_url == "http://127.0.0.1:8765/api/v1"
    assert hook.timeout == (30.0, 60.0)
    assert hook.retry_policy == RetryPolicy()
    assert hook.settings.verify is True


@pytest.mark.parametrize(
    ("value", "verify"), [("false", False), ("False", False), ("0", False), ("true", True), (True, True)]
)
def test_verify_extra(make_connection: MakeConnection, value: object, verify: bool) -> None:
    hook = RedivisHook(make_connection(password=TOKEN, extra={"verify": value}))
    assert hook.settings.verify is verify


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"connect_timeout": "soon"}, "connect_timeout"),
        ({"read_timeout": 0}, "read_timeout"),
        ({"read_timeout": "-1"}, "read_timeout"),
        ({"max_retry_seconds": "inf"}, "max_retry_seconds"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"max_attempts": "2.5"}, "max_attempts"),
        ({"max_attempts": True}, "max_attempts"),
        ({"verify": "/no/such/bundle.pem"}, "CA bundle"),
        ({"scheme": "ftp"}, "scheme"),
    ],
)
def test_bad_extras_are_configuration_errors(
    make_connection: MakeConnection, extra: dict[str, object], message: str
) -> None:
    hook = RedivisHook(make_connection(password=TOKEN, extra=extra))
    with pytest.raises(RedivisConfigError, match=message):
        _ = hook.api_url


def test_unknown_extras_are_reported(make_connection: MakeConnection, hook_log: HookLog) -> None:
    hook = RedivisHook(make_connection(password=TOKEN, extra={"conect_timeout": "5"}))
    caplog = hook_log(hook)
    _ = hook.api_url
    (record,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "conect_timeout" in record.getMessage()


def test_missing_token_says_where_to_put_it(make_connection: MakeConnection) -> None:
    hook = RedivisHook(make_connection("redivis://"))
    with pytest.raises(RedivisConfigError, match=r"password.*redivis://:TOKEN@"):
        _ = hook.api_url
    hook = RedivisHook(make_connection(login=TOKEN))
    with pytest.raises(RedivisConfigError, match="login field"):
        _ = hook.api_url


def test_a_token_that_cannot_be_a_header_is_refused_without_showing_it(
    make_connection: MakeConnection,
) -> None:
    bad = "abc def-secret-part"
    hook = RedivisHook(make_connection(password=bad))
    with pytest.raises(RedivisConfigError) as info:
        _ = hook.api_url
    assert "secret-part" not in str(info.value)


def test_constructor_overrides_win_over_the_connection(make_connection: MakeConnection) -> None:
    conn_id = make_connection(password=TOKEN, extra={"connect_timeout": 3, "max_attempts": 9})
    policy = RetryPolicy(max_attempts=2)
    hook = RedivisHook(conn_id, timeout=(1, 2), retry_policy=policy)
    assert hook.timeout == (1.0, 2.0)
    assert hook.retry_policy is policy
    assert RedivisHook(conn_id, timeout=7).timeout == (7.0, 7.0)


@pytest.mark.parametrize("timeout", [0, -1, (1,), (1, 2, 3), ("1", 2), (1, None), True])
def test_bad_timeouts_are_refused(timeout: object) -> None:
    with pytest.raises(RedivisConfigError, match="timeout"):
        RedivisHook("any", timeout=timeout)  # type: ignore[arg-type]


def test_building_the_hook_reads_no_connection() -> None:
    hook = RedivisHook("no_such_connection_anywhere")
    assert hook.redivis_conn_id == "no_such_connection_anywhere"
    assert "no_such_connection_anywhere" in repr(hook)


def test_the_token_is_in_no_repr(make_connection: MakeConnection) -> None:
    hook = RedivisHook(make_connection(f"redivis://:{TOKEN}@127.0.0.1:8765"))
    session = hook.session
    for text in (repr(hook), str(hook), repr(hook.settings), repr(session.auth), repr(session.headers)):
        assert TOKEN not in text
    assert "api_url='http://127.0.0.1:8765/api/v1'" in repr(hook)


def test_the_token_is_registered_with_airflows_secrets_masker(make_connection: MakeConnection) -> None:
    from airflow.providers.common.compat.sdk import redact

    token = "masker-check-token-7d1e0b"
    hook = RedivisHook(make_connection(password=token))
    _ = hook.api_url
    assert token not in str(redact(f"Authorization: Bearer {token}"))


def test_user_agent_names_provider_and_airflow(make_connection: MakeConnection) -> None:
    import airflow

    agent = user_agent()
    assert f"airflow-provider-redivis/{__version__}" in agent
    assert f"apache-airflow/{airflow.__version__}" in agent
    hook = RedivisHook(make_connection(password=TOKEN))
    assert hook.session.headers["User-Agent"] == agent


def test_session_is_one_per_hook_and_closes(make_connection: MakeConnection) -> None:
    hook = RedivisHook(make_connection(password=TOKEN))
    assert hook.session is hook.session
    assert hook.get_conn() is hook.session
    first = hook.session
    with hook:
        pass
    assert hook.session is not first


@pytest.mark.parametrize(
    ("url", "gets_token"),
    [
        ("https://redivis.com/api/v1/tables/x", True),
        ("https://REDIVIS.com:443/api/v1/tables/x", True),
        ("https://redivis.com/anything", True),
        ("http://redivis.com/api/v1/tables/x", False),
        ("https://redivis.com:8443/api/v1/tables/x", False),
        ("https://storage.googleapis.com/upload?upload_id=abc", False),
        ("https://redivis.com.evil.example/api/v1", False),
    ],
)
def test_origin_bound_auth_decides_per_url(url: str, gets_token: bool) -> None:
    auth = OriginBearerAuth(TOKEN, "https://redivis.com/api/v1")
    prepared = requests.Request("GET", url, headers={"Authorization": "Bearer leftover"}).prepare()
    auth(prepared)
    if gets_token:
        assert prepared.headers["Authorization"] == f"Bearer {TOKEN}"
    else:
        assert "Authorization" not in prepared.headers
