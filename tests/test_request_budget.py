"""RequestBudget: when a request may go, from what Redivis's answers say of the token's budget.

The clock is the one thing faked here (a test cannot wait out a 100-second interval); the hook's use of the
budget against the emulator's enforced limit is tested in tests/hooks/test_rate_limit.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from airflow_provider_redivis.engine.request_budget import (
    BudgetNote,
    BudgetWaitTimeoutError,
    RequestBudget,
    budget_for,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def answer(remaining: int, limit: int = 20) -> dict[str, str]:
    return {"X-RateLimit-Limit": str(limit), "X-RateLimit-Remaining": str(remaining)}


def test_nothing_known_lets_a_request_go() -> None:
    assert RequestBudget(10.0, clock=Clock()).next_turn() is None


def test_a_429_closes_the_budget_until_retry_after() -> None:
    clock = Clock()
    budget = RequestBudget(10.0, clock=clock)
    budget.refused(4.0)
    turn = budget.next_turn()
    assert turn is not None
    assert turn.until == 1004.0
    assert "429" in turn.why
    clock.now = 1004.0
    assert budget.next_turn() is None
    assert budget.refusals == 1


@pytest.mark.parametrize("retry_after", [None, 1e9])
def test_a_429_without_a_usable_retry_after_waits_one_interval(retry_after: float | None) -> None:
    clock = Clock()
    budget = RequestBudget(10.0, clock=clock)
    budget.refused(retry_after)
    turn = budget.next_turn()
    assert turn is not None
    assert turn.until == 1010.0


def test_a_429_that_says_retry_now_waits_the_limits_pace_not_an_interval() -> None:
    """``Retry-After: 0`` (or a date already passed) is "now": the next request goes one pace later
    (interval / limit), neither at once in a loop of refusals nor a whole interval later."""
    clock = Clock()
    budget = RequestBudget(10.0, clock=clock)
    budget.answered(answer(remaining=15))  # limit 20: a pace of 0.5 s
    assert budget.refused(0.0) == 0.5
    turn = budget.next_turn()
    assert turn is not None
    assert turn.until == 1000.5
    clock.now = 1000.5
    assert budget.next_turn() is None


def test_the_reserve_is_left_to_others_until_the_interval_has_surely_passed() -> None:
    clock = Clock()
    budget = RequestBudget(10.0, clock=clock)
    budget.answered(answer(remaining=4))  # 20 // 5 = 4: the reserve
    assert budget.reserve == 4
    turn = budget.next_turn()
    assert turn is not None
    assert turn.until == 1010.0
    assert "4 of 20" in turn.why
    clock.now = 1010.0
    assert budget.next_turn() is None


def test_plenty_left_goes_at_once_and_below_half_paces_at_the_limits_rate() -> None:
    clock = Clock()
    budget = RequestBudget(10.0, clock=clock)
    budget.answered(answer(remaining=15))
    budget.wait_for_turn()
    assert budget.next_turn() is None  # 14 left of 20: no pacing
    budget.answered(answer(remaining=8))  # the request above went at 1000.0
    turn = budget.next_turn()
    assert turn is not None
    assert turn.until == pytest.approx(1000.5)


def test_each_request_sent_counts_against_what_was_left() -> None:
    clock = Clock()
    budget = RequestBudget(10.0, clock=clock)
    budget.answered(answer(remaining=6))
    budget.wait_for_turn()
    clock.now += 1
    budget.wait_for_turn()  # 6 -> 4: the reserve now
    turn = budget.next_turn()
    assert turn is not None
    assert turn.until == 1010.0
    assert budget.sent == 2


def test_a_wait_past_its_deadline_says_it_was_the_budget() -> None:
    budget = RequestBudget(60.0)
    budget.refused(30.0)
    with pytest.raises(BudgetWaitTimeoutError, match="request budget"):
        budget.wait_for_turn(deadline=0.0)


def test_while_nothing_is_known_one_request_goes_and_the_others_wait_for_its_answer() -> None:
    budget = RequestBudget(60.0)
    budget.wait_for_turn()  # the first request of the process: it finds out
    went = threading.Event()

    def second_request() -> None:
        budget.wait_for_turn()
        went.set()

    thread = threading.Thread(target=second_request, daemon=True)
    thread.start()
    assert not went.wait(0.3)
    budget.answered(answer(remaining=19))  # its answer wakes the waiting one
    assert went.wait(5.0)
    thread.join(5.0)


def test_a_request_that_got_no_answer_lets_the_next_one_find_out() -> None:
    budget = RequestBudget(60.0, clock=Clock())
    budget.wait_for_turn()
    assert budget.next_turn() is not None
    budget.answered(None)  # a connection error
    assert budget.next_turn() is None


def test_answers_that_overtake_one_another_believe_the_lowest_count() -> None:
    clock = Clock()
    budget = RequestBudget(10.0, clock=clock)
    budget.answered(answer(remaining=3))
    clock.now += 0.1
    budget.answered(answer(remaining=12))  # sent earlier, answered later
    turn = budget.next_turn()
    assert turn is not None
    assert turn.until == 1010.0


def test_one_budget_per_token_and_origin_in_a_process() -> None:
    a = budget_for("http://127.0.0.1:1/api/v1", "token-a", 100.0)
    assert budget_for("http://127.0.0.1:1/api/v1", "token-a", 100.0) is a
    assert budget_for("http://127.0.0.1:1/api/v1", "token-b", 100.0) is not a
    assert budget_for("http://127.0.0.1:2/api/v1", "token-a", 100.0) is not a


# -- this machine's note: what a new process knows before its first request --------------------------------


class WallClock(Clock):
    """time.time() beside the monotonic Clock: the note holds wall-clock seconds."""

    def __init__(self, clock: Clock, offset: float = 1_700_000_000.0) -> None:
        self._clock, self._offset = clock, offset

    def __call__(self) -> float:
        return self._clock.now + self._offset


def two_processes(tmp_path: Path) -> tuple[Clock, RequestBudget, RequestBudget]:
    """Two budgets of one token, as two processes of one machine hold them: nothing shared but the note."""
    clock = Clock()
    note = tmp_path / "budget-note.json"
    first = RequestBudget(10.0, clock=clock, wall_clock=WallClock(clock), note=BudgetNote(note))
    second = RequestBudget(10.0, clock=clock, wall_clock=WallClock(clock), note=BudgetNote(note))
    return clock, first, second


def test_a_new_process_keeps_the_reserve_another_process_was_told_of(tmp_path: Path) -> None:
    clock, first, second = two_processes(tmp_path)
    first.wait_for_turn()
    first.answered(answer(remaining=4))  # the reserve of a 20-request limit
    clock.now += 1.0
    turn = second.next_turn()
    assert turn is None  # it has not read the note yet: wait_for_turn does
    with pytest.raises(BudgetWaitTimeoutError, match="4 of 20 requests are left"):
        second.wait_for_turn(deadline=clock.now)


def test_a_new_process_waits_out_another_processes_429(tmp_path: Path) -> None:
    clock, first, second = two_processes(tmp_path)
    first.refused(6.0)
    clock.now += 1.0
    with pytest.raises(BudgetWaitTimeoutError, match="429"):
        second.wait_for_turn(deadline=clock.now)
    clock.now += 5.0
    second.wait_for_turn(deadline=clock.now)  # the 429's wait is over: it goes


def test_every_process_counts_its_requests_in_the_note(tmp_path: Path) -> None:
    clock, first, second = two_processes(tmp_path)
    first.answered(answer(remaining=8))
    for _ in range(2):
        for budget in (first, second):
            clock.now += 1.0  # past the pace of the limit (0.5 s a request below half of it)
            budget.wait_for_turn(deadline=clock.now)
    # 8 less the four sent: the reserve (4) is reached, by either process's count.
    assert json.loads((tmp_path / "budget-note.json").read_text())["remaining"] == 4
    with pytest.raises(BudgetWaitTimeoutError):
        second.wait_for_turn(deadline=clock.now)


def test_a_note_from_an_interval_that_has_passed_says_nothing(tmp_path: Path) -> None:
    clock, first, second = two_processes(tmp_path)
    first.answered(answer(remaining=0))
    clock.now += 10.0
    second.wait_for_turn(deadline=clock.now)  # goes at once, to find out


def test_an_unusable_note_is_no_note(tmp_path: Path) -> None:
    (tmp_path / "not-a-folder").write_text("")
    budget = RequestBudget(10.0, clock=Clock(), note=BudgetNote(tmp_path / "not-a-folder" / "note.json"))
    budget.answered(answer(remaining=15))
    budget.wait_for_turn(deadline=0.0)  # sends: the note's trouble never stops a request


NEW_PROCESS = """
import sys, time
from airflow_provider_redivis.engine.request_budget import BudgetWaitTimeoutError, budget_for
budget = budget_for("http://127.0.0.1:9/api/v1", "token-of-the-note-test", 100.0)
try:
    budget.wait_for_turn(deadline=time.monotonic())
