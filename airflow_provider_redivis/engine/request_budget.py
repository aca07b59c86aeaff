"""Redivis's request budget for one token, as this process sees it: when the next API request may go.

Redivis allows about 100 API requests per 100-second interval for everything that uses a token, says how
many are left in every answer (``X-RateLimit-Remaining``) and refuses the rest with 429 and a
``Retry-After``. Every process keeps one :class:`RequestBudget` per token (API origin and token), shared by
every hook and thread in it; there is no store shared between processes. The processes settle under the
limit on what the server tells each of them:

- a 429 closes the budget until its ``Retry-After`` (taken against the answer's own ``Date``, so a worker
  clock that is off does not matter: :func:`~airflow_provider_redivis.engine.retry.parse_retry_after`); the
  request is then sent again. A 429 is a wait, never a fault.
- when an answer leaves at most :attr:`RequestBudget.reserve` requests, this process holds its next request
  until the interval that answer belonged to has surely passed. The requests left are the reserve for
  processes that know nothing yet (a new task's first request), so they find the budget open.
- below half the limit, this process spaces its requests by ``interval / limit``: the limit's own pace.
- while it knows nothing (its first request, or after a 429's wait), one request goes alone and the others
  of this process wait for its answer, so a process never opens with a burst.

A task's process is short-lived: a mapped upload sends two requests and ends, so most requests of a fleet
are a new process's first, and a first request knows nothing. So the processes of one machine also keep a
:class:`BudgetNote`: a small file per token in the temporary folder, holding what the last answer said,
the requests sent since, and a 429's end. A new process reads it before its first request, and every
request counts itself in it. It only ever makes a process wait sooner; processes on other machines (or
with another temporary folder) still settle on the answers alone.

Plain Python: the hook asks it (:meth:`wait_for_turn`) and feeds it (:meth:`answered`, :meth:`refused`).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import math
import os
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_provider_redivis.errors import RedivisError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping

#: What Redivis allows a token until an answer says otherwise (its "Limits and errors" page).
DEFAULT_LIMIT = 100
DEFAULT_INTERVAL = 100.0
LIMIT_HEADER = "X-RateLimit-Limit"
REMAINING_HEADER = "X-RateLimit-Remaining"
#: A long wait is logged in pieces of at most this many seconds, so the log shows it is alive.
LOG_EVERY = 30.0


class BudgetWaitTimeoutError(RedivisError):
    """A request waited for its turn in Redivis's request budget past the caller's deadline."""


@dataclass(frozen=True)
class Turn:
    """Why a request waits, and until when (``time.monotonic()``)."""

    until: float
    why: str
    #: Worth a log line: a wait for the budget is; a wait for the answer of this process's own first request is not.
    logged: bool = True


class RequestBudget:
    """One token's budget in this process. Thread-safe.

    :param interval: seconds of Redivis's rate-limit interval (not in its answers: 100 s, or the
        connection's ``rate_limit_interval``).
    :param note: this machine's note of the token's budget, shared with its other processes (None: none).
    """

    def __init__(
        self,
        interval: float = DEFAULT_INTERVAL,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        note: BudgetNote | None = None,
    ) -> None:
        self.interval = float(interval)
        self.limit = DEFAULT_LIMIT
        self._clock = clock
        self._wall_clock = wall_clock
        self._note = note
        self._lock = threading.Condition()
        self._closed_until = 0.0  # a 429's Retry-After
        # The lowest count an answer gave in this interval, less what was sent since.
        self._remaining: int | None = None
        self._seen_at = 0.0
        self._probing = False  # a request goes while nothing is known: the rest wait for its answer
        self._last_sent = -math.inf
        #: How many requests this process sent, and how many of them Redivis refused: for a summary.
        self.sent = 0
        self.refusals = 0
        self.waited_seconds = 0.0

    @property
    def reserve(self) -> int:
        """Requests left to processes that know nothing of the budget yet: a fifth of the limit, at least 2."""
        return max(2, self.limit // 5)

    def next_turn(self) -> Turn | None:
        """None when a request may go now; else until when it waits, and why."""
        now = self._clock()
        if now < self._closed_until:
            return Turn(self._closed_until, "Redivis answered 429 (too many requests) and said when to retry")
        remaining = self._remaining
        if remaining is None or now >= self._seen_at + self.interval:
            # Nothing known, or what was known is from an interval that has passed: one request finds out.
            return (
                Turn(now + LOG_EVERY, "waiting for the answer to the request that finds out", logged=False)
                if self._probing
                else None
            )
        if remaining <= self.reserve:
            return Turn(
                self._seen_at + self.interval,
                f"Redivis said {remaining} of {self.limit} requests are left in its interval; the rest is kept "
                "for other tasks on this token",
            )
        if remaining < self.limit / 2 and now < self._last_sent + self.interval / self.limit:
            return Turn(self._last_sent + self.interval / self.limit, "pacing at the limit's rate")
        return None

    def wait_for_turn(
        self,
        *,
        deadline: float | None = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        """Block until a request may go, then count it as sent.

        :param deadline: ``time.monotonic()`` after which waiting raises :class:`BudgetWaitTimeoutError`.
        :param log: told each long wait (at least every :data:`LOG_EVERY` seconds of it).
        """
        waited_from = self._clock()
        with self._lock:
            while (turn := self._take_turn()) is not None:
                now = self._clock()
                if deadline is not None and now >= deadline:
                    raise BudgetWaitTimeoutError(
                        f"Gave up after {now - waited_from:.0f} s waiting for a turn in Redivis's request budget "
                        f"({turn.why}; {turn.until - now:.0f} s more), at this wait's deadline. The token's "
                        "requests are spent faster than Redivis allows (about 100 per 100 s): spread the loads "
                        "over the day, poll less often, or ask Redivis for a higher limit."
                    )
                until = turn.until if deadline is None else min(turn.until, deadline)
                if log is not None and turn.logged and turn.until - now >= 1.0:
                    log(
                        f"Waiting {turn.until - now:.0f} s for a turn in Redivis's request budget: {turn.why}."
                    )
                # An answer that opens the budget wakes us early.
                self._lock.wait(max(min(until - now, LOG_EVERY), 0.001))
            self.sent += 1
            self.waited_seconds += self._last_sent - waited_from

    def _take_turn(self) -> Turn | None:
        """None, with the request counted as sent, when it may go; else why it waits. With a note, what the
        machine's other processes know is read, and the request counted, under the note's one lock: two
        processes never both take the last request before the reserve."""
        taken: dict[str, Turn | None] = {}

        def decide(note: dict[str, Any]) -> None:
            self._absorb(note)
            turn = taken["turn"] = self.next_turn()
            if turn is None:
                self._last_sent = self._clock()
                if self._remaining is None or self._last_sent >= self._seen_at + self.interval:
                    self._probing = True
                else:
                    self._remaining -= 1
                    self._record(note)

        if self._note is not None:
            self._note.change(decide)
        if "turn" not in taken:  # no note, or one that cannot be read: this process decides alone
            decide({})
        return taken["turn"]

    def answered(self, headers: Mapping[str, str] | None) -> None:
        """Take in what an answer says of the budget (any answer of the API, error or not; None: no answer)."""
        remaining = _whole_number(headers.get(REMAINING_HEADER)) if headers is not None else None
        with self._lock:
            self._probing = False
            self._lock.notify_all()
            if remaining is None:
                return
            limit = _whole_number(headers.get(LIMIT_HEADER)) if headers is not None else None
            if limit:
                self.limit = limit
            self._learn(remaining, self._clock())
            if self._note is not None:
                self._note.change(self._record)

    def _learn(self, remaining: int, seen_at: float) -> None:
        """Answers overtake one another: within an interval the lowest count is the one to believe, and its
        time bounds when that interval surely ends."""
        known = self._remaining is not None and self._clock() < self._seen_at + self.interval
        if not known or remaining <= (self._remaining or 0):
            self._remaining = remaining
            self._seen_at = seen_at

    def _absorb(self, note: Mapping[str, Any]) -> None:
        """Take in what this machine's other processes learned (a note's content)."""
        now, wall = self._clock(), self._wall_clock()
        closed = _number(note, "closed_until")
        if closed > wall:
            self._closed_until = max(self._closed_until, now + (closed - wall))
        if self._current(note, wall):
            limit = note.get("limit")
            if isinstance(limit, int) and limit > 0:
                self.limit = limit
            self._learn(note["remaining"], now - (wall - _number(note, "seen_at")))

    def _record(self, note: dict[str, Any]) -> None:
        """Put what this process knows of the interval into a note's content, where it is the lower count."""
        if self._remaining is None:
            return
        wall = self._wall_clock()
        seen = wall - (self._clock() - self._seen_at)
        if not self._current(note, wall) or self._remaining <= note["remaining"]:
            note.update(remaining=self._remaining, seen_at=seen, limit=self.limit)

    def _current(self, note: Mapping[str, Any], wall: float) -> bool:
        """Whether the note holds a count of an interval that may not have passed yet."""
        return (
            isinstance(note.get("remaining"), int) and wall - self.interval < _number(note, "seen_at") <= wall
        )

    def refused(self, retry_after: float | None) -> float:
        """A 429: no request from this process before ``retry_after`` seconds (the interval if unknown or
        past belief). A ``Retry-After`` of 0, or a date already passed, is "now": the limit's own pace
        (``interval / limit``), not a loop of refusals.

        :returns: the seconds this process now waits.
        """
        if retry_after is None or retry_after > 2 * self.interval:
            wait = self.interval
        else:
            wait = retry_after if retry_after > 0 else self.interval / self.limit
        with self._lock:
            self.refusals += 1
            self._probing = False
            self._remaining = None  # Retry-After says when a new interval begins: that is all we know
            self._closed_until = max(self._closed_until, self._clock() + wait)
            if self._note is not None:
                until = self._wall_clock() + wait
                self._note.change(
                    lambda note: note.update(closed_until=max(until, _number(note, "closed_until")))
                )
            return self._closed_until - self._clock()


