"""Fault injection: what can go wrong on the wire, as objects a test adds and the server consults.

A :class:`Fault` is matched against a :class:`RequestInfo` (method, origin, path, the session it
targets, ...) as soon as the request's headers have arrived. The same faults can be written on the
command line or posted as JSON to ``/_emulator/faults``: :mod:`.fault_specs` reads those.
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import KW_ONLY, dataclass, field
from typing import TYPE_CHECKING, Any

from redivis_emulator.dialects import LIE_FIELDS

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

#: What a fault can do; see :class:`Fault`.
FAULT_KINDS = (
    "reset",
    "status",
    "partial",
    "stall",
    "drop_response",
    "broken_answer",
    "empty_200",
    "early_200",
    "lie",
    "fail_processing",
)
#: Faults that change how the request is answered; at most one of them fires per request.
TRANSPORT_KINDS = frozenset(FAULT_KINDS) - {"fail_processing"}
#: Kinds that only match a session request that completes the object (or reaches a complete one).
FINAL_KINDS = frozenset({"broken_answer", "lie"})
#: Kinds that only match a session chunk that does not reach the end of the object.
EARLY_KINDS = frozenset({"early_200"})
ORIGINS = ("api", "session")


@dataclass(frozen=True)
class RequestInfo:
    """What a fault's filters and predicate see of a request, before its body is read."""

    method: str
    origin: str
    path: str
    query: str
    headers: Mapping[str, str]
    content_range: str | None = None
    content_length: int | None = None
    #: The resumable session the request targets (session origin only).
    session_id: str | None = None
    #: That session's total size, when known (declared at creation or by an earlier Content-Range).
    session_size: int | None = None
    #: Bytes that session held when the request arrived.
    session_held: int | None = None
    #: First and last byte of the chunk this request carries (session PUTs with bytes only).
    chunk_first: int | None = None
    chunk_last: int | None = None
    #: True for ``POST .../uploads`` and ``POST .../versions/next/release``: requests that start work.
    starts_processing: bool = False
    #: The total the request's Content-Range names (session PUTs; None for ``/*``).
    chunk_total: int | None = None
    #: The request is a status query (``Content-Range: bytes */...``) to a session.
    status_query: bool = False
    #: The session was already complete when the request arrived.
    session_complete: bool = False

    @property
    def carries_chunk(self) -> bool:
        return self.chunk_first is not None and self.chunk_last is not None

    @property
    def reaches_end(self) -> bool:
        """A session PUT that completes the object if all goes well (or reaches a complete one)."""
        if self.session_id is None or self.method != "PUT":
            return False
        if self.session_complete:
            return True
        if self.chunk_total is None:
            return False
        if self.carries_chunk:
            return self.chunk_last == self.chunk_total - 1
        return self.status_query and self.session_held == self.chunk_total


