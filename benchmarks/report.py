"""``results.json``, ``results.md`` and ``throughput.png`` from one run's measurements."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

MiB = 1024 * 1024
GiB = 1024 * MiB
GOAL_CEILING = 0.9
GOAL_CLIENT = 1.0
GOAL_CHECKPOINT = 0.02
MEMORY_MARGIN_MIB = 32
#: A chunk size within this much of the best ratio counts as "as fast" (the sweep's noise is about this).
RECOMMEND_TOLERANCE = 0.05
#: ... and its checkpoint writes must take at most this share of the upload: a quarter of the 2 % goal,
#: because a task's writes cross Airflow's API server and database, slower than the SQLite stand-in here.
CHECKPOINT_SHARE_BUDGET = GOAL_CHECKPOINT / 4
#: Redivis allows about this many API requests per minute and token.
RATE_LIMIT_PER_MINUTE = 1000


def size_label(size: int | str) -> str:
    n = int(size)
    return f"{n // MiB} MiB" if n < GiB else f"{n / GiB:g} GiB"


def yes(ok: bool | None) -> str:
    return "n/a" if ok is None else ("**met**" if ok else "**missed**")


def recommend_chunk_size(throughput: dict[str, Any]) -> dict[str, Any]:
    """The smallest chunk size as fast as the best (worst case over file sizes) whose checkpoints stay cheap.

    Smaller is better otherwise: the engine's memory grows with the chunk.
    """
    sizes = throughput["sizes"]
    chunks = sorted({int(c) for data in sizes.values() for c in data["chunks"]})
    worst = {c: min(data["chunks"][str(c)]["ratio_to_ceiling"] for data in sizes.values()) for c in chunks}
    share = {c: max(data["chunks"][str(c)]["checkpoint_share"] for data in sizes.values()) for c in chunks}
    best = max(worst.values())
    fit = [
        c for c in chunks if worst[c] >= best - RECOMMEND_TOLERANCE and share[c] <= CHECKPOINT_SHARE_BUDGET
    ]
    chosen = min(fit) if fit else max(chunks, key=lambda c: worst[c])
    return {
        "chunk_size": chosen,
        "worst_ratio_by_chunk": {str(c): worst[c] for c in chunks},
        "worst_checkpoint_share_by_chunk": {str(c): share[c] for c in chunks},
        "best": best,
    }


def summary_rows(results: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(figure, measured, goal, met) for the headline table."""
    rows: list[tuple[str, str, str, str]] = []
    default = results["default_chunk_size"]
    if "throughput" in results:
        for size, data in results["throughput"]["sizes"].items():
            entry = data["chunks"].get(str(default))
            if entry is not None:
                ratio = entry["ratio_to_ceiling"]
                rows.append(
                    (
                        f"Throughput / one streamed PUT, {size_label(size)}, {default // MiB} MiB chunks",
                        f"{ratio:.3f} ({entry['mib_per_s']:.0f} vs {data['ceiling_mib_per_s']:.0f} MiB/s)",
                        f">= {GOAL_CEILING}",
                        yes(ratio >= GOAL_CEILING),
                    )
                )
        for size, data in results["throughput"]["sizes"].items():
            client = data["client"]
            if client.get("ratio_transfer") is not None:
                rows.append(
                    (
                        f"Throughput / redivis client 0.21.1 (transfer), {size_label(size)}",
                        f"{client['ratio_transfer']:.3f} (client {client['mib_per_s']:.0f} MiB/s)",
                        f">= {GOAL_CLIENT}",
                        yes(client["ratio_transfer"] >= GOAL_CLIENT),
                    )
                )
    if "memory" in results:
        mem = results["memory"]
        ours = [r for r in mem["rows"] if r["kind"] == "operator"]
        shown = ", ".join(f"{size_label(r['size'])}: {r['over_baseline_mib']:.0f}" for r in ours)
        rows.append(
            (
                "Peak RSS over baseline (MiB) by file size",
                shown,
                f"<= chunk + {MEMORY_MARGIN_MIB} = {mem['limit_mib']:.0f} MiB, flat",
                yes(all(r["over_baseline_mib"] <= mem["limit_mib"] for r in ours)),
            )
        )
    if "interrupt" in results:
        cut = results["interrupt"]
        rows.append(
            (
                f"Bytes re-sent after a reset, {cut['cuts']} random points ({size_label(cut['size'])})",
                f"{cut['resent_total']:,} re-sent vs {cut['unkept_total']:,} not kept; worst excess "
                f"{cut['max_excess']:,} B",
                "re-sent <= not kept, every point",
                yes(cut["cuts"] > 0 and cut["within"] == cut["cuts"]),
            )
        )
    if "checkpoint" in results:
        cost = results["checkpoint"]
        rows.append(
            (
                f"Checkpoint cost, {size_label(cost['size'])}, {cost['chunk_size'] // MiB} MiB chunks "
                f"(median of {len(cost['pairs'])} interleaved pairs)",
                f"{100 * cost['cost_median']:+.2f} % (time in the checkpoint writes: "
                f"{100 * cost['checkpoint_share']:.2f} %)",
                f"<= {100 * GOAL_CHECKPOINT:.0f} %",
                yes(cost["cost_median"] <= GOAL_CHECKPOINT),
            )
        )
    if "triggers" in results:
        trig = results["triggers"]
        rows.append(
            (
                f"{trig['triggers']} deferred waits in one triggerer (processing {trig['processing_seconds']:g} s)",
                f"CPU {trig['cpu_seconds']:.2f} s over {trig['wall_seconds']:.0f} s "
                f"({trig['cpu_percent_of_one_core']:.1f} % of a core); {trig['requests_per_minute']} requests "
                f"in the busiest minute ({trig['requests_per_trigger']:.1f} per upload)",
                f"(no goal; Redivis allows ~{RATE_LIMIT_PER_MINUTE}/min)",
                "n/a",
            )
        )
    return rows


