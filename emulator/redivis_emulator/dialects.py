"""How the session origin answers: replies, errors, and the two shapes of a finished object.

Cloud Storage answers the request that completes a resumable upload in one of two dialects:

``json`` (the JSON API, ``/upload/storage/v1/...``)
    ``200`` with the object resource as JSON: ``size`` (a string), ``md5Hash`` and ``crc32c`` (base64;
    crc32c of its big-endian 4 bytes), ``generation``, ...
``xml`` (the XML API, sessions started with ``x-goog-resumable: start``)
    ``200`` with an empty body; the object is described by headers: ``x-goog-hash:
    crc32c=<b64>,md5=<b64>``, ``x-goog-stored-content-length``, ``x-goog-stored-content-encoding``,
    ``x-goog-generation``, ``x-goog-metageneration`` and an ``ETag`` of the md5.

A client may send ``x-goog-hash`` (``crc32c=<b64>``, ``md5=<b64>``, comma separated) with the request
that completes the object; the server compares it with what it stored and refuses a mismatch with
``400`` (JSON reason ``invalid``; XML code ``BadDigest``) instead of making the object.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass, replace
from typing import Any
from xml.sax.saxutils import escape

import google_crc32c

#: The answer shapes a session can have.
DIALECTS = ("json", "xml")
#: What a ``lie`` fault can misreport.
LIE_FIELDS = ("md5", "crc32c", "size")


def check_dialect(value: str) -> str:
    if value not in DIALECTS:
        raise ValueError(f"A session dialect is 'json' or 'xml', got {value!r}.")
    return value


@dataclass(frozen=True)
class SessionReply:
    """What the session origin answers: status, headers, an optional JSON body or raw bytes."""

    status: int
    headers: dict[str, str]
    body: dict[str, Any] | None = None
    reason: str | None = None
    #: A body that is not JSON (an XML error); wins over ``body``.
    data: bytes | None = None
    content_type: str | None = None


def gcs_error(status: int, message: str, reason: str = "invalid") -> SessionReply:
    """Cloud Storage's JSON error shape."""
    return SessionReply(
        status,
        {},
        {
            "error": {
                "code": status,
                "message": message,
                "errors": [{"domain": "global", "message": message, "reason": reason}],
            }
        },
    )


def xml_error(status: int, code: str, message: str, details: str | None = None) -> SessionReply:
    """Cloud Storage's XML API error shape: ``<Error><Code>...</Code><Message>...</Message></Error>``."""
    text = f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{escape(code)}</Code><Message>{escape(message)}</Message>"
    if details:
        text += f"<Details>{escape(details)}</Details>"
    text += "</Error>"
    return SessionReply(status, {}, data=text.encode(), content_type="application/xml; charset=UTF-8")


@dataclass(frozen=True)
class ObjectFacts:
    """What a finished (or, for a lying fault, pretended) object is: its size and hashes, base64."""

    name: str
    size: int
    md5: str
    crc32c: str
    generation: int
    created: str

    @property
    def md5_hex(self) -> str:
        return base64.b64decode(self.md5).hex()

    def lie(self, fields: tuple[str, ...]) -> ObjectFacts:
        """The same object, with ``fields`` describing other bytes (the real digests plus a suffix)."""
        other = base64.b64decode(self.md5) + base64.b64decode(self.crc32c) + b" (not these bytes)"
        changes: dict[str, Any] = {}
        if "md5" in fields:
            changes["md5"] = base64.b64encode(hashlib.md5(other).digest()).decode("ascii")  # noqa: S324
        if "crc32c" in fields:
            changes["crc32c"] = base64.b64encode(google_crc32c.Checksum(other).digest()).decode("ascii")
        if "size" in fields:
            changes["size"] = self.size + 1
        return replace(self, **changes)


#: The hashes a finished object is described with, unless a session reports fewer.
ALL_HASHES = ("crc32c", "md5")


