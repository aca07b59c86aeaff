"""HTTP for both origins: routing, auth, error shapes, fault application and the request log.

The API origin serves ``/api/v1/...`` (Redivis), ``/tempUploads/{token}`` (the temp-upload URLs the
official client uses) and ``/_emulator/...`` (admin, unauthenticated, not logged). The session
origin serves only resumable-session URLs, ``/upload/resumable/{token}``, with Cloud Storage's
rules; it never needs a token, and records when one arrives anyway.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
import socket
import struct
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from redivis_emulator.admin import admin_route
from redivis_emulator.catalog import (
    EDIT_SCOPE,
    ApiError,
    InsufficientScopeError,
    UploadSource,
)
from redivis_emulator.faults import Fault, RequestInfo
from redivis_emulator.recording import (
    SESSION_PREFIX,
    TEMP_PREFIX,
    RecordedRequest,
    redact_path,
)
from redivis_emulator.replies import (
    Reply,
    api_error_reply,
    json_reply,
    misreport,
    session_reply,
)
from redivis_emulator.sessions import (
    ConnectionGone,
    ContentRange,
    ResetConnection,
    gcs_error,
    parse_content_range,
)
from redivis_emulator.wire import (
    BodyCut,
    BodyError,
    BodyReader,
    ClientDisconnected,
    floor_unit,
    stream_body_to_file,
)

if TYPE_CHECKING:
    from redivis_emulator.server import RedivisEmulator

log = logging.getLogger("redivis_emulator")

ERROR_PAYLOAD_HEADER = "X-REDIVIS-ERROR-PAYLOAD"
API_PREFIX = "/api/v1/"
ADMIN_PREFIX = "/_emulator/"
MAX_MULTIPART_BODY = 64 * 1024 * 1024
_WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def parse_multipart(data: bytes, content_type: str) -> dict[str, bytes]:
    """``multipart/form-data`` (the official client's small-file path): part name -> bytes."""
    match = re.search(r'boundary="?([^";]+)"?', content_type)
    if match is None:
        raise ApiError(400, "multipart/form-data without a boundary.")
    delimiter = b"--" + match.group(1).encode("latin-1")
    parts: dict[str, bytes] = {}
    for raw in data.split(delimiter)[1:]:
        if raw.startswith(b"--"):
            break
        raw = raw.removeprefix(b"\r\n")
        head, sep, content = raw.partition(b"\r\n\r\n")
        if not sep:
            raise ApiError(400, "Malformed multipart body: a part has no header/content separator.")
        name = re.search(rb'name="([^"]*)"', head)
        if name is None:
            raise ApiError(400, "Malformed multipart body: a part has no name.")
        parts[name.group(1).decode("utf-8", "replace")] = content.removesuffix(b"\r\n")
    return parts


class EmulatorHTTPServer(ThreadingHTTPServer):
    """One origin. Tracks open connections so that stop() can end them."""

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], emulator: RedivisEmulator, origin: str) -> None:
        self.emulator = emulator
        self.origin = origin
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, EmulatorRequestHandler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


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

    # -- plumbing ------------------------------------------------------------------------------

    def log_message(self, format: str, *args: Any) -> None:
        # Never the whole path: session URLs are credentials.
        log.debug("%s %s", self.command, redact_path(urlsplit(self.path).path))

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass

    def do_GET(self) -> None:
        self._dispatch()

    do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    @property
    def emulator(self) -> RedivisEmulator:
        return self.server.emulator

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
        headers = dict(reply.headers)
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
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body[:answer_bytes])
        else:
            self.flush_headers()

    def _sleep(self, seconds: float | None) -> None:
        self.emulator._stop.wait(seconds or 0)

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
                content_range, range_error = self._content_range(headers, content_length)
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
        transport, processing = emu.faults.select(info)
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
            if transport is not None and status_after_mark:
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
                reply = self._fault_status_reply(transport, origin)
            elif transport is not None and kind == "status":
                body.drain()
                reply = self._fault_status_reply(transport, origin)
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

    @staticmethod
    def _content_range(
        headers: dict[str, str], content_length: int | None
    ) -> tuple[ContentRange | None, str | None]:
        value = headers.get("content-range")
        if value is None:
            # No Content-Range: the whole object in this one request (Cloud Storage's single-request upload).
            if content_length is None:
                return (
                    None,
                    "A PUT to a resumable session needs Content-Range (or Content-Length for the whole object).",
                )
            if content_length == 0:
                return ContentRange(None, None, 0), None
            return ContentRange(0, content_length - 1, content_length), None
        try:
            return parse_content_range(value), None
        except ValueError as exc:
            return None, str(exc)

    def _fault_status_reply(self, fault: Fault, origin: str) -> Reply:
        status = fault.status or 500
        headers = dict(fault.headers or {})
        message = fault.message or f"Emulated {status} (fault injection)."
        if fault.body is not None:
            body = fault.body
            if isinstance(body, dict):
                data = json.dumps(body).encode()
                headers.setdefault("Content-Type", "application/json")
            elif isinstance(body, str):
                data = body.encode()
            else:
                data = bytes(body)  # type: ignore[arg-type]
            reply = Reply(status, data, headers)
            if origin == "api":
                reply.error_payload = {"error": {"status": status, "message": message}}
            return reply
        if origin == "session":
            reply = session_reply(gcs_error(status, message))
            reply.headers.update(headers)
            return reply
        reply = api_error_reply(ApiError(status, message, headers=headers))
        return reply

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
            return self._session(
                method, raw_path, headers, body, session, content_range, range_error, transport
            )
        if raw_path.startswith(TEMP_PREFIX):
            return self._temp_upload(method, raw_path[len(TEMP_PREFIX) :], headers, body)
        if not raw_path.startswith(API_PREFIX):
            return api_error_reply(
                ApiError(404, f"No such endpoint: {method} {raw_path}. The API is under /api/v1.")
            )
        try:
            self._authorize(method, headers)
            segments = [unquote(s) for s in raw_path[len(API_PREFIX) :].split("/")]
            params = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
            fail_message = None
            if processing is not None:
                fail_message = processing.message or "Processing failed (emulated fault)."
            return self._api(method, segments, params, headers, body, fail_message)
        except ApiError as error:
            return api_error_reply(error)

    def _authorize(self, method: str, headers: dict[str, str]) -> None:
        value = headers.get("authorization", "")
        scheme, _, token = value.partition(" ")
        scopes = self.emulator.tokens.get(token.strip()) if scheme.lower() == "bearer" else None
        if scopes is None:
            raise ApiError(
                401,
                "Missing or invalid API token: send 'Authorization: Bearer <token>' with a valid Redivis API token.",
                headers={"WWW-Authenticate": 'Bearer realm="Redivis"'},
            )
        if method in _WRITE_METHODS and EDIT_SCOPE not in scopes:
            raise InsufficientScopeError(EDIT_SCOPE)

    def _json_body(self, body: BodyReader) -> dict[str, Any]:
        data = body.read_all()
        if not data.strip():
            return {}
        try:
            parsed = json.loads(data)
        except (ValueError, UnicodeDecodeError):
            raise ApiError(400, "The request body is not valid JSON.") from None
        if not isinstance(parsed, dict):
            raise ApiError(400, "The request body must be a JSON object.")
        return parsed

    def _api(
        self,
        method: str,
        seg: list[str],
        params: dict[str, str],
        headers: dict[str, str],
        body: BodyReader,
        fail_message: str | None,
    ) -> Reply:
        cat = self.emulator.catalog
        n = len(seg)
        read = method in ("GET", "HEAD")
        page = (params.get("maxResults"), params.get("pageToken"))

        def allowed(*methods: str) -> None:
            if method not in methods and not (method == "HEAD" and "GET" in methods):
                raise ApiError(405, f"{method} is not supported here; use {' or '.join(methods)}.")

        if n == 2 and seg[0] == "users" and seg[1] == "me":
            allowed("GET")
            return json_reply(200, cat.me())
        if seg and seg[0] in ("users", "organizations") and n in (2, 3):
            if n == 2:
                allowed("GET")
                return json_reply(200, cat.get_user(seg[1]))
            if seg[2] == "datasets":
                allowed("GET", "POST")
                if read:
                    return json_reply(200, cat.list_datasets(seg[1], *page))
                kind = "user" if seg[0] == "users" else "organization"
                return json_reply(200, cat.create_dataset(seg[1], kind, self._json_body(body)))
        if seg and seg[0] == "datasets" and n >= 2:
            ref = seg[1]
            if n == 2:
                allowed("GET")
                return json_reply(200, cat.get_dataset(ref))
            if seg[2] == "versions":
                if n == 3:
                    allowed("GET", "POST")
                    if read:
                        return json_reply(200, cat.list_versions(ref, *page))
                    return json_reply(200, cat.create_next_version(ref))
                if n == 4:
                    allowed("GET")
                    return json_reply(200, cat.get_version(ref, seg[3]))
                if n == 5 and seg[4] == "release":
                    allowed("POST")
                    version, resource = cat.start_release(ref, seg[3], self._json_body(body))
                    self.emulator.processor.start_release(version, fail_message)
                    return json_reply(200, resource)
            if seg[2] == "tables" and n == 3:
                allowed("GET", "POST")
                if read:
                    return json_reply(200, cat.list_tables(ref, *page))
                return json_reply(200, cat.create_table(ref, self._json_body(body)))
        if seg and seg[0] == "tables" and n >= 2:
            ref = seg[1]
            if n == 2:
                allowed("GET", "PATCH")
                if read:
                    return json_reply(200, cat.get_table(ref))
                return json_reply(200, cat.update_table(ref, self._json_body(body)))
            if seg[2] == "resumableUpload" and n == 3:
                allowed("POST")
                if body.read_all(1024).strip():
                    raise ApiError(400, "The request body must be empty; pass the size as ?size=<bytes>.")
                return json_reply(200, cat.create_resumable_upload(ref, params.get("size")))
            if seg[2] == "tempUploads" and n == 3:
                allowed("POST")
                return json_reply(200, cat.create_temp_uploads(ref, self._json_body(body)))
            if seg[2] == "uploads":
                if n == 3:
                    allowed("GET", "POST")
                    if read:
                        return json_reply(200, cat.list_uploads(ref, *page))
                    return self._create_upload(ref, headers, body, fail_message)
                if n == 4:
                    allowed("GET", "DELETE")
                    if read:
                        return json_reply(200, cat.get_upload(ref, seg[3]))
                    return json_reply(200, cat.delete_upload(ref, seg[3]))
        raise ApiError(404, f"No such endpoint: {method} /api/v1/{'/'.join(seg)}.")

    def _create_upload(
        self, ref: str, headers: dict[str, str], body: BodyReader, fail_message: str | None
    ) -> Reply:
        emu = self.emulator
        content_type = headers.get("content-type", "")
        inline: UploadSource | None = None
        if content_type.lower().startswith("multipart/form-data"):
            parts = parse_multipart(body.read_all(MAX_MULTIPART_BODY), content_type)
            if "metadata" not in parts:
                raise ApiError(400, "A multipart upload needs a 'metadata' part with the upload's JSON.")
            try:
                payload = json.loads(parts["metadata"])
            except ValueError:
                raise ApiError(400, "The 'metadata' part is not valid JSON.") from None
            if not isinstance(payload, dict):
                raise ApiError(400, "The 'metadata' part must be a JSON object.")
            if "data" in parts:
                path = emu.catalog.data_dir / "inline" / f"{uuid.uuid4().hex}.bin"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(parts["data"])
                digest = hashlib.md5(parts["data"]).hexdigest()  # noqa: S324 - a checksum, not security
                inline = UploadSource(path, len(parts["data"]), digest)
        else:
            payload = self._json_body(body)
        upload = emu.catalog.create_upload(ref, payload, inline)
        emu.processor.start_upload(upload, fail_message)
        with emu.catalog.lock:
            return json_reply(200, emu.catalog.upload_resource(upload))

    # -- temp uploads (API origin, no token needed: the URL is the credential) -----------------

    def _temp_upload(self, method: str, token: str, headers: dict[str, str], body: BodyReader) -> Reply:
        try:
            temp = self.emulator.catalog.temp_upload(token)
        except ApiError as error:
            return api_error_reply(error)
        if method == "POST":
            if headers.get("x-goog-resumable", "").lower() != "start":
                return api_error_reply(
                    ApiError(
                        400, "To start a resumable upload, POST with the header 'x-goog-resumable: start'."
                    )
                )
            size_header = headers.get("x-upload-content-length")
            try:
                size = int(size_header) if size_header is not None else None
            except ValueError:
                return api_error_reply(ApiError(400, "x-upload-content-length must be an integer."))
            session = self.emulator.catalog.start_temp_session(temp, size)
            return Reply(201, b"", {"Location": session.url})
        if method == "PUT":
            temp.path.parent.mkdir(parents=True, exist_ok=True)
            size, digests = stream_body_to_file(body, temp.path)
            with self.emulator.catalog.lock:
                temp.received, temp.md5 = size, digests.md5_hex
            return json_reply(
                200,
                {"kind": "storage#object", "name": temp.id, "size": str(size), "md5Hash": digests.md5_base64},
            )
        return api_error_reply(ApiError(405, "A temp upload URL takes POST (resumable start) or PUT."))

    # -- session origin ------------------------------------------------------------------------

    def _session(
        self,
        method: str,
        raw_path: str,
        headers: dict[str, str],
        body: BodyReader,
        session: Any,
        content_range: ContentRange | None,
        range_error: str | None,
        transport: Fault | None,
    ) -> Reply:
        if not raw_path.startswith(SESSION_PREFIX) or session is None:
            return session_reply(gcs_error(404, "No such upload session. Start a new one."))
        if method == "DELETE":
            # Cloud Storage answers a cancel with 499; the session is gone afterwards.
            session.cancel()
            return Reply(499, b"", {}, "Client Closed Request")
        if method != "PUT":
            return session_reply(
                gcs_error(405, "A resumable session takes PUT (chunks, status queries) or DELETE.")
            )
        if content_range is None:
            return session_reply(gcs_error(400, range_error or "Content-Range is required."))
        keep_bytes = None
        if (
            transport is not None
            and transport.kind == "partial"
            and content_range.first is not None
            and content_range.last is not None
        ):
            length = content_range.last - content_range.first + 1
            # Default: one 256 KiB unit short of the whole chunk.
            keep_bytes = (
                transport.keep_bytes if transport.keep_bytes is not None else floor_unit(max(0, length - 1))
            )
        elif (
            transport is not None
            and transport.kind in ("reset", "status")
            and transport.keep_bytes is not None
        ):
            keep_bytes = transport.keep_bytes
        return session_reply(
            session.put(
                body,
                content_range,
                keep_bytes=keep_bytes,
                goog_hash=headers.get("x-goog-hash"),
                keep_partial=transport.keep_partial if transport is not None else None,
            )
        )

    # -- admin ---------------------------------------------------------------------------------

    def _admin(self, method: str, raw_path: str, query: str, headers: dict[str, str]) -> None:
        """Unauthenticated, unlogged: for scripts driving an emulator in another process."""
        record = RecordedRequest(method, "api", raw_path, query, headers, None, time.time())
        chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        try:
            length = int(headers.get("content-length") or 0)
        except ValueError:
            length = 0
        body = BodyReader(self.rfile, content_length=length, chunked=chunked)  # type: ignore[arg-type]
        params = {k: v[-1] for k, v in parse_qs(query).items()}
        seg = [unquote(s) for s in raw_path[len(ADMIN_PREFIX) :].strip("/").split("/")]
        try:
            reply = admin_route(self.emulator, method, seg, params, body)
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
