"""RedivisEmulator: two local HTTP servers (API and session origins) and what tests ask of them."""

from __future__ import annotations

import secrets
import shutil
import socket
import tempfile
import threading
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from redivis_emulator.admin import ADMIN_TOKEN_HEADER
from redivis_emulator.catalog import ALL_SCOPES, ApiError, Catalog
from redivis_emulator.client import AdminClient
from redivis_emulator.dialects import check_dialect
from redivis_emulator.faults import Fault, FaultBook
from redivis_emulator.handler import EmulatorRequestHandler
from redivis_emulator.http_server import EmulatorHTTPServer, url_host
from redivis_emulator.processing import Processor
from redivis_emulator.queries import EmulatorQueries, check_flag
from redivis_emulator.rate_limit import RateLimit, RateLimiter, empty_budget, rate_limit_key
from redivis_emulator.recording import RecordedRequest, RequestLog

if TYPE_CHECKING:
    from types import TracebackType


DEFAULT_TOKEN = "test-token"  # noqa: S105 - the emulator's documented test token
#: Cloud Storage's resumable sessions live 24 hours.
DEFAULT_SESSION_TTL = 24 * 3600.0
_NOT_STARTED = "Start the emulator first (use it as a context manager, or call start())."

TokenSpec = str | Iterable[str] | Mapping[str, Iterable[str] | str] | None


def normalise_tokens(tokens: TokenSpec) -> dict[str, frozenset[str]]:
    """None -> {"test-token": all scopes}; [tokens] -> all scopes each; {token: scopes} as given."""
    if tokens is None:
        return {DEFAULT_TOKEN: frozenset(ALL_SCOPES)}
    if isinstance(tokens, str):
        tokens = [tokens]
    result: dict[str, frozenset[str]] = {}
    if isinstance(tokens, Mapping):
        for token, scopes in tokens.items():
            if isinstance(scopes, str):
                scopes = scopes.replace(",", " ").split()
            result[str(token)] = frozenset(scopes)
    else:
        for token in tokens:
            result[str(token)] = frozenset(ALL_SCOPES)
    if not result or any(not t for t in result):
        raise ValueError("The emulator needs at least one non-empty token.")
    return result


