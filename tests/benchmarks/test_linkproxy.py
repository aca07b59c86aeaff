"""The benchmarks' modelled long link (benchmarks/linkproxy.py): what it does, not how fast.

Rates are measured by the benchmarks, never asserted here; these tests check the functional
properties the model rests on: bytes arrive intact and in order both ways, a transfer over a slow
link takes at least size / bandwidth, the delay is applied to every round trip and to the handshake,
at most one window is in flight, and a reset reaches the other side.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from benchmarks.linkproxy import READ_SIZE, LinkProxy


class Server:
    """A one-connection-at-a-time TCP server on 127.0.0.1 running ``handle(conn)`` per connection."""

    def __init__(self, handle: Callable[[socket.socket], None]) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.handle = handle
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with conn:
                try:
                    self.handle(conn)
                except OSError as exc:
                    self.errors.append(exc)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        self.thread.join(5)


def echo(conn: socket.socket) -> None:
    while data := conn.recv(65536):
        conn.sendall(data)


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    parts, got = [], 0
    while got < size:
        data = sock.recv(min(1 << 20, size - got))
        if not data:
            break
        parts.append(data)
        got += len(data)
    return b"".join(parts)


@pytest.fixture
def echo_server() -> Iterator[Server]:
    server = Server(echo)
    yield server
    server.close()


def connect(proxy: LinkProxy) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=20)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def test_bytes_arrive_intact_and_in_order_both_ways(echo_server: Server) -> None:
    payload = os.urandom(3 * 1024 * 1024 + 12345)
    with LinkProxy(("127.0.0.1", echo_server.port), mbit=2000, delay=0.001) as proxy, connect(proxy) as sock:
        sender = threading.Thread(target=sock.sendall, args=(payload,))
        sender.start()
        echoed = recv_exactly(sock, len(payload))
        sender.join(10)
        sock.shutdown(socket.SHUT_WR)
        assert sock.recv(1) == b""  # the end of the stream is carried through too, both ways
    assert echoed == payload
    assert proxy.upstream_stats.bytes == proxy.downstream_stats.bytes == len(payload)
    assert not echo_server.errors


def test_a_slow_link_takes_at_least_size_over_bandwidth() -> None:
    size = 256 * 1024
    received = threading.Event()

    def sink(conn: socket.socket) -> None:
        if len(recv_exactly(conn, size)) == size:
            received.set()
            conn.sendall(b"k")

    server = Server(sink)
    mbit, delay = 8.0, 0.005  # 1 MB/s: 256 KiB take at least 0.26 s to cross
    try:
        with LinkProxy(("127.0.0.1", server.port), mbit=mbit, delay=delay) as proxy, connect(proxy) as sock:
            started = time.monotonic()
            sock.sendall(os.urandom(size))
            assert sock.recv(1) == b"k"
            elapsed = time.monotonic() - started
    finally:
        server.close()
    assert received.is_set()
    assert elapsed >= size / (mbit * 1e6 / 8) + 2 * delay
    # Back-pressure: the proxy read no more than one window (plus the read that crossed it) ahead.
    assert proxy.upstream_stats.max_in_flight <= proxy.window + READ_SIZE


def test_each_round_trip_and_the_handshake_pay_the_delay(echo_server: Server) -> None:
    delay = 0.04
    with LinkProxy(("127.0.0.1", echo_server.port), mbit=1000, delay=delay) as proxy, connect(proxy) as sock:
        started = time.monotonic()
        sock.sendall(b"first")
        assert recv_exactly(sock, 5) == b"first"
        first = time.monotonic() - started  # the handshake's round trip, then the message's
        trips = []
        for _ in range(3):
            started = time.monotonic()
            sock.sendall(b"ping")
            assert recv_exactly(sock, 4) == b"ping"
            trips.append(time.monotonic() - started)
    assert first >= 4 * delay
    assert min(trips) >= 2 * delay


def test_the_window_is_one_bandwidth_delay_product() -> None:
    proxy = LinkProxy(("127.0.0.1", 9), mbit=400, delay=0.03)
    try:
        assert proxy.bdp == int(400e6 / 8 * 0.06)
        assert proxy.window == proxy.bdp
    finally:
        proxy.stop()


def test_a_reset_reaches_the_other_side() -> None:
    got_reset = threading.Event()

    def reader(conn: socket.socket) -> None:
        try:
            while conn.recv(65536):
                pass
        except ConnectionResetError:
            got_reset.set()

    server = Server(reader)
    try:
        with LinkProxy(("127.0.0.1", server.port), mbit=1000, delay=0.001) as proxy:
            sock = connect(proxy)
            sock.sendall(b"x" * 1000)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            sock.close()  # linger 0: an RST
            assert got_reset.wait(5)
    finally:
        server.close()
