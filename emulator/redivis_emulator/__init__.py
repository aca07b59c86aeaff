"""A local Redivis emulator: the API, Cloud Storage's resumable sessions, and faults on demand.

The distribution ``redivis-emulator`` (``emulator/`` in the airflow-provider-redivis repository):
the provider's tests, benchmarks and demo run against it, and so can anyone's DAG tests, offline.
It follows ``docs/redivis-api.md`` (the subset of the Redivis REST API the provider and the
official ``redivis`` client use) and Cloud Storage's resumable-upload rules. It needs only the
standard library and ``google-crc32c``; it imports neither Airflow nor the provider.

Three ways to run it
--------------------

From the command line (prints its base URL, then ``X-Emulator-Admin-Token: <token>``; runs until
SIGTERM/SIGINT)::

    redivis-emulator --port 0 --table me.sales.daily \\
        --token test-token --fault "reset:origin=session,after_bytes=1048576,nth=2"

(``python -m redivis_emulator`` is the same.)

From Python::

    from redivis_emulator import Fault, RedivisEmulator

    with RedivisEmulator(tables=["me.sales.daily"]) as emu:
        emu.base_url                  # "http://127.0.0.1:PORT"; the API is at base_url + "/api/v1"
        emu.session_base_url          # resumable-session URLs live on this second origin
        emu.token                     # "test-token" (every scope)
        emu.add_fault(Fault("reset", origin="session", after_bytes=1 << 20))
        ...                           # point the code under test at emu.base_url
        emu.requests                  # what arrived: method, origin, path, headers, body_bytes, status
        emu.list_uploads("me.sales.daily")
        emu.wait_for_processing("me.sales.daily", "file.csv", timeout=30)

From pytest (the plugin loads through this distribution's ``pytest11`` entry point): the
function-scoped ``redivis_emulator`` fixture has one table, ``test_owner.test_dataset.test_table``,
and the token ``test-token``.

What it serves
--------------

- API origin: ``/api/v1/...`` -- users, datasets, versions (create next, release asynchronously),
  tables (append / replace), ``resumableUpload``, ``tempUploads``, uploads (create, get, HEAD by
  name, list with paging, delete) and their processing (``queued`` -> ``running`` -> ``completed``
  or ``failed``; delimited files are parsed for real). Errors come as
  ``{"error": {"status", "message"}}``, ``insufficient_scope`` in Redivis's OAuth-like shape, and
  on HEAD in the URL-encoded ``X-REDIVIS-ERROR-PAYLOAD`` header. A duplicate upload name is 409
  (``on_name_conflict="rename"`` renames instead, which the official client's
  ``rename_on_conflict`` relies on); so is a second next version. A table reference without a
  version means ``next`` when there is one, else ``current``; uploads into a released version
  are 400.
- Session origin (a second port, so a token sent there is visible): ``/upload/resumable/{token}``
  with Cloud Storage's rules: 308 and ``Range``, status queries, resent bytes ignored, a gap (a
  chunk starting past what is held) refused with 400, non-final chunks in 256 KiB multiples (else
  400), unknown totals (``/*``), 200 with the object on completion and on every later request
  -- in the ``json`` dialect the object resource (``size``, ``md5Hash``, ``crc32c``), in the ``xml``
  dialect an empty body with ``x-goog-hash`` and ``x-goog-stored-content-length`` (see
  :mod:`.dialects`; ``session_dialect=``, ``temp_session_dialect=``, ``set_session_options``) --,
  ``x-goog-hash`` on the final request checked (a mismatch is 400, no object, the session spent),
  404 once expired (``session_ttl``, ``expire_session``), 410 once cancelled. A request cut
  mid-body keeps its whole 256 KiB units, or nothing with ``keep_partial_requests=False``.
- ``/_emulator/...`` on the API origin, for scripts driving an emulator in another process (the
  admin token in ``X-Emulator-Admin-Token`` on every request, JSON bodies as
  ``Content-Type: application/json``; :class:`~redivis_emulator.client.AdminClient` does both):
  ``GET requests`` (credentials redacted), ``DELETE requests``, ``GET sessions``, ``GET|POST sessions/{id}`` (``dialect``,
  ``keepPartialRequests``), ``POST sessions/{id}/expire``, ``GET|POST settings`` (defaults for new
  sessions), ``GET uploads[?table=]``, ``GET|POST|DELETE faults``, ``POST tables``,
  ``GET|POST|DELETE rate-limit``, ``GET health``.
- Off by default, Redivis's rate limit (``rate_limit=(100, 100.0)``, ``--rate-limit 100/100``): per
  token, ``X-RateLimit-Limit`` / ``X-RateLimit-Remaining`` on every API answer, 429 with
  ``Retry-After`` past it (see :mod:`.rate_limit`).

Every request on either origin must name the emulator in its ``Host`` header (``127.0.0.1:port``,
``localhost:port``, ``[::1]:port``, the bound host, or an ``allowed_hosts`` name), so a web page
that rebinds a DNS name to 127.0.0.1 cannot talk to it.

Bytes stream to files under ``data_dir`` in 1 MiB pieces; md5 is computed while they stream.
Faults: see :class:`Fault` and :func:`parse_fault_spec`.
"""

from __future__ import annotations

from redivis_emulator.admin import ADMIN_TOKEN_HEADER
from redivis_emulator.catalog import ALL_SCOPES
from redivis_emulator.client import AdminClient, AdminError
from redivis_emulator.dialects import DIALECTS
from redivis_emulator.fault_specs import parse_fault_spec
from redivis_emulator.faults import FAULT_KINDS, Fault, RequestInfo
from redivis_emulator.rate_limit import REDIVIS_RATE_LIMIT, rate_limit_key
from redivis_emulator.recording import RecordedRequest
from redivis_emulator.server import RedivisEmulator
from redivis_emulator.sessions import SessionInfo
from redivis_emulator.wire import HAS_CRC32C

__version__ = "0.1.0"

__all__ = [
    "ADMIN_TOKEN_HEADER",
    "ALL_SCOPES",
    "DIALECTS",
    "FAULT_KINDS",
    "HAS_CRC32C",
    "REDIVIS_RATE_LIMIT",
    "AdminClient",
    "AdminError",
    "Fault",
    "RecordedRequest",
    "RedivisEmulator",
    "RequestInfo",
    "SessionInfo",
    "parse_fault_spec",
    "rate_limit_key",
]