@dataclass(eq=False)
class Fault:
    """One thing to go wrong, for the requests it matches.

    Kinds:

    ``reset``
        Read ``after_bytes`` of the request body (0 if unset), or -- with ``at_offset`` -- read the
        session chunk up to that absolute offset, then reset the TCP connection (RST). A session
        keeps what Cloud Storage would: the bytes before the cut floored to 256 KiB units, or
        ``keep_bytes`` of the chunk when given -- or none of them on a session (or with
        ``keep_partial=False``) that keeps nothing of a cut request, like storage-testbench's
        ``return-reset-connection``. ``at_offset`` only matches session chunks that reach it.
    ``status``
        Read the body, store nothing, answer ``status`` (with ``headers`` and ``body``; a JSON error
        body shaped for the origin by default). With ``after_bytes`` (of the body) or ``at_offset``
        (absolute, session chunks that reach it): the session keeps the bytes before that mark as it
        keeps those of a cut request (whole 256 KiB units, nothing when ``keep_partial`` is false,
        or ``keep_bytes``), the rest of the body is read and dropped, then ``status`` is answered --
        storage-testbench's ``return-503-after-256K``. A body that ends before the mark is handled
        whole, then answered ``status``.
    ``partial``
        Session chunk PUTs only: read the whole chunk, keep only ``keep_bytes`` of it (default: one
        256 KiB unit short of all of it), answer 308 with the shorter ``Range``.
    ``stall``
        Handle the request, then sleep ``seconds`` before answering; with ``after_bytes`` (or
        ``at_offset``, absolute, for session chunks that reach it), sleep once that much of the body
        has been read instead, then carry on (``stall-for-Ns-after-NK``).
    ``drop_response``
        Handle the request fully (an upload is created, bytes are kept), then close the connection
        without answering.
    ``broken_answer``
        Session requests that complete the object (or reach a complete one): handle it (the object
        is finalized), send the status line, then close the connection (FIN) -- the headers and
        body never arrive (http.client, under requests, reads that as a 200 with no headers and an
        empty body). With ``answer_bytes``: send the status line and every header (the
        Content-Length of the whole body) and that many bytes of the body, then close. When the body
        has no more than ``answer_bytes`` bytes (the ``xml`` dialect's body is empty) the cut comes
        right after the status line. ``short_body`` true: no cut -- a whole answer whose body is its
        first ``answer_bytes`` bytes (0 if unset) and whose Content-Length says so, the connection
        kept (storage-testbench's ``return-broken-stream-final-chunk-after-NB``).
    ``empty_200``
        ``finalize`` true (default): session requests that complete the object; handled (the
        object is finalized), answered ``200`` with an empty body and no ``x-goog-*`` header.
        ``finalize`` false: session chunks that do not reach the end; handled as usual (the object
        is not finalized), answered that same bare ``200``.
    ``early_200``
        Session chunks that do not reach the end: handled as usual (not finalized), answered
        ``200`` in the session's dialect describing the bytes held so far as if they were the object.
    ``lie``
        Session requests that complete the object: handled (finalized), answered ``200`` in the
        session's dialect with ``lie_about`` (comma separated ``md5``, ``crc32c``, ``size``;
        default ``md5,crc32c``) describing other bytes. Later status queries tell the truth.
    ``fail_processing``
        Only matches requests that start work (``POST .../uploads``, ``POST .../release``): the upload's
        processing, or the release, ends ``failed`` with ``message``.

    ``keep_partial`` (``reset``, ``status`` with a mark, and any request the client cuts while the
    fault fires): true keeps whole 256 KiB units of a cut request, false keeps nothing of it; None
    (default) follows the session (``RedivisEmulator(keep_partial_requests=...)``).

    Matching: ``method``, ``origin``, ``path_contains`` (case-sensitive, on the path without query)
    and ``predicate(RequestInfo)`` must all hold. The ``nth`` matching request fires first; the
    fault keeps firing on the following matches until it has fired ``times`` times (``None``: no
    limit). At most one transport fault (all kinds but ``fail_processing``) fires per request: the
    first added that is due.
    """

    kind: str
    _: KW_ONLY
    method: str | None = None
    origin: str | None = None
    path_contains: str | None = None
    predicate: Callable[[RequestInfo], bool] | None = None
    nth: int = 1
    times: int | None = 1
    after_bytes: int | None = None
    at_offset: int | None = None
    status: int | None = None
    headers: Mapping[str, str] | None = None
    body: str | bytes | Mapping[str, Any] | None = None
    keep_bytes: int | None = None
    seconds: float | None = None
    message: str | None = None
    answer_bytes: int | None = None
    finalize: bool = True
    lie_about: str | None = None
    keep_partial: bool | None = None
    short_body: bool = False
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12], init=False)
    matched: int = field(default=0, init=False)
    fired: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"Unknown fault kind {self.kind!r}: use one of {', '.join(FAULT_KINDS)}.")
        if self.origin is not None and self.origin not in ORIGINS:
            raise ValueError(f"Fault origin must be 'api' or 'session', got {self.origin!r}.")
        if self.method is not None:
            self.method = self.method.upper()
        if isinstance(self.nth, bool) or not isinstance(self.nth, int) or self.nth < 1:
            raise ValueError(f"Fault nth counts matching requests from 1, got {self.nth!r}.")
        if self.times is not None and (
            isinstance(self.times, bool) or not isinstance(self.times, int) or self.times < 1
        ):
            raise ValueError(
                f"Fault times must be a positive integer or None (no limit), got {self.times!r}."
            )
        for name in ("after_bytes", "at_offset", "keep_bytes", "answer_bytes"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise ValueError(f"Fault {name} must be a non-negative integer, got {value!r}.")
        if self.seconds is not None and self.seconds < 0:
            raise ValueError(f"Fault seconds must not be negative, got {self.seconds!r}.")
        if self.kind == "status" and (self.status is None or not 100 <= self.status <= 599):
            raise ValueError("A 'status' fault needs status=<HTTP status between 100 and 599>.")
        if self.kind == "stall" and self.seconds is None:
            self.seconds = 5.0
        if self.kind in ("reset", "status", "stall") and None not in (self.after_bytes, self.at_offset):
            raise ValueError(f"A {self.kind!r} fault acts after after_bytes or at at_offset, not both.")
        if self.kind == "lie":
            self.lie_about = ",".join(_lie_fields(self.lie_about or "md5,crc32c"))
        elif self.lie_about is not None:
            raise ValueError("lie_about belongs to a 'lie' fault.")
        for name in ("finalize", "keep_partial", "short_body"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, bool):
                raise ValueError(f"Fault {name} must be true or false, got {value!r}.")

    def applies_to(self, info: RequestInfo) -> bool:
        """The filters, and the scope some kinds imply (see the class docstring)."""
        if self.method is not None and info.method != self.method:
            return False
        if self.origin is not None and info.origin != self.origin:
            return False
        if self.path_contains is not None and self.path_contains not in info.path:
            return False
        if self.kind == "partial" and not info.carries_chunk:
            return False
        if self.kind == "fail_processing" and not info.starts_processing:
            return False
        if (self.kind in FINAL_KINDS or (self.kind == "empty_200" and self.finalize)) and not (
            info.reaches_end
        ):
            return False
        if (self.kind in EARLY_KINDS or (self.kind == "empty_200" and not self.finalize)) and (
            not info.carries_chunk or info.reaches_end
        ):
            return False
        # Only a chunk that reaches at_offset can be cut there.
        if (
            self.kind in ("reset", "status", "stall")
            and self.at_offset is not None
            and (not info.carries_chunk or (info.chunk_last or 0) < self.at_offset)
        ):
            return False
        return self.predicate is None or bool(self.predicate(info))

    @property
    def exhausted(self) -> bool:
        return self.times is not None and self.fired >= self.times

    def to_dict(self) -> dict[str, Any]:
        body = self.body
        if isinstance(body, bytes):
            body = body.decode("utf-8", "replace")
        return {
            "id": self.id,
            "kind": self.kind,
            "method": self.method,
            "origin": self.origin,
            "path_contains": self.path_contains,
            "predicate": None if self.predicate is None else repr(self.predicate),
            "nth": self.nth,
            "times": self.times,
            "after_bytes": self.after_bytes,
            "at_offset": self.at_offset,
            "status": self.status,
            "headers": dict(self.headers or {}),
            "body": body,
            "keep_bytes": self.keep_bytes,
            "seconds": self.seconds,
            "message": self.message,
            "answer_bytes": self.answer_bytes,
            "finalize": self.finalize,
            "lie_about": self.lie_about,
            "keep_partial": self.keep_partial,
            "short_body": self.short_body,
            "matched": self.matched,
            "fired": self.fired,
        }


class FaultBook:
    """The faults in force, and the counting that decides which fire. Thread-safe."""

    def __init__(self, faults: Iterable[Fault] = ()) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = list(faults)

    def add(self, fault: Fault) -> Fault:
        if not isinstance(fault, Fault):
            raise TypeError(f"add_fault wants a Fault, got {type(fault).__name__}.")
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def snapshot(self) -> list[Fault]:
        with self._lock:
            return list(self._faults)

    def select(self, info: RequestInfo) -> tuple[Fault | None, Fault | None]:
        """(transport fault, fail_processing fault) that fire for this request; counts matches."""
        transport: Fault | None = None
        processing: Fault | None = None
        with self._lock:
            for fault in self._faults:
                if fault.exhausted:
                    continue
                try:
                    applies = fault.applies_to(info)
                except Exception:  # a broken predicate must not take the server down
                    applies = False
                if not applies:
                    continue
                fault.matched += 1
                if fault.matched < fault.nth:
                    continue
                if fault.kind == "fail_processing":
                    if processing is None:
                        processing = fault
                        fault.fired += 1
                elif transport is None:
                    transport = fault
                    fault.fired += 1
        return transport, processing


def _lie_fields(value: str) -> tuple[str, ...]:
    fields = tuple(dict.fromkeys(item.strip() for item in value.split(",") if item.strip()))
    unknown = [item for item in fields if item not in LIE_FIELDS]
    if unknown or not fields:
        raise ValueError(f"lie_about names {', '.join(LIE_FIELDS)} (comma separated), got {value!r}.")
    return fields
