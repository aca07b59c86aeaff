"""Whether an upload Redivis shows under a name is this session's.

Plain Python. Redivis's upload resource carries no id of the session or temp upload it was made from,
so the tie is what it does carry: the name, the size, the md5 (``hash``) against the one the upload
server reported for this session's bytes, ``createdAt`` against when this session first asked, and the
upload id when Redivis names it in "already used by upload N". That id is Redivis's own tie of the upload
to the session: it needs no clock (a worker's clock may run minutes off Redivis's).

Two questions, kept apart: does anything the upload shows contradict this session (then it is another's:
a conflict), and does anything tie it to this session (if not, it is not adopted, but the checkpoint stays
so the next try can ask again)? Redivis may leave ``size`` or ``hash`` null on a queued upload: a null
contradicts nothing and proves nothing.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_provider_redivis.engine.checkpoint import UploadCheckpoint
    from airflow_provider_redivis.errors import RedivisAPIError

log = logging.getLogger("airflow_provider_redivis.engine.job")

#: Clocks of Redivis and the worker may differ this much when an upload's ``createdAt`` is compared.
CLOCK_SKEW = timedelta(seconds=60)
_USED_BY = re.compile(r"already used by upload\s+['\"]?([\w-]+)", re.IGNORECASE)


def collision_hint(name: str) -> str:
    return (
        f"Two tasks may be loading files with the same name {name!r} into this table (mapped tasks loading "
        "east/sales.csv and west/sales.csv both default to 'sales.csv'): give each its own upload_name, e.g. "
        "upload_name=\"{{ ti.map_index }}_sales.csv\". Or set if_exists='replace' to overwrite, 'skip' to keep it."
    )


def refusal_of(checkpoint: UploadCheckpoint, upload: Mapping[str, Any], used_by: str | None) -> str | None:
    """What the upload shows that contradicts this session (it is another's); None when nothing does.

    A field Redivis leaves null contradicts nothing: :func:`unproven_of` then asks for a tie.
    """
    if upload.get("name") != checkpoint.upload_name:
        return f"its name is {upload.get('name')!r}"
    if used_by is not None and str(upload.get("id")) != used_by:
        return f"Redivis says this session made upload {used_by}, not {upload.get('id')}"
    size = upload.get("size", upload.get("numBytes"))
    if size is not None and int(size) != checkpoint.total_size:
        return f"it holds {size} bytes, this source {checkpoint.total_size}"
    theirs, ours = _md5_bytes(upload.get("hash")), _md5_bytes(checkpoint.stored_md5)
    if theirs is not None and ours is not None and theirs != ours:
        return "its md5 differs from this session's bytes"
    return None


def unproven_of(checkpoint: UploadCheckpoint, upload: Mapping[str, Any], used_by: str | None) -> str | None:
    """None when the upload is tied to this session; else what tie is missing (it is not adopted then).

    Call after :func:`refusal_of` found no contradiction. Redivis naming the upload is a tie of its own.
    Else the md5 of its bytes must equal this session's (two uploads of one name and size are not one
    upload), and it must not predate this session's first request to create it.
    """
    if used_by is not None:
        return None
    if _md5_bytes(upload.get("hash")) is None:
        return "Redivis reports no md5 (hash) for it"
    if _md5_bytes(checkpoint.stored_md5) is None:
        return "the upload server reported no md5 of this session's bytes"
    created = _timestamp(upload.get("createdAt"))
    since = checkpoint.creating_since or checkpoint.created_at
    if created is not None and created < since - CLOCK_SKEW:
        # Another task's earlier upload of the same bytes, or clocks apart: neither is proof.
        return (
            f"it shows as created at {created.isoformat()}, before this session asked ({since.isoformat()})"
        )
    return None


def transfer_refusal_of(
    name: str, specification: Mapping[str, Any], since: datetime, upload: Mapping[str, Any]
) -> str | None:
    """What makes the upload under ``name`` another's, for an upload Redivis fetches itself; None when nothing does.

    No session ties a transfer to its upload, so the tie is the order of things: the task saw the name free
    (or freed it) after ``since``, saved that it was about to ask, then asked. An upload under the name
    created before ``since`` (less clock skew) is another's. Redivis's upload resource is not documented to
    echo the ``transferSpecification``: when it does, a different one is another's too.
    """
    if upload.get("name") != name:
        return f"its name is {upload.get('name')!r}"
    theirs = upload.get("transferSpecification")
    if isinstance(theirs, Mapping) and dict(theirs) != dict(specification):
        return f"it fetches {dict(theirs)}, this task {dict(specification)}"
    created = _timestamp(upload.get("createdAt"))
    if created is not None and created < since - CLOCK_SKEW:
        return f"it was created at {created.isoformat()}, before this task looked for the name ({since.isoformat()})"
    return None


def already_used(exc: RedivisAPIError) -> bool:
    return exc.status in (400, 409) and "already used" in (exc.message or "").lower()


def answers_expired(exc: RedivisAPIError) -> bool:
    """Redivis refused to create from a session that expired: its upload exists only if made before."""
    return exc.status == 400 and "expired" in (exc.message or "").lower()


def used_by_of(exc: RedivisAPIError) -> str | None:
    match = _USED_BY.search(exc.message or "") if exc.status in (400, 409) else None
    return match.group(1) if match else None


def _md5_bytes(value: object) -> bytes | None:
    """An md5 as hex or base64, as bytes; None when it is neither."""
    if not isinstance(value, str) or not value:
        return None
    if re.fullmatch(r"[0-9a-fA-F]{32}", value):
        return bytes.fromhex(value)
    try:
        digest = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None
    return digest if len(digest) == 16 else None


def _timestamp(value: object) -> datetime | None:
    """Redivis's ``createdAt``: milliseconds since the epoch (or an ISO text)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return datetime.fromtimestamp(value / 1000, tz=timezone.utc)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
    return None
