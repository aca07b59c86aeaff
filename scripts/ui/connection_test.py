"""The connection form and its Test button in a real browser, against a real ``airflow api-server``.

Started by ``scripts/ui_connection_test.sh`` (which provides Chromium and playwright-core). Runs the
emulator in this process and Airflow 3.3's API server as a subprocess (``[core] test_connection =
Enabled``, everyone an admin, everything on 127.0.0.1), then ``connection_test.mjs`` in Node, which
fills the form as the connection table in docs/connection.md says and presses Test. With ``--record`` it writes
``docs/ui_connection_test_last_run.md`` and copies the screenshots to ``docs/``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from redivis_emulator import RedivisEmulator  # noqa: E402

from tests.e2e.deployment import AirflowDeployment  # noqa: E402

HERE = Path(__file__).resolve().parent
DOCS = REPO / "docs"
#: The emulator's port in the README; a free one if something else holds it.
README_PORT = 8765
TOKEN = "test-token"  # noqa: S105 - the emulator's token


def say(text: str) -> None:
    print(f"[{datetime.now().strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def emulator_port() -> int:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", README_PORT))
        except OSError:
            return 0
    return README_PORT


def git(*args: str) -> str:
    out = subprocess.run(  # noqa: S603
        ["git", *args],  # noqa: S607
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    return out.stdout.strip()


def chromium_version(binary: str) -> str:
    out = subprocess.run(  # noqa: S603 - the browser this script was told to use
        [binary, "--version"], capture_output=True, text=True, timeout=60, check=False
    )
    words = out.stdout.split()
    return words[1] if len(words) > 1 else "?"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--node-modules", required=True, help="a node_modules holding playwright-core")
    parser.add_argument("--chromium", default=os.environ.get("UI_TEST_CHROMIUM", "/usr/bin/chromium"))
    parser.add_argument("--record", action="store_true", help="write docs/ui_connection_test_last_run.md")
    parser.add_argument("--command", default="scripts/ui_connection_test.sh", help=argparse.SUPPRESS)
    args = parser.parse_args()

    started = time.monotonic()
    started_at = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    work = Path(tempfile.mkdtemp(prefix="redivis-ui-test-"))
    shots = work / "screenshots"
    shots.mkdir()
    result: dict = {}
    try:
        with RedivisEmulator(tokens=[TOKEN], port=emulator_port(), data_dir=work / "emulator") as emu:
            port = emu.base_url.rsplit(":", 1)[1]
            say(f"emulator at {emu.base_url}; migrating the database and starting the API server")
            deployment = AirflowDeployment(
                work / "airflow",
                services=("api-server",),
                env={"AIRFLOW__CORE__TEST_CONNECTION": "Enabled"},
            )
            with deployment:
                say(f"API server at {deployment.api_url}; driving Chromium")
                env = {
                    **os.environ,
                    "NODE_PATH": args.node_modules,
                    "UI_TEST_AIRFLOW_URL": deployment.api_url,
                    "UI_TEST_CONN_ID": "redivis_default",
                    "UI_TEST_HOST": "http://127.0.0.1",
                    "UI_TEST_PORT": port,
                    "UI_TEST_TOKEN": TOKEN,
                    "UI_TEST_SCREENSHOT_DIR": str(shots),
                    "UI_TEST_CHROMIUM": args.chromium,
                }
                # Node resolves imports from the script's folder up, not NODE_PATH, for ES modules:
                # run a copy next to the node_modules that has playwright-core.
                script = Path(args.node_modules).parent / "connection_test.mjs"
                shutil.copyfile(HERE / "connection_test.mjs", script)
                proc = subprocess.run(  # noqa: S603
                    ["node", str(script)],  # noqa: S607 - Node from PATH
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=300,
                    check=False,
                )
                lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
                result = json.loads(lines[-1][7:]) if lines else {"error": proc.stdout + proc.stderr}
                result["returncode"] = proc.returncode
                result["airflow_version"] = deployment.run_cli("version").strip().splitlines()[-1]
                result["chromium"] = chromium_version(args.chromium)
    finally:
        duration = time.monotonic() - started
    passed = result.get("returncode") == 0
    for item in result.get("checks", []):
        say(f"{'ok ' if item['ok'] else 'FAILED'} {item['what']}")
    say(f"Test button: {result.get('message') or result.get('error')}")
    say(f"{'PASSED' if passed else 'FAILED'} in {duration:.0f} s")
    if args.record:
        record(args, result, passed, duration, started_at, shots)
    shutil.rmtree(work, ignore_errors=True)
    return 0 if passed else 1


def record(
    args: argparse.Namespace, result: dict, passed: bool, duration: float, started_at: str, shots: Path
) -> None:
    # The commit first: the screenshots copied below are changes of their own.
    commit = git("rev-parse", "--short", "HEAD")
    if git("status", "--porcelain", "--untracked-files=no"):
        commit += " (with uncommitted changes)"
    DOCS.mkdir(exist_ok=True)
    for name in ("form.png", "extras.png", "tested.png"):
        if (shots / name).exists():
            shutil.copyfile(shots / name, DOCS / f"ui_connection_{name}")
    saved = next((r for r in result.get("requests", []) if r["path"] == "/api/v2/connections"), None)
    tested = next((r for r in result.get("requests", []) if r["path"] == "/api/v2/connections/test"), None)
    lines = [
        "# Last run of scripts/ui_connection_test.sh",
        "",
        f"- date: {started_at}",
        f"- command: `{args.command} --record`",
        f"- commit: {commit}",
        f"- Airflow {result.get('airflow_version', '?')} (`airflow api-server`, `AIRFLOW__CORE__TEST_CONNECTION=Enabled`),"
        f" Chromium {result.get('chromium', '?')} (Debian) driven by playwright-core",
        f"- duration: {duration:.0f} s",
        f"- result: {'PASSED' if passed else 'FAILED'}",
        "",
        "## What was checked",
        "",
        *[f"- {'ok' if c['ok'] else 'FAILED'}: {c['what']}" for c in result.get("checks", [])],
        f"- Test button: {result.get('message') or result.get('error')}",
        "",
        "## What the browser sent",
        "",
        "```json",
        json.dumps({"save": saved and saved["sent"], "test": tested and tested["sent"]}, indent=2),
        "```",
        "",
        "Screenshots: [the standard fields](ui_connection_form.png), [the extra fields](ui_connection_extras.png),",
        "[after Test](ui_connection_tested.png).",
        "",
    ]
    (DOCS / "ui_connection_test_last_run.md").write_text("\n".join(lines))
    say("recorded docs/ui_connection_test_last_run.md and the screenshots")


if __name__ == "__main__":
    sys.exit(main())
