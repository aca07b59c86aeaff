"""The emulator's rate limit, over HTTP: Redivis's headers on every API answer, 429 with Retry-After at
the window's end, one budget per token, session bytes and the admin API not counted, the counts."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from email.utils import parsedate_to_datetime
from pathlib import Path
from urllib.parse import unquote

import pytest
import requests
from redivis_emulator import AdminError, Fault, RedivisEmulator, rate_limit_key

from emulator.tests.conftest import TABLE, TIMEOUT, UNIT, put_chunk, running_cli, status_query, table_path

LIMIT = "X-RateLimit-Limit"
REMAINING = "X-RateLimit-Remaining"
#: A fixed point in time for the injected clock (not a whole second, so rounding shows).
T0 = 1_800_000_000.25


class Clock:
    """The rate limiter's clock, moved by the test (the one thing not real here)."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def me(emu: RedivisEmulator, token: str | None = None, method: str = "GET") -> requests.Response:
    headers = bearer(token or emu.token) if token != "" else {}
    return requests.request(method, f"{emu.api_url}/users/me", headers=headers, timeout=TIMEOUT)


def rate_headers(response: requests.Response) -> tuple[str | None, str | None]:
    return response.headers.get(LIMIT), response.headers.get(REMAINING)


def retry_at(response: requests.Response) -> float:
    """Retry-After as an HTTP date (what Redivis sends), as seconds since the epoch."""
    return parsedate_to_datetime(response.headers["Retry-After"]).timestamp()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def limited(tmp_path: Path, clock: Clock) -> Iterator[RedivisEmulator]:
    """3 requests per 100 s per token, on the test's clock."""
    with RedivisEmulator(
        tables=[TABLE], data_dir=tmp_path / "data", rate_limit=(3, 100.0), rate_limit_clock=clock
    ) as emu:
        yield emu


def test_off_by_default_then_every_api_answer_carries_the_headers(emu: RedivisEmulator) -> None:
    assert emu.rate_limit is None
    assert rate_headers(me(emu)) == (None, None)
    emu.set_rate_limit((10, 100.0))
    auth = bearer(emu.token)
    table = f"{emu.api_url}{table_path()}"
    answers = [
        requests.get(f"{emu.api_url}/users/me", headers=auth, timeout=TIMEOUT),
        requests.head(table, headers=auth, timeout=TIMEOUT),
        requests.get(f"{emu.api_url}{table_path('a.b.missing')}", headers=auth, timeout=TIMEOUT),
        requests.head(f"{emu.api_url}{table_path('a.b.missing')}", headers=auth, timeout=TIMEOUT),
        requests.get(f"{emu.api_url}/no/such/endpoint", headers=auth, timeout=TIMEOUT),
        requests.post(f"{table}/uploads", data=b"{not json", headers=auth, timeout=TIMEOUT),
    ]
    assert [a.status_code for a in answers] == [200, 200, 404, 404, 404, 400]
    assert [rate_headers(a) for a in answers] == [("10", str(9 - i)) for i in range(6)]
    assert "X-REDIVIS-ERROR-PAYLOAD" in answers[3].headers  # a HEAD error, headers and all
    # A fault's answer is an API answer too.
    emu.add_fault(Fault("status", origin="api", status=503))
    assert rate_headers(me(emu)) == ("10", "3")
    # Without a token: the anonymous budget, its own count.
    anonymous = me(emu, "")
    assert (anonymous.status_code, rate_headers(anonymous)) == (401, ("10", "9"))
    counts = emu.rate_limit_counts()
    assert (counts["limit"], counts["intervalSeconds"], counts["retryAfter"]) == (10, 100.0, "date")
    assert (counts["allowed"], counts["refused"]) == (9, 0)
    # Counted while off too; the window only since the limit came on.
    mine = emu.rate_limit_counts(emu.token)
    assert (mine["allowed"], mine["refused"], mine["used"], mine["remaining"]) == (8, 0, 7, 3)
    assert counts["tokens"]["anonymous"]["allowed"] == 1


