"""Datasets, their versions and tables: the calls a recurring load makes around its uploads, and the wait
for a release.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import requests

from airflow_provider_redivis.engine.retry import is_refused_request, is_retryable_error
from airflow_provider_redivis.errors import (
    RedivisAPIError,
    RedivisConfigError,
    RedivisNotFoundError,
    ReleaseFailedError,
    WaitTimeoutError,
)
from airflow_provider_redivis.hooks.base import RedivisHookBase
from airflow_provider_redivis.references import encode_reference

if TYPE_CHECKING:
    from collections.abc import Mapping

MERGE_STRATEGIES = ("append", "replace")
#: list_versions pages; a server that keeps handing out page tokens must not keep us forever.
VERSIONS_PAGE_SIZE = 100
MAX_VERSION_PAGES = 1_000
#: Redivis's version ``status`` while a release is under way.
RELEASE_PENDING_STATUSES = frozenset({"queued", "running"})


class VersionsAPI(RedivisHookBase):
    """A dataset's versions (only the unreleased ``next`` takes uploads) and tables."""

    def get_dataset(self, dataset: str) -> dict[str, Any]:
        """The dataset.

        :param dataset: ``owner.dataset``.
        :returns: the dataset resource.
        """
        return self._call("GET", self._dataset_path(dataset))

    def list_versions(self, dataset: str) -> list[dict[str, Any]]:
        """Every version of the dataset (``GET {dataset}/versions``, page by page), in Redivis's order.

        :param dataset: ``owner.dataset``.
        :returns: the version resources (list definition: with ``index`` and ``releasedAt``).
        """
        path = f"{self._dataset_path(dataset)}/versions"
        versions: list[dict[str, Any]] = []
        token: str | None = None
        for _ in range(MAX_VERSION_PAGES):
            params: dict[str, Any] = {"maxResults": VERSIONS_PAGE_SIZE}
            if token:
                params["pageToken"] = token
            page = self._call("GET", path, params=params)
            versions.extend(v for v in page.get("results") or () if isinstance(v, dict))
            token = page.get("nextPageToken")
            if not token:
                return versions
        raise RedivisAPIError(
            200, f"more than {MAX_VERSION_PAGES} pages of versions", method="GET", path=path
        )

    def releases_after(self, dataset: str, after: int | None) -> ReleaseCheck:
        """The dataset's released versions past ``after``: one GET of the dataset, and a listing of its
        versions only when its current version is past ``after`` (or its answer does not say).

        :param dataset: ``owner.dataset``.
        :param after: a version ``index`` (zero-based ordinal); None: only look, list nothing.
        :returns: the dataset, its current released version's index, the newer released versions.
        """
        resource = self.get_dataset(dataset)
        current = _released_index(resource.get("version"))
        says = isinstance(resource.get("version"), dict) and "index" in resource["version"]
        if after is None or (says and (current is None or current <= after)):
            return ReleaseCheck(resource, current, ())
        released = sorted(
            (v for v in self.list_versions(dataset) if _released_index(v) is not None),
            key=lambda v: int(v["index"]),
        )
        if not says:
            current = max((int(v["index"]) for v in released), default=None)
        return ReleaseCheck(resource, current, tuple(v for v in released if int(v["index"]) > after))

    def create_next_version(self, dataset: str) -> dict[str, Any]:
        """Create the unreleased ``next`` version. Not idempotent: retried only on 429/503.

        :param dataset: ``owner.dataset``.
        :returns: the version resource.
        """
        return self._call("POST", f"{self._dataset_path(dataset)}/versions", retry_if=is_refused_request)

    def get_version(self, dataset: str, tag: str = "next") -> dict[str, Any]:
        """One version of the dataset.

        :param dataset: ``owner.dataset``.
        :param tag: ``next``, ``current`` or like ``v1_2``.
        :returns: the version resource.
        """
        if not isinstance(tag, str) or not tag.strip():
            raise RedivisConfigError(f"A version tag is 'next', 'current' or like 'v1_2', got {tag!r}.")
        return self._call("GET", f"{self._dataset_path(dataset)}/versions/{encode_reference(tag.strip())}")

    def get_next_version(self, dataset: str) -> dict[str, Any] | None:
        """The dataset's unreleased version, if it has one.

        :param dataset: ``owner.dataset``.
        :returns: the ``next`` version resource, or None (the dataset itself must exist).
        """
        if not self.get_dataset(dataset).get("nextVersion"):
            return None
        try:
            return self.get_version(dataset, "next")
        except RedivisNotFoundError:
            return None

    def release_version(self, dataset: str, release_notes: str | None = None) -> dict[str, Any]:
        """Release ``next``. Retried only on 429/503. It may finish later: :meth:`wait_for_release`.

        :param dataset: ``owner.dataset``.
        :param release_notes: the version's release notes.
        :returns: the version resource as the release started.
        """
        body = {"releaseNotes": release_notes} if release_notes is not None else {}
        return self._call(
            "POST",
            f"{self._dataset_path(dataset)}/versions/next/release",
            json_body=body,
            send_json=True,
            retry_if=is_refused_request,
        )

    def wait_for_release(
        self,
        dataset: str,
        version: Mapping[str, Any],
        *,
        poll_interval: float = 10.0,
        timeout: float = 3600.0,
    ) -> dict[str, Any]:
        """Poll a version being released until Redivis has released it. Transient errors keep it waiting.

        :param dataset: ``owner.dataset``.
        :param version: the version as :meth:`release_version` (or :meth:`get_version`) returned it.
        :param poll_interval: seconds between checks.
        :param timeout: seconds to wait in all.
        :returns: the released version.
        :raises ReleaseFailedError: Redivis ended the release ``failed``, with its ``releaseErrorMessage``.
        :raises WaitTimeoutError: still releasing at the deadline.
        """
        if poll_interval <= 0 or timeout <= 0:
            raise RedivisConfigError("poll_interval and timeout must be positive numbers of seconds.")
        deadline = time.monotonic() + timeout
        current = dict(version)
        while True:
            if current.get("status") == "failed":
                raise ReleaseFailedError(
                    f"Redivis could not release the next version of {dataset}: "
                    f"{current.get('releaseErrorMessage') or 'no releaseErrorMessage given'}. Fix what it names "
                    "(in the Redivis web app or with new uploads) and run this task again."
                )
            if current.get("isReleased") and current.get("status") not in RELEASE_PENDING_STATUSES:
                return current
            if time.monotonic() >= deadline:
                raise WaitTimeoutError(
                    f"The release of {dataset}'s next version was still {current.get('status')!r} after "
                    f"{timeout:.0f} s. It goes on in Redivis: run this task again to keep waiting, or raise "
                    "timeout."
                )
            time.sleep(poll_interval)
            try:
                current = self._version_being_released(dataset, current)
            except (RedivisAPIError, requests.RequestException) as exc:
                if not is_retryable_error(exc):
                    raise
                self.log.warning("Checking the release of %s failed, still waiting: %s", dataset, exc)

    def _version_being_released(self, dataset: str, version: Mapping[str, Any]) -> dict[str, Any]:
        """The version found again by its own tag; once released it is no longer ``next``."""
        tag = version.get("tag")
        if tag and tag != "next":
            return self.get_version(dataset, str(tag))
        try:
            return self.get_version(dataset, "next")
        except RedivisNotFoundError:
            current = self.get_version(dataset, "current")
            if version.get("uri") and current.get("uri") != version.get("uri"):
                raise
            return current

    def create_table(
        self, dataset: str, name: str, merge_strategy: str = "append", description: str | None = None
    ) -> dict[str, Any]:
        """Create a table in the dataset's ``next`` version. Not idempotent: retried only on 429/503.

        :param dataset: ``owner.dataset``.
        :param name: the table's name.
        :param merge_strategy: ``append`` keeps the rows a table inherits from the previous version (a daily
            full reload doubles the table); ``replace`` starts each version from the new uploads.
        :param description: the table's description.
        :returns: the table resource.
        """
        if not isinstance(name, str) or not name.strip():
            raise RedivisConfigError(f"A table name must be a non-empty string, got {name!r}.")
        if merge_strategy not in MERGE_STRATEGIES:
            raise RedivisConfigError(f"merge_strategy must be 'append' or 'replace', got {merge_strategy!r}.")
        body: dict[str, Any] = {"name": name, "uploadMergeStrategy": merge_strategy}
        if description is not None:
            body["description"] = description
        return self._call(
            "POST",
            f"{self._dataset_path(dataset)}/tables",
            json_body=body,
            send_json=True,
            retry_if=is_refused_request,
        )


@dataclass(frozen=True)
class ReleaseCheck:
    """One look at a dataset's releases (:meth:`VersionsAPI.releases_after`)."""

    dataset: dict[str, Any]
    #: The index of the dataset's current released version; None while nothing is released.
    current_index: int | None
    #: The released versions past the index asked about, oldest first (list definition).
    new_versions: tuple[dict[str, Any], ...]


def _released_index(version: object) -> int | None:
    """A version's ``index`` if Redivis says it is released (and not deleted), else None."""
    if not isinstance(version, dict) or not version.get("isReleased") or version.get("isDeleted"):
        return None
    index = version.get("index")
    return index if isinstance(index, int) and not isinstance(index, bool) else None
