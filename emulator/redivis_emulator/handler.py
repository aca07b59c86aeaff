"""HTTP for both origins: the Host guard, fault application, the request log, and sending replies.

Routing is elsewhere: ``api_routes.py`` (the API origin's ``/api/v1/...`` and ``/tempUploads/{token}``),
``session_routes.py`` (the session origin's ``/upload/resumable/{token}``, which never needs a token
and records when one arrives anyway) and ``admin.py`` (``/_emulator/...`` on the API origin: admin
token required, not logged). Every request on either origin must name the emulator in its ``Host``
header (``127.0.0.1:port``, ``localhost:port``, ``[::1]:port`` or the bound host): a DNS-rebinding
page cannot reach it. API requests (``/api/v1/...``) pass the rate limit (``rate_limit.py``) first.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import struct
import time
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from redivis_emulator.admin import ADMIN_PREFIX, admin_refusal, admin_route
from redivis_emulator.api_routes import API_PREFIX, ApiRoutes, bearer_token
from redivis_emulator.errors import ApiError
from redivis_emulator.faults import Fault, RequestInfo
from redivis_emulator.recording import SESSION_PREFIX, RecordedRequest, redact_path
from redivis_emulator.replies import Reply, api_error_reply, json_reply, misreport, session_reply
from redivis_emulator.session_routes import content_range_of, fault_status_reply, session_route
from redivis_emulator.sessions import ConnectionGone, ContentRange, ResetConnection, gcs_error
from redivis_emulator.wire import BodyCut, BodyError, BodyReader, ClientDisconnected

if TYPE_CHECKING:
    from redivis_emulator.context import EmulatorContext
    from redivis_emulator.http_server import EmulatorHTTPServer

log = logging.getLogger("redivis_emulator")

ERROR_PAYLOAD_HEADER = "X-REDIVIS-ERROR-PAYLOAD"


class _Dropped(Exception):
    """Close the connection without answering (FIN)."""


def _body_mark(fault: Fault | None, first: int | None) -> int | None:
    """Where in the body a fault acts: ``after_bytes``, or ``at_offset`` made relative to the chunk."""
    if fault is None:
        return None
    if fault.at_offset is not None and first is not None:
        return max(0, fault.at_offset - first)
    return fault.after_bytes


class EmulatorRequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "RedivisEmulator/1"
    sys_version = ""
    #: Idle keep-alive connections and stuck clients end after this long.
    timeout = 300
    server: EmulatorHTTPServer
    #: This request's X-RateLimit-* (and a 429's Retry-After): on every answer it gets.
    _rate_headers: dict[str, str]

    # -- plumbing ------------------------------------------------------------------------------

    def log_message(self, format: str, *args: Any) -> None:
        # Never the whole path: session URLs are credentials.
        log.debug("%s %s", self.command, redact_path(urlsplit(self.path).path))

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass

    def do_GET(self) -> None:
        self._rate_headers = {}  # per request: a connection carries many
        if self._host_allowed():
            self._dispatch()

    do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    @property
    def emulator(self) -> EmulatorContext:
        return self.server.emulator

    def _host_allowed(self) -> bool:
        """Refuse a request whose Host is not this origin's (DNS rebinding): 400, connection closed."""
        host = (self.headers.get("Host") or "").strip().lower()
        if host in self.server.allowed_hosts:
            return True
        self.close_connection = True
        error = ApiError(
            400,
            f"Host {host or '(none)'!r} is not this emulator's: use one of {', '.join(sorted(self.server.allowed_hosts))}.",
        )
        record = RecordedRequest(
            self.command.upper(), self.server.origin, urlsplit(self.path).path, "", {}, None, time.time()
        )
        self._safe_send(api_error_reply(error), record)
        return False

    def _reset(self) -> None:
        """A real TCP reset: SO_LINGER 0, then close."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        with contextlib.suppress(OSError):
            self.rfile.close()
        self.connection.close()

    def _send(self, reply: Reply, record: RecordedRequest) -> None:
        head = self.command == "HEAD"
        body = reply.body
        headers = {**reply.headers, **self._rate_headers}
        if head and reply.status >= 400 and reply.error_payload is not None:
            # HEAD has no body: Redivis puts the error JSON, URL-encoded, in a header.
            headers[ERROR_PAYLOAD_HEADER] = quote(json.dumps(reply.error_payload), safe="")
        record.status = reply.status
        self.send_response(reply.status, reply.reason)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", "0" if head and reply.status >= 400 else str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if not head and body:
            self.wfile.write(body)

    def _send_broken(self, reply: Reply, record: RecordedRequest, answer_bytes: int | None) -> None:
        """The status line (with Server and Date), and only with ``answer_bytes`` the headers and that
        much of the body; then the connection closes (FIN) mid-answer."""
        record.status = reply.status
        self.close_connection = True
        self.send_response(reply.status, reply.reason)
        if answer_bytes is not None and answer_bytes < len(reply.body):
            for name, value in {**reply.headers, **self._rate_headers}.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body[:answer_bytes])
        else:
            self.flush_headers()

    def _admit(self, origin: str, raw_path: str, headers: dict[str, str]) -> ApiError | None:
        """Count an API request against its token's budget (``rate_limit.py``): its answer gets the
        ``X-RateLimit-*`` headers; the 429 when it is over. Session bytes, temp uploads: not counted."""
        if origin != "api" or not raw_path.startswith(API_PREFIX):
            return None
        token = bearer_token(headers)
        admission = self.emulator.rate_limiter.admit(token if token in self.emulator.tokens else None)
        self._rate_headers = admission.headers
        return admission.refusal

    def _sleep(self, seconds: float | None) -> None:
        self.emulator.stopping.wait(seconds or 0)

    # -- dispatch ------------------------------------------------------------------------------

    def _dispatch(self) -> None:
        emu = self.emulator
        origin = self.server.origin
        split = urlsplit(self.path)
        raw_path, query = split.path, split.query
        method = self.command.upper()
        headers = {k.lower(): v for k, v in self.headers.items()}
        if origin == "api" and raw_path.startswith(ADMIN_PREFIX):
            self._admin(method, raw_path, query, headers)
            return

        chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        content_length: int | None = None
        if not chunked and "content-length" in headers:
            try:
                content_length = int(headers["content-length"])
                if content_length < 0:
                    raise ValueError
            except ValueError:
                self.close_connection = True
                self.send_error(400, "Invalid Content-Length")
                return

        session = None
        content_range: ContentRange | None = None
        range_error: str | None = None
        if origin == "session" and raw_path.startswith(SESSION_PREFIX):
            session = emu.catalog.session_by_token(raw_path[len(SESSION_PREFIX) :])
            if method == "PUT":
                content_range, range_error = content_range_of(headers, content_length)
        info = RequestInfo(
            method=method,
            origin=origin,
            path=raw_path,
            query=query,
            headers=headers,
            content_range=headers.get("content-range"),
            content_length=content_length,
            session_id=session.id if session else None,
            session_size=session.total if session else None,
            session_held=session.held if session else None,
            chunk_first=content_range.first if content_range and session else None,
            chunk_last=content_range.last if content_range and session else None,
            starts_processing=method == "POST"
            and raw_path.startswith(API_PREFIX)
            and (raw_path.endswith("/uploads") or raw_path.endswith("/release")),
            chunk_total=content_range.total if content_range and session else None,
            status_query=bool(content_range and session and content_range.is_query),
            session_complete=bool(session and session.complete),
        )
        # A request refused for the rate limit is not handled: no fault sees it.
        refusal = self._admit(origin, raw_path, headers)
        transport, processing = (None, None) if refusal is not None else emu.faults.select(info)
        record = RecordedRequest(
            method=method,
            origin=origin,
            path=raw_path,
            query=query,
            headers=headers,
            content_range=headers.get("content-range"),
            started_at=time.time(),
            faults=tuple(f.kind for f in (transport, processing) if f is not None),
            session_id=session.id if session else None,
            rate_limited=refusal is not None,
        )
        emu.log.append(record)
        if session is not None and "authorization" in headers:
            session.authorization_seen = True

        body = BodyReader(self.rfile, content_length=content_length, chunked=chunked)  # type: ignore[arg-type]
        kind = transport.kind if transport is not None else None
        first = content_range.first if content_range is not None and session is not None else None
        mark = _body_mark(transport, first)
        if transport is not None and kind == "reset":
            body.cut_at = mark or 0
        # A status after a mark: the session keeps what came before it, as it would of a cut.
        status_after_mark = kind == "status" and mark is not None and first is not None
        if status_after_mark:
            body.cut_at = mark
        stall_pending = False
        if transport is not None and kind == "stall" and mark is not None:
            stall_pending = True
            seconds = transport.seconds

            def pause() -> None:
                nonlocal stall_pending
                stall_pending = False
                self._sleep(seconds)

            body.pause_after(mark, pause)
        started = time.monotonic()
        try:
            if kind == "reset" and body.cut_at == 0 and body.finished:
                raise ResetConnection()  # nothing to read before the cut: reset at once
            if refusal is not None:
                body.drain()
                reply = api_error_reply(refusal)
            elif transport is not None and status_after_mark:
                with contextlib.suppress(ResetConnection, BodyCut):
                    self._handle(
                        method,
                        origin,
                        raw_path,
                        query,
                        headers,
                        body,
                        session,
                        content_range,
                        range_error,
                        transport,
                        processing,
                    )
                body.drain()
                reply = fault_status_reply(transport, origin)
            elif transport is not None and kind == "status":
                body.drain()
                reply = fault_status_reply(transport, origin)
            else:
                reply = self._handle(
                    method,
                    origin,
                    raw_path,
                    query,
                    headers,
                    body,
                    session,
                    content_range,
                    range_error,
                    transport,
                    processing,
                )
                if not body.finished and not self.close_connection:
                    try:
                        body.drain()
                    except BodyError:
                        self.close_connection = True
                if transport is not None and session is not None:
                    reply = misreport(transport, session, reply)
            # The log is complete before the client can see an answer (tests read it right after).
            record.body_bytes = body.bytes_read
            if kind == "reset":
                raise ResetConnection()  # the body ended before the cut: handled, then reset
            if kind == "drop_response":
                raise _Dropped()
            if kind == "stall" and (transport is not None and (mark is None or stall_pending)):
                self._sleep(transport.seconds)
            if transport is not None and kind == "broken_answer":
                if transport.short_body:
                    short = reply.body[: transport.answer_bytes or 0]
                    reply = Reply(reply.status, short, reply.headers, reply.reason)
                else:
                    self._send_broken(reply, record, transport.answer_bytes)
                    return
            self._send(reply, record)
        except (ResetConnection, BodyCut):
            record.body_bytes = body.bytes_read
            self._reset()
        except (ConnectionGone, ClientDisconnected, _Dropped):
            record.body_bytes = body.bytes_read
            self.close_connection = True
        except BodyError as exc:
            self.close_connection = True
            if origin == "session":
                self._safe_send(session_reply(gcs_error(exc.status, str(exc))), record)
            else:
                self._safe_send(api_error_reply(ApiError(exc.status, str(exc))), record)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as exc:
            log.exception("Redivis emulator: %s %s failed", method, redact_path(raw_path))
            self.close_connection = True
            self._safe_send(
                api_error_reply(ApiError(500, f"Emulator error: {type(exc).__name__}: {exc}")), record
            )
        finally:
            record.body_bytes = body.bytes_read
            record.duration = time.monotonic() - started

    def _safe_send(self, reply: Reply, record: RecordedRequest) -> None:
        try:
            self._send(reply, record)
        except OSError:
            self.close_connection = True

    # -- routing -------------------------------------------------------------------------------

    def _handle(
        self,
        method: str,
        origin: str,
        raw_path: str,
        query: str,
        headers: dict[str, str],
        body: BodyReader,
        session: Any,
        content_range: ContentRange | None,
        range_error: str | None,
        transport: Fault | None,
        processing: Fault | None,
    ) -> Reply:
        if origin == "session":
            return session_route(
                method, raw_path, headers, body, session, content_range, range_error, transport
            )
        return ApiRoutes(self.emulator).handle(method, raw_path, query, headers, body, processing)

    # -- admin ---------------------------------------------------------------------------------

    def _admin(self, method: str, raw_path: str, query: str, headers: dict[str, str]) -> None:
        """Admin token required (see admin.py); not logged: for scripts driving an emulator in another process."""
        record = RecordedRequest(method, "api", raw_path, query, headers, None, time.time())
        chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        try:
            length = int(headers.get("content-length") or 0)
        except ValueError:
            length = 0
        refusal = admin_refusal(headers, self.emulator.admin_token, has_body=chunked or length > 0)
        if refusal is not None:
            # The body stays unread: the connection closes after the answer.
            self.close_connection = True
            self._safe_send(json_reply(refusal.status, refusal.payload(), refusal.headers), record)
            return
        body = BodyReader(self.rfile, content_length=length, chunked=chunked)  # type: ignore[arg-type]
        params = {k: v[-1] for k, v in parse_qs(query).items()}
        seg = [unquote(s) for s in raw_path[len(ADMIN_PREFIX) :].strip("/").split("/")]
        try:
            reply = admin_route(self.emulator.admin, method, seg, params, body)
        except (ApiError, ValueError, KeyError, TypeError) as exc:
            status = exc.status if isinstance(exc, ApiError) else (404 if isinstance(exc, KeyError) else 400)
            message = exc.message if isinstance(exc, ApiError) else str(exc).strip("'\"")
            reply = json_reply(status, {"error": {"status": status, "message": message}})
        except (BodyError, ClientDisconnected):
            self.close_connection = True
            return
        try:
            if not body.finished:
                body.drain()
            self._send(reply, record)
        except (OSError, BodyError):
            self.close_connection = True
