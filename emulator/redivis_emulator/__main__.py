"""``redivis-emulator`` (or ``python -m redivis_emulator``): run the emulator until SIGTERM or SIGINT.

stdout has two lines: the base URL (the API is under ``/api/v1``), then
``X-Emulator-Admin-Token: <token>``, the header the admin API (``/_emulator/...``) requires: a
random token per run unless ``--admin-token`` names one. No API token is ever printed.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import TYPE_CHECKING

from redivis_emulator.admin import ADMIN_TOKEN_HEADER
from redivis_emulator.catalog import ALL_SCOPES
from redivis_emulator.fault_specs import parse_fault_spec
from redivis_emulator.rate_limit import RETRY_AFTER_FORMATS, RateLimit, parse_rate_limit
from redivis_emulator.server import DEFAULT_SESSION_TTL, RedivisEmulator

if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import FrameType

    from redivis_emulator.faults import Fault


def _token(value: str) -> tuple[str, list[str] | None]:
    token, sep, scopes = value.partition("=")
    if not token:
        raise argparse.ArgumentTypeError("--token needs a value: TOKEN or TOKEN=scope,scope")
    return token, [s for s in scopes.split(",") if s] if sep else None


def _port(value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0 (any free port) to 65535, got {value!r}")
    return port


def _fault(value: str) -> Fault:
    try:
        return parse_fault_spec(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _rate_limit(value: str) -> RateLimit:
    try:
        return parse_rate_limit(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _gcs_identity(value: str) -> tuple[str, list[str]]:
    identity, sep, buckets = value.partition("=")
    if not identity or not sep:
        raise argparse.ArgumentTypeError(
            "--gcs-identity needs IDENTITY=bucket[,bucket...] (or IDENTITY= for none)"
        )
    return identity, [b for b in buckets.split(",") if b]


def _admin_token(value: str) -> str:
    if not value.strip():
        raise argparse.ArgumentTypeError("--admin-token needs a non-empty value")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="redivis-emulator",
        description="Run a local Redivis API emulator (with Cloud Storage resumable sessions on a second port).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=_port, default=0, help="API port; 0 picks a free one (default)")
    parser.add_argument(
        "--session-port", type=_port, default=0, help="session-origin port; 0 picks a free one"
    )
    parser.add_argument(
        "--token",
        action="append",
        type=_token,
        default=[],
        metavar="TOKEN[=SCOPE,...]",
        help="an accepted API token, with every scope unless listed (repeatable; default: test-token)",
    )
    parser.add_argument(
        "--table",
        action="append",
        default=[],
        metavar="OWNER.DATASET.TABLE",
        help="create the owner, dataset, its next version and the table (repeatable)",
    )
    parser.add_argument(
        "--data-dir", default=None, help="where uploaded bytes go (default: a temporary directory)"
    )
    parser.add_argument(
        "--fault",
        action="append",
        type=_fault,
        default=[],
        metavar="KIND[:key=value,...]",
        help="e.g. reset:after_bytes=1048576,method=PUT,origin=session,nth=3,times=1 (repeatable)",
    )
    parser.add_argument("--processing-delay", type=float, default=0.05, help="seconds per processing step")
    parser.add_argument(
        "--session-ttl", type=float, default=DEFAULT_SESSION_TTL, help="session lifetime, seconds"
    )
    parser.add_argument(
        "--on-name-conflict", choices=("error", "rename"), default="error", help="duplicate upload names"
    )
    parser.add_argument(
        "--session-dialect",
        choices=("json", "xml"),
        default="json",
        help="how resumableUpload sessions answer once complete: JSON object resource (default) or "
        "the XML API's empty body with x-goog-hash headers",
    )
    parser.add_argument(
        "--temp-session-dialect",
        choices=("json", "xml"),
        default="xml",
        help="the same for sessions started on a tempUploads URL (default xml)",
    )
    parser.add_argument(
        "--keep-partial-requests",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="a request cut mid-body keeps its whole 256 KiB units (default, like Cloud Storage); "
        "--no-keep-partial-requests keeps none of it (like storage-testbench)",
    )
    parser.add_argument(
        "--admin-token",
        type=_admin_token,
        default=None,
        metavar="TOKEN",
        help="the token the admin API (/_emulator/...) requires in X-Emulator-Admin-Token "
        "(default: a random one, printed on stdout's second line)",
    )
    parser.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="another host name the Host check accepts, beside 127.0.0.1, localhost, [::1] and the bound "
        "host (repeatable; e.g. this machine's name with --host 0.0.0.0)",
    )
    parser.add_argument(
        "--rate-limit",
        type=_rate_limit,
        default=None,
        metavar="REQUESTS/SECONDS",
        help="each API token gets REQUESTS /api/v1 requests per fixed window of SECONDS, then 429 "
        "(Redivis: 100/100); X-RateLimit-* headers on every API answer (default: no limit)",
    )
    parser.add_argument(
        "--rate-limit-retry-after",
        choices=RETRY_AFTER_FORMATS,
        default="date",
        help="a 429's Retry-After: an HTTP date (default, as Redivis) or delta-seconds",
    )
    parser.add_argument(
        "--gcs-root",
        default=None,
        metavar="FOLDER",
        help="a folder standing in for Cloud Storage in transfers (sourceType gcs): sourcePath "
        "bucket/a/b.csv is FOLDER/bucket/a/b.csv (default: no gcs transfers)",
    )
    parser.add_argument(
        "--gcs-identity",
        action="append",
        type=_gcs_identity,
        default=None,
        metavar="IDENTITY=BUCKET[,BUCKET...]",
        help="a Google identity linked in Redivis and the buckets it may read (repeatable; "
        "default: any identity reads any bucket)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    tokens = None
    if args.token:
        tokens = {token: scopes if scopes is not None else list(ALL_SCOPES) for token, scopes in args.token}
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    emulator = RedivisEmulator(
        host=args.host,
        port=args.port,
        tokens=tokens,
        tables=args.table,
        data_dir=args.data_dir,
        processing_delay=args.processing_delay,
        session_ttl=args.session_ttl,
        session_port=args.session_port,
        faults=args.fault,
        on_name_conflict=args.on_name_conflict,
        session_dialect=args.session_dialect,
        temp_session_dialect=args.temp_session_dialect,
        keep_partial_requests=args.keep_partial_requests,
        admin_token=args.admin_token,
        allowed_hosts=args.allow_host,
        rate_limit=args.rate_limit,
        rate_limit_retry_after=args.rate_limit_retry_after,
        gcs_root=args.gcs_root,
        gcs_identities=dict(args.gcs_identity) if args.gcs_identity is not None else None,
    )
    try:
        emulator.start()
    except (OSError, ValueError) as exc:
        print(f"Redivis emulator could not start: {exc}", file=sys.stderr)
        return 2
    try:
        print(emulator.base_url, flush=True)
        print(f"{ADMIN_TOKEN_HEADER}: {emulator.admin_token}", flush=True)
        print(
            f"Redivis emulator: API {emulator.api_url}, sessions {emulator.session_base_url}, "
            f"{len(emulator.tokens)} token(s), {len(args.table)} table(s), {len(args.fault)} fault(s). "
            "Stop with SIGTERM or Ctrl-C.",
            file=sys.stderr,
            flush=True,
        )
        while not stop.wait(0.5):
            pass
    finally:
        emulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
