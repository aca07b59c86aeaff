"""One rule for the URL that receives the source, on both transports: https, or plain http to a loopback host.

The emulator hands out session URLs on a host that is not loopback (``storage.example.com``), as a
server or proxy that rewrites Redivis's URLs would. That host cannot be real here: a tripwire adapter
stands in for it on the hook's session and records any request that would have left for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
import requests
from requests.adapters import BaseAdapter

from airflow_provider_redivis.errors import RedivisConfigError, is_final
from tests.job_support import TABLE, MemoryStore, hook_for, run_job, write_random

if TYPE_CHECKING:
    from pathlib import Path

    from redivis_emulator import RedivisEmulator

REMOTE = "http://storage.example.com:9"


class Tripwire(BaseAdapter):
    """Any request to the remote origin: recorded, never sent."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        self.seen.append(str(request.method))
        raise requests.ConnectionError("the tripwire stands in for a remote host")

    def close(self) -> None:
        pass


@pytest.mark.parametrize("transport", ["resumable_upload", "temp_upload"])
def test_a_plain_http_session_url_to_a_remote_host_gets_no_byte(
    redivis_emulator: RedivisEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, transport: str
) -> None:
    emu, store = redivis_emulator, MemoryStore()
    emu.catalog.session_base_url = REMOTE
    path = write_random(tmp_path / "data.csv", 100_000)
    tripwire = Tripwire()
    with hook_for(emu, monkeypatch) as hook:
        hook.session.mount(f"{REMOTE}/upload", tripwire)  # longer than any origin-wide mount: it wins
        with pytest.raises(RedivisConfigError, match=r"over http:// to 'storage\.example\.com'") as refused:
            run_job(hook, store, path, transport=transport)
    assert tripwire.seen == []
    assert is_final(refused.value)  # another try meets the same URL: the task fails at once
    assert "Check that the connection's host is Redivis" in str(refused.value)
    assert "/upload/resumable/" not in str(refused.value)  # the URL is a credential
    assert emu.list_uploads(TABLE) == []


def test_a_checkpoints_plain_http_url_is_refused_where_a_transfer_is_bound_to_it(
    redivis_emulator: RedivisEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    with (
        hook_for(redivis_emulator, monkeypatch) as hook,
        pytest.raises(RedivisConfigError, match="over http://"),
    ):
        hook.resumable_session(f"{REMOTE}/upload/resumable/abc", 10)
    with hook_for(redivis_emulator, monkeypatch) as hook:
        assert hook.resumable_session("http://127.0.0.1:9/upload/resumable/abc", 10).total == 10
        assert hook.resumable_session("https://storage.example.com/upload/resumable/abc", 10).total == 10
