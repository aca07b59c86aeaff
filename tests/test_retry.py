"""The one retry policy: what is retried, how long it waits, and when it gives up."""

from __future__ import annotations

import email.utils

import pytest
import requests
import tenacity

from airflow_provider_redivis.engine.retry import (
    REFUSED_STATUSES,
    RETRYABLE_STATUSES,
    RetryPolicy,
    is_refused_request,
    is_retryable_error,
    parse_retry_after,
)
from airflow_provider_redivis.errors import (
    RedivisAPIError,
    RedivisAuthError,
    RedivisConfigError,
    RedivisConflictError,
    RedivisNotFoundError,
    RedivisRateLimitError,
    RedivisServerError,
    ResumableSessionExpiredError,
)


def _http_error(status: int) -> requests.HTTPError:
    response = requests.Response()
    response.status_code = status
    return requests.HTTPError(f"{status}", response=response)


# (exception, retried for an idempotent call, retried for a non-idempotent call such as create_upload)
PREDICATE_TABLE = [
    pytest.param(requests.ConnectionError("reset"), True, False, id="connection-error"),
    pytest.param(requests.exceptions.ConnectTimeout("connect"), True, False, id="connect-timeout"),
    pytest.param(requests.exceptions.ReadTimeout("read"), True, False, id="read-timeout"),
    pytest.param(requests.exceptions.ChunkedEncodingError("cut"), True, False, id="body-cut-off"),
    pytest.param(RedivisAPIError(408, "request timeout"), True, False, id="408"),
    pytest.param(RedivisRateLimitError(429, "slow down"), True, True, id="429"),
    pytest.param(RedivisServerError(500, "boom"), True, False, id="500"),
    pytest.param(RedivisServerError(502, "bad gateway"), True, False, id="502"),
    pytest.param(RedivisServerError(503, "unavailable"), True, True, id="503"),
    pytest.param(RedivisServerError(504, "gateway timeout"), True, False, id="504"),
    pytest.param(RedivisServerError(501, "not implemented"), False, False, id="501"),
    pytest.param(RedivisAPIError(400, "bad request"), False, False, id="400"),
    pytest.param(RedivisAuthError(401, "no token"), False, False, id="401"),
    pytest.param(RedivisAuthError(403, "insufficient_scope"), False, False, id="403"),
    pytest.param(RedivisNotFoundError(404, "not found"), False, False, id="404"),
    pytest.param(RedivisConflictError(409, "exists"), False, False, id="409"),
    pytest.param(RedivisAPIError(410, "gone"), False, False, id="410"),
    pytest.param(RedivisAPIError(413, "too large"), False, False, id="413"),
    pytest.param(RedivisAPIError(422, "unprocessable"), False, False, id="422"),
    pytest.param(_http_error(503), True, True, id="requests-HTTPError-503"),
    pytest.param(_http_error(502), True, False, id="requests-HTTPError-502"),
    pytest.param(_http_error(404), False, False, id="requests-HTTPError-404"),
    pytest.param(requests.exceptions.InvalidURL("bad url"), False, False, id="invalid-url"),
    pytest.param(requests.exceptions.TooManyRedirects("loop"), False, False, id="too-many-redirects"),
    pytest.param(RedivisConfigError("fix the DAG"), False, False, id="config-error"),
    pytest.param(ResumableSessionExpiredError("expired"), False, False, id="session-expired"),
    pytest.param(ValueError("a bug"), False, False, id="plain-bug"),
]


@pytest.mark.parametrize(("exc", "retry_idempotent", "retry_non_idempotent"), PREDICATE_TABLE)
def test_retry_predicates(exc: BaseException, retry_idempotent: bool, retry_non_idempotent: bool) -> None:
    assert is_retryable_error(exc) is retry_idempotent
    assert is_refused_request(exc) is retry_non_idempotent


def test_status_sets() -> None:
    assert frozenset({408, 429, 500, 502, 503, 504}) == RETRYABLE_STATUSES
    # A refusal proves nothing happened: a subset of what is retryable at all.
    assert REFUSED_STATUSES <= RETRYABLE_STATUSES
    assert frozenset({429, 503}) == REFUSED_STATUSES


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("", None),
        ("0", 0.0),
        ("7", 7.0),
        (" 2.5 ", 2.5),
        ("-3", 0.0),
        ("soon", None),
    ],
)
def test_parse_retry_after_seconds(header: str | None, expected: float | None) -> None:
    assert parse_retry_after(header) == expected


def test_parse_retry_after_http_date() -> None:
    now = 1_800_000_000.0
    header = email.utils.formatdate(now + 30, usegmt=True)
    assert parse_retry_after(header, now=now) == pytest.approx(30.0)
    past = email.utils.formatdate(now - 30, usegmt=True)
    assert parse_retry_after(past, now=now) == 0.0


