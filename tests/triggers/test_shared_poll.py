"""Deferred waits on one table share their checks: real RedivisUploadTriggers in one event loop (as in a
triggerer) against the emulator over 127.0.0.1, their requests counted by the emulator."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import pytest
from redivis_emulator import Fault

from airflow_provider_redivis.engine.status import REASON_COMPLETED, REASON_REJECTED, REASON_TIMEOUT
from airflow_provider_redivis.hooks.redivis import RedivisHook
from airflow_provider_redivis.triggers import shared_poll
from airflow_provider_redivis.triggers.upload import RedivisUploadTrigger
from tests.triggers.emulated_uploads import TABLE, create_upload, emulator_fixture

if TYPE_CHECKING:
    from collections.abc import Sequence

    from redivis_emulator import RedivisEmulator

#: Each step of processing (queued -> running -> completed) takes 0.3 s.
steady_emulator = emulator_fixture(processing_delay=0.3)
OTHER_TABLE = "test_owner.test_dataset.other_table"


class Run:
    """What a set of triggers did: each one's payload and when it came (``time.time()``), and the pollers
    that served them."""

    def __init__(
        self, started: float, payloads: list[dict[str, Any]], ended: list[float], pollers: list[Any]
    ) -> None:
        self.started, self.payloads, self.ended, self.pollers = started, payloads, ended, pollers

    @property
    def checks(self) -> int:
        return sum(p.checks_made for p in self.pollers)


async def run_together(triggers: Sequence[RedivisUploadTrigger], limit: float = 30.0) -> Run:
    """Run the triggers in this loop until each has fired; the pollers must be gone afterwards."""
    started = time.time()
    ended: list[float] = [0.0] * len(triggers)

    async def one(i: int, trigger: RedivisUploadTrigger) -> dict[str, Any]:
        events = [event async for event in trigger.run()]
        ended[i] = time.time()
        assert len(events) == 1, events
        return events[0].payload

    tasks = [asyncio.create_task(one(i, t)) for i, t in enumerate(triggers)]
    await asyncio.sleep(0)  # one turn of the loop: every trigger has joined its poller
    pollers = shared_poll.pollers()
    payloads = await asyncio.wait_for(asyncio.gather(*tasks), limit)
    # The registry empties when the last trigger ends.
    await asyncio.wait_for(asyncio.gather(*(p.task for p in pollers)), 5)
    assert shared_poll.pollers() == []
    return Run(started, list(payloads), ended, pollers)


def trigger(upload: dict[str, Any], **kwargs: Any) -> RedivisUploadTrigger:
    kwargs.setdefault("poll_interval", 0.1)
    kwargs.setdefault("max_poll_interval", 0.2)
    kwargs.setdefault("timeout", 20)
    return RedivisUploadTrigger(upload_uri=upload["uri"], **kwargs)


def fleet(uploads: Sequence[dict[str, Any]], timeout: float) -> list[RedivisUploadTrigger]:
    """Triggers with one deadline, to the microsecond: they time out at the same check."""
    end_time = time.time() + timeout
    return [trigger(u, timeout=timeout, end_time=end_time) for u in uploads]


def is_listing(info: Any) -> bool:
    return bool(info.method == "GET" and info.path.endswith("/uploads"))


def api_requests(emu: RedivisEmulator) -> list[tuple[str, str]]:
    """(kind, path below /api/v1): ``LIST`` for a listing of uploads, else the method."""
    return [
        (
            "LIST" if r.method == "GET" and r.path.endswith("/uploads") else r.method,
            r.path.removeprefix("/api/v1"),
        )
        for r in emu.requests
        if r.origin == "api"
    ]


def test_fifty_waits_on_one_table_cost_one_listing_per_check(slow_emulator: RedivisEmulator) -> None:
    made = [create_upload(f"part_{i:02d}.csv") for i in range(50)]
    slow_emulator.clear_requests()
    allowed_before = slow_emulator.rate_limit_counts(slow_emulator.token)["allowed"]

    run = asyncio.run(run_together(fleet(made, 0.8)))

    for upload, payload in zip(made, run.payloads, strict=True):
        assert payload["reason"] == REASON_TIMEOUT
        assert payload["upload"]["uri"] == upload["uri"]  # each its own upload, out of one listing
        assert "last seen status 'queued'" in payload["message"]
    requests = api_requests(slow_emulator)
    assert {kind for kind, _ in requests} == {"LIST"}  # not one GET of an upload
    assert len(run.pollers) == 1
    assert len(requests) == run.checks
    assert slow_emulator.rate_limit_counts(slow_emulator.token)["allowed"] - allowed_before == run.checks
    # 0.8 s at 0.1 s backing off to 0.2 s: about 6 checks. On their own, 50 triggers made 50 requests a check.
    assert 3 <= run.checks <= 10


def test_a_fleet_completes_each_with_its_own_upload(steady_emulator: RedivisEmulator) -> None:
    made = [create_upload(f"part_{i}.csv") for i in range(20)]
    steady_emulator.clear_requests()
    run = asyncio.run(run_together([trigger(u) for u in made]))
    for upload, payload in zip(made, run.payloads, strict=True):
        assert payload["reason"] == REASON_COMPLETED
        assert (payload["upload"]["uri"], payload["upload"]["numRows"]) == (upload["uri"], 3)
    # One request a check: the listing, or the GET of an upload whose trigger waits alone by then.
    requests = api_requests(steady_emulator)
    assert len(requests) == run.checks
    assert requests[0][0] == "LIST"
    assert all(
        kind == "LIST" or path.startswith(f"{run.pollers[0].table_uri}/uploads/") for kind, path in requests
    )


def test_two_tables_cost_two_listings_a_check(slow_emulator: RedivisEmulator) -> None:
    slow_emulator.create_table(OTHER_TABLE)
    first = [create_upload(f"a{i}.csv") for i in range(10)]
    second = [create_upload(f"b{i}.csv", table=OTHER_TABLE) for i in range(10)]
    slow_emulator.clear_requests()

    run = asyncio.run(run_together(fleet(first + second, 0.5)))

    assert {p["reason"] for p in run.payloads} == {REASON_TIMEOUT}
    assert len(run.pollers) == 2
    listed = [path for kind, path in api_requests(slow_emulator) if kind == "LIST"]
    assert len(listed) == len(api_requests(slow_emulator)) == run.checks
    for poller in run.pollers:
        assert listed.count(f"{poller.table_uri}/uploads") == poller.checks_made
    assert {f"{p.table_uri}/uploads" for p in run.pollers} == set(listed)


def test_an_upload_by_name_not_created_yet_is_found_in_a_later_listing(
    slow_emulator: RedivisEmulator,
) -> None:
    create_upload("other.csv")
    # Waits by name share the poller of the table as named (those by uri, the table's uri).
    end_time = time.time() + 1.2  # one deadline: they end at the same check
    later, other = (
        RedivisUploadTrigger(
            table=TABLE,
            upload_name=name,
            poll_interval=0.1,
            max_poll_interval=0.2,
            timeout=1.2,
            end_time=end_time,
        )
        for name in ("later.csv", "other.csv")
    )

    async def scenario() -> Run:
        waiting = asyncio.create_task(run_together([later, other]))
        await asyncio.sleep(0.3)  # the upload appears while the trigger waits: a real gap of time
        assert not waiting.done()
        await asyncio.to_thread(create_upload, "later.csv")
        return await waiting

    slow_emulator.clear_requests()
    run = asyncio.run(scenario())
    assert len(run.pollers) == 1
    payload = run.payloads[0]
    # Seen pending through the listing, then the deadline (processing outlasts the test).
    assert payload["reason"] == REASON_TIMEOUT
    assert payload["upload"]["name"] == "later.csv"
    assert "last seen status 'queued'" in payload["message"]
    waits = [(kind, path) for kind, path in api_requests(slow_emulator) if kind != "POST"]
    assert {kind for kind, _ in waits} == {"LIST"}, waits  # no GET by name, no GET of the table
    assert len(waits) == run.checks


def test_a_deleted_upload_ends_its_own_wait_after_one_get(slow_emulator: RedivisEmulator) -> None:
    gone, *kept = (create_upload(f"{name}.csv") for name in ("gone", "kept1", "kept2"))
    RedivisHook(redivis_conn_id="redivis_setup").delete_upload(gone["uri"])
    slow_emulator.clear_requests()

    run = asyncio.run(run_together(fleet([gone, *kept], 0.6)))

    assert run.payloads[0]["reason"] == REASON_REJECTED
    assert "deleted" in run.payloads[0]["message"]
    assert run.ended[0] - run.started < 0.5  # at its first check, not at the deadline
    assert [p["reason"] for p in run.payloads[1:]] == [REASON_TIMEOUT, REASON_TIMEOUT]
    gets = [path for kind, path in api_requests(slow_emulator) if kind == "GET"]
    assert gets == [gone["uri"]]


def test_each_trigger_keeps_its_own_deadline(slow_emulator: RedivisEmulator) -> None:
    made = [create_upload(f"d{i}.csv") for i in range(3)]
    # A backoff up to 2 s: the deadlines, not the backoff, bring the last looks.
    triggers = [
        trigger(u, timeout=t, max_poll_interval=2.0) for u, t in zip(made, [0.3, 0.8, 1.5], strict=True)
    ]
    run = asyncio.run(run_together(triggers))
    for payload, ended, one in zip(run.payloads, run.ended, triggers, strict=True):
        assert payload["reason"] == REASON_TIMEOUT
        assert "last seen status 'queued'" in payload["message"]
        # Its last look comes at its deadline, at most one shortest poll_interval (0.1 s) late.
        assert one.end_time <= ended < one.end_time + 0.35, (one.end_time, ended)
    assert run.ended[0] < run.ended[1] < run.ended[2]
    assert len(run.pollers) == 1


def test_a_transient_listing_failure_reaches_every_trigger_and_the_wait_goes_on(
    steady_emulator: RedivisEmulator,
) -> None:
    made = [create_upload(f"t{i}.csv") for i in range(5)]
    steady_emulator.add_fault(Fault("status", method="GET", predicate=is_listing, status=503, times=2))
    steady_emulator.clear_requests()
    run = asyncio.run(run_together([trigger(u) for u in made]))
    assert {p["reason"] for p in run.payloads} == {REASON_COMPLETED}
    statuses = [r.status for r in steady_emulator.requests if r.origin == "api"]
    assert statuses[:2] == [503, 503]
    assert len(statuses) == run.checks


def test_a_listing_that_keeps_failing_is_what_every_trigger_saw_last(slow_emulator: RedivisEmulator) -> None:
    made = [create_upload(f"f{i}.csv") for i in range(4)]
    slow_emulator.add_fault(
        Fault(
            "status",
            method="GET",
            predicate=is_listing,
            status=503,
            times=None,
        )
    )
    run = asyncio.run(run_together(fleet(made, 0.4)))
    for payload in run.payloads:
        assert payload["reason"] == REASON_TIMEOUT
        assert "answering with an error (HTTP 503" in payload["message"]


def test_a_retry_after_on_the_listing_holds_every_triggers_next_check(slow_emulator: RedivisEmulator) -> None:
    made = [create_upload(f"w{i}.csv") for i in range(3)]
    slow_emulator.add_fault(
        Fault("status", method="GET", predicate=is_listing, status=429, headers={"Retry-After": "1"}, times=1)
    )
    slow_emulator.clear_requests()
    run = asyncio.run(run_together(fleet(made, 1.4)))
    assert {p["reason"] for p in run.payloads} == {REASON_TIMEOUT}
    listings = [r for r in slow_emulator.requests if r.origin == "api"]
    assert [r.status for r in listings[:2]] == [429, 200]
    assert listings[1].started_at - listings[0].started_at >= 0.95  # not 0.1 s later, as the schedule had it


def test_a_trigger_that_joins_is_looked_at_within_its_poll_interval(slow_emulator: RedivisEmulator) -> None:
    early, late = create_upload("early.csv"), create_upload("late.csv")
    first = trigger(early, poll_interval=0.1, max_poll_interval=2.0, timeout=3.0)

    async def scenario() -> float:
        waiting = asyncio.create_task(run_together([first]))
        await asyncio.sleep(1.4)  # the first trigger's checks are 0.5 s and more apart by now
        joined = time.time()
        run = await run_together([trigger(late, poll_interval=0.1, max_poll_interval=2.0, timeout=0.5)])
        assert run.payloads[0]["reason"] == REASON_TIMEOUT
        assert "last seen status 'queued'" in run.payloads[0]["message"]
        waiting.cancel()
        return joined

    slow_emulator.clear_requests()
    joined = asyncio.run(scenario())
    after = [
        r.started_at - joined for r in slow_emulator.requests if r.origin == "api" and r.started_at > joined
    ]
    assert after
    assert after[0] < 0.35, after  # not at the first trigger's next check, seconds away
    assert sum(1 for t in after if t < 0.5) >= 3  # its own backoff from 0.1 s, as a trigger of its own


def test_triggers_rebuilt_after_a_triggerer_restart_share_a_new_poller(
    steady_emulator: RedivisEmulator,
) -> None:
    made = [create_upload(f"r{i}.csv") for i in range(5)]
    kwargs = [trigger(u).serialize()[1] for u in made]

    async def killed() -> None:
        tasks = [asyncio.create_task(_drain(RedivisUploadTrigger(**k))) for k in kwargs]
        await asyncio.sleep(0)
        assert len(shared_poll.pollers()) == 1
        for task in tasks:  # the triggerer goes away
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.wait_for(asyncio.gather(*(p.task for p in shared_poll.pollers())), 5)
        assert shared_poll.pollers() == []

    asyncio.run(killed())
    run = asyncio.run(
        run_together([RedivisUploadTrigger(**k) for k in kwargs])
    )  # a new loop: a new triggerer
    assert len(run.pollers) == 1
    assert {p["reason"] for p in run.payloads} == {REASON_COMPLETED}


async def _drain(trigger: RedivisUploadTrigger) -> None:
    async for _ in trigger.run():
        pass


def test_a_new_pollers_first_look_waits_a_grace_for_the_deferring_task_to_exit(
    steady_emulator: RedivisEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An upload done before its task deferred must not fire the trigger at once: Airflow would fail the
    task's resumption (its process has not exited yet). The first look waits the grace, or the poll
    interval if shorter."""
    monkeypatch.setattr(shared_poll, "FIRST_LOOK_GRACE", 0.6, raising=False)
    done = create_upload("done.csv")
    deadline = time.monotonic() + 30
    hook = RedivisHook(redivis_conn_id="redivis_setup")
    while hook.get_upload_by_uri(done["uri"])["status"] != "completed":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    run = asyncio.run(run_together([trigger(done, poll_interval=5.0, max_poll_interval=10.0, timeout=20.0)]))
    assert run.payloads[0]["reason"] == REASON_COMPLETED
    assert 0.6 <= run.ended[0] - run.started < 3.0  # the grace, not at once, nor the 5 s poll interval
    quick = asyncio.run(run_together([trigger(done, poll_interval=0.1, max_poll_interval=1.0, timeout=20.0)]))
    assert quick.ended[0] - quick.started < 0.5  # a shorter poll interval than the grace is kept
