"""A modelled long link: a user-space TCP proxy on 127.0.0.1 with a bandwidth cap and a one-way delay.

The kernel here has no netem, so the link is modelled in the proxy. Each direction of each
connection is a link of ``mbit`` Mbit/s with a one-way ``delay``:

- bytes read from one side enter the direction's queue stamped with their delivery time:
  ``free = max(arrival, free) + size / bandwidth`` (the link serializes them after what it already
  carries), delivered at ``free + delay``;
- a writer thread hands each piece to the other side when its time comes;
- the reader stops reading while more than one bandwidth-delay product (bandwidth x RTT) is in
  flight, a byte counting as in flight until its acknowledgement would be back at the sender
  (delivery + delay). So the proxy holds at most what a TCP sender with a window of one BDP keeps
  unacknowledged, nothing sits in a router queue, and the kernel's back-pressure (the proxy's full
  receive buffer, then the client's full send buffer) stops the client: no sender can burst past
  the link;
- a new connection pays one round trip before its first byte leaves (the TCP handshake): the
  client-to-server link is busy until ``accept + RTT``.

What it leaves out is listed in ``benchmarks/README.md`` ("The modelled long link").

In a process of its own (what the runner does, so the proxy never shares a GIL with the emulator or
the client)::

    python -m benchmarks.linkproxy --upstream 127.0.0.1:8080 --mbit 400 --rtt-ms 60

prints ``LISTENING <port>`` once it accepts connections and serves until its stdin closes.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import socket
import struct
import sys
import threading
import time
from dataclasses import dataclass, field

#: Bytes read from a socket at a time: the unit the link serializes.
READ_SIZE = 64 * 1024
#: The window never goes below this, so a link with a tiny BDP still moves whole reads.
MIN_WINDOW = 2 * READ_SIZE


@dataclass
class DirectionStats:
    """What one direction of the proxy carried (all connections): for tests and sanity checks."""

    bytes: int = 0
    max_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, size: int, in_flight: int) -> None:
        with self.lock:
            self.bytes += size
            self.max_in_flight = max(self.max_in_flight, in_flight)


def _abort(sock: socket.socket) -> None:
    """Close with a reset (RST), the way a cut connection ends."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RD)  # wakes a thread blocked in recv; close() alone does not
    with contextlib.suppress(OSError):
        sock.close()


class _Direction:
    """One way of one connection: a reader thread stamps pieces, a writer thread delivers them on time."""

    def __init__(
        self,
        conn: _Connection,
        source: socket.socket,
        target: socket.socket,
        stats: DirectionStats,
        *,
        busy_until: float,
    ) -> None:
        self.conn = conn
        self.stats = stats
        self.source = source
        self.target = target
        self.link_free = busy_until
        self.queue: collections.deque[tuple[float, bytes | None, bool]] = collections.deque()
        self.ready = threading.Condition()
        self.unacked: collections.deque[tuple[float, int]] = collections.deque()
        self.in_flight = 0

    def start(self, name: str) -> list[threading.Thread]:
        threads = [
            threading.Thread(target=self._read, name=f"{name}-read", daemon=True),
            threading.Thread(target=self._write, name=f"{name}-write", daemon=True),
        ]
        for thread in threads:
            thread.start()
        return threads

    def _wait_for_window(self) -> None:
        proxy = self.conn.proxy
        while True:
            now = time.monotonic()
            while self.unacked and self.unacked[0][0] <= now:
                self.in_flight -= self.unacked.popleft()[1]
            if self.in_flight < proxy.window or not self.unacked:
                return
            time.sleep(max(0.0, self.unacked[0][0] - now))

    def _read(self) -> None:
        proxy = self.conn.proxy
        reset = False
        try:
            while not self.conn.closed:
                self._wait_for_window()
                try:
                    data = self.source.recv(READ_SIZE)
                except OSError:
                    reset = not self.conn.closed
                    break
                if not data:
                    break
                now = time.monotonic()
                self.link_free = max(now, self.link_free) + len(data) / proxy.bytes_per_second
                deliver_at = self.link_free + proxy.delay
                self.unacked.append((deliver_at + proxy.delay, len(data)))
                self.in_flight += len(data)
                self.stats.add(len(data), self.in_flight)
                self._put(deliver_at, data, False)
        finally:
            # The end of the stream (or its reset) arrives after the last byte, like a FIN or an RST would.
            self._put(max(time.monotonic(), self.link_free) + proxy.delay, None, reset)

    def _put(self, deliver_at: float, data: bytes | None, reset: bool) -> None:
        with self.ready:
            self.queue.append((deliver_at, data, reset))
            self.ready.notify()

    def _write(self) -> None:
        while True:
            with self.ready:
                while not self.queue:
                    self.ready.wait()
                deliver_at, data, reset = self.queue.popleft()
            wait = deliver_at - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            if data is None:
                if reset:
                    self.conn.abort()
                else:
                    with contextlib.suppress(OSError):
                        self.target.shutdown(socket.SHUT_WR)
                    self.conn.direction_done()
                return
            try:
                self.target.sendall(data)
            except OSError:
                self.conn.abort()
                return


