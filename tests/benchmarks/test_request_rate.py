"""The deferred-waits figure against Redivis's rate limit: about 100 API requests per 100 s per token."""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks import report
from benchmarks.runner import busiest_window


@pytest.mark.parametrize(
    ("stamps", "seconds", "peak"),
    [
        ([], 100.0, 0),
        ([5.0], 100.0, 1),
        # [50, 150) holds 50, 99.9, 100 and 149.9; a request 100 s after another is in the next window.
        ([0.0, 50.0, 99.9, 100.0, 149.9, 150.0], 100.0, 4),
        ([0.0, 100.0, 200.0], 100.0, 1),
        ([0.0, 30.0, 59.0, 61.0], 60.0, 3),
    ],
)
def test_busiest_window_counts_a_half_open_window(stamps: list[float], seconds: float, peak: int) -> None:
    assert busiest_window(stamps, seconds) == peak


def trig(**figures: Any) -> dict[str, Any]:
    return {
        "triggers": 200,
        "processing_seconds": 60,
        "poll_interval": 10,
        "reasons": {"completed": 200},
        "cpu_seconds": 2.0,
        "wall_seconds": 95.0,
        "cpu_percent_of_one_core": 2.1,
        "cpu_ms_per_status_check": 2.7,
        "emulator_api_requests": 922,
        "requests_per_trigger": 4.6,
        **figures,
    }


def test_the_report_measures_and_states_the_limit_per_100_s() -> None:
    results = {"triggers": trig(peak_requests_in_100s=850, average_requests_per_100s=700.0)}
    (row,) = report.summary_rows(results)
    assert "850 requests in the busiest 100 s" in row[1]
    assert row[2] == "(no goal; Redivis allows ~100 requests per 100 s per token)"
    machine = dict.fromkeys(
        (
            "started_at",
            "commit",
            "nproc",
            "cpu_model",
            "memory_gib",
            "python",
            "platform",
            "requests",
            "redivis_client",
        ),
        "x",
    )
    text = report.markdown({**results, "command": "x", "plan": {"name": "x"}, "machine": machine})
    waits = text.split("## Deferred waits", 1)[1]
    assert "850 in the busiest 100 s, 700 per 100 s on average" in waits
    assert "Redivis allows ~100 requests per 100 s per token" in waits
    assert "minute" not in waits


def test_the_report_still_renders_a_run_that_measured_60_s() -> None:
    results = {"triggers": trig(peak_requests_in_60s=800, average_requests_per_minute=582.2)}
    (row,) = report.summary_rows(results)
    assert "800 requests in the busiest 60 s" in row[1]
    assert "~100 requests per 100 s per token" in row[2]
