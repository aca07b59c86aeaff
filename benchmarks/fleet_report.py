"""The fleet benchmark's results (:mod:`benchmarks.fleet`): ``fleet.json`` and ``fleet.md``."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from benchmarks.runner import REPO, cpu_model

if TYPE_CHECKING:
    from pathlib import Path


def machine() -> dict[str, Any]:
    """The machine and the checkout the run is made on."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(REPO), *args], capture_output=True, text=True, check=False
        ).stdout

    # Porcelain lines are "XY path": not stripped, or the first line loses its status column. Results an
    # earlier run wrote (this command's own output) change nothing that runs.
    paths = ("airflow_provider_redivis", "benchmarks", ":!benchmarks/results", "emulator", "tests/e2e")
    changed = git("status", "--porcelain", "--", *paths)
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu_model(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "commit": git("rev-parse", "--short", "HEAD").strip(),
        "uncommitted_changes": [line[3:] for line in changed.splitlines()],
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def write(results: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "fleet.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "fleet.md").write_text(markdown(results))


def _run_rows(run: dict[str, Any], uploads: int) -> list[str]:
    tries = ", ".join(f"{k}: {v}" for k, v in sorted(run["tries"].items()))
    return [
        f"| DAG run | {run['state']}, {run['uploads_on_emulator']} uploads on the emulator |",
        f"| makespan (trigger to the run's end) | {run['makespan_seconds']:.0f} s |",
        f"| API requests (the emulator's count, waits included) | {run['api_requests']} |",
        f"| requests per upload | {run['requests_per_upload']:.2f} |",
        f"| answered 429 | {run['refused_429']} ({100 * run['refused_share']:.1f} %) |",
        f"| first-try successes | {run['first_try_successes']} of {uploads} ({tries}) |",
        f"| task or trigger logs with a wait for the budget | {run['logs_with_a_budget_wait']} |",
        f"| triggerer CPU (process tree) | {run['triggerer_cpu_seconds']:.1f} s, "
        f"{run['triggerer_cpu_percent_of_one_core']:.2f} % of one core over the run |",
    ]


def markdown(results: dict[str, Any]) -> str:
    plan, machine, floor, fleet = results["plan"], results["machine"], results["floor"], results["fleet"]
    changes = machine["uncommitted_changes"]
    lines = [
        "# Fleet benchmark: mapped uploads with deferred waits at Redivis's request limit",
        "",
        f"- command: `{results['command']}`",
        f"- commit: {machine['commit']}"
        + (f" with uncommitted changes to {', '.join(changes)}" if changes else ""),
        f"- started: {machine['started_at']}, took {machine['duration_seconds'] / 60:.1f} min (Airflow's start "
        "and the baseline included)",
        f"- machine: {machine['nproc']} cores ({machine['cpu_model']}), Python {machine['python']}; load average "
        f"before {machine['load_before']}, after {machine['load_after']}",
        f"- Airflow 3.3 (api-server, scheduler, dag-processor, triggerer; LocalExecutor, parallelism "
        f"{plan['parallelism']}, SQLite); one DAG run mapping `RedivisResumableUploadOperator` over "
        f"{plan['uploads']} small CSV files into one table, `deferrable=True`, `poll_interval` at its default, "
        "one token",
        f"- the emulator enforces {plan['limit']} requests per {plan['interval']:g} s (the connection's "
        f"`rate_limit_interval` {plan['interval']:g}); {plan['processing_step']:g} s per processing step "
        "(queued, running)",
        "",
        "| figure | measured |",
        "| --- | --- |",
        *_run_rows(fleet, plan["uploads"]),
        f"| floor | {floor['seconds']:.0f} s, set by {floor['set_by']} |",
        f"| makespan / floor | {floor['makespan_over_floor']:.2f} |",
        "",
        f"The floor is the larger of the budget's ({floor['budget_seconds']:.0f} s: 2 requests per upload at "
        f"{plan['limit']} per {plan['interval']:g} s, plus {2 * plan['processing_step']:g} s of processing) and "
        + (
            f"this machine's time for the same fleet with no limit ({floor['baseline_seconds']:.0f} s, measured "
            "first in the same deployment)."
            if floor["baseline_seconds"] is not None
            else "nothing else (run without the baseline)."
        ),
        "",
        "## Where the API requests went",
        "",
        "| request | count | answered 429 |",
        "| --- | --- | --- |",
        *(
            f"| `{kind}` | {count} | {fleet['refused_by_kind'].get(kind, 0)} |"
            for kind, count in fleet["requests_by_kind"].items()
        ),
    ]
    windows = fleet["budget_windows"]
    lines += [
        "",
        "## How the budget was used",
        "",
        f"The emulator's windows of {plan['interval']:g} s over the run, rebuilt from its requests' arrival "
        "times (a window opens with the first request after the previous one ended): "
        f"{len(windows)} windows, {sum(w['idle_before'] for w in windows):.0f} s in all between windows with "
        "no request sent.",
        "",
        "| window opened at (s after the first request) | requests in it | idle before it (s) |",
        "| --- | --- | --- |",
        *(f"| {w['start']:.0f} | {w['requests']:.0f} | {w['idle_before']:.0f} |" for w in windows),
    ]
    baseline = results.get("baseline")
    if baseline:
        lines += [
            "",
            "## Baseline: the same fleet, no limit",
            "",
            "| figure | measured |",
            "| --- | --- |",
            *_run_rows(baseline, plan["uploads"]),
        ]
    return "\n".join(lines) + "\n"
