"""One origin's HTTP server: tracks open connections (so stop() can end them) and knows which
``Host`` headers name it."""

from __future__ import annotations

import contextlib
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterable

    from redivis_emulator.context import EmulatorContext

#: Names every emulator answers to, whatever it is bound to.
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")


def url_host(host: str) -> str:
    """The host as it appears in a URL (and a Host header): the wildcard as loopback, IPv6 bracketed."""
    if host in ("", "0.0.0.0"):  # noqa: S104 - naming the wildcard, not binding to it
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def allowed_host_headers(bound_host: str, port: int, extra_names: Iterable[str] = ()) -> frozenset[str]:
    """The ``Host`` values accepted on ``port``: loopback names, the bound host and ``extra_names``,
    each with the port (and without it when the port is HTTP's default, 80). Lower case."""
    names = {*LOOPBACK_NAMES, url_host(bound_host), *(url_host(n) for n in extra_names)}
    allowed = {f"{name}:{port}".lower() for name in names}
    if port == 80:
        allowed |= {name.lower() for name in names}
    return frozenset(allowed)


class EmulatorHTTPServer(ThreadingHTTPServer):
    """One origin (``api`` or ``session``)."""

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(
        self,
        address: tuple[str, int],
        emulator: EmulatorContext,
        origin: str,
        handler_class: type[BaseHTTPRequestHandler],
        extra_host_names: Iterable[str] = (),
    ) -> None:
        self.emulator = emulator
        self.origin = origin
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, handler_class)
        #: DNS-rebinding guard: a request whose Host is not one of these is refused (handler.py).
        self.allowed_hosts = set(allowed_host_headers(address[0], self.server_address[1], extra_host_names))

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