def object_resource(facts: ObjectFacts, hashes: tuple[str, ...] = ALL_HASHES) -> dict[str, Any]:
    """The JSON API's object resource (the fields a client checks, and a few it may log)."""
    resource = {
        "kind": "storage#object",
        "id": f"redivis-emulator/{facts.name}/{facts.generation}",
        "bucket": "redivis-emulator",
        "name": facts.name,
        "generation": str(facts.generation),
        "metageneration": "1",
        "contentType": "application/octet-stream",
        "size": str(facts.size),
        "md5Hash": facts.md5,
        "crc32c": facts.crc32c,
        "etag": base64.b64encode(facts.generation.to_bytes(8, "big")).decode("ascii"),
        "timeCreated": facts.created,
        "updated": facts.created,
    }
    for name, key in (("crc32c", "crc32c"), ("md5", "md5Hash")):
        if name not in hashes:
            del resource[key]
    return resource


def object_headers(facts: ObjectFacts, hashes: tuple[str, ...] = ALL_HASHES) -> dict[str, str]:
    """The XML API's description of a stored object, in headers."""
    headers = {
        "x-goog-generation": str(facts.generation),
        "x-goog-metageneration": "1",
        "x-goog-hash": ",".join(f"{name}={getattr(facts, name)}" for name in ALL_HASHES if name in hashes),
        "x-goog-stored-content-length": str(facts.size),
        "x-goog-stored-content-encoding": "identity",
        "ETag": f'"{facts.md5_hex}"',
    }
    if not headers["x-goog-hash"]:
        del headers["x-goog-hash"]
    return headers


def final_reply(facts: ObjectFacts, dialect: str, hashes: tuple[str, ...] = ALL_HASHES) -> SessionReply:
    """``200`` for a finished object, in the session's dialect, describing it with ``hashes``."""
    if dialect == "xml":
        return SessionReply(200, object_headers(facts, hashes), None)
    return SessionReply(200, {}, object_resource(facts, hashes))


def bare_200() -> SessionReply:
    """``200`` with an empty body and no ``x-goog-*`` header: what a broken server once sent."""
    return SessionReply(200, {}, None)


def parse_goog_hash(value: str) -> dict[str, str]:
    """``crc32c=<b64>,md5=<b64>`` (either, both; names case-insensitive) -> {"crc32c": ..., "md5": ...}.

    ValueError for anything else: an unknown name, a value that is not base64 of the right length.
    """
    found: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in value.split(","))):
        name, sep, encoded = item.partition("=")
        name = name.strip().lower()
        encoded = encoded.strip()
        if not sep or name not in ("crc32c", "md5"):
            raise ValueError(f"x-goog-hash {value!r}: each item is crc32c=<base64> or md5=<base64>.")
        try:
            raw = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"x-goog-hash {value!r}: {name} is not base64.") from None
        if len(raw) != (4 if name == "crc32c" else 16):
            raise ValueError(f"x-goog-hash {value!r}: a {name} is {4 if name == 'crc32c' else 16} bytes.")
        found[name] = base64.b64encode(raw).decode("ascii")
    if not found:
        raise ValueError(f"x-goog-hash {value!r} names no hash.")
    return found


def hash_mismatch(expected: dict[str, str], facts: ObjectFacts, dialect: str) -> SessionReply | None:
    """The ``400`` for the first hash in ``expected`` that differs from the stored bytes', or None."""
    for name in ("crc32c", "md5"):
        sent = expected.get(name)
        actual = facts.crc32c if name == "crc32c" else facts.md5
        if sent is None or sent == actual:
            continue
        label = "CRC32C" if name == "crc32c" else "MD5"
        if dialect == "xml":
            return xml_error(
                400,
                "BadDigest",
                f"The {label} you specified did not match what we computed.",
                f"Provided {label} {sent}, calculated {actual}.",
            )
        return gcs_error(400, f'Provided {label} "{sent}" doesn\'t match calculated {label} "{actual}".')
    return None
