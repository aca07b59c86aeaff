"""SqlToRedivisOperator against PostgreSQL: rows per second and peak memory, staged and streamed.

``python -m benchmarks.sql`` (defaults: 1,000,000 and 10,000,000 rows) or, for a check that
everything runs, ``python -m benchmarks.sql --rows 10000 100000 --label small``.

For each row count it builds a table in a throwaway PostgreSQL cluster (Debian's package, as the
tests start it), then measures, one after the other on the same table:

- ``COPY (query) TO STDOUT`` into a file with ``psql``'s ``\\copy``: the practical ceiling;
- the operator's four paths in a fresh process each (``benchmarks/sql/worker.py``): staged or
  streamed, with PostgreSQL's COPY writing the CSV (``postgres_copy``, the default for PostgreSQL) or
  the DB-API cursor path every other database takes (a server-side cursor, ``fetchmany``);
  the emulator (in this process) receives the bytes; the run ends when the upload is created.

Between runs it waits for the emulator to finish processing the upload (untimed) and checks that its
``numRows`` equals the row count and its size the bytes sent. Results go to
``benchmarks/results/sql_transfer.md`` (and ``.json``) with the command and the commit.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from redivis_emulator import RedivisEmulator  # noqa: E402

from tests.transfers.postgres_cluster import PostgresCluster, find_pg_bin  # noqa: E402

TABLE = "bench_owner.bench_dataset.bench_table"
TOKEN = "bench-token"
QUERY = "SELECT * FROM bench_{rows}"
#: Eight columns of the usual types; one label in 1,000 needs quoting.
CREATE = """
DROP TABLE IF EXISTS bench_{rows};
CREATE TABLE bench_{rows} AS
SELECT g::bigint AS id,
       (g % 100000) / 100.0::numeric(12, 2) AS amount,
       g * 1.000001::float8 AS score,
       (g % 3 = 0) AS flag,
       DATE '2020-01-01' + (g % 2000) AS day,
       TIMESTAMP '2020-01-01 00:00:00' + g * INTERVAL '1 second' AS ts,
       TIMESTAMPTZ '2020-01-01 00:00:00+00' + g * INTERVAL '1 second' AS tstz,
       CASE WHEN g % 1000 = 0 THEN 'customer "' || g || '", north' ELSE 'customer ' || g END AS label
