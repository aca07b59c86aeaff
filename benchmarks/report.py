"""``results.json``, ``results.md`` and ``throughput.png`` from one run's measurements."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from airflow_provider_redivis.engine.protocol import (
    FIRST_REQUEST_SIZE,
    MAX_GROWTH,
    TARGET_REQUEST_SECONDS,
    MiB,
)

GiB = 1024 * MiB
REPO = Path(__file__).resolve().parent.parent
GOAL_CEILING = 0.90
GOAL_CLIENT = 1.0
GOAL_LINK = 0.97
GOAL_CPU_S_PER_GIB = 0.8
GOAL_MEMORY_MIB = 32
#: "Flat": the operator's peak over baseline differs by at most this much between the file sizes.
MEMORY_FLAT_MIB = 4
GOAL_CHECKPOINT = 0.02
#: Redivis allows about this many API requests per token in each interval of this many seconds.
RATE_LIMIT_REQUESTS = 100
RATE_LIMIT_INTERVAL_SECONDS = 100.0
#: Where the runner makes a virtualenv with matplotlib when its own interpreter has none (git-ignored).
PLOT_VENV = REPO / "benchmarks" / "work" / "plot-venv"
PLOT_REQUIREMENT = "matplotlib>=3.7,<4"
KEEPING = "keeps 256 KiB units"
KEEP_NOTHING = "keeps nothing of a cut request"


def size_label(size: int | str) -> str:
    n = int(size)
    return f"{n // MiB} MiB" if n < GiB else f"{n / GiB:g} GiB"


def yes(ok: bool | None) -> str:
    return "n/a" if ok is None else ("**met**" if ok else "**missed**")


def request_peak(trig: dict[str, Any]) -> tuple[int, float, float]:
    """(requests in the busiest window, average per window, the window's seconds) of the deferred
    waits; runs before the window matched Redivis's 100 s recorded 60-s figures."""
    if "peak_requests_in_100s" in trig:
        return trig["peak_requests_in_100s"], trig["average_requests_per_100s"], RATE_LIMIT_INTERVAL_SECONDS
    return trig["peak_requests_in_60s"], trig["average_requests_per_minute"], 60.0


def rate_limit_text() -> str:
    return f"~{RATE_LIMIT_REQUESTS} requests per {RATE_LIMIT_INTERVAL_SECONDS:g} s per token"


def summary_rows(results: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(figure, measured, goal, met) for the headline table; every figure with its goal."""
    rows: list[tuple[str, str, str, str]] = []
    if "throughput" in results:
        sizes = results["throughput"]["sizes"]
        for size, data in sizes.items():
            ours = data["defaults"]
            rows.append(
                (
                    f"Throughput / one streamed PUT, loopback, {size_label(size)}, defaults",
                    f"{ours['ratio_to_ceiling']:.3f} ({ours['mib_per_s']:.0f} vs {data['ceiling_mib_per_s']:.0f} MiB/s)",
                    f">= {GOAL_CEILING:.2f}",
                    yes(ours["ratio_to_ceiling"] >= GOAL_CEILING),
                )
            )
        for size, data in sizes.items():
            client = data["client"]
            rows.append(
                (
                    f"Throughput / redivis client 0.21.1 (transfer), loopback, {size_label(size)}, defaults",
                    f"{client['ratio_transfer']:.3f} (client {client['mib_per_s']:.0f} MiB/s)",
                    f">= {GOAL_CLIENT:.1f}",
                    yes(client["ratio_transfer"] >= GOAL_CLIENT),
                )
            )
    if "link" in results:
        for name, link in results["link"].items():
            for size, data in link["sizes"].items():
                rows.append(
                    (
                        f"Throughput / one streamed PUT, modelled link {name}, {size_label(size)}, defaults",
                        f"{data['ratio_to_ceiling']:.3f} ({data['mib_per_s']:.1f} vs {data['ceiling_mib_per_s']:.1f} "
                        f"MiB/s; cap {link['cap_mib_per_s']:.1f})",
                        f">= {GOAL_LINK:.2f}",
                        yes(data["ratio_to_ceiling"] >= GOAL_LINK),
                    )
                )
    if "throughput" in results:
        sizes = results["throughput"]["sizes"]
        cpu = {size: data["defaults"]["cpu_s_per_gib"] for size, data in sizes.items()}
        rows.append(
            (
                "Uploader CPU s/GiB (worker's own rusage), loopback, defaults",
                ", ".join(f"{size_label(s)}: {v:.2f}" for s, v in cpu.items()),
                f"<= {GOAL_CPU_S_PER_GIB}",
                yes(all(v <= GOAL_CPU_S_PER_GIB for v in cpu.values())),
            )
        )
    if "memory" in results:
        mem = results["memory"]
        ours = [r for r in mem["rows"] if r["kind"] == "operator"]
        shown = ", ".join(f"{size_label(r['size'])}: {r['over_baseline_mib']:.1f}" for r in ours)
        rows.append(
            (
                "Peak RSS over baseline (MiB) by file size, defaults",
                f"{shown} (spread {mem['operator_spread_mib']:.1f})",
                f"<= {GOAL_MEMORY_MIB} MiB, flat (spread <= {MEMORY_FLAT_MIB} MiB)",
                yes(
                    mem["operator_max_over_baseline_mib"] <= GOAL_MEMORY_MIB
                    and mem["operator_spread_mib"] <= MEMORY_FLAT_MIB
                ),
            )
        )
    if "interrupt" in results:
        for label, cut in results["interrupt"].items():
            name = f"Bytes re-sent after a reset, server {label}"
            goal = (
                "re-sent <= not kept, every point"
                if label == KEEPING
                else "re-sent <= one request, every point"
            )
            if not cut.get("available", True):
                rows.append((name, "not available (the emulator has no such option yet)", goal, "n/a"))
                continue
            name += f", {cut['cuts']} random points ({size_label(cut['size'])})"
            if label == KEEPING:
                measured = (
                    f"{cut['resent_total']:,} re-sent vs {cut['unkept_total']:,} not kept; worst excess "
                    f"{cut['max_excess']:,} B"
                )
                ok = cut["cuts"] > 0 and cut["within_unkept"] == cut["cuts"]
            else:
                measured = (
                    f"most re-sent at one point {cut['max_resent']:,} B; largest cut request "
                    f"{cut['max_cut_request_bytes']:,} B; {cut['within_one_request']}/{cut['cuts']} within"
                )
                ok = cut["cuts"] > 0 and cut["within_one_request"] == cut["cuts"]
            rows.append((name, measured, goal, yes(ok)))
    if "checkpoint" in results:
        cost = results["checkpoint"]
        rows.append(
            (
                f"Checkpoint cost, loopback, {size_label(cost['size'])}, defaults "
                f"(median of {len(cost['pairs'])} interleaved pairs)",
                f"{100 * cost['cost_median']:+.2f} % (writes, on their own thread: "
                f"{100 * cost['write_share']:.2f} % of the upload's time)",
                f"<= {100 * GOAL_CHECKPOINT:.0f} %",
                yes(cost["cost_median"] <= GOAL_CHECKPOINT),
            )
        )
    if "triggers" in results:
        trig = results["triggers"]
        peak, _, window = request_peak(trig)
        rows.append(
            (
                f"{trig['triggers']} deferred waits in one triggerer (processing {trig['processing_seconds']:g} s)",
                f"CPU {trig['cpu_seconds']:.2f} s over {trig['wall_seconds']:.0f} s "
                f"({trig['cpu_percent_of_one_core']:.1f} % of a core); {peak} requests "
                f"in the busiest {window:g} s ({trig['requests_per_trigger']:.1f} per upload)",
                f"(no goal; Redivis allows {rate_limit_text()})",
                "n/a",
            )
        )
    return rows


def _request_list(mib: list[float]) -> str:
    return ", ".join(f"{m:g}" for m in mib)


def adaptive_statement(results: dict[str, Any]) -> str:
    """What replaces a recommended chunk size: the default sizes requests itself; what it did here."""
    parts = []
    for size, data in results.get("throughput", {}).get("sizes", {}).items():
        ours = data["defaults"]
        parts.append(
            f"{size_label(size)} on loopback in {ours['requests'][0]} requests ({_request_list(ours['request_mib'])} MiB)"
        )
    for name, link in results.get("link", {}).items():
        for size, data in link["sizes"].items():
            parts.append(
                f"{size_label(size)} over {name} in {data['requests'][0]} requests ({_request_list(data['request_mib'])} MiB)"
            )
    fixed = results.get("throughput", {}).get("fixed_chunk")
    comparison = ""
    if fixed:
        ratios = [
            f"{size_label(s)}: {d['fixed']['ratio_to_ceiling']:.3f} vs {d['defaults']['ratio_to_ceiling']:.3f}"
            for s, d in results["throughput"]["sizes"].items()
            if d.get("fixed")
        ]
        comparison = (
            f" For comparison, fixed {fixed // MiB} MiB requests (`chunk_size={fixed}`) vs the defaults, "
            f"ratio to one streamed PUT on loopback: {'; '.join(ratios)}."
        )
    return (
        "Request sizes: **adaptive** (`chunk_size=None`, the default), so no chunk size is recommended: the "
        f"first request carries {FIRST_REQUEST_SIZE // MiB} MiB, each next one is sized from the measured rate to about "
        f"{TARGET_REQUEST_SECONDS:g} s on the wire, "
        f"growing at most {MAX_GROWTH}x per request, between 8 MiB and 1 GiB. In this run the defaults sent "
        + ("; ".join(parts) if parts else "nothing")
        + "."
        + comparison
    )


def markdown(results: dict[str, Any]) -> str:
    machine = results["machine"]
    lines = [
        "# Benchmark results",
        "",
        f"Produced by `{results['command']}` ({results['plan']['name']} plan) on {machine['started_at']}, "
        f"commit `{machine['commit']}`, in {machine.get('duration_seconds', '?')} s "
        f"(estimated {machine.get('estimated_seconds', '?')} s).",
        "",
        f"Machine: {machine['nproc']} CPUs ({machine['cpu_model']}), {machine['memory_gib']} GiB RAM, "
        f"Python {machine['python']}, {machine['platform']}; requests {machine['requests']}, redivis client "
        f"{machine['redivis_client']}. Load average (1, 5, 15 min) before: {machine.get('load_before')}, after: "
        f"{machine.get('load_after')}; highest 1-minute load seen between runs: {machine.get('load_max_during')}. "
        "All figures below come from this one command. The emulator, the client under measurement and the link "
        "proxies share this machine: each runs in its own process, on 127.0.0.1. Every upload uses the defaults "
        "(`chunk_size=None`, `checksum='auto'`: crc32c) through the operator's own upload job (`UploadJob.send`) unless a row says "
        "otherwise.",
        "",
        "| figure | measured | goal | |",
        "| --- | --- | --- | --- |",
    ]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in summary_rows(results)]
    if "throughput" in results or "link" in results:
        lines += ["", adaptive_statement(results)]
    if "throughput" in results:
        sizes = results["throughput"]["sizes"]
        fixed = results["throughput"].get("fixed_chunk")
        lines += [
            "",
            "## Throughput on loopback",
            "",
            "Median over the repetitions of (time of one streamed PUT of the whole file) / (time of the operator's "
            "upload path), each pair measured back to back; MiB/s in brackets; the requests the upload took.",
            "",
            f"| file | defaults: ratio (MiB/s), requests | fixed {(fixed or 0) // MiB} MiB: ratio (MiB/s), requests "
            "| one streamed PUT (MiB/s) | defaults: server idle between requests (median ms) | defaults: hashing "
            "ahead of the final request (ms) |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for size, data in sizes.items():
            ours, other = data["defaults"], data.get("fixed")
            other_cell = (
                f"{other['ratio_to_ceiling']:.3f} ({other['mib_per_s']:.0f}), {other['requests'][0]}"
                if other
                else ""
            )
            lines.append(
                f"| {size_label(size)} | {ours['ratio_to_ceiling']:.3f} ({ours['mib_per_s']:.0f}), "
                f"{ours['requests'][0]} | {other_cell} | {data['ceiling_mib_per_s']:.0f} | "
                f"{ours['median_gap_ms']:.1f} | {ours['prehash_ms']:.0f} |"
            )
        lines += [
            "",
            "## Against the official client",
            "",
            "| file | client transfer (s) | operator transfer (s) | ratio | client create() (s) | operator execute() (s) | ratio |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for size, data in sizes.items():
            client = data["client"]
            lines.append(
                f"| {size_label(size)} | {_fmt(client['transfer_seconds'])} | {_fmt(client['operator_seconds'])} | "
                f"{_num(client.get('ratio_transfer'))} | {_fmt(client['create_seconds'])} | "
                f"{_fmt(client['operator_execute_seconds'])} | {_num(client['ratio_end_to_end'])} |"
            )
    if "link" in results:
        lines += [
            "",
            "## Over a modelled long link",
            "",
            "Both origins (API and session URLs) behind `benchmarks/linkproxy.py`: each direction capped at the "
            "link's bandwidth, each piece delivered one one-way delay after the link has serialized it, at most "
            "one bandwidth-delay product unacknowledged, one round trip for the handshake (see the README for "
            "what the model leaves out). The operator's path and one streamed PUT cross the same proxy, "
            "interleaved. Extra per request: (operator time - PUT time) / (requests - 1), the price of each "
            "request boundary (a round trip, the server's answer, the next request's start); the server's idle "
            "time between requests (from its log) and the engine's hashing ahead of its final request (the link "
            "idles meanwhile) are parts of it.",
            "",
            "| link | file | ratio | operator MiB/s | one PUT MiB/s | cap MiB/s | requests (MiB) | extra per request "
            "| server idle between requests (median) | hashing ahead of the final request | uploader CPU s/GiB (PUT) |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for name, link in results["link"].items():
            for size, data in link["sizes"].items():
                extra = data.get("extra_ms_per_request")
                lines.append(
                    f"| {name} | {size_label(size)} | {data['ratio_to_ceiling']:.3f} ({_fmt(data['ratios'], 3)}) | "
                    f"{data['mib_per_s']:.1f} | {data['ceiling_mib_per_s']:.1f} | {link['cap_mib_per_s']:.1f} | "
                    f"{data['requests'][0]} ({_request_list(data['request_mib'])}) | "
                    f"{'' if extra is None else f'{extra:.0f} ms'} | {data['median_gap_ms']:.0f} ms | "
                    f"{data['prehash_ms']:.0f} ms | {data['cpu_s_per_gib']:.2f} "
                    f"({data['ceiling_cpu_s_per_gib']:.2f}) |"
                )
    if "throughput" in results:
        lines += [
            "",
            "## Where the time goes",
            "",
            "CPU seconds per GiB (median) of the uploading process (all its threads, from its own rusage) and of "
            "the emulator's process, and the wall time per GiB, on loopback. Both processes share the machine's "
            "cores: when their CPU seconds together approach nproc x wall time, the machine, not the protocol, is "
            "the limit.",
            "",
            "| file | path | client CPU s/GiB | emulator CPU s/GiB | wall s/GiB |",
            "| --- | --- | --- | --- | --- |",
        ]
        for size, data in results["throughput"]["sizes"].items():
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
            "| file | operator (defaults) | redivis client | one streamed PUT |",
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
        lines += [
            "",
            "## Interruptions",
            "",
            "Each upload (defaults) cut once by a connection reset at a random byte (the same seeded points on "
            "each kind of server); the operator asks for the status and resumes. Re-sent = bytes sent - file "
            "size; not kept = bytes the server had read when cut - bytes it held afterwards. A server that keeps "
            "256 KiB units is Cloud Storage; one that keeps nothing of a cut request is storage-testbench (and "
            "what the adaptive sizing's 8 s per request bounds).",
            "",
        ]
        for label, cut in results["interrupt"].items():
            if not cut.get("available", True):
                lines.append(
                    f"- Server that {label}: not available here; the emulator did not accept "
                    f"`{cut['options']}` ({cut.get('reason', '')})."
                )
                continue
            unkept = [t["unkept"] for t in cut["trials"] if "unkept" in t]
            lines.append(
                f"- Server that {label}: {len(cut['trials'])} uploads of {size_label(cut['size'])} (seed {cut['seed']}); "
                f"cuts that fired: {cut['cuts']}; re-sent <= not kept at {cut['within_unkept']}; re-sent <= the cut "
                f"request at {cut['within_one_request']}; most re-sent at one point: {cut['max_resent']:,} B; largest "
                f"loss at one cut: {max(unkept, default=0):,} B; largest cut request: {cut['max_cut_request_bytes']:,} B."
            )
    if "checkpoint" in results:
        cost = results["checkpoint"]
        writes = [p["state_writes"] for p in cost["pairs"]]
        lines += [
            "",
            "## Checkpoint cost",
            "",
            "The operator's transfer (`UploadJob.send`; its background writer commits the checkpoint JSON and the XCom offset to "
            "SQLite after acknowledged requests, the newest superseding any waiting one) against "
            "`ResumableSession.upload` with no callback, alternating which goes first.",
            "",
            f"Per-pair costs: {', '.join(f'{100 * c:+.1f} %' for c in cost['costs'])}; median {100 * cost['cost_median']:+.2f} %, "
            f"ratio of medians {100 * cost['cost_of_medians']:+.2f} %. Writes per upload: {writes}; time inside "
            f"them (on their own thread, overlapping the transfer): {100 * cost['write_share']:.2f} % of the upload.",
        ]
    if "triggers" in results:
        trig = results["triggers"]
        peak, average, window = request_peak(trig)
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
            f"{peak} in the busiest {window:g} s, {average:.0f} per {window:g} s on average (over at least "
            f"{window:g} s); Redivis allows {rate_limit_text()}. Every trigger starts at the same moment here, "
            "so their polls fall together; in a real triggerer they start when their tasks defer.",
        ]
    lines += ["", "![throughput](throughput.png)", ""]
    return "\n".join(lines)


def summary_text(results: dict[str, Any]) -> str:
    """The headline table as plain lines, for the terminal: each figure, its goal, met or missed."""
    lines = ["", "figure | measured | goal | met"]
    for a, b, c, d in summary_rows(results):
        lines.append(f"{a} | {b} | {c} | {d.strip('*')}")
    return "\n".join(lines)


def _fmt(values: list[float], digits: int = 2) -> str:
    return ", ".join(f"{v:.{digits}f}" for v in values)


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


def write(results: dict[str, Any], out: Path, *, plot_python: str | None = None) -> None:
    text = markdown(results)
    (out / "results.md").write_text(text)
    (out / "results.json").write_text(json.dumps(results, indent=1, sort_keys=False) + "\n")
    if "throughput" in results or "link" in results:
        draw_chart(out, plot_python)


def _has_matplotlib(python: str) -> bool:
    try:
        return (
            subprocess.run([python, "-c", "import matplotlib"], capture_output=True, timeout=120).returncode
            == 0
        )
    except (OSError, subprocess.TimeoutExpired):
        return False


def plot_interpreter() -> str | None:
    """An interpreter with matplotlib: the venv under benchmarks/work/, made and filled on first use.

    matplotlib is no dependency of the provider and stays out of its environments; this venv is the
    benchmarks' own (git-ignored). None, with the reason printed, when it cannot be made.
    """
    python = PLOT_VENV / "bin" / "python"
    if python.exists() and _has_matplotlib(str(python)):
        return str(python)
    print(f"Installing {PLOT_REQUIREMENT} into {PLOT_VENV} for the chart (once)", file=sys.stderr, flush=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(PLOT_VENV)], check=True, timeout=300)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", PLOT_REQUIREMENT],
            check=True,
            timeout=900,
            env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
        )
    except (OSError, subprocess.SubprocessError) as exc:
        print(
            f"No chart: could not install matplotlib into {PLOT_VENV} ({exc}). Pass --plot-python with an "
            "interpreter that has it (or set REDIVIS_BENCH_PLOT_PYTHON).",
            file=sys.stderr,
        )
        return None
    return str(python)


def draw_chart(out: Path, plot_python: str | None) -> None:
    """Under ``plot_python`` if given; else here if matplotlib is installed; else in the benchmarks' own venv."""
    if not plot_python:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            plot_python = plot_interpreter()
            if plot_python is None:
                return
        else:
            from benchmarks.plot import plot

            plot(json.loads((out / "results.json").read_text()), out / "throughput.png")
            return
    subprocess.run(
        [plot_python, "-m", "benchmarks.plot", str(out / "results.json"), str(out / "throughput.png")],
        cwd=REPO,
        check=True,
        timeout=300,
    )


def main(argv: list[str]) -> int:
    """Render ``results.md`` and the chart again from a directory's ``results.json``."""
    out = Path(argv[0])
    results = json.loads((out / "results.json").read_text())
    write(results, out, plot_python=argv[1] if len(argv) > 1 else None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
