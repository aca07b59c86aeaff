"""What tests ask of a running emulator about its sessions, tables and uploads: the part of
:class:`~redivis_emulator.server.RedivisEmulator` that reads and changes the catalog."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from redivis_emulator.dialects import ALL_HASHES, check_dialect

if TYPE_CHECKING:
    from pathlib import Path

    from redivis_emulator.catalog import Catalog
    from redivis_emulator.sessions import SessionInfo


def check_flag(name: str, value: object) -> bool:
    """``value`` if it is a bool, else ValueError naming the setting."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}.")
    return value


class EmulatorQueries:
    """Sessions, tables and uploads of the running emulator (a mixin of ``RedivisEmulator``)."""

    session_dialect: str
    temp_session_dialect: str
    keep_partial_requests: bool
    _catalog: Catalog | None

    @property
    def catalog(self) -> Catalog:  # pragma: no cover - RedivisEmulator defines it
        raise NotImplementedError

    # -- sessions ------------------------------------------------------------------------------

    @property
    def sessions(self) -> dict[str, SessionInfo]:
        """id -> snapshot with .size .held .expired .complete .url .path."""
        catalog = self.catalog
        with catalog.lock:
            sessions = list(catalog.sessions.values())
        return {s.id: s.info() for s in sessions}

    def expire_session(self, session_id: str) -> None:
        """Make the session answer 404 from now on, as an expired Cloud Storage session does."""
        self.catalog.session(session_id).expire()

    def configure_sessions(
        self,
        *,
        session_dialect: str | None = None,
        temp_session_dialect: str | None = None,
        keep_partial_requests: bool | None = None,
    ) -> dict[str, Any]:
        """Change the defaults for sessions created from now on (None leaves one as it is).

        Returns the defaults in force, as ``GET /_emulator/settings`` does.
        """
        if session_dialect is not None:
            self.session_dialect = check_dialect(session_dialect)
        if temp_session_dialect is not None:
            self.temp_session_dialect = check_dialect(temp_session_dialect)
        if keep_partial_requests is not None:
            self.keep_partial_requests = check_flag("keep_partial_requests", keep_partial_requests)
        if self._catalog is not None:
            with self._catalog.lock:
                self._catalog.session_dialect = self.session_dialect
                self._catalog.temp_session_dialect = self.temp_session_dialect
                self._catalog.keep_partial_requests = self.keep_partial_requests
        return self.session_settings

    @property
    def session_settings(self) -> dict[str, Any]:
        return {
            "sessionDialect": self.session_dialect,
            "tempSessionDialect": self.temp_session_dialect,
            "keepPartialRequests": self.keep_partial_requests,
        }

    def set_session_options(
        self,
        session_id: str,
        *,
        dialect: str | None = None,
        keep_partial_requests: bool | None = None,
        reported_hashes: tuple[str, ...] | None = None,
    ) -> SessionInfo:
        """One session's dialect (for every later answer), rule for a cut request, and the hashes its
        finished object is described with (``("md5",)`` for a server that reports md5 only, ``()`` for
        none); None: unchanged."""
        session = self.catalog.session(session_id)
        with session.lock:
            if reported_hashes is not None:
                if not set(reported_hashes) <= set(ALL_HASHES):
                    raise ValueError(f"reported_hashes are among {ALL_HASHES}, got {reported_hashes!r}.")
                session.reported_hashes = tuple(reported_hashes)
            if dialect is not None:
                session.dialect = check_dialect(dialect)
            if keep_partial_requests is not None:
                session.keep_partial = check_flag("keep_partial_requests", keep_partial_requests)
        return session.info()

    # -- tables and uploads --------------------------------------------------------------------

    def create_table(self, reference: str, merge_strategy: str = "append") -> dict[str, Any]:
        table = self.catalog.ensure_table(reference, merge_strategy)
        with self.catalog.lock:
            return self.catalog.table_resource(table)

    def get_table(self, reference: str) -> dict[str, Any]:
        return self.catalog.get_table(reference)

    def list_uploads(self, table_ref: str) -> list[dict[str, Any]]:
        """The table's uploads as the API returns them (all pages)."""
        catalog = self.catalog
        with catalog.lock:
            table = catalog.table(table_ref)
            return [catalog.upload_resource(u) for u in table.uploads if not u.deleted]

    def all_uploads(self) -> list[dict[str, Any]]:
        catalog = self.catalog
        with catalog.lock:
            return [
                {**catalog.upload_resource(upload), "table": table.display_reference}
                for table, upload in catalog.all_uploads()
            ]

    def get_upload(self, table_ref: str, upload_name: str) -> dict[str, Any]:
        return self.catalog.get_upload(table_ref, upload_name)

    def upload_bytes_path(self, table_ref: str, upload_name: str) -> Path:
        """The stored bytes of the upload (name or id), to hash in tests."""
        upload = self.catalog.find_upload(table_ref, upload_name)
        if upload.path is None:
            raise FileNotFoundError(
                f"Upload {upload_name!r} has no stored bytes (it was created without content)."
            )
        return upload.path

    def wait_for_processing(self, table_ref: str, upload_name: str, timeout: float = 30) -> dict[str, Any]:
        """The upload once ``completed`` or ``failed``; TimeoutError after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            upload = self.get_upload(table_ref, upload_name)
            if upload["status"] in ("completed", "failed"):
                return upload
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"Upload {upload_name!r} still {upload['status']!r} after {timeout} s.")
            time.sleep(min(0.02, remaining))