except BudgetWaitTimeoutError as exc:
    print("WAITS:", exc)
else:
    print("SENT")
"""


def test_a_new_os_process_reads_what_an_earlier_one_was_told(tmp_path: Path) -> None:
    """Two real processes, one after the other, as two mapped tasks on one worker: the second's first
    request waits for the budget the first one saw spent, instead of being answered 429."""
    env = {**os.environ, "REDIVIS_BUDGET_NOTE_DIR": str(tmp_path)}
    told = (
        "from airflow_provider_redivis.engine.request_budget import budget_for\n"
        "budget = budget_for('http://127.0.0.1:9/api/v1', 'token-of-the-note-test', 100.0)\n"
        "budget.wait_for_turn()\n"
        "budget.answered({'X-RateLimit-Limit': '100', 'X-RateLimit-Remaining': '3'})\n"
    )
    subprocess.run([sys.executable, "-c", told], env=env, check=True, timeout=60)
    second = subprocess.run(
        [sys.executable, "-c", NEW_PROCESS], env=env, check=True, timeout=60, capture_output=True, text=True
    )
    assert second.stdout.startswith("WAITS:"), second.stdout
    assert "3 of 100 requests are left" in second.stdout
    # Without the note (another machine), the same new process knows nothing and sends.
    elsewhere = {**env, "REDIVIS_BUDGET_NOTE_DIR": str(tmp_path / "another-machine")}
    third = subprocess.run(
        [sys.executable, "-c", NEW_PROCESS],
        env=elsewhere,
        check=True,
        timeout=60,
        capture_output=True,
        text=True,
    )
    assert third.stdout.strip() == "SENT"


CONCURRENT_WRITER = """
import sys
from airflow_provider_redivis.engine.request_budget import BudgetNote
from pathlib import Path
note = BudgetNote(Path(sys.argv[1]))
for n in range(300):
    note.change(lambda c: c.update(remaining=(c.get("remaining") or 0) + 1, pad="x" * (n % 7)))