def test_past_the_limit_429_with_retry_after_the_windows_end(limited: RedivisEmulator, clock: Clock) -> None:
    emu = limited
    assert [rate_headers(me(emu)) for _ in range(3)] == [("3", "2"), ("3", "1"), ("3", "0")]
    refused = me(emu)
    assert refused.status_code == 429
    assert rate_headers(refused) == ("3", "0")
    window_end = T0 + 100.0
    assert emu.rate_limit_counts(emu.token)["windowEnd"] == window_end
    # An HTTP date (IMF-fixdate) of the window's end, rounded up to its whole second.
    assert refused.headers["Retry-After"].endswith(" GMT")
    assert retry_at(refused) == math.ceil(window_end)
    error = refused.json()["error"]
    assert set(error) == {"status", "message"}
    assert error["status"] == 429
    assert "Rate limit exceeded" in error["message"]
    assert refused.headers["Retry-After"] in error["message"]
    assert emu.token not in refused.text
    head = me(emu, method="HEAD")
    assert head.status_code == 429
    assert json.loads(unquote(head.headers["X-REDIVIS-ERROR-PAYLOAD"]))["error"]["status"] == 429
    # Refusals neither use the budget nor move the window: later in it, the same answer.
    clock.now = window_end - 0.001
    assert retry_at(me(emu)) == math.ceil(window_end)
    counts = emu.rate_limit_counts(emu.token)
    assert (counts["allowed"], counts["refused"], counts["used"], counts["remaining"]) == (3, 3, 3, 0)
    assert counts["windowStart"] == T0
    # At the window's end a new one opens, with the whole budget.
    clock.now = window_end
    assert [me(emu).status_code for _ in range(4)] == [200, 200, 200, 429]
    assert emu.rate_limit_counts(emu.token)["windowStart"] == window_end
    # The log says which requests the limit refused; so does the admin API.
    assert [r.rate_limited for r in emu.requests] == [False] * 3 + [True] * 3 + [False] * 3 + [True]
    served = emu.admin_client().requests(origin="api")
    assert [r["rateLimited"] for r in served] == [r.rate_limited for r in emu.requests]
    assert [r["status"] for r in served][3] == 429


def test_a_refused_request_is_not_handled_and_no_fault_sees_it(
    limited: RedivisEmulator, clock: Clock
) -> None:
    emu = limited
    for _ in range(3):
        me(emu)
    emu.add_fault(Fault("status", origin="api", status=503, times=1))
    url = f"{emu.api_url}{table_path()}/resumableUpload"
    refused = requests.post(url, params={"size": 10}, headers=bearer(emu.token), timeout=TIMEOUT)
    assert refused.status_code == 429
    assert emu.sessions == {}  # nothing was created
    assert emu.faults.snapshot()[0].fired == 0
    clock.now += 100.0
    assert me(emu).status_code == 503  # the fault was still waiting for a request it may see


def test_a_window_opens_with_the_first_request_after_the_last_one_ended(
    limited: RedivisEmulator, clock: Clock
) -> None:
    emu = limited
    me(emu)
    clock.now = T0 + 250.0  # 2.5 intervals later: no window in force
    idle = emu.rate_limit_counts(emu.token)
    assert (idle["windowStart"], idle["windowEnd"], idle["used"], idle["remaining"]) == (None, None, 0, 3)
    me(emu)
    opened = emu.rate_limit_counts(emu.token)
    # Not aligned to the old window's multiples (T0 + 200): it starts with this request.
    assert (opened["windowStart"], opened["windowEnd"]) == (T0 + 250.0, T0 + 350.0)
    assert (opened["used"], opened["remaining"], opened["allowed"]) == (1, 2, 2)


def test_retry_after_in_delta_seconds_when_asked(limited: RedivisEmulator, clock: Clock) -> None:
    emu = limited
    counts = emu.set_rate_limit((1, 10.0), retry_after="seconds")
    assert (counts["limit"], counts["intervalSeconds"], counts["retryAfter"]) == (1, 10.0, "seconds")
    assert me(emu).status_code == 200
    clock.now = T0 + 2.5
    refused = me(emu)
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "8"  # 7.5 s left, rounded up
    clock.now = T0 + 9.9
    assert me(emu).headers["Retry-After"] == "1"
    clock.now = T0 + 10.0
    assert me(emu).status_code == 200


