#!/usr/bin/env python
"""Independent check of the resumable-upload engine against Google's storage-testbench.

The engine under test is whatever ``airflow_provider_redivis`` the interpreter imports (point
``PYTHONPATH`` at a checkout). The testbench must already be running on this machine's loopback: this
script neither fetches, builds nor starts it (see ``benchmarks/README.md``, "storage-testbench check").

For each case it creates a resumable session on the testbench (JSON API,
``POST /upload/storage/v1/b/{bucket}/o?uploadType=resumable``), creates a Retry Test resource with the
case's fault instructions for ``storage.objects.insert``, and hands the engine a ``requests.Session``
that sends ``x-retry-test-id`` on every request to the session URL. Session creation, the download and
the metadata read go through a separate session without that header, so the faults hit only the
engine's requests. After the upload it downloads the object and compares it with the source byte for
byte, and reads back the Retry Test to see which instructions the testbench consumed.

    PYTHONPATH=/path/to/checkout python scripts/testbench_check.py --testbench http://127.0.0.1:9000

Writes ``benchmarks/results/testbench.md`` (and ``.json``) next to this script unless ``--out`` says
otherwise. Engine API changes are absorbed in :func:`make_session` and :func:`run_upload`.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import dataclasses
import hashlib
import inspect
import ipaddress
import json
import logging
import os
import random
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import requests

KIB = 1024
MIB = 1024 * KIB
#: Default source: 3 MiB + 100 KiB, a whole number of KiB so that ``return-503-after-<size>K`` lets the
#: server keep every byte and still fail the request; 7 requests at 512 KiB, the last one 100 KiB.
DEFAULT_SIZE = 3 * MIB + 100 * KIB
DEFAULT_CHUNK = 512 * KIB
DEFAULT_TIMEOUT = (10.0, 60.0)
DEFAULT_RETRY = {"max_attempts": 8, "max_total_seconds": 60.0, "initial_wait": 0.1, "max_wait": 1.0}
HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE.parent / "benchmarks" / "results" / "testbench.md"

log = logging.getLogger("testbench_check")

#: Read in storage-testbench's code at commit e8c8507 (testbench/common.py, testbench/rest_server.py,
#: gcs/upload.py, gcs/object.py) and seen with curl; printed under every report so they outlive a re-run.
TESTBENCH_NOTES = """\
- Only the JSON API has resumable uploads. The XML flavour (`POST /{bucket}/{object}` with
  `x-goog-resumable: start`) answers `501 Not Implemented`, so the XML answer dialect (empty body,
  `x-goog-hash`, `x-goog-stored-content-length`) cannot be had from a resumable session here; those two
  headers appear only on downloads (XML `GET /{bucket}/{object}` and `alt=media`).
- Intermediate answer: `308` (reason "PERMANENT REDIRECT"), empty body, `Range: bytes=0-N`; no `Range`
  when it holds 0 bytes (and, a testbench quirk, when it holds exactly 1 byte).
- Final answer to a data PUT, or to `bytes */N` once it holds N bytes (that query finalizes the upload):
  `200`, `application/json`, the object resource with `size` (a string), `md5Hash`, `crc32c`; no hash
  headers. A status query on an upload that is already final answers the full projection (`acl`,
  `owner` too). `size` is absent from the JSON of a 0-byte object (proto3 default), `md5Hash`/`crc32c`
  present. `bytes */*` never finalizes.
- `return-X-after-YK` keeps exactly Y KiB, not a 256 KiB multiple as Cloud Storage does, then answers X;
  `return-X` fails the next request of any kind (data PUT or status query) before reading its body.
- `return-broken-stream` cuts the first answer that has a body after 4 bytes and closes the socket; on a
  non-final PUT it instead re-wraps the 308 as a `200` with an empty body and is never consumed.
- `return-broken-stream-final-chunk-after-NB` answers the final PUT with the first N bytes of its JSON,
  as a complete 200 (valid HTTP, broken JSON). `return-broken-stream-after-NK` applies to
  `storage.objects.get` only: it never fires on an upload.
- `stall-for-Ts-after-YK` sleeps before keeping the chunk; T = 0 is ignored and never consumed. A
  stalled request that outlives the client's read timeout still appends its chunk when it wakes, at the
  offset it saw before sleeping (a testbench race): the stall case waits longer than the stall.
- An `x-goog-hash` on the final PUT is checked: a mismatch answers `412`, stores nothing, yet marks the
  upload complete, so a later status query answers `200` with the object's JSON minus `md5Hash`/`crc32c`
  while `GET` on the object is 404.
