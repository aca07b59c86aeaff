"""The ``[core] hostname_callable`` of the two Celery workers that ``scripts/celery_two_workers.sh`` starts.

Both workers run on this one machine, so the fully qualified domain name Airflow records for each
try would be the same. Each worker's environment names it (``REDIVIS_E2E_WORKER_HOSTNAME``), and the
task instance history then tells which worker ran which try, as it would with two machines.
"""

from __future__ import annotations

import os
import socket


def hostname() -> str:
    return os.environ.get("REDIVIS_E2E_WORKER_HOSTNAME") or socket.getfqdn()