def test_each_token_has_its_own_budget_and_the_rest_share_one(tmp_path: Path) -> None:
    with RedivisEmulator(
        tokens=["alpha-token", "beta-token"], data_dir=tmp_path / "data", rate_limit=(2, 100.0)
    ) as emu:
        assert [me(emu, "alpha-token").status_code for _ in range(3)] == [200, 200, 429]
        beta = me(emu, "beta-token")
        assert (beta.status_code, rate_headers(beta)) == (200, ("2", "1"))
        # No token, and a token the emulator does not know: one anonymous budget.
        assert rate_headers(me(emu, "")) == ("2", "1")
        assert rate_headers(me(emu, "not-a-token")) == ("2", "0")
        assert me(emu, "").status_code == 429
        assert me(emu, "beta-token").status_code == 200
        counts = emu.rate_limit_counts()
        assert set(counts["tokens"]) == {
            rate_limit_key("alpha-token"),
            rate_limit_key("beta-token"),
            "anonymous",
        }
        assert emu.rate_limit_counts("alpha-token")["refused"] == 1
        assert emu.rate_limit_counts("beta-token")["allowed"] == 2
        assert (counts["tokens"]["anonymous"]["allowed"], counts["tokens"]["anonymous"]["refused"]) == (2, 1)
        # The admin API names budgets by a hash, never by the token.
        served = json.dumps(emu.admin_client().rate_limit_counts())
        assert "alpha-token" not in served
        assert "beta-token" not in served
        with pytest.raises(ValueError, match="anonymous"):
            emu.rate_limit_counts("not-a-token")


