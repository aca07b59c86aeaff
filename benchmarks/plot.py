"""The throughput chart from ``results.json``: ``python -m benchmarks.plot results.json throughput.png``.

Needs only matplotlib and the standard library, so it runs under any interpreter that has matplotlib
(the runner calls it that way when its own environment has none: matplotlib is no dependency of the
provider and stays out of its environments).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

MiB = 1024 * 1024
GOAL_LOOPBACK = 0.90
GOAL_LINK = 0.97


def _size_label(size: int) -> str:
    return f"{size // MiB} MiB" if size < 1024 * MiB else f"{size // (1024 * MiB)} GiB"


def cases(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One bar group per (path, file): label, ratio and its range, goal, MiB/s of ours, the PUT, the client."""
    found = []
    for size, data in results.get("throughput", {}).get("sizes", {}).items():
        ours = data["defaults"]
        found.append(
            {
                "label": f"loopback\n{_size_label(int(size))}",
                "ratio": ours["ratio_to_ceiling"],
                "low": min(ours["ratios"]),
                "high": max(ours["ratios"]),
                "goal": GOAL_LOOPBACK,
                "ours": ours["mib_per_s"],
                "put": data["ceiling_mib_per_s"],
                "client": data["client"]["mib_per_s"],
            }
        )
    for name, link in results.get("link", {}).items():
        for size, data in link["sizes"].items():
            found.append(
                {
                    "label": f"{name.replace(', ', chr(10))}\n{_size_label(int(size))}",
                    "ratio": data["ratio_to_ceiling"],
                    "low": min(data["ratios"]),
                    "high": max(data["ratios"]),
                    "goal": GOAL_LINK,
                    "ours": data["mib_per_s"],
                    "put": data["ceiling_mib_per_s"],
                    "client": None,
                }
            )
    return found


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    found = cases(results)
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5.2))
    xs = list(range(len(found)))

    ratios = [c["ratio"] for c in found]
    errors = [[c["ratio"] - c["low"] for c in found], [c["high"] - c["ratio"] for c in found]]
    colors = ["#2d6fa4" if c["ratio"] >= c["goal"] else "#c0504d" for c in found]
    left.bar(xs, ratios, 0.6, yerr=errors, capsize=3, color=colors)
    for x, c in zip(xs, found, strict=True):
        left.hlines(c["goal"], x - 0.4, x + 0.4, colors="black", linestyles="--", linewidth=1)
        left.text(x, 0.03, f"{c['ratio']:.3f}", ha="center", color="white", fontsize=8)
    left.set_xticks(xs, [c["label"] for c in found], fontsize=7)
    left.set_ylim(0, 1.1)
    left.set_ylabel("throughput / one streamed PUT (median, range)")
    left.set_title(
        "Operator path with the defaults vs one streamed PUT\n(dashed: goal; red: missed)", fontsize=10
    )
    left.grid(True, axis="y", alpha=0.3)

    width = 0.27
    right.bar(
        [x - width for x in xs], [c["put"] for c in found], width, label="one streamed PUT", color="#999999"
    )
    right.bar(xs, [c["ours"] for c in found], width, label="operator, defaults", color="#2d6fa4")
    right.bar(
        [x + width for x in xs],
        [c["client"] or 0 for c in found],
        width,
        label="redivis client 0.21.1 (loopback only)",
        color="#d08c2c",
    )
    right.set_yscale("log")
    right.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    right.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    right.set_xticks(xs, [c["label"] for c in found], fontsize=7)
    right.set_ylabel("MiB/s (log scale)")
    right.set_title("Transfer rate", fontsize=10)
    right.legend(fontsize=8, loc="upper right")
    right.grid(True, axis="y", alpha=0.3)

    machine = results["machine"]
    fig.suptitle(
        f"{machine['nproc']} CPUs, {machine['cpu_model']}, Python {machine['python']}; load average before "
        f"{machine.get('load_before')}, highest between runs {machine.get('load_max_during')}; "
        f"{results['plan']['name']} plan, commit {machine['commit']}",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str]) -> int:
    source, target = Path(argv[0]), Path(argv[1])
    plot(json.loads(source.read_text()), target)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
