"""Task-log progress lines for a transfer. Plain Python."""

from __future__ import annotations

import logging
import time

log = logging.getLogger("airflow_provider_redivis.engine.job")


class Progress:
    """Task-log progress at a readable pace: about every 10 % or every 30 s."""

    def __init__(self, total: int, start: int) -> None:
        self.total = total
        self.start_offset = start
        self.started = time.monotonic()
        self.last_logged = self.started
        self.last_percent_step = start * 10 // total if total else 10

    def update(self, offset: int) -> None:
        now = time.monotonic()
        step = offset * 10 // self.total
        if step == self.last_percent_step and now - self.last_logged < 30 and offset < self.total:
            return
        self.last_percent_step, self.last_logged = step, now
        elapsed = max(now - self.started, 1e-6)
        rate = (offset - self.start_offset) / elapsed
        eta = (self.total - offset) / rate if rate > 0 else float("inf")
        log.info(
            "Uploaded %.1f of %.1f MiB (%.0f%%) at %.1f MiB/s, ETA %s",
            offset / 2**20,
            self.total / 2**20,
            100 * offset / self.total,
            rate / 2**20,
            f"{eta:.0f} s" if eta != float("inf") else "unknown",
        )
