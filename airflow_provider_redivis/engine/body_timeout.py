"""Request bodies sent under the read timeout: a slow or stalled link is not a failed connect. Plain Python.

urllib3 sends a request (headers and body) with the socket still on the *connect* timeout and moves it
to the read timeout only to wait for the answer. A session PUT's body takes far longer to send than a
connect: on a link under about 1 Mbit/s one 1 MiB block outlasts a 10 s connect timeout, and a pause of
the link mid-body longer than it cuts the request, whatever ``read_timeout`` says. Here the connect
alone keeps the connect timeout; each write of the request then waits up to the read timeout for the
link to take more bytes, in slices small enough that the wait is for progress, not for a whole block.
"""

from __future__ import annotations

import contextvars
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.poolmanager import ProxyManager
from urllib3.util.timeout import Timeout

if TYPE_CHECKING:
    import socket

#: Bytes per socket write: the read timeout bounds a wait for this much progress (4 s at 0.5 Mbit/s).
#: Smaller costs CPU on a fast link: 64 KiB took ~0.57 CPU-s per GiB on loopback, 256 KiB ~0.53, 1 MiB ~0.47.
SEND_SLICE = 256 * 1024

#: The read timeout of the request this thread is sending; unset outside :meth:`BodyTimeoutAdapter.send`.
_write_timeout: contextvars.ContextVar[float | None] = contextvars.ContextVar("redivis_write_timeout")


class _WritesUnderReadTimeout(HTTPConnection):
    def send(self, data: Any) -> None:
        if self.sock is None:
            self.connect()  # under the connect timeout, which urllib3 has just set
        cast("socket.socket", self.sock).settimeout(_write_timeout.get(self.timeout))
        if not isinstance(data, (bytes, bytearray, memoryview)) or len(data) <= SEND_SLICE:
            super().send(data)
            return
        view = memoryview(data)
        for start in range(0, len(view), SEND_SLICE):
            super().send(view[start : start + SEND_SLICE])


class _HTTPSWritesUnderReadTimeout(_WritesUnderReadTimeout, HTTPSConnection):
    pass


class _Pool(HTTPConnectionPool):
    ConnectionCls = _WritesUnderReadTimeout


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _HTTPSWritesUnderReadTimeout


_POOLS = {"http": _Pool, "https": _HTTPSPool}


def _read_part(timeout: Any) -> float | None:
    if isinstance(timeout, tuple):
        return None if timeout[1] is None else float(timeout[1])
    if isinstance(timeout, Timeout):
        read = timeout.read_timeout
        return read if isinstance(read, (int, float)) else None
    return None if timeout is None else float(timeout)


class BodyTimeoutAdapter(HTTPAdapter):
    """``requests``' adapter, but each write of a request waits up to the read timeout, not the connect one."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _POOLS

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if isinstance(manager, ProxyManager):  # a SOCKS proxy's manager keeps its own connections
            manager.pool_classes_by_scheme = _POOLS
        return manager

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        token = _write_timeout.set(_read_part(kwargs.get("timeout")))
        try:
            return super().send(request, *args, **kwargs)
        finally:
            _write_timeout.reset(token)


def send_bodies_under_read_timeout(http: requests.Session, url: str) -> None:
    """Mount :class:`BodyTimeoutAdapter` on ``http`` for ``url``'s origin (once), leaving other origins as they are."""
    parts = urlsplit(url)
    prefix = f"{parts.scheme}://{parts.netloc}/".lower()
    if not isinstance(http.adapters.get(prefix), BodyTimeoutAdapter):
        http.mount(prefix, BodyTimeoutAdapter())


def read_timeout_hint(exc: BaseException, read_timeout: float) -> str:
    """What to do when a request failed because it waited past the read timeout (for the link or an answer)."""
    pending: list[BaseException] = [] if isinstance(exc, requests.ConnectTimeout) else [exc]
    while pending:
        error = pending.pop()
        if isinstance(error, (TimeoutError, requests.ReadTimeout)):
            return (
                f" If the link is slow or pauses, raise the connection's read_timeout extra (now {read_timeout:g} s):"
                " it bounds each wait for the link to take more of a request, and for the answer."
            )
        pending.extend(arg for arg in error.args if isinstance(arg, BaseException))
    return ""