def test_session_bytes_temp_uploads_and_the_admin_api_are_not_counted(emu: RedivisEmulator) -> None:
    emu.set_rate_limit((3, 100.0))
    auth = bearer(emu.token)
    data = b"id,x\n" + b"1,2\n" * (UNIT // 2)  # a little over 2 units
    session = requests.post(
        f"{emu.api_url}{table_path()}/resumableUpload",
        params={"size": len(data)},
        headers=auth,
        timeout=TIMEOUT,
    ).json()
    temp = requests.post(
        f"{emu.api_url}{table_path()}/tempUploads",
        json={"tempUploads": [{"size": 4, "name": "t.csv", "resumable": False}]},
        headers=auth,
        timeout=TIMEOUT,
    ).json()["results"][0]
    answers = [
        put_chunk(session["url"], data[:UNIT], 0, len(data)),
        status_query(session["url"], len(data)),
        put_chunk(session["url"], data[UNIT : 2 * UNIT], UNIT, len(data)),
        requests.put(temp["url"], data=b"a\n1\n", timeout=TIMEOUT),
        requests.get(f"{emu.base_url}/_emulator/requests", headers=emu.admin_headers, timeout=TIMEOUT),
    ]
    assert [a.status_code for a in answers] == [308, 308, 308, 200, 200]
    assert all(rate_headers(a) == (None, None) for a in answers)
    created = requests.post(
        f"{emu.api_url}{table_path()}/uploads",
        json={"name": "s.csv", "resumableUploadId": session["id"]},
        headers=auth,
        timeout=TIMEOUT,
    )
    assert (created.status_code, rate_headers(created)) == (400, ("3", "0"))  # the session is not complete
    assert me(emu).status_code == 429
    # Past the limit, the session still takes bytes.
    assert put_chunk(session["url"], data[2 * UNIT :], 2 * UNIT, len(data)).status_code == 200
    assert (emu.rate_limit_counts()["allowed"], emu.rate_limit_counts()["refused"]) == (3, 1)


def test_the_window_resets_on_the_real_clock(emu: RedivisEmulator) -> None:
    emu.set_rate_limit((1, 1.0), retry_after="seconds")
    assert me(emu).status_code == 200
    refused = me(emu)
    assert (refused.status_code, refused.headers["Retry-After"]) == (429, "1")
    window_end = emu.rate_limit_counts(emu.token)["windowEnd"]
    deadline = time.monotonic() + 5
    while time.time() < window_end:  # the clock's own event: the window's end
        assert time.monotonic() < deadline, "the clock did not reach the window's end"
        time.sleep(min(0.05, max(0.0, window_end - time.time())))
    assert me(emu).status_code == 200


def test_changing_the_limit_opens_fresh_windows_and_keeps_the_counts(emu: RedivisEmulator) -> None:
    emu.set_rate_limit((1, 100.0))
    assert [me(emu).status_code for _ in range(2)] == [200, 429]
    counts = emu.set_rate_limit((2, 100.0))
    assert (
        counts["allowed"],
        counts["refused"],
        counts["tokens"][rate_limit_key(emu.token)]["remaining"],
    ) == (
        1,
        1,
        2,
    )
    assert [me(emu).status_code for _ in range(3)] == [200, 200, 429]
    emu.set_rate_limit(None)
    off = me(emu)
    assert (off.status_code, rate_headers(off)) == (200, (None, None))
    counts = emu.rate_limit_counts()
    assert (counts["limit"], counts["allowed"], counts["refused"]) == (None, 4, 2)  # counted while off too
    assert counts["tokens"][rate_limit_key(emu.token)]["remaining"] is None
    emu.clear_rate_limit_counts()
    assert emu.rate_limit_counts() == {
        "limit": None,
        "intervalSeconds": None,
        "retryAfter": "date",
        "allowed": 0,
        "refused": 0,
        "tokens": {},
    }


def test_the_admin_api_sets_reads_and_clears_it(emu: RedivisEmulator) -> None:
    admin = emu.admin_client()
    counts = admin.set_rate_limit((2, 10.0), retry_after="seconds")
    assert (counts["limit"], counts["intervalSeconds"], counts["retryAfter"]) == (2, 10.0, "seconds")
    assert emu.rate_limit == (2, 10.0)
    started = time.time()
    assert [me(emu).status_code for _ in range(3)] == [200, 200, 429]
    counts = admin.rate_limit_counts()
    assert (counts["allowed"], counts["refused"]) == (2, 1)
    entry = counts["tokens"][rate_limit_key(emu.token)]
    assert (entry["allowed"], entry["refused"], entry["used"], entry["remaining"]) == (2, 1, 2, 0)
    assert started - 1 <= entry["windowStart"] <= time.time()
    assert entry["windowEnd"] == entry["windowStart"] + 10.0
    # Only the Retry-After format: the limit and the windows stay.
    counts = admin.post("rate-limit", {"retryAfter": "date"})
    assert (counts["limit"], counts["retryAfter"], counts["tokens"][rate_limit_key(emu.token)]["used"]) == (
        2,
        "date",
        2,
    )
    assert me(emu).headers["Retry-After"].endswith(" GMT")
    for bad, says in [
        ({"limit": 5}, "intervalSeconds"),
        ({"intervalSeconds": 5}, '"limit"'),
        ({"limit": 0, "intervalSeconds": 5}, ">= 1"),
        ({"limit": 5, "intervalSeconds": -1}, "> 0"),
        ({"retryAfter": "soon"}, "seconds"),
        ({"limits": 5}, "Unknown field"),
    ]:
        with pytest.raises(AdminError, match=says) as info:
            admin.post("rate-limit", bad)
        assert info.value.status == 400
    assert emu.rate_limit == (2, 10.0)
    admin.clear_rate_limit_counts()
    assert admin.rate_limit_counts()["tokens"] == {}
    assert admin.set_rate_limit(None)["limit"] is None
    assert rate_headers(me(emu)) == (None, None)


def test_many_threads_get_exactly_the_limit(emu: RedivisEmulator) -> None:
    emu.set_rate_limit((50, 100.0))

    def one(_: int) -> int:
        with requests.Session() as http:
            return http.get(f"{emu.api_url}/users/me", headers=bearer(emu.token), timeout=TIMEOUT).status_code

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(one, range(120)))
    assert (statuses.count(200), statuses.count(429)) == (50, 70)
    assert emu.rate_limit_counts(emu.token)["used"] == 50


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"rate_limit": (0, 10.0)}, ">= 1"),
        ({"rate_limit": (5, 0)}, "> 0"),
        ({"rate_limit": (5.5, 10.0)}, "whole number"),
        ({"rate_limit": "100/100"}, r"\(limit, interval_seconds\)"),
        ({"rate_limit_retry_after": "http-date"}, "'date'"),
    ],
)
def test_bad_settings_say_what_is_wanted(options: dict[str, object], says: str) -> None:
    with pytest.raises(ValueError, match=says):
        RedivisEmulator(**options)


def test_the_command_line_turns_it_on(tmp_path: Path) -> None:
    with running_cli(
        "--rate-limit", "2/100", "--rate-limit-retry-after", "seconds", log=tmp_path / "err"
    ) as (
        _,
        base,
    ):
        url = f"{base}/api/v1/users/me"
        answers = [requests.get(url, headers=bearer("test-token"), timeout=TIMEOUT) for _ in range(3)]
        assert [(a.status_code, rate_headers(a)) for a in answers] == [
            (200, ("2", "1")),
            (200, ("2", "0")),
            (429, ("2", "0")),
        ]
        assert 99 <= int(answers[2].headers["Retry-After"]) <= 100