def markdown(results: dict[str, Any]) -> str:
    machine = results["machine"]
    default = results["default_chunk_size"]
    lines = [
        "# Benchmark results",
        "",
        f"Produced by `{results['command']}` ({results['plan']['name']} plan) on {machine['started_at']}, "
        f"commit `{machine['commit']}`, in {machine.get('duration_seconds', '?')} s.",
        "",
        f"Machine: {machine['nproc']} CPUs ({machine['cpu_model']}), {machine['memory_gib']} GiB RAM, "
        f"Python {machine['python']}, {machine['platform']}; requests {machine['requests']}, redivis client "
        f"{machine['redivis_client']}. Load average (1, 5, 15 min) before: {machine.get('load_before')}, after: "
        f"{machine.get('load_after')}; highest 1-minute load seen between runs: {machine.get('load_max_during')}. "
        "All figures below come from this one command. The emulator and the client under measurement share this machine: "
        "each runs in its own process, on 127.0.0.1.",
        "",
        "| figure | measured | goal | |",
        "| --- | --- | --- | --- |",
    ]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in summary_rows(results)]
    if "throughput" in results:
        rec = recommend_chunk_size(results["throughput"])
        results["recommended_chunk_size"] = rec
        sizes = results["throughput"]["sizes"]
        chunks = sorted({int(c) for data in sizes.values() for c in data["chunks"]})
        lines += [
            "",
            "## Throughput by chunk size",
            "",
            "Median over the repetitions of (time of one streamed PUT of the whole file) / (time of the operator's "
            "upload path), each pair measured back to back; MiB/s in brackets; then the checkpoint and XCom writes "
            "per upload and the time spent in them as a share of the rest of the upload.",
            "",
            "| chunk size | "
            + " | ".join(f"{size_label(s)}: ratio (MiB/s), checkpoint writes, their share" for s in sizes)
            + " |",
            "| --- | " + " | ".join("---" for _ in sizes) + " |",
        ]
        for c in chunks:
            cells = []
            for data in sizes.values():
                entry = data["chunks"].get(str(c))
                cells.append(
                    ""
                    if entry is None
                    else f"{entry['ratio_to_ceiling']:.3f} ({entry['mib_per_s']:.0f}), {entry['state_writes']}, "
                    f"{100 * entry['checkpoint_share']:.2f} %"
                )
            mark = " (default)" if c == default else ""
            lines.append(f"| {c // MiB} MiB{mark} | " + " | ".join(cells) + " |")
        lines.append(
            "| one streamed PUT | "
            + " | ".join(f"1 ({d['ceiling_mib_per_s']:.0f})" for d in sizes.values())
            + " |"
        )
        lines += [
            "",
            f"Recommended default chunk size: **{rec['chunk_size'] // MiB} MiB**: the smallest (the engine's memory "
            f"grows with the chunk) whose worst ratio over the file sizes is within {RECOMMEND_TOLERANCE} of the best "
            f"({rec['best']:.3f}) and whose checkpoint writes take at most {100 * CHECKPOINT_SHARE_BUDGET:.1f} % of "
            "the upload (a quarter of the 2 % budget: in a task each write crosses Airflow's API server, slower "
            "than the SQLite stand-in).",
            "",
            "## Against the official client",
            "",
            "| file | client transfer (s) | operator transfer (s) | ratio | client create() (s) | operator execute() (s) | ratio |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for size, data in sizes.items():
            client = data["client"]
            ours = client["operator_seconds"]
            lines.append(
                f"| {size_label(size)} | {_fmt(client['transfer_seconds'])} | {_fmt(ours)} | "
                f"{_num(client.get('ratio_transfer'))} | {_fmt(client['create_seconds'])} | "
                f"{_fmt(client['operator_execute_seconds'])} | {_num(client['ratio_end_to_end'])} |"
            )
        lines += [
            "",
            "## Where the time goes",
            "",
            "CPU seconds per GiB (median) of the uploading process (all its threads) and of the emulator's process, "
            "and the wall time per GiB. Both processes share the machine's cores: when their CPU seconds together "
            "approach nproc x wall time, the machine, not the protocol, is the limit.",
            "",
            "| file | path | client CPU s/GiB | emulator CPU s/GiB | wall s/GiB |",
            "| --- | --- | --- | --- | --- |",
        ]
        for size, data in sizes.items():
            for label, cpu in data.get("cpu", {}).items():
                lines.append(
                    f"| {size_label(size)} | {label} | {cpu['client_cpu_s_per_gib']:.2f} | "
                    f"{cpu['emulator_cpu_s_per_gib']:.2f} | {cpu['wall_s_per_gib']:.2f} |"
                )
    if "memory" in results:
        mem = results["memory"]
        lines += [
            "",
            "## Peak memory",
            "",
            "Peak RSS (VmHWM, reset through /proc/self/clear_refs just before the upload) minus RSS before it, "
            "one fresh process per upload; MiB.",
            "",
            f"| file | operator ({mem['chunk_size'] // MiB} MiB chunks) | redivis client | one streamed PUT |",
            "| --- | --- | --- | --- |",
        ]
        for size in sorted({r["size"] for r in mem["rows"]}):
            cells = {r["kind"]: r for r in mem["rows"] if r["size"] == size}
            lines.append(
                f"| {size_label(size)} | "
                + " | ".join(
                    f"{cells[k]['over_baseline_mib']:.1f}" if k in cells else ""
                    for k in ("operator", "client", "ceiling")
                )
                + " |"
            )
    if "interrupt" in results:
        cut = results["interrupt"]
        unkept = [t["unkept"] for t in cut["trials"] if "unkept" in t]
        lines += [
            "",
            "## Interruptions",
            "",
            f"{len(cut['trials'])} uploads of {size_label(cut['size'])} ({cut['chunk_size'] // MiB} MiB chunks), each cut "
            f"once by a connection reset at a random byte (seed {cut['seed']}). The server keeps what arrived in "
            "256 KiB units; the operator asks for the status and resumes. Re-sent = bytes sent - file size; not "
            "kept = bytes the server had read when cut - bytes it held afterwards.",
            "",
            f"Cuts that fired: {cut['cuts']}; points where re-sent <= not kept: {cut['within']}; most re-sent at one "
            f"point: {cut['max_resent']:,} B; largest loss at one cut: {max(unkept, default=0):,} B.",
        ]
    if "checkpoint" in results:
        cost = results["checkpoint"]
        lines += [
            "",
            "## Checkpoint cost",
            "",
            "The operator's `_send` (a committed SQLite write of the checkpoint JSON and one of the XCom per "
            "acknowledged chunk) against `ResumableSession.upload` with no callback, alternating which goes first.",
            "",
            f"Per-pair costs: {', '.join(f'{100 * c:+.1f} %' for c in cost['costs'])}; median {100 * cost['cost_median']:+.2f} %, "
            f"ratio of medians {100 * cost['cost_of_medians']:+.2f} %. The spread is the machine's noise: timed inside "
            f"the store, the {cost['pairs'][0]['state_writes']} writes per upload take "
            f"{100 * cost['checkpoint_share']:.2f} % of the rest of the upload (median).",
        ]
    if "triggers" in results:
        trig = results["triggers"]
        lines += [
            "",
            "## Deferred waits",
            "",
            f"{trig['triggers']} `RedivisUploadTrigger.run()` coroutines in one asyncio event loop (one process, "
            f"poll_interval {trig['poll_interval']:g} s, backoff x1.5), waiting for uploads that the emulator "
            f"processes for {trig['processing_seconds']:g} s. Events: {trig['reasons']}.",
            "",
            f"CPU time {trig['cpu_seconds']:.2f} s in {trig['wall_seconds']:.1f} s ({trig['cpu_percent_of_one_core']:.1f} % "
            f"of one core, {trig['cpu_ms_per_status_check']:.1f} ms per status check); {trig['emulator_api_requests']} "
            f"API requests reached the emulator ({trig['requests_per_trigger']:.1f} per upload): "
            f"{trig['peak_requests_in_60s']} in the busiest 60 s, {trig['average_requests_per_minute']:.0f} per "
            "minute on average (over at least a minute). Every trigger starts at the same moment here, so their "
            "polls fall together; in a real triggerer they start when their tasks defer.",
        ]
    lines += ["", "![throughput](throughput.png)", ""]
    return "\n".join(lines)


def _fmt(values: list[float]) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


def write(results: dict[str, Any], out: Path, *, plot_python: str | None = None) -> None:
    text = markdown(results)
    (out / "results.md").write_text(text)
    (out / "results.json").write_text(json.dumps(results, indent=1, sort_keys=False) + "\n")
    if "throughput" in results:
        draw_chart(out, plot_python)


def draw_chart(out: Path, plot_python: str | None) -> None:
    """matplotlib here if it is installed, else under ``plot_python``; else say how to get the chart."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        if not plot_python:
            print(
                "No chart: matplotlib is not installed here. Install it in a separate environment and pass "
                "--plot-python /path/to/python (or set REDIVIS_BENCH_PLOT_PYTHON).",
                file=sys.stderr,
            )
            return
        subprocess.run(
            [plot_python, "-m", "benchmarks.plot", str(out / "results.json"), str(out / "throughput.png")],
            cwd=Path(__file__).resolve().parent.parent,
            check=True,
            timeout=300,
        )
        return
    from benchmarks.plot import plot

    plot(json.loads((out / "results.json").read_text()), out / "throughput.png")


def main(argv: list[str]) -> int:
    """Render ``results.md`` and the chart again from a directory's ``results.json``."""
    out = Path(argv[0])
    results = json.loads((out / "results.json").read_text())
    write(results, out, plot_python=argv[1] if len(argv) > 1 else None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
