"""The emulator binds the loopback interface unless told otherwise."""

from __future__ import annotations

import subprocess
import sys
import time

import psutil
from redivis_emulator import RedivisEmulator


def test_context_manager_listens_on_127_0_0_1_only() -> None:
    with RedivisEmulator() as emu:
        assert emu.base_url.startswith("http://127.0.0.1:")
        assert emu.session_base_url.startswith("http://127.0.0.1:")
        ports = {int(emu.base_url.rsplit(":", 1)[1]), int(emu.session_base_url.rsplit(":", 1)[1])}
        listening = {
            c.laddr.ip
            for c in psutil.Process().net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN and c.laddr.port in ports
        }
        assert listening == {"127.0.0.1"}


def test_command_line_listens_on_127_0_0_1_only() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "redivis_emulator", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        base_url = proc.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:")
        deadline = time.monotonic() + 10
        listening: set[str] = set()
        while time.monotonic() < deadline:
            listening = {
                c.laddr.ip
                for c in psutil.Process(proc.pid).net_connections(kind="inet")
                if c.status == psutil.CONN_LISTEN
            }
            if len(listening) >= 1:
                break
            time.sleep(0.05)
        assert listening == {"127.0.0.1"}
    finally:
        proc.terminate()
        proc.wait(timeout=10)
