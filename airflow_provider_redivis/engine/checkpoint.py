"""The checkpoint a retried upload resumes from: one dataclass, one JSON format. Plain Python.

It holds the session id and URL, the offset the server acknowledged, the source's fingerprint and
the phase, never a Redivis token. The session URL is a credential of its own: the checkpoint lives
in Airflow's task state store (or a Variable below Airflow 3.3), never in XCom or a log line, and the
stores hold it sealed (:class:`SessionUrlSeal`): a reader of the store without the connection's token
learns nothing it can use. Only that URL is sealed: after the token changes, the rest of the checkpoint
(phase, session id, upload uri, ...) is still read, with no session URL.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from airflow_provider_redivis.engine.sealing import SealBrokenError
from airflow_provider_redivis.engine.sources import SourceFingerprint
from airflow_provider_redivis.errors import RedivisError

if TYPE_CHECKING:
    from collections.abc import Mapping

    from airflow_provider_redivis.engine.sealing import SessionUrlSeal

#: 2 added the transport, the stored object's md5 and the sealed session URL; 1 is still read.
CHECKPOINT_FORMAT = 2
READABLE_FORMATS = (1, 2)
#: How the bytes reach Redivis: ``POST /tables/{t}/resumableUpload``, or ``tempUploads`` (the official client's path).
TRANSPORTS = ("resumable_upload", "temp_upload")
#: Redivis expires a resumable session 24 hours after it was created.
SESSION_LIFETIME = timedelta(hours=24)
#: A session this close to its end is not worth resuming: a new one starts instead.
SESSION_SAFETY_MARGIN = timedelta(minutes=30)


class UploadPhase(str, enum.Enum):
    """Where the upload stands; decides what a new try does."""

    #: Bytes are being sent to the session URL.
    TRANSFERRING = "transferring"
    #: The server holds every byte and the checksums matched; the upload is not created yet.
    TRANSFERRED = "transferred"
    #: upload.post was sent; its answer may have been lost, so a retry looks for the upload first.
    CREATING = "creating"
    #: The upload exists (``upload_uri``); what is left is waiting for it.
    CREATED = "created"


class CheckpointUnreadableError(RedivisError):
    """A stored checkpoint of another format or damaged: the upload starts over from byte 0."""


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _aware(text: Any) -> Any:
    if text is None:
        return None
    when = datetime.fromisoformat(str(text))
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class UploadCheckpoint:
    table: str
    upload_name: str
    session_id: str
    #: None when the stored URL was sealed under another token: what needs no URL (creating, attaching) goes on.
    session_url: str | None
    total_size: int
    fingerprint: SourceFingerprint
    offset: int = 0
    phase: UploadPhase = UploadPhase.TRANSFERRING
    created_at: datetime = field(default_factory=_now)
    upload_uri: str | None = None
    transport: str = "resumable_upload"
    #: The md5 the upload server reported for the complete object (base64), once transferred: what ties
    #: an upload Redivis shows under this name to this session's bytes.
    stored_md5: str | None = None
    #: When this session's first request to create the upload was sent (the worker's clock): an upload created
    #: before it (less clock skew) is not taken for this session's unless Redivis names it.
    creating_since: datetime | None = None

    def advanced(self, **changes: Any) -> UploadCheckpoint:
        return replace(self, **changes)

    def session_expired(self, now: datetime | None = None) -> bool:
        return (now or _now()) >= self.created_at + SESSION_LIFETIME - SESSION_SAFETY_MARGIN

    def to_json(self, seal: SessionUrlSeal | None = None) -> dict[str, Any]:
        """Plain JSON values; with ``seal`` the session URL is stored encrypted (``session_url_sealed``)."""
        url: dict[str, str] = {}
        if self.session_url is not None:
            url = (
                {"session_url_sealed": seal.seal(self.session_url)}
                if seal is not None
                else {"session_url": self.session_url}
            )
        return {
            "format": CHECKPOINT_FORMAT,
            "transport": self.transport,
            "table": self.table,
            "upload_name": self.upload_name,
            "session_id": self.session_id,
            **url,
            "total_size": self.total_size,
            "offset": self.offset,
            "phase": self.phase.value,
            "created_at": self.created_at.isoformat(),
            "upload_uri": self.upload_uri,
            "stored_md5": self.stored_md5,
            "creating_since": self.creating_since.isoformat() if self.creating_since else None,
            "fingerprint": self.fingerprint.to_json(),
        }

    @classmethod
    def from_json(
        cls, data: Mapping[str, Any] | None, seal: SessionUrlSeal | None = None
    ) -> UploadCheckpoint:
        if not isinstance(data, dict):
            raise CheckpointUnreadableError(
                f"a checkpoint must be a JSON object, found {type(data).__name__}"
            )
        if data.get("format") not in READABLE_FORMATS:
            raise CheckpointUnreadableError(
                f"checkpoint format {data.get('format')!r}, expected {CHECKPOINT_FORMAT}"
            )
        transport = data.get("transport", "resumable_upload")
        if transport not in TRANSPORTS:
            raise CheckpointUnreadableError(f"unknown transport {transport!r}")
        try:
            session_url = _session_url(data, seal)
            created_at = _aware(data["created_at"])
            return cls(
                table=str(data["table"]),
                upload_name=str(data["upload_name"]),
                session_id=str(data["session_id"]),
                session_url=session_url,
                total_size=int(data["total_size"]),
                offset=int(data["offset"]),
                phase=UploadPhase(data["phase"]),
                created_at=created_at,
                upload_uri=data.get("upload_uri"),
                transport=transport,
                stored_md5=data.get("stored_md5"),
                creating_since=_aware(data.get("creating_since")),
                fingerprint=SourceFingerprint.from_json(data["fingerprint"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointUnreadableError(f"damaged checkpoint ({type(exc).__name__}: {exc})") from None

    def __repr__(self) -> str:
        # The session URL is a credential: never in a repr.
        return (
            f"UploadCheckpoint(table={self.table!r}, upload_name={self.upload_name!r}, session_id={self.session_id!r}, "
            f"offset={self.offset}, total_size={self.total_size}, phase={self.phase.value!r}, "
            f"transport={self.transport!r})"
        )


def _session_url(data: Mapping[str, Any], seal: SessionUrlSeal | None) -> str | None:
    """The stored session URL; None when it is sealed under a key this try does not have (the token changed)."""
    if "session_url_sealed" in data:
        if seal is None:
            return None
        try:
            return seal.open(str(data["session_url_sealed"]))
        except SealBrokenError:
            return None
    url = data.get("session_url")
    return None if url is None else str(url)
