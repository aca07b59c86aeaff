"""What the two distributions of this repository ship: the provider's wheel carries neither the
emulator nor the demo, and the emulator's wheel carries only the emulator, with its entry points.

Built from a copy of the checkout (``pip wheel`` builds in the source tree), a few seconds each.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


def build_wheel(source: Path, out: Path) -> list[str]:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-q",
            "--disable-pip-version-check",
            str(source),
            "-w",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (wheel,) = out.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        return archive.namelist()


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The checkout's files that go into a build (the emulator and dev/ included, to prove they stay out)."""
    copy = tmp_path_factory.mktemp("checkout")
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build", "dist")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, copy / name)
    for name in ("airflow_provider_redivis", "emulator", "dev"):
        shutil.copytree(REPO / name, copy / name, ignore=ignore)
    return copy


def test_the_provider_wheel_has_no_emulator_and_no_demo(checkout: Path, tmp_path: Path) -> None:
    names = build_wheel(checkout, tmp_path / "provider")
    packages = {name.split("/", 1)[0] for name in names}
    assert packages == {"airflow_provider_redivis", "airflow_provider_redivis-0.1.0.dist-info"}, packages
    assert not [n for n in names if "emulator" in n or "demo" in n]
    assert "airflow_provider_redivis/py.typed" in names


def test_the_emulator_wheel_has_the_emulator_only(checkout: Path, tmp_path: Path) -> None:
    names = build_wheel(checkout / "emulator", tmp_path / "emulator")
    packages = {name.split("/", 1)[0] for name in names}
    assert packages == {"redivis_emulator", "redivis_emulator-0.1.0.dist-info"}, packages
    assert {
        "redivis_emulator/__main__.py",
        "redivis_emulator/pytest_plugin.py",
        "redivis_emulator/py.typed",
    } <= set(names)
    with zipfile.ZipFile(next((tmp_path / "emulator").glob("*.whl"))) as archive:
        entry_points = archive.read("redivis_emulator-0.1.0.dist-info/entry_points.txt").decode()
        metadata = archive.read("redivis_emulator-0.1.0.dist-info/METADATA").decode()
    assert "redivis-emulator = redivis_emulator.__main__:main" in entry_points
    assert "redivis_emulator.pytest_plugin = redivis_emulator.pytest_plugin" in entry_points
    requirements = [line for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    assert requirements == ["Requires-Dist: google-crc32c>=1.5"]


def test_neither_package_imports_the_other() -> None:
    for package, other in (
        ("airflow_provider_redivis", "redivis_emulator"),
        ("emulator/redivis_emulator", "airflow_provider_redivis"),
    ):
        offenders = [
            str(path.relative_to(REPO))
            for path in (REPO / package).rglob("*.py")
            if any(
                line.lstrip().startswith(("import ", "from ")) and other in line
                for line in path.read_text().splitlines()
            )
        ]
        assert offenders == [], f"{package} imports {other}: {offenders}"
