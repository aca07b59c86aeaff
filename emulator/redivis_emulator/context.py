"""What the HTTP layer needs from the emulator, as a protocol: the handler never imports the server.

:class:`~redivis_emulator.server.RedivisEmulator` provides it. The imports run one way:
``server`` -> ``http_server`` -> ``handler`` -> ``api_routes`` / ``session_routes`` / ``admin`` ->
``catalog`` and the rest; nothing below ``server`` imports it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import threading

    from redivis_emulator.catalog import Catalog
    from redivis_emulator.faults import FaultBook
    from redivis_emulator.processing import Processor
    from redivis_emulator.rate_limit import RateLimiter
    from redivis_emulator.recording import RequestLog


class EmulatorContext(Protocol):
    """The running emulator, as its two HTTP servers see it."""

    faults: FaultBook
    log: RequestLog
    rate_limiter: RateLimiter
    tokens: dict[str, frozenset[str]]

    @property
    def catalog(self) -> Catalog: ...

    @property
    def processor(self) -> Processor: ...

    @property
    def stopping(self) -> threading.Event:
        """Set when the emulator stops: stalls and long waits end early."""
        ...

    @property
    def admin_token(self) -> str: ...

    @property
    def admin(self) -> Any:
        """The object ``/_emulator/...`` routes act on (see :class:`~redivis_emulator.admin.AdminTarget`)."""
        ...
