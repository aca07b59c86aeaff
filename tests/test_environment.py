"""The provider's tests run on the HTTP stack a user's Airflow has: genuine urllib3 under requests.

The official client's niquests installs urllib3-future under the import name ``urllib3``; in the same
environment every ``requests`` call would run on it. dev/setup-venvs keeps that client in an environment of
its own.
"""

from __future__ import annotations

import importlib.metadata

import urllib3


def test_urllib3_is_the_genuine_distribution() -> None:
    providers = importlib.metadata.packages_distributions().get("urllib3", [])
    assert providers == ["urllib3"], f"the module urllib3 comes from {providers}"
    assert urllib3.__version__ == importlib.metadata.version("urllib3")


def test_neither_the_official_client_nor_niquests_is_installed_here() -> None:
    installed = {dist.metadata["Name"].lower() for dist in importlib.metadata.distributions()}
    assert not installed & {"redivis", "niquests", "urllib3-future"}