- `x-goog-emulator-instructions: inject-upload-data-error` on the session-creating POST makes it store the
  object with its first byte changed (and report that object's hashes).
- Not usable on HTTP uploads: `redirect-*` and `return-X-if-dp-enforced` (gRPC), `return-corrupted-data`,
  `stall-always`, `stall-at-256KiB` (downloads), `return-unreachable-buckets-…` (bucket lists).
"""


# -- the one place that knows the engine's API ------------------------------------------------------


def _accepted(callable_: Any, kwargs: dict[str, Any], dropped: list[str]) -> dict[str, Any]:
    """The keyword arguments ``callable_`` accepts; the others are noted in ``dropped``."""
    params = inspect.signature(callable_).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return kwargs
    kept = {k: v for k, v in kwargs.items() if k in params}
    dropped.extend(f"{getattr(callable_, '__name__', callable_)}({k}=)" for k in kwargs if k not in params)
    return kept


def make_session(
    http: requests.Session,
    url: str,
    total: int | None,
    *,
    chunk_size: int = DEFAULT_CHUNK,
    timeout: tuple[float, float] = DEFAULT_TIMEOUT,
    retry: dict[str, Any] | None = None,
    dropped: list[str] | None = None,
) -> Any:
    """Build the engine's session object. Adapt here if the constructor changes."""
    from airflow_provider_redivis.engine.resumable import ResumableSession
    from airflow_provider_redivis.engine.retry import RetryPolicy

    dropped = [] if dropped is None else dropped
    policy = RetryPolicy(**_accepted(RetryPolicy, dict(retry or DEFAULT_RETRY), dropped))
    kwargs = {"chunk_size": chunk_size, "timeout": timeout, "retry_policy": policy}
    return ResumableSession(http, url, total, **_accepted(ResumableSession, kwargs, dropped))


def run_upload(session: Any, reader: Any) -> Any:
    """Call ``upload`` from byte 0; pass ``digest=`` only while the engine still takes it."""
    from airflow_provider_redivis.engine import resumable

    kwargs: dict[str, Any] = {}
    params = inspect.signature(session.upload).parameters
    if "digest" in params and hasattr(resumable, "StreamingMD5"):
        kwargs["digest"] = resumable.StreamingMD5()
    return session.upload(reader, 0, **kwargs)


# -- counting what goes over the wire ----------------------------------------------------------------


class _CountingBody:
    """Wraps a file-like request body (``read`` + ``__len__``) and counts the bytes ``requests`` reads."""

    def __init__(self, inner: Any, record: dict[str, Any]) -> None:
        self._inner = inner
        self._record = record

    def __len__(self) -> int:
        return len(self._inner)

    def read(self, *args: Any) -> bytes:
        data = self._inner.read(*args)
        self._record["sent"] += len(data)
        return data


class _CountingIterable:
    """Wraps an iterable body with a length (the engine's streamed request) and counts what is sent."""

    def __init__(self, inner: Any, record: dict[str, Any]) -> None:
        self._inner = inner
        self._record = record

    def __len__(self) -> int:
        return len(self._inner)

    def __iter__(self) -> Any:
        for piece in self._inner:
            self._record["sent"] += len(piece)
            yield piece


def _parse_content_range(value: str | None) -> tuple[int | None, str]:
    """First byte of ``bytes a-b/t`` (None for ``bytes */t``) and a short form for the trace."""
    if not value or not value.startswith("bytes "):
        return None, value or "-"
    spec = value[len("bytes ") :]
    first = spec.split("-", 1)[0]
    return (int(first) if first.isdigit() else None), spec


class RecordingSession(requests.Session):
    """A ``requests.Session`` that logs every request the engine makes: range, bytes read, answer."""

    def __init__(self, retry_test_id: str | None) -> None:
        super().__init__()
        if retry_test_id:
            self.headers["x-retry-test-id"] = retry_test_id
        self.trace: list[dict[str, Any]] = []

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        if args:  # positional (params, data, ...) as in requests.Session.request
            names = ["params", "data", "headers"]
            kwargs.update(dict(zip(names, args, strict=False)))
            args = ()
        headers = {str(k).lower(): v for k, v in (kwargs.get("headers") or {}).items()}
        first, spec = _parse_content_range(headers.get("content-range"))
        record: dict[str, Any] = {
            "method": method if isinstance(method, str) else method.decode(),
            "range": spec,
            "first": first,
            "sent": 0,
            "declared": None,
            "x_goog_hash_sent": headers.get("x-goog-hash"),
            "t": time.monotonic(),
        }
        data = kwargs.get("data")
        if data is not None:
            if isinstance(data, (bytes, bytearray, memoryview)):
                record["sent"] = record["declared"] = len(data)
            elif isinstance(data, str):
                record["sent"] = record["declared"] = len(data.encode())
            elif hasattr(data, "read"):
                with contextlib.suppress(TypeError):
                    record["declared"] = len(data)
                kwargs["data"] = _CountingBody(data, record) if record["declared"] is not None else data
            elif hasattr(data, "__iter__"):
                with contextlib.suppress(TypeError):
                    record["declared"] = len(data)
                kwargs["data"] = _CountingIterable(data, record)
        self.trace.append(record)
        try:
            response = super().request(method, url, *args, **kwargs)
        except BaseException as exc:
            record["error"] = f"{type(exc).__name__}"
            record["error_text"] = str(exc)[:300]
            raise
        record["status"] = response.status_code
        record["headers"] = dict(response.headers)
        if not kwargs.get("stream"):
            record["body"] = response.content
        return response


# -- the testbench's own API (plain session, no retry-test header) ---------------------------------


class Testbench:
    def __init__(self, base: str) -> None:
        self.base = base.rstrip("/")
        self.http = requests.Session()

    def ping(self) -> str:
        r = self.http.get(self.base + "/", timeout=5)
        r.raise_for_status()
        return r.text

    def create_bucket(self, name: str) -> None:
        r = self.http.post(
            f"{self.base}/storage/v1/b", params={"project": "test"}, json={"name": name}, timeout=10
        )
        if r.status_code not in (200, 409):
            raise RuntimeError(f"creating bucket {name}: {r.status_code} {r.text[:200]}")

    def create_retry_test(self, instructions: list[str]) -> str:
        body = {"instructions": {"storage.objects.insert": instructions}, "transport": "HTTP"}
        r = self.http.post(f"{self.base}/retry_test", json=body, timeout=10)
        r.raise_for_status()
        return r.json()["id"]

    def retry_test(self, test_id: str) -> dict[str, Any]:
        r = self.http.get(f"{self.base}/retry_test/{test_id}", timeout=10)
        r.raise_for_status()
        return r.json()

    def delete_retry_test(self, test_id: str) -> None:
        with contextlib.suppress(requests.RequestException):
            self.http.delete(f"{self.base}/retry_test/{test_id}", timeout=10)

    def start_session(
        self, bucket: str, name: str, headers: dict[str, str] | None = None
    ) -> tuple[str, dict[str, str]]:
        r = self.http.post(
            f"{self.base}/upload/storage/v1/b/{bucket}/o",
            params={"uploadType": "resumable", "name": name},
            json={"name": name},
            headers=headers,
            timeout=10,
        )
        if r.status_code != 200 or "Location" not in r.headers:
            raise RuntimeError(f"creating a resumable session: {r.status_code} {r.text[:200]}")
        return r.headers["Location"], dict(r.headers)

    def download(self, bucket: str, name: str) -> bytes | None:
        r = self.http.get(
            f"{self.base}/download/storage/v1/b/{bucket}/o/{quote(name, safe='')}",
            params={"alt": "media"},
            timeout=30,
        )
        if r.status_code == 404:
            return None
        r.raise_for_status()
        return r.content

    def metadata(self, bucket: str, name: str) -> dict[str, Any] | None:
        r = self.http.get(f"{self.base}/storage/v1/b/{bucket}/o/{quote(name, safe='')}", timeout=10)
        if r.status_code == 404:
            return None
        r.raise_for_status()
        return r.json()


# -- cases ---------------------------------------------------------------------------------------


@dataclasses.dataclass
class Case:
    name: str
    instructions: list[str]
    what: str
    size: int = DEFAULT_SIZE
    known_total: bool = True
    timeout: tuple[float, float] = DEFAULT_TIMEOUT
    retry: dict[str, Any] | None = None
    #: "ok": must finish with a byte-identical object; "fail": must raise; "either": anything but a
    #: false success (the engine saying ok while the stored object differs or is missing).
    expect: str = "ok"
    #: Extra headers on the session-creating POST (the testbench keeps them for the whole upload).
    session_headers: dict[str, str] | None = None


def cases(size: int) -> list[Case]:
    k = size // KIB  # the instructions count KiB
    c = DEFAULT_CHUNK // KIB
    return [
        Case("baseline", [], "no fault"),
        Case("503-first-request", ["return-503"], "503 to the first PUT, before its body is read"),
        Case(
            "503-mid-chunk",
            [f"return-503-after-{c + c // 2}K"],
            "server keeps up to mid-chunk 2, answers 503",
        ),
        Case(
            "503-chunk-boundary", [f"return-503-after-{2 * c}K"], "server keeps all of chunk 2, answers 503"
        ),
        Case("500-mid", [f"return-500-after-{2 * c + 76}K"], "500 mid-chunk 3 (offset not 256 KiB aligned)"),
        Case("502-mid", [f"return-502-after-{2 * c + 300}K"], "502 mid-chunk 3"),
        Case("504-mid", [f"return-504-after-{3 * c + 100}K"], "504 mid-chunk 4"),
        Case("429-mid", [f"return-429-after-{4 * c - 48}K"], "429 mid-chunk 4"),
        Case("408-mid", [f"return-408-after-{4 * c + 200}K"], "408 mid-chunk 5"),
        Case(
            "503-twice",
            [f"return-503-after-{c // 2}K", f"return-503-after-{4 * c + 10}K"],
            "two faults in one upload",
        ),
        Case(
            "503-status-query",
            [f"return-503-after-{c + c // 2}K", "return-503", "return-503"],
            "503 mid-chunk 2, then the next two requests (the status queries) 503",
        ),
        Case("reset-first-request", ["return-reset-connection"], "TCP reset on the first PUT"),
        Case(
            "reset-mid",
            [f"stall-for-1s-after-{2 * c}K", "return-reset-connection"],
            "TCP reset on chunk 4 (a 1 s stall on chunk 3 steps the queue: a 0 s stall is ignored)",
        ),
        Case(
            "reset-status-query",
            [f"return-503-after-{c + c // 2}K", "return-reset-connection"],
            "503 mid-chunk 2, then a TCP reset on the status query",
        ),
        Case(
            "broken-stream-after-256K",
            ["return-broken-stream-after-256K"],
            "download-only instruction (objects.get): expected not to fire on an upload",
        ),
        Case(
            "broken-stream-first-request",
            ["return-broken-stream"],
            "testbench artifact: on a non-final PUT it re-wraps the 308 as a 200 with an empty body (and "
            "the 308's Range), and never consumes the instruction; i.e. a bodyless 200 after 512 KiB of 3 MiB",
            expect="either",
        ),
        Case(
            "broken-stream-final-answer",
            [f"stall-for-1s-after-{k - 150}K", "return-broken-stream"],
            "the final PUT's 200 answer is cut after 4 bytes of its body and the socket closed "
            "(a 1 s stall on chunk 6 steps the queue)",
        ),
        Case(
            "final-answer-truncated",
            ["return-broken-stream-final-chunk-after-64B"],
            "final 200 answer truncated to its first 64 bytes (valid HTTP, broken JSON)",
        ),
        Case("stall-2s", [f"stall-for-2s-after-{2 * c}K"], "2 s stall on chunk 3, under the read timeout"),
        Case(
            "stall-past-read-timeout",
            [f"stall-for-6s-after-{2 * c}K"],
            "6 s stall on chunk 3 with a 3 s read timeout; first backoff 4-8 s so the stalled "
            "request has ended before the status query (see notes)",
            timeout=(5.0, 3.0),
            retry={"max_attempts": 8, "max_total_seconds": 60.0, "initial_wait": 8.0, "max_wait": 8.0},
        ),
        Case(
            "503-final-request",
            [f"stall-for-1s-after-{k - 150}K", "return-503"],
            "503 to the final PUT before its body is read (a 1 s stall on chunk 6 steps the queue)",
        ),
        Case(
            "reset-final-request",
            [f"stall-for-1s-after-{k - 150}K", "return-reset-connection"],
            "TCP reset on the final PUT",
        ),
        Case(
            "503-final-all-bytes-kept",
            [f"return-503-after-{k}K"],
            "server keeps every byte of the final PUT, answers 503; the status query finalizes",
        ),
        Case("zero-byte", [], "empty source", size=0),
        Case("zero-byte-503", ["return-503"], "empty source, first request 503", size=0),
        Case("unknown-total", [], "total unknown (bytes a-b/*), no fault", known_total=False),
        Case(
            "unknown-total-aligned",
            [],
            "total unknown, size a multiple of the chunk size",
            size=6 * DEFAULT_CHUNK,
            known_total=False,
        ),
        Case(
            "unknown-total-503-mid",
            [f"return-503-after-{c + c // 2}K"],
            "total unknown, 503 mid-chunk 2",
            known_total=False,
        ),
        Case(
            "unknown-total-503-final-all-bytes",
            [f"return-503-after-{k}K"],
            "total unknown, server keeps every byte of the final PUT, answers 503",
            known_total=False,
        ),
        Case("unknown-total-zero-byte", [], "total unknown, empty source", size=0, known_total=False),
        Case(
            "server-corrupts-object",
            [],
            "session created with `x-goog-emulator-instructions: inject-upload-data-error`: the testbench "
            "flips the first byte of the object it stores (and reports that object's size/md5/crc32c)",
            expect="fail",
            session_headers={"x-goog-emulator-instructions": "inject-upload-data-error"},
        ),
        Case(
            "503-persistent",
            ["return-503"] * 12,
            "every request 503 (12 in a row): the retry budget must end it",
            expect="fail",
        ),
        Case("410-session-gone", ["return-410"], "410 to the first PUT: session expired", expect="fail"),
        Case("400-refused", [f"stall-for-1s-after-{c}K", "return-400"], "400 to chunk 3", expect="fail"),
    ]


# -- checksums -----------------------------------------------------------------------------------


def _crc32c(data: bytes) -> int:
    try:
        import google_crc32c

        return int(google_crc32c.value(data))
    except ImportError:  # slow but fine for a few MiB
        crc = 0xFFFFFFFF
        table = _crc_table()
        for b in data:
            crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
        return crc ^ 0xFFFFFFFF


@dataclasses.dataclass
class _Tab:
    table: list[int] | None = None


_TAB = _Tab()


def _crc_table() -> list[int]:
    if _TAB.table is None:
        table = []
        for i in range(256):
            crc = i
            for _ in range(8):
                crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
            table.append(crc)
        _TAB.table = table
    return _TAB.table


def b64_crc32c(data: bytes) -> str:
    return base64.b64encode(_crc32c(data).to_bytes(4, "big")).decode()


def b64_md5(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()  # noqa: S324 - GCS's checksum


# -- one case ------------------------------------------------------------------------------------


class _CaseTimeout(Exception):
    pass


def _on_alarm(signum: int, frame: Any) -> None:
    raise _CaseTimeout("harness guard: case took too long")


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.levelname}: {record.getMessage()}"[:240])


def _is_status_query(rec: dict[str, Any]) -> bool:
    return rec["range"].startswith("*/") and not rec["sent"]


def _describe_answer(rec: dict[str, Any]) -> dict[str, Any]:
    """What one 200/201 answer carried: dialect, and size/md5/crc32c from the JSON body or headers."""
    headers = {k.lower(): v for k, v in rec.get("headers", {}).items()}
    body = rec.get("body")
    parsed: Any = None
    if body:
        with contextlib.suppress(ValueError):
            parsed = json.loads(body)
    goog_hash = headers.get("x-goog-hash", "")
    fields = {
        "size": isinstance(parsed, dict) and "size" in parsed,
        "md5": (isinstance(parsed, dict) and "md5Hash" in parsed) or "md5=" in goog_hash,
        "crc32c": (isinstance(parsed, dict) and "crc32c" in parsed) or "crc32c=" in goog_hash,
    }
    if "x-goog-stored-content-length" in headers:
        fields["size"] = True
    if body is None:
        dialect = "body not read (stream=True)"
    elif isinstance(parsed, dict):
        dialect = f"JSON body ({len(body)} B)"
    elif body:
        dialect = f"unparseable body ({len(body)} B: {body[:40]!r})"
    else:
        dialect = "empty body"
    if goog_hash or "x-goog-stored-content-length" in headers:
        dialect += " + x-goog-hash/x-goog-stored-content-length headers"
    return {
        "status": rec.get("status"),
        "by": "status query" if _is_status_query(rec) else "data PUT",
        "dialect": dialect,
        "fields": fields,
        "content_type": headers.get("content-type"),
        "x_goog_hash": goog_hash or None,
        "stored_length": headers.get("x-goog-stored-content-length"),
        "json_keys": sorted(parsed)[:40] if isinstance(parsed, dict) else None,
    }


def _trace_line(rec: dict[str, Any]) -> str:
    what = "Q" if _is_status_query(rec) else "PUT"
    out = f"{what} {rec['range']}"
    if rec["sent"] and not _is_status_query(rec):
        declared = rec["declared"]
        out += f" [{rec['sent']}" + (f"/{declared}" if declared not in (None, rec["sent"]) else "") + " B]"
    if "error" in rec:
        return out + f" -> {rec['error']}"
    status = rec.get("status")
    rng = {k.lower(): v for k, v in rec.get("headers", {}).items()}.get("range")
    out += f" -> {status}" + (f" {rng}" if rng else "")
    if status in (200, 201):
        out += " (final)"
    return out


def run_case(tb: Testbench, bucket: str, case: Case, workdir: Path, guard_seconds: int) -> dict[str, Any]:
    name = f"{case.name}-{int(time.time() * 1000) % 10**8}"
    data = random.Random(case.name).randbytes(case.size)  # noqa: S311 - test data
    path = workdir / f"{case.name}.bin"
    path.write_bytes(data)
    test_id = tb.create_retry_test(case.instructions) if case.instructions else None
    url, _ = tb.start_session(bucket, name, case.session_headers)
    http = RecordingSession(test_id)
    dropped: list[str] = []
    collect = _Collect()
    engine_log = logging.getLogger("airflow_provider_redivis")
    engine_log.addHandler(collect)
    engine_log.setLevel(logging.INFO)
    result: dict[str, Any] = {"case": case.name, "instructions": case.instructions, "what": case.what}
    result.update(size=case.size, known_total=case.known_total, object=name)
    result["session_headers"] = case.session_headers or {}
    returned: Any = None
    started = time.monotonic()
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.alarm(guard_seconds)
    try:
        session = make_session(
            http,
            url,
            case.size if case.known_total else None,
            timeout=case.timeout,
            retry=case.retry,
            dropped=dropped,
        )
        with path.open("rb") as reader:
            returned = run_upload(session, reader)
        result["outcome"] = "ok"
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        result["outcome"] = f"{type(exc).__name__}: {exc}"[:400]
    finally:
        signal.alarm(0)
        engine_log.removeHandler(collect)
    result["elapsed"] = time.monotonic() - started
    result["dropped_kwargs"] = dropped
    result["engine_log"] = collect.lines
    result["returned_keys"] = sorted(returned)[:40] if isinstance(returned, dict) else repr(returned)[:80]

    # What went over the wire.
    data_puts = [r for r in http.trace if not _is_status_query(r)]
    result["requests"] = len(http.trace)
    result["status_queries"] = len(http.trace) - len(data_puts)
    result["wire_bytes"] = sum(r["sent"] for r in http.trace)
    resent, high = 0, 0
    for r in http.trace:
        if r["first"] is None or not r["sent"]:
            continue
        resent += max(0, min(r["first"] + r["sent"], high) - r["first"])
        high = max(high, r["first"] + r["sent"])
    result["resent_bytes"] = resent
    result["x_goog_hash_sent"] = [r["x_goog_hash_sent"] for r in http.trace if r["x_goog_hash_sent"]]
    result["trace"] = [_trace_line(r) for r in http.trace]
    finals = [r for r in http.trace if r.get("status") in (200, 201)]
    result["final_answers"] = [_describe_answer(r) for r in finals]
    if finals:
        last = finals[-1]
        result["final_raw"] = {
            "status": last.get("status"),
            "headers": last.get("headers"),
            "body": (last.get("body") or b"")[:400].decode("utf-8", "replace"),
        }
    queries = [r for r in http.trace if _is_status_query(r) and r.get("status") == 308]
    if queries:
        result["query_raw"] = {"status": 308, "headers": queries[0].get("headers")}

    # What the testbench did with the instructions, and what it stored.
    if test_id:
        state = tb.retry_test(test_id)
        left = state.get("instructions", {}).get("storage.objects.insert", [])
        result["fired"] = len(case.instructions) - len(left)
        result["left"] = left
        tb.delete_retry_test(test_id)
    else:
        result["fired"], result["left"] = 0, []
    stored = tb.download(bucket, name)
    meta = tb.metadata(bucket, name)
    result["stored_size"] = None if stored is None else len(stored)
    result["identical"] = stored == data
    if meta is not None:
        result["server_md5_ok"] = meta.get("md5Hash") == b64_md5(data)
        result["server_crc32c_ok"] = meta.get("crc32c") == b64_crc32c(data)
    path.unlink()
    result["expect"] = case.expect
    result["verdict"] = verdict(result)
    return result


def verdict(r: dict[str, Any]) -> str:
    ok = r["outcome"] == "ok"
    if ok and not r["identical"]:
        return "FAIL (false success)"
    if r["expect"] == "ok":
        return "pass" if ok else "FAIL"
    if r["expect"] == "fail":
        return "pass" if not ok else "FAIL (should have failed)"
    return "pass"


# -- report --------------------------------------------------------------------------------------


def _git(path: Path, *args: str) -> str:
    try:
        out = subprocess.run(  # noqa: S603 - fixed git command
            ["git", "-C", str(path), *args],  # noqa: S607
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"


def _code_identity(module_file: str) -> str:
    where = Path(module_file).resolve().parent
    commit = _git(where, "rev-parse", "HEAD")
    if commit == "?":
        return "unknown (not in a git checkout)"
    top = _git(where, "rev-parse", "--show-toplevel")
    dirty = _git(where, "status", "--porcelain", "--", ".")
    return f"`{commit}` in `{top}`" + (" (uncommitted changes in the package)" if dirty else "")


def _mark(flag: bool) -> str:
    return "yes" if flag else "no"


def _outcome_cell(r: dict[str, Any]) -> str:
    text = r["outcome"].replace("|", "\\|").replace("\n", " ")
    if r["outcome"] == "ok" and not r["identical"]:
        return "**ENGINE SAID OK BUT STORED OBJECT DIFFERS**"
    return text if len(text) <= 140 else text[:137] + "..."


def render(results: list[dict[str, Any]], header: dict[str, str]) -> str:
    lines = ["# storage-testbench check of the resumable-upload engine", ""]
    lines += [f"- {k}: {v}" for k, v in header.items()]
    lines += [
        "",
        "Columns: *expect* = ok (must finish with a byte-identical object), fail (must raise), either "
        "(anything but a false success); *verdict* = that expectation met, and FAIL (false success) whenever "
        "the engine returned normally but the stored object is missing or differs; *fired* = fault instructions the testbench consumed / given; *wire* = request-body bytes "
        "`requests` read from the engine's bodies (all requests); *re-sent* = of those, bytes at offsets "
        "already sent before; *reqs (Q)* = requests to the session URL (of which status queries "
        "`bytes */…`); *final answer* = the 200/201 the engine received and from which request; "
        "*size/md5/crc32c* = which of them that answer carried.",
        "",
        "| case | fault (storage.objects.insert) | expect | verdict | outcome | byte-identical | fired | "
        "reqs (Q) | wire B | re-sent B | final answer | size/md5/crc32c | s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        fa = r["final_answers"][-1] if r["final_answers"] else None
        answer = f"{fa['status']} {fa['dialect']}, by {fa['by']}" if fa else "none"
        fields = "/".join(_mark(fa["fields"][f]) for f in ("size", "md5", "crc32c")) if fa else "-"
        fault = ", ".join(f"`{i}`" for i in r["instructions"])
        fault += "".join(f" session header `{k}: {v}`" for k, v in r["session_headers"].items())
        fault = fault.strip() or "none"
        size = "" if r["size"] == DEFAULT_SIZE else f" ({r['size']} B)"
        total = "" if r["known_total"] else " [total unknown]"
        lines.append(
            f"| {r['case']}{size}{total} | {fault} | {r['expect']} | {r['verdict']} | {_outcome_cell(r)} | "
            f"{_mark(r['identical'])} | "
            f"{r['fired']}/{len(r['instructions'])} | {r['requests']} ({r['status_queries']}) | "
            f"{r['wire_bytes']} | {r['resent_bytes']} | {answer} | {fields} | {r['elapsed']:.2f} |"
        )
    lines += ["", "## Per case: what it exercises, the requests the engine made, the engine's log", ""]
    for r in results:
        lines.append(f"### {r['case']}")
        lines.append("")
        lines.append(f"{r['what']}. Outcome: {r['outcome']}")
        if r["left"]:
            lines.append(f"Instructions left unconsumed: {r['left']}")
        if r.get("dropped_kwargs"):
            lines.append(f"Arguments the engine no longer takes (dropped): {r['dropped_kwargs']}")
        if r["x_goog_hash_sent"]:
            lines.append(f"x-goog-hash sent by the engine: {r['x_goog_hash_sent']}")
        lines.append(
            f"Stored: {r['stored_size']} B, identical {_mark(r['identical'])}; server md5 matches source "
            f"{_mark(r.get('server_md5_ok', False))}, crc32c {_mark(r.get('server_crc32c_ok', False))}."
        )
        lines.append("")
        lines.append("```")
        lines.extend(r["trace"])
        lines.extend(r["engine_log"][:12])
        lines.append("```")
        lines.append("")
    sample = next((r for r in results if r["case"] == "baseline" and r.get("final_raw")), None)
    queries = [r for r in results if r.get("query_raw")]
    with_range = [r for r in queries if "Range" in (r["query_raw"]["headers"] or {})]
    query = (with_range or queries or [None])[0]
    lines += ["## What the testbench answers look like (raw, from this run)", ""]
    if sample:
        lines += ["Final answer to the last data PUT (baseline):", "", "```"]
        lines += [f"HTTP {sample['final_raw']['status']}"]
        lines += [f"{k}: {v}" for k, v in sample["final_raw"]["headers"].items()]
        lines += ["", sample["final_raw"]["body"], "```", ""]
    for fin_q in [
        r for r in results if r["final_answers"] and r["final_answers"][-1]["by"] == "status query"
    ]:
        fa = fin_q["final_answers"][-1]
        lines += [
            f"Final answer to a status query ({fin_q['case']}): HTTP {fa['status']}, {fa['dialect']}, "
            f"content-type {fa['content_type']}, x-goog-hash {fa['x_goog_hash']}, "
            f"x-goog-stored-content-length {fa['stored_length']}; JSON keys: {fa['json_keys']}",
            "",
        ]
    if query:
        lines += [f"A 308 answer to a status query ({query['case']}):", "", "```", "HTTP 308"]
        lines += [f"{k}: {v}" for k, v in query["query_raw"]["headers"].items()]
        lines += ["```", ""]
    lines += ["## Testbench behaviour that matters here (from its code at e8c8507)", "", TESTBENCH_NOTES]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--testbench", required=True, help="base URL of a running testbench on loopback")
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="Markdown report (a .json goes beside it)"
    )
    parser.add_argument("--only", action="append", default=[], help="run only this case (repeatable)")
    parser.add_argument("--size", type=int, default=DEFAULT_SIZE, help="source size in bytes (whole KiB)")
    parser.add_argument("--guard", type=int, default=150, help="seconds before the harness abandons a case")
    parser.add_argument("--testbench-rev", default="not given", help="testbench commit, for the header")
    parser.add_argument("--testbench-start", default="not given", help="how it was started, for the header")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")

    host = urlsplit(args.testbench).hostname or ""
    if host != "localhost":
        try:
            if not ipaddress.ip_address(host).is_loopback:
                parser.error("--testbench must be on loopback (127.0.0.1 / localhost / ::1)")
        except ValueError:
            parser.error("--testbench must be on loopback (127.0.0.1 / localhost / ::1)")
    if args.size % KIB:
        parser.error("--size must be a whole number of KiB (the fault offsets are in KiB)")

    import airflow_provider_redivis.engine.resumable as engine

    tb = Testbench(args.testbench)
    print(f"testbench at {args.testbench} says {tb.ping()!r}; engine from {engine.__file__}", flush=True)
    bucket = f"tbcheck-{int(time.time())}"
    tb.create_bucket(bucket)
    chosen = [c for c in cases(args.size) if not args.only or c.name in args.only]
    for c in chosen:
        if c.size == DEFAULT_SIZE:
            c.size = args.size
    results = []
    with tempfile.TemporaryDirectory(prefix="tbcheck-") as tmp:
        for case in chosen:
            r = run_case(tb, bucket, case, Path(tmp), args.guard)
            results.append(r)
            print(
                f"{case.name:34} {r['outcome'][:70]:70} identical={_mark(r['identical']):3} "
                f"fired={r['fired']}/{len(case.instructions)} reqs={r['requests']} {r['elapsed']:.1f}s",
                flush=True,
            )
    command = " ".join(shlex.quote(a) for a in [Path(sys.executable).as_posix(), *sys.argv])
    pythonpath = os.environ.get("PYTHONPATH")
    header = {
        "date (UTC)": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "engine under test": f"`{engine.__file__}`, commit {_code_identity(engine.__file__)}",
        "harness": f"`{Path(__file__).resolve()}`, commit {_code_identity(__file__)}",
        "harness command": f"`{'PYTHONPATH=' + shlex.quote(pythonpath) + ' ' if pythonpath else ''}{command}`",
        "testbench": f"{args.testbench}, googleapis/storage-testbench commit `{args.testbench_rev}`",
        "testbench started with": f"`{args.testbench_start}`",
        "source": f"{args.size} B unless noted (random bytes, seeded by case name); chunk_size {DEFAULT_CHUNK} B",
        "engine settings": f"timeout {DEFAULT_TIMEOUT}, RetryPolicy({DEFAULT_RETRY}) unless noted",
        "python / requests": f"{sys.version.split()[0]} / {requests.__version__}",
    }
    text = render(results, header)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    args.out.with_suffix(".json").write_text(
        json.dumps({"header": header, "results": results}, indent=1, default=str)
    )
    print(f"\nwrote {args.out}")
    failed = [r["case"] for r in results if r["verdict"] != "pass"]
    print(f"{len(results) - len(failed)}/{len(results)} cases pass; not passing: {failed}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
