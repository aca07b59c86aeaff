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
GOAL_CEILING = 0.9


def _size_label(size: int) -> str:
    return f"{size // MiB} MiB" if size < 1024 * MiB else f"{size // (1024 * MiB)} GiB"


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = results["throughput"]["sizes"]
    default = results["default_chunk_size"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8), gridspec_kw={"width_ratios": [3, 2]})

    for size_text, data in sizes.items():
        chunks = sorted(int(c) for c in data["chunks"])
        ratios = [data["chunks"][str(c)]["ratio_to_ceiling"] for c in chunks]
        low = [min(data["chunks"][str(c)]["ratios"]) for c in chunks]
        high = [max(data["chunks"][str(c)]["ratios"]) for c in chunks]
        x = [c // MiB for c in chunks]
        (line,) = left.plot(x, ratios, marker="o", label=f"{_size_label(int(size_text))} file")
        left.fill_between(x, low, high, color=line.get_color(), alpha=0.15)
    left.axhline(GOAL_CEILING, color="grey", linestyle="--", linewidth=1, label=f"goal {GOAL_CEILING}")
    left.axvline(
        default // MiB, color="black", linestyle=":", linewidth=1, label=f"default {default // MiB} MiB"
    )
    left.set_xscale("log", base=2)
    left.set_xticks([int(c) // MiB for c in next(iter(sizes.values()))["chunks"]])
    left.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
    left.set_xlabel("chunk size (MiB)")
    left.set_ylabel("throughput / one streamed PUT")
    left.set_ylim(0, 1.1)
    left.set_title("Operator upload path vs one streamed PUT (median, range)")
    left.grid(True, alpha=0.3)
    left.legend(loc="lower right", fontsize=8)

    labels = [_size_label(int(s)) for s in sizes]
    ceiling = [d["ceiling_mib_per_s"] for d in sizes.values()]
    ours = [d["chunks"].get(str(default), {}).get("mib_per_s", 0.0) for d in sizes.values()]
    client = [d["client"]["mib_per_s"] for d in sizes.values()]
    width = 0.26
    xs = range(len(labels))
    right.bar([x - width for x in xs], ceiling, width, label="one streamed PUT", color="#999999")
    right.bar(list(xs), ours, width, label=f"operator ({default // MiB} MiB chunks)", color="#2d6fa4")
    right.bar([x + width for x in xs], client, width, label="redivis client 0.21.1", color="#d08c2c")
    right.set_xticks(list(xs), labels)
    right.set_ylabel("MiB/s")
    right.set_ylim(0, 1.35 * max(ceiling + ours + client))  # room for the legend above the bars
    right.set_title("Transfer rate to the emulator on 127.0.0.1")
    right.legend(fontsize=8, loc="upper center", ncol=2)
    right.grid(True, axis="y", alpha=0.3)

    machine = results["machine"]
    fig.suptitle(
        f"{machine['nproc']} CPUs, {machine['cpu_model']}, Python {machine['python']}; load average before "
        f"{machine.get('load_before')}, highest between runs {machine.get('load_max_during')}",
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