class _Connection:
    def __init__(
        self, proxy: LinkProxy, client: socket.socket, server: socket.socket, accepted: float
    ) -> None:
        self.proxy = proxy
        self.client = client
        self.server = server
        self.closed = False
        self._done = 0
        self._lock = threading.Lock()
        # The handshake: one round trip before the client's first byte can leave.
        self.up = _Direction(
            self, client, server, proxy.upstream_stats, busy_until=accepted + 2 * proxy.delay
        )
        self.down = _Direction(self, server, client, proxy.downstream_stats, busy_until=accepted)

    def start(self, number: int) -> None:
        self.up.start(f"linkproxy-{number}-up")
        self.down.start(f"linkproxy-{number}-down")

    def direction_done(self) -> None:
        with self._lock:
            self._done += 1
            last = self._done == 2
        if last:
            self.close()

    def close(self) -> None:
        with self._lock:
            if self.closed:
                return
            self.closed = True
        for sock in (self.client, self.server):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()
        self.proxy.forget(self)

    def abort(self) -> None:
        with self._lock:
            if self.closed:
                return
            self.closed = True
        _abort(self.client)
        _abort(self.server)
        self.proxy.forget(self)


class LinkProxy:
    """Listens on 127.0.0.1 and forwards each connection to ``upstream`` over the modelled link.

    :param mbit: the bandwidth of each direction, in Mbit/s (10^6 bits per second).
    :param delay: the one-way delay in seconds (the round trip adds twice this).
    """

    def __init__(
        self, upstream: tuple[str, int], *, mbit: float, delay: float, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        if mbit <= 0 or delay < 0:
            raise ValueError("mbit must be > 0 and delay >= 0")
        self.upstream = upstream
        self.mbit = mbit
        self.delay = delay
        self.bytes_per_second = mbit * 1e6 / 8
        #: One bandwidth-delay product (bandwidth x round trip), at least two reads.
        self.bdp = int(self.bytes_per_second * 2 * delay)
        self.window = max(self.bdp, MIN_WINDOW)
        self.upstream_stats = DirectionStats()
        self.downstream_stats = DirectionStats()
        self._listener = socket.create_server((host, port))
        self.port: int = self._listener.getsockname()[1]
        self._connections: set[_Connection] = set()
        self._lock = threading.Lock()
        self._accepting: threading.Thread | None = None
        self._stopped = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LinkProxy:
        self._accepting = threading.Thread(target=self._accept, name="linkproxy-accept", daemon=True)
        self._accepting.start()
        return self

    def _accept(self) -> None:
        number = 0
        while not self._stopped:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            accepted = time.monotonic()
            try:
                server = socket.create_connection(self.upstream, timeout=10)
                server.settimeout(None)
            except OSError:
                _abort(client)
                continue
            for sock in (client, server):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _Connection(self, client, server, accepted)
            with self._lock:
                self._connections.add(conn)
            number += 1
            conn.start(number)

    def forget(self, conn: _Connection) -> None:
        with self._lock:
            self._connections.discard(conn)

    def stop(self) -> None:
        self._stopped = True
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes accept()
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            conn.abort()
        if self._accepting is not None:
            self._accepting.join(5)

    def __enter__(self) -> LinkProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host or "127.0.0.1", int(port)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.linkproxy", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--upstream", type=_address, required=True, help="HOST:PORT to forward to")
    parser.add_argument("--mbit", type=float, required=True, help="bandwidth of each direction, Mbit/s")
    parser.add_argument("--rtt-ms", type=float, required=True, help="round trip time added, ms")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (default: any free one)")
    args = parser.parse_args(argv)
    with LinkProxy(args.upstream, mbit=args.mbit, delay=args.rtt_ms / 2000.0, port=args.port) as proxy:
        print(f"LISTENING {proxy.port}", flush=True)
        sys.stdin.read()  # serve until the runner closes our stdin (or ends)
        up, down = proxy.upstream_stats, proxy.downstream_stats
        print(
            f"STATS up={up.bytes} down={down.bytes} max_in_flight_up={up.max_in_flight} window={proxy.window}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
