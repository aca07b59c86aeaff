"""RequestBudget: when a request may go, from what Redivis's answers say of the token's budget.

The clock is the one thing faked here (a test cannot wait out a 100-second interval); the hook's use of the
budget against the emulator's enforced limit is tested in tests/hooks/test_rate_limit.py.
"""

from __future__ import annotations

import threading

import pytest

from airflow_provider_redivis.engine.request_budget import BudgetWaitTimeoutError, RequestBudget, budget_for


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
