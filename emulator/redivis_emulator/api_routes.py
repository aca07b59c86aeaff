"""The API origin's routes: ``/api/v1/...`` (Redivis, with tokens and scopes) and ``/tempUploads/{token}``.

:class:`ApiRoutes` turns one request (already past the fault checks in ``handler.py``) into a
:class:`~redivis_emulator.replies.Reply`; the catalog does the rest.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote

from redivis_emulator.errors import ApiError, InsufficientScopeError
from redivis_emulator.model import InlineUploadData
from redivis_emulator.recording import TEMP_PREFIX
from redivis_emulator.replies import Reply, api_error_reply, json_reply
from redivis_emulator.vocabulary import EDIT_SCOPE
from redivis_emulator.wire import stream_body_to_file

if TYPE_CHECKING:
    from redivis_emulator.context import EmulatorContext
    from redivis_emulator.faults import Fault
    from redivis_emulator.wire import BodyReader

API_PREFIX = "/api/v1/"
MAX_MULTIPART_BODY = 64 * 1024 * 1024
_WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def bearer_token(headers: dict[str, str]) -> str | None:
    """The token of ``Authorization: Bearer <token>`` (headers lower-cased), or None without one."""
    scheme, _, token = headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


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


class ApiRoutes:
    """Routing, auth and the request bodies of the API origin."""

    def __init__(self, emulator: EmulatorContext) -> None:
        self.emulator = emulator

    def handle(
        self,
        method: str,
        raw_path: str,
        query: str,
        headers: dict[str, str],
        body: BodyReader,
        processing: Fault | None,
    ) -> Reply:
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
        token = bearer_token(headers)
        scopes = self.emulator.tokens.get(token) if token is not None else None
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
        inline: InlineUploadData | None = None
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
                inline = InlineUploadData(path, len(parts["data"]), digest)
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
