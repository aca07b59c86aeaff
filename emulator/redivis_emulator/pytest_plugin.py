"""The ``redivis_emulator`` pytest fixture.

Installing this distribution enables it: its ``pytest11`` entry point (named like this module, so
that ``-p redivis_emulator.pytest_plugin`` or ``pytest_plugins = ["redivis_emulator.pytest_plugin"]``
find it loaded already instead of registering it twice). ``-p no:redivis_emulator.pytest_plugin``
turns it off.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from redivis_emulator.server import RedivisEmulator

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

TEST_TABLE = "test_owner.test_dataset.test_table"
TEST_TOKEN = "test-token"  # noqa: S105 - the emulator's documented test token


@pytest.fixture
def redivis_emulator(tmp_path: Path) -> Iterator[RedivisEmulator]:
    """A running emulator with one table (``test_owner.test_dataset.test_table``), token ``test-token``."""
    with RedivisEmulator(
        tokens=[TEST_TOKEN], tables=[TEST_TABLE], data_dir=tmp_path / "redivis-emulator"
    ) as emulator:
        yield emulator