"""


def test_processes_writing_the_note_at_once_never_tear_it(tmp_path: Path) -> None:
    """Four processes add 300 each under the note's lock: every change is whole, none is lost."""
    path = tmp_path / "note.json"
    writers = [
        subprocess.Popen([sys.executable, "-c", CONCURRENT_WRITER, str(path)], env=dict(os.environ))
        for _ in range(4)
    ]
    assert [w.wait(timeout=120) for w in writers] == [0, 0, 0, 0]
    assert json.loads(path.read_text())["remaining"] == 1200


def test_a_torn_note_is_written_anew(tmp_path: Path) -> None:
    path = tmp_path / "note.json"
    path.write_text('{"remaining": 3, "seen_at": 1.0}}')
    assert BudgetNote(path).change(lambda c: c.update(remaining=7)) == {"remaining": 7}


def test_each_origin_of_a_token_has_a_note_of_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Like the process's budgets, the machine's notes are one per API origin and token: a 429 from one
    server closes nothing for another."""
    monkeypatch.setenv("REDIVIS_BUDGET_NOTE_DIR", str(tmp_path))
    here = budget_for("http://127.0.0.1:3/api/v1", "token-of-two-origins", 100.0)
    there = budget_for("http://127.0.0.1:4/api/v1", "token-of-two-origins", 100.0)
    here.refused(50.0)
    assert len(list(tmp_path.iterdir())) == 1
    there.wait_for_turn(deadline=0.0)  # not closed: sends at once
    assert len(list(tmp_path.iterdir())) == 2