class RedivisEmulator(EmulatorQueries):
    """A local Redivis API (and Cloud Storage session origin) for tests, benchmarks and demos.

    ``tokens``: None gives ``{"test-token": every scope}``; a list gives each token every scope; a
    dict maps token -> scopes. ``tables``: ``owner.dataset.table`` references to create (owner,
    dataset, its next version and the table, merge strategy append). ``data_dir``: where bytes
    go (a temporary directory, removed on stop, when None). ``processing_delay``: seconds per
    processing step. ``session_ttl``: seconds a resumable session lives. ``on_name_conflict``:
    ``"error"`` (409, default) or ``"rename"`` (what the official client's ``rename_on_conflict``
    relies on).

    Transfers (``transferSpecification``, ``transfers.py``): ``gcs_root`` -- a folder that stands in for
    Cloud Storage (``sourcePath`` ``bucket/a/b.csv`` is ``gcs_root/bucket/a/b.csv``; None: no gcs
    transfers); ``gcs_identities`` -- each Google identity linked in Redivis and the buckets it may read
    (None: any identity reads any bucket).

    Sessions: ``session_dialect`` -- how ``resumableUpload`` sessions answer once complete:
    ``"json"`` (Cloud Storage's JSON API: the object resource as JSON, default) or ``"xml"`` (the XML
    API: empty body, ``x-goog-hash`` and ``x-goog-stored-content-length`` headers).
    ``temp_session_dialect`` -- the same for sessions started on a ``tempUploads`` URL with
    ``x-goog-resumable: start`` (the XML API's handshake, so ``"xml"`` by default).
    ``keep_partial_requests`` -- True (default, like Cloud Storage): a request cut mid-body keeps
    its bytes before the cut in whole 256 KiB units; False (like storage-testbench): it keeps none.
    :meth:`configure_sessions` changes these for sessions created later, :meth:`set_session_options`
    for one session.

    Admin API (``/_emulator/...`` over HTTP, for another process): ``admin_token`` -- the token it
    requires in the ``X-Emulator-Admin-Token`` header (default: a random one per run; see
    :attr:`admin_token`, :attr:`admin_headers`, :meth:`admin_client`). This object's own methods need
    no token. ``allowed_hosts`` -- more host names the ``Host`` check accepts (with the port), beside
    ``127.0.0.1``, ``localhost``, ``[::1]`` and the bound host: e.g. the machine's name when bound to
    ``0.0.0.0``.

    Rate limit (off by default): ``rate_limit=(limit, interval_seconds)`` -- Redivis's is
    ``(100, 100.0)`` -- gives each API token that many ``/api/v1`` requests per fixed window (see
    ``rate_limit.py``); every API answer then carries ``X-RateLimit-Limit`` and
    ``X-RateLimit-Remaining``, and a request past the limit gets 429 with ``Retry-After``:
    ``rate_limit_retry_after="date"`` (an HTTP date, the default, as Redivis) or ``"seconds"``.
    ``rate_limit_clock``: the limiter's clock (seconds since the epoch; ``time.time``), for tests.
    :meth:`set_rate_limit` changes it while running, :meth:`rate_limit_counts` reads the counts.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        tokens: TokenSpec = None,
        tables: Iterable[str] = (),
        data_dir: str | Path | None = None,
        processing_delay: float = 0.05,
        session_ttl: float = DEFAULT_SESSION_TTL,
        *,
        session_port: int = 0,
        faults: Iterable[Fault] = (),
        on_name_conflict: str = "error",
        session_dialect: str = "json",
        temp_session_dialect: str = "xml",
        keep_partial_requests: bool = True,
        admin_token: str | None = None,
        allowed_hosts: Iterable[str] = (),
        rate_limit: RateLimit | None = None,
        rate_limit_retry_after: str = "date",
        rate_limit_clock: Callable[[], float] | None = None,
        gcs_root: str | Path | None = None,
        gcs_identities: Mapping[str, Iterable[str]] | None = None,
    ) -> None:
        for name, value in (("port", port), ("session_port", session_port)):
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535:
                raise ValueError(f"{name} must be 0 (any free port) to 65535, got {value!r}.")
        if processing_delay < 0 or session_ttl <= 0:
            raise ValueError("processing_delay must be >= 0 and session_ttl > 0.")
        if on_name_conflict not in ("error", "rename"):
            raise ValueError("on_name_conflict is 'error' or 'rename'.")
        self.host = host
        self.port = port
        self.session_port = session_port
        self.tokens = normalise_tokens(tokens)
        self.initial_tables = [tables] if isinstance(tables, str) else list(tables)
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self.processing_delay = processing_delay
        self.session_ttl = session_ttl
        self.on_name_conflict = on_name_conflict
        self.gcs_root = Path(gcs_root) if gcs_root is not None else None
        self.gcs_identities = (
            None
            if gcs_identities is None
            else {
                identity: [buckets] if isinstance(buckets, str) else list(buckets)
                for identity, buckets in gcs_identities.items()
            }
        )
        self.session_dialect = check_dialect(session_dialect)
        self.temp_session_dialect = check_dialect(temp_session_dialect)
        self.keep_partial_requests = check_flag("keep_partial_requests", keep_partial_requests)
        if admin_token is not None and (not isinstance(admin_token, str) or not admin_token.strip()):
            raise ValueError("admin_token must be a non-empty string (or None for a random one).")
        self._admin_token = admin_token or secrets.token_urlsafe(24)
        self.allowed_hosts = [allowed_hosts] if isinstance(allowed_hosts, str) else list(allowed_hosts)
        self.faults = FaultBook(faults)
        self.log = RequestLog()
        self.rate_limiter = RateLimiter(
            rate_limit, retry_after=rate_limit_retry_after, clock=rate_limit_clock
        )
        self._stop = threading.Event()
        self._servers: list[EmulatorHTTPServer] = []
        self._threads: list[threading.Thread] = []
        self._own_data_dir = False
        self._catalog: Catalog | None = None
        self._processor: Processor | None = None
        self._base_url: str | None = None
        self._session_base_url: str | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> RedivisEmulator:
        if self._servers:
            raise RuntimeError("This RedivisEmulator is already running.")
        self._stop.clear()
        if self.data_dir is None:
            self.data_dir = Path(tempfile.mkdtemp(prefix="redivis-emulator-"))
            self._own_data_dir = True
        else:
            self.data_dir.mkdir(parents=True, exist_ok=True)
        server_class: type[EmulatorHTTPServer] = EmulatorHTTPServer
        if ":" in self.host:
            server_class = type(
                "EmulatorHTTPServer6", (EmulatorHTTPServer,), {"address_family": socket.AF_INET6}
            )
        api = server_class((self.host, self.port), self, "api", EmulatorRequestHandler, self.allowed_hosts)
        try:
            session = server_class(
                (self.host, self.session_port), self, "session", EmulatorRequestHandler, self.allowed_hosts
            )
        except OSError:
            api.server_close()
            raise
        self._servers = [api, session]
        self._base_url = f"http://{url_host(self.host)}:{api.server_address[1]}"
        self._session_base_url = f"http://{url_host(self.host)}:{session.server_address[1]}"
        self._catalog = Catalog(
            self.data_dir,
            base_url=self._base_url,
            session_base_url=self._session_base_url,
            session_ttl=self.session_ttl,
            on_name_conflict=self.on_name_conflict,
            session_dialect=self.session_dialect,
            temp_session_dialect=self.temp_session_dialect,
            keep_partial_requests=self.keep_partial_requests,
            gcs_root=self.gcs_root,
            gcs_identities=self.gcs_identities,
        )
        self._processor = Processor(self._catalog, self.processing_delay, self._stop)
        try:
            for reference in self.initial_tables:
                self._catalog.ensure_table(reference)
        except ApiError as exc:
            self.stop()
            raise ValueError(f"Cannot create table {reference!r}: {exc.message}") from None
        except Exception:
            self.stop()
            raise
        for server in self._servers:
            thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": 0.1},
                name=f"redivis-emulator-{server.origin}",
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        """Stop serving, end open connections and background work; remove a temporary data_dir."""
        self._stop.set()
        serving = {thread.name for thread in self._threads if thread.is_alive()}
        for server in self._servers:
            if f"redivis-emulator-{server.origin}" in serving:
                server.shutdown()  # waits for serve_forever: only for a server that is serving
            server.close_connections()
            server.server_close()
        for thread in self._threads:
            thread.join(5)
        if self._processor is not None:
            self._processor.join(5)
        if self._catalog is not None:
            for session in list(self._catalog.sessions.values()):
                session.close()
        self._servers = []
        self._threads = []
        if self._own_data_dir and self.data_dir is not None:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            self.data_dir = None
            self._own_data_dir = False

    def __enter__(self) -> RedivisEmulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return bool(self._servers)

    # -- addresses -----------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``; the API is at ``base_url + "/api/v1"``."""
        if self._base_url is None:
            raise RuntimeError(_NOT_STARTED)
        return self._base_url

    @property
    def api_url(self) -> str:
        return self.base_url + "/api/v1"

    @property
    def session_base_url(self) -> str:
        """The other origin, where resumable-session URLs live."""
        if self._session_base_url is None:
            raise RuntimeError(_NOT_STARTED)
        return self._session_base_url

    @property
    def token(self) -> str:
        return next(iter(self.tokens))

    @property
    def admin_token(self) -> str:
        """The token ``/_emulator/...`` requires in ``X-Emulator-Admin-Token`` (this object's methods need none)."""
        return self._admin_token

    def allow_hosts(self, *host_ports: str) -> None:
        """Accept these ``Host`` values (``host:port``, as a client sends them) on both origins from now on:
        for a proxy in front of the emulator, such as the benchmarks' modelled link."""
        for server in self._servers:
            server.allowed_hosts.update(value.strip().lower() for value in host_ports)

    @property
    def admin_headers(self) -> dict[str, str]:
        """``{"X-Emulator-Admin-Token": admin_token}``: the header to send with an admin request."""
        return {ADMIN_TOKEN_HEADER: self._admin_token}

    def admin_client(self) -> AdminClient:
        """A client of this emulator's admin API over HTTP (what another process would use)."""
        return AdminClient(self.base_url, self._admin_token)

    @property
    def admin(self) -> RedivisEmulator:
        """What the admin routes act on: this object."""
        return self

    @property
    def stopping(self) -> threading.Event:
        """Set once :meth:`stop` begins: stalls and background work end early."""
        return self._stop

    @property
    def catalog(self) -> Catalog:
        if self._catalog is None:
            raise RuntimeError(_NOT_STARTED)
        return self._catalog

    @property
    def processor(self) -> Processor:
        if self._processor is None:
            raise RuntimeError(_NOT_STARTED)
        return self._processor

    # -- faults and the log --------------------------------------------------------------------

    def add_fault(self, fault: Fault) -> Fault:
        return self.faults.add(fault)

    def clear_faults(self) -> None:
        self.faults.clear()

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request so far (admin requests excepted), in arrival order; copies."""
        return self.log.snapshot()

    def clear_requests(self) -> None:
        self.log.clear()

    def bytes_received(self, origin: str | None = "session") -> int:
        """Body bytes read on that origin (None: both), summed over finished requests."""
        return self.log.bytes_received(origin)

    def authorization_seen(self, origin: str = "session") -> int:
        """How many requests to that origin carried an Authorization header (a leak on 'session')."""
        return sum(1 for r in self.log.snapshot() if r.origin == origin and r.has_authorization)

    # -- rate limit ----------------------------------------------------------------------------

    @property
    def rate_limit(self) -> RateLimit | None:
        """``(limit, interval_seconds)`` in force, or None (no limit)."""
        return self.rate_limiter.limit

    def set_rate_limit(
        self, rate_limit: RateLimit | None, *, retry_after: str | None = None
    ) -> dict[str, Any]:
        """Turn the limit on, change it (every token starts a fresh window at its next request; the
        counts stay) or off (None); ``retry_after``: ``"date"`` or ``"seconds"`` (None: unchanged).
        Returns :meth:`rate_limit_counts`."""
        self.rate_limiter.configure(rate_limit=rate_limit, retry_after=retry_after)
        return self.rate_limit_counts()

    def rate_limit_counts(self, token: str | None = None) -> dict[str, Any]:
        """API requests allowed and refused (429), per token and in all, as ``GET /_emulator/rate-limit``.

        With ``token``: that token's entry only (``allowed``, ``refused``, ``windowStart``,
        ``windowEnd``, ``used``, ``remaining``). Tokens are keyed by :func:`rate_limit_key`, never by
        the token; requests without a known token share the key ``"anonymous"``."""
        counts = self.rate_limiter.counts()
        if token is None:
            return counts
        if token not in self.tokens:
            raise ValueError(
                "That is not one of this emulator's tokens: requests with it count against the shared "
                "budget, rate_limit_counts()['tokens']['anonymous']."
            )
        entry: dict[str, Any] = counts["tokens"].get(rate_limit_key(token)) or empty_budget(self.rate_limit)
        return entry

    def clear_rate_limit_counts(self) -> None:
        """Forget every token's counts and window (the limit stays)."""
        self.rate_limiter.clear()