def test_an_http_date_is_taken_against_the_servers_own_date_whatever_the_workers_clock() -> None:
    server_now = 1_800_000_000.0
    header = email.utils.formatdate(server_now + 30, usegmt=True)
    server_date = email.utils.formatdate(server_now, usegmt=True)
    for worker_clock in (server_now - 300, server_now, server_now + 300):  # 5 minutes behind, right, ahead
        assert parse_retry_after(header, server_date=server_date, now=worker_clock) == pytest.approx(30.0)


def test_backoff_grows_exponentially_within_jitter_bounds() -> None:
    policy = RetryPolicy(initial_wait=1.0, max_wait=8.0)
    for attempt, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 8.0), (9, 8.0)]:
        for _ in range(50):
            assert ceiling / 2 <= policy.backoff(attempt) <= ceiling


def test_backoff_honours_retry_after_up_to_the_cap() -> None:
    policy = RetryPolicy(max_retry_after=30.0)
    assert policy.backoff(1, retry_after=12.0) == 12.0
    assert policy.backoff(1, retry_after=0.0) == 0.0
    assert policy.backoff(1, retry_after=900.0) == 30.0


@pytest.mark.parametrize(
    "kwargs",
    [{"max_attempts": 0}, {"max_total_seconds": 0}, {"initial_wait": -1}, {"max_wait": -1}],
)
def test_policy_rejects_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must"):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def _flaky(errors: list[BaseException], calls: list[int]):  # type: ignore[no-untyped-def]
    def fn() -> str:
        calls.append(1)
        if errors:
            raise errors.pop(0)
        return "ok"

    return fn


def _no_sleep() -> dict[str, object]:
    return {"sleep": lambda seconds: None}


def test_call_retries_until_success() -> None:
    calls: list[int] = []
    fn = _flaky([RedivisServerError(503, "x"), requests.ConnectionError("y")], calls)
    assert RetryPolicy(initial_wait=0.0).call(fn, **_no_sleep()) == "ok"
    assert len(calls) == 3


def test_call_gives_up_after_max_attempts_and_reraises_the_last_error() -> None:
    calls: list[int] = []
    fn = _flaky([RedivisServerError(503, str(i)) for i in range(10)], calls)
    with pytest.raises(RedivisServerError) as info:
        RetryPolicy(max_attempts=3, initial_wait=0.0).call(fn, **_no_sleep())
    assert len(calls) == 3
    assert info.value.message == "2"


def test_call_never_retries_another_4xx() -> None:
    calls: list[int] = []
    fn = _flaky([RedivisNotFoundError(404, "nope")], calls)
    with pytest.raises(RedivisNotFoundError):
        RetryPolicy(initial_wait=0.0).call(fn, **_no_sleep())
    assert len(calls) == 1


def test_wait_uses_retry_after_of_the_error() -> None:
    slept: list[float] = []
    calls: list[int] = []
    fn = _flaky([RedivisRateLimitError(429, "x", retry_after=2.0)], calls)
    assert RetryPolicy(initial_wait=0.0).call(fn, sleep=slept.append) == "ok"
    assert slept == [2.0]


def test_a_retry_after_beyond_the_time_budget_ends_the_retries_at_once() -> None:
    # Waiting 100 s would overrun max_total_seconds=10: give up now, and let the caller see retry_after.
    slept: list[float] = []
    calls: list[int] = []
    fn = _flaky([RedivisRateLimitError(429, "x", retry_after=100.0)], calls)
    with pytest.raises(RedivisRateLimitError) as info:
        RetryPolicy(max_total_seconds=10.0).call(fn, sleep=slept.append)
    assert slept == []
    assert len(calls) == 1
    assert info.value.retry_after == 100.0


def test_retry_args_can_be_overridden_by_the_caller() -> None:
    policy = RetryPolicy(initial_wait=0.0)
    calls: list[int] = []
    fn = _flaky([RedivisServerError(503, "x"), RedivisServerError(503, "y")], calls)
    args = policy.retry_args()
    args.update(stop=tenacity.stop_after_attempt(1), sleep=lambda s: None)
    with pytest.raises(RedivisServerError):
        tenacity.Retrying(**args)(fn)
    assert len(calls) == 1


def test_retry_args_take_another_predicate_and_a_before_sleep() -> None:
    seen: list[int] = []
    calls: list[int] = []
    fn = _flaky([requests.ConnectionError("maybe it got there")], calls)
    args = RetryPolicy(initial_wait=0.0).retry_args(
        is_refused_request, before_sleep=lambda state: seen.append(state.attempt_number)
    )
    with pytest.raises(requests.ConnectionError):
        tenacity.Retrying(**args, sleep=lambda s: None)(fn)
    assert len(calls) == 1
    assert seen == []

    calls.clear()
    fn = _flaky([RedivisServerError(503, "refused")], calls)
    assert tenacity.Retrying(**args, sleep=lambda s: None)(fn) == "ok"
    assert seen == [1]
