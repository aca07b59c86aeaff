"""The fleet benchmark's command line and floor (the benchmark itself starts Airflow: not here)."""

from __future__ import annotations

import pytest

from benchmarks import runner
from benchmarks.fleet import (
    Plan,
    budget_floor_seconds,
    budget_windows,
    floor_seconds,
    parse_args,
    request_kind,
)


def plan(uploads: int = 200, limit: int = 100, interval: float = 100.0) -> Plan:
    return Plan(uploads, parallelism=8, limit=limit, interval=interval, processing_step=1.0, baseline=True)


def test_the_subcommand_takes_its_own_flags_and_the_old_flags_still_parse() -> None:
    args = parse_args(["--uploads", "40", "--parallelism", "16", "--rate-limit", "100/50"])
    assert (args.uploads, args.parallelism, args.rate_limit) == (40, 16, (100, 50.0))
    defaults = parse_args([])
    assert (defaults.uploads, defaults.parallelism, defaults.rate_limit) == (200, 8, (100, 100.0))
    assert runner.parse_args(["--quick", "--only", "triggers"]).only == ["triggers"]


def test_main_sends_fleet_to_the_fleet_module(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        runner.main(["fleet", "--help"])
    assert exit_info.value.code == 0
    assert "python -m benchmarks fleet" in capsys.readouterr().out


def test_a_bad_rate_limit_is_refused_with_the_form_it_takes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(["--rate-limit", "100"])
    assert "REQUESTS/SECONDS" in capsys.readouterr().err


def test_the_budget_floor_is_two_requests_per_upload_at_the_limits_pace_plus_processing() -> None:
    assert budget_floor_seconds(plan()) == pytest.approx(400 + 2.0)
    assert budget_floor_seconds(plan(limit=100, interval=50.0)) == pytest.approx(200 + 2.0)


def test_the_floor_is_the_slower_of_the_budget_and_the_unlimited_run() -> None:
    assert floor_seconds(plan(), 250.0)[0] == pytest.approx(402.0)
    seconds, set_by = floor_seconds(plan(), 500.0)
    assert seconds == 500.0
    assert "no limit" in set_by
    assert floor_seconds(plan(), None)[0] == pytest.approx(402.0)


def test_requests_are_grouped_without_their_file_names_or_ids() -> None:
    assert (
        request_kind("GET", "/api/v1/tables/t/uploads/part_0007.csv") == "GET /api/v1/tables/t/uploads/{file}"
    )
    assert request_kind("GET", "/api/v1/uploads/0123456789abcdef0123") == "GET /api/v1/uploads/{id}"


def test_budget_windows_follow_the_emulators_model_and_show_the_idle_time_between_them() -> None:
    # Requests at 0, 5 and 9 s fall in the window opened at 0 (10 s); the one at 25 s opens the next, 15 s
    # after the first ended; the one at 35 s (exactly its end) opens a third with no idle time.
    windows = budget_windows([1000.0, 1005.0, 1009.0, 1025.0, 1035.0], interval=10.0)
    assert windows == [
        {"start": 0.0, "requests": 3, "idle_before": 0.0},
        {"start": 25.0, "requests": 1, "idle_before": 15.0},
        {"start": 35.0, "requests": 1, "idle_before": 0.0},
    ]