FROM generate_series(1, {rows}) AS g;
"""
VARIANTS = [
    ("staged", True, "staged, COPY"),
    ("staged", False, "staged, cursor"),
    ("streamed", True, "streamed, COPY"),
    ("streamed", False, "streamed, cursor"),
]


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True
        ).stdout
        return out.stdout.strip() + ("+uncommitted" if dirty.strip() else "")
    except OSError:
        return "unknown"


def psql_copy_seconds(pg: PostgresCluster, query: str, target: Path) -> tuple[float, int]:
    command = [
        str(pg.bin / "psql"), "-X", "-q", "-h", "127.0.0.1", "-p", str(pg.port), "-U", pg.user, "-d", pg.database,
        "-c", f"\\copy ({query}) TO '{target}' WITH (FORMAT csv, HEADER)",
    ]  # fmt: skip
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, timeout=3600)
    seconds = time.perf_counter() - started
    size = target.stat().st_size
    target.unlink()
    return seconds, size


def wait_processed(emu: RedivisEmulator, name: str, timeout: float = 3600) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        (upload,) = [u for u in emu.list_uploads(TABLE) if u["name"] == name]
        if upload["status"] in ("completed", "failed"):
            return upload
        time.sleep(0.5)
    raise TimeoutError(f"the emulator did not process {name} in {timeout} s")


def run_worker(job: dict[str, Any]) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    env = {k: v for k, v in env.items() if not k.startswith("AIRFLOW_CONN_")}
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.sql.worker", json.dumps(job)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=7200,
    )  # fmt: skip
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(
            f"worker failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
        )
    return json.loads(lines[-1][len("RESULT ") :])


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument(
        "--tmp", type=Path, default=None, help="where the cluster, files and emulator data go"
    )
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "sql_transfer.md")
    parser.add_argument(
        "--label", default="", help="a note for the results' title (e.g. 'small-scale check')"
    )
    args = parser.parse_args(argv)

    bin_dir = find_pg_bin()
    if bin_dir is None:
        print("PostgreSQL is not installed: apt-get install postgresql", file=sys.stderr)
        return 2
    root = Path(tempfile.mkdtemp(prefix="redivis-sql-bench-", dir=args.tmp))
    root.chmod(0o755)  # the cluster's directory below belongs to the postgres user when run as root
    pg = PostgresCluster(bin_dir, root / "pg").start()
    command = "python -m benchmarks.sql " + shlex.join(sys.argv[1:] if argv is None else argv)
    results: list[dict[str, Any]] = []
    started_at = datetime.now(timezone.utc)
    load_before = load_average()
    try:
        with RedivisEmulator(
            tokens=[TOKEN], tables=[TABLE], data_dir=root / "emulator", processing_delay=0.0
        ) as emu:
            redivis = {
                "conn_type": "redivis",
                "host": emu.base_url,
                "password": TOKEN,
                "extra": {"read_timeout": 300},
            }
            for rows in args.rows:
                print(f"== {rows:,} rows: building the table", flush=True)
                pg.psql(CREATE.format(rows=rows))
                pg.psql(f"VACUUM ANALYZE bench_{rows}")
                query = QUERY.format(rows=rows)
                seconds, size = psql_copy_seconds(pg, query, root / "copy.csv")
                print(f"   psql \\copy to a file: {seconds:.2f} s, {size:,} bytes", flush=True)
                results.append(
                    {"rows": rows, "variant": "psql \\copy (ceiling)", "seconds": seconds, "bytes": size}
                )
                for mode, copy, label in VARIANTS:
                    name = f"{mode}_{'copy' if copy else 'cursor'}_{rows}.csv"
                    job = {
                        "name": name,
                        "sql": query,
                        "table": TABLE,
                        "mode": mode,
                        "postgres_copy": copy,
                        "staging_path": str(root / "staging" / name),
                        "pg_connection": pg.airflow_connection(),
                        "redivis_connection": redivis,
                    }
                    measured = run_worker(job)
                    upload = wait_processed(emu, name)
                    ok = (
                        upload["status"] == "completed"
                        and upload["numRows"] == rows
                        and upload["size"] == measured["bytes"]
                    )
                    measured.update(rows=rows, variant=label, verified=ok, num_rows=upload["numRows"])
                    results.append(measured)
                    stage = measured.get("stage_seconds")
                    print(
                        f"   {label:17s} {measured['seconds']:7.2f} s"
                        + (f" (staging {stage:.2f} s)" if stage else "")
                        + f", {rows / measured['seconds']:,.0f} rows/s, peak +{measured['peak_over_baseline_mib']:.1f} MiB,"
                        f" numRows {upload['numRows']} {'ok' if ok else 'MISMATCH'}",
                        flush=True,
                    )
                    # Free the emulator's disk: the stored bytes were checked.
                    shutil.rmtree(root / "emulator" / "sessions", ignore_errors=True)
                    shutil.rmtree(root / "emulator" / "temp", ignore_errors=True)
    finally:
        pg.stop()
        shutil.rmtree(root, ignore_errors=True)
    meta = {
        "command": command,
        "commit": git_commit(),
        "started_at": started_at.isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "postgresql": subprocess.run(
            [str(bin_dir / "postgres"), "--version"], capture_output=True, text=True
        ).stdout.strip(),
        "load_before": load_before,
        "load_after": load_average(),
        "label": args.label,
    }
    write_results(args.out, meta, results)
    print(f"results: {args.out}")
    return 0 if all(r.get("verified", True) for r in results) else 1


def write_results(out: Path, meta: dict[str, Any], results: list[dict[str, Any]]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    title = "SQL transfer benchmark" + (f" — {meta['label']}" if meta["label"] else "")
    lines = [
        f"# {title}",
        "",
        f"- command: `{meta['command']}`",
        f"- commit: `{meta['commit']}`, run at {meta['started_at']}",
        f"- machine: {meta['machine']}; {meta['postgresql']}; load average before {meta['load_before']}, after {meta['load_after']}",
        "- what: `SELECT * FROM bench_N` (8 columns: bigint, numeric, float8, bool, date, timestamp, timestamptz, text) from a local "
        "PostgreSQL into the emulator on 127.0.0.1; each operator run in a fresh process, ending when the upload is created; "
        "the emulator's `numRows` and size checked after each run (untimed).",
        "- ratio: the operator's staging time (query → complete, fsynced, renamed file) over `psql \\copy` of the same query "
        "into a file. Goal for staged CSV (COPY path): ≤ 1.5.",
        "",
        "| rows | path | total s | staging s | ratio to psql \\copy | rows/s (total) | peak memory over baseline | numRows checked |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    ceiling = {r["rows"]: r["seconds"] for r in results if r["variant"].startswith("psql")}
    for r in results:
        rows = r["rows"]
        if r["variant"].startswith("psql"):
            lines.append(
                f"| {rows:,} | {r['variant']} | {r['seconds']:.2f} | {r['seconds']:.2f} | 1.00 | {rows / r['seconds']:,.0f} | — | — |"
            )
            continue
        stage = r.get("stage_seconds")
        timed = stage if stage else r["seconds"]
        peak = r.get("peak_over_baseline_mib")
        lines.append(
            f"| {rows:,} | {r['variant']} | {r['seconds']:.2f} | {f'{stage:.2f}' if stage else '—'} | "
            f"{timed / ceiling[rows]:.2f}{'' if stage else ' (whole run)'} | {rows / r['seconds']:,.0f} | "
            f"{f'{peak:.1f} MiB' if peak is not None else '?'} | {'yes' if r.get('verified') else 'NO'} ({r.get('num_rows')}) |"
        )
    lines += [
        "",
        "Peak memory is the worker's resident set over its baseline just before `execute()` (VmHWM after "
        "clear_refs). It should not grow with the row count: one `fetch_size` batch and one 1 MiB block on "
        "the staged paths; on the streamed paths also one request (16 MiB first, at most 32 MiB) held by the "
        "reader and the engine's copy of it, so it grows until the requests reach their size, then stays.",
        "Runs of under a second are dominated by the machine's load (see the load averages); compare the "
        "1M and 10M rows of a full run.",
        "",
    ]
    out.write_text("\n".join(lines))


if __name__ == "__main__":
    raise SystemExit(main())