class BudgetNote:
    """What the processes of this machine know of one token's budget, in a file they share.

    Holds the lowest ``remaining`` an answer gave in the current interval less the requests counted since
    (``seen_at``: wall-clock seconds), and the end of a 429's wait (``closed_until``). Every change is made
    under an exclusive ``flock``; a file that cannot be read or written is no note at all (it is a hint,
    never a condition for sending).
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, Any]]:
        """The note's content under the lock; changed in place, it is written back."""
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        with os.fdopen(fd, "r+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                try:
                    data = json.loads(handle.read() or "{}")
                except ValueError:
                    data = {}  # not a note (cut short by a crash): written anew
                content = data if isinstance(data, dict) else {}
                before = dict(content)
                yield content
                if content != before:
                    handle.seek(0)
                    handle.truncate()
                    handle.write(json.dumps(content))
                    handle.flush()  # before the lock goes, or another process reads half of it
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def change(self, edit: Callable[[dict[str, Any]], None]) -> dict[str, Any] | None:
        """Apply ``edit`` to the note and return what it then holds; None if the file is not usable."""
        try:
            with self._locked() as content:
                edit(content)
                return dict(content)
        except (OSError, ValueError):
            return None


def note_path(key: str) -> Path:
    """Where this machine's processes keep their note of the budget with digest ``key`` (origin and token)."""
    folder = os.environ.get("REDIVIS_BUDGET_NOTE_DIR") or os.path.join(
        tempfile.gettempdir(), "airflow-provider-redivis"
    )
    return Path(folder) / f"budget-{key[:32]}.json"


def _number(note: Mapping[str, Any], key: str) -> float:
    value = note.get(key)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0


def _whole_number(value: str | None) -> int | None:
    try:
        number = int(str(value).strip())
    except ValueError:
        return None
    return number if number >= 0 else None


_BUDGETS: dict[tuple[str, str], RequestBudget] = {}
_BUDGETS_LOCK = threading.Lock()


def budget_for(api_url: str, token: str, interval: float = DEFAULT_INTERVAL) -> RequestBudget:
    """This process's one budget for the token at ``api_url`` (the token is kept only as a digest)."""
    key = (api_url, hashlib.sha256(token.encode()).hexdigest())
    with _BUDGETS_LOCK:
        budget = _BUDGETS.get(key)
        if budget is None:
            # The note is the same budget's on this machine: named by the origin and the token, as here.
            digest = hashlib.sha256(f"{api_url}\n{key[1]}".encode()).hexdigest()
            budget = _BUDGETS[key] = RequestBudget(interval, note=BudgetNote(note_path(digest)))
        else:
            budget.interval = float(interval)
        return budget
