"""Recurring loads: open the dataset's next version before the uploads, release it after them.

A recurring load is: create (or reuse) the unreleased ``next`` version, upload into its tables, wait
until Redivis has processed every upload, release. Only ``next`` accepts uploads, and a dataset has
at most one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import requests
from airflow.providers.common.compat.sdk import AirflowFailException, BaseOperator

from airflow_provider_redivis.errors import (
    RedivisAPIError,
    RedivisConfigError,
    RedivisConflictError,
    RedivisError,
    RedivisNotFoundError,
    is_final,
)
from airflow_provider_redivis.hooks.redivis import RedivisHook
from airflow_provider_redivis.hooks.versions import RELEASE_PENDING_STATUSES
from airflow_provider_redivis.references import is_template, validate_dataset_reference

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence


def summarize_version(version: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
    """The part of a version resource that goes to XCom."""
    summary = {key: version.get(key) for key in ("uri", "tag", "status", "isReleased")}
    summary.update(extra)
    return summary


def _fail_fast(fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Errors another try would meet again fail the task at once, with the message that says what to do."""
    try:
        return fn()
    except RedivisError as exc:
        if is_final(exc):
            raise AirflowFailException(str(exc)) from exc
        raise


class RedivisCreateNextVersionOperator(BaseOperator):
    """Create the dataset's unreleased ``next`` version, the one uploads go to.

    :param dataset: ``owner.dataset``. Templated.
    :param if_not_exists: when a next version exists already, return it (default); with False, fail.
        True suits a daily load whose re-run should reuse the version its first run opened.
    :param redivis_conn_id: the Redivis connection.

    Returns (XCom) ``{"uri", "tag", "status", "isReleased", "dataset", "created"}``.
    """

    template_fields: Sequence[str] = ("dataset",)
    ui_color = "#b6d7a8"

    def __init__(
        self,
        *,
        dataset: str,
        if_not_exists: bool = True,
        redivis_conn_id: str = RedivisHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.dataset = dataset
        self.if_not_exists = if_not_exists
        self.redivis_conn_id = redivis_conn_id
        if not is_template(dataset):
            validate_dataset_reference(dataset)

    def execute(self, context: Any) -> dict[str, Any]:
        return _fail_fast(self._execute)

    def _execute(self) -> dict[str, Any]:
        dataset = validate_dataset_reference(self.dataset)
        hook = RedivisHook(redivis_conn_id=self.redivis_conn_id)
        # Asked first, not looked up: Redivis refuses a second next version, so one request does on the
        # common path, and a refusal is when to look.
        try:
            version = hook.create_next_version(dataset)
        except RedivisAPIError as exc:
            # "An error if one exists already": 409, or 400 from a server that words it as a bad request.
            if not isinstance(exc, RedivisConflictError) and exc.status not in (400, 409):
                raise
            existing = _next_version(hook, dataset)
            if existing is None:
                raise
            return self._reuse(dataset, existing)
        except (requests.ConnectionError, requests.Timeout):
            # The create may have reached Redivis: look before anyone posts again.
            existing = _next_version(hook, dataset)
            if existing is None:
                raise
            self.log.info("The answer to creating the next version of %s was lost, but it exists", dataset)
            version = existing
        self.log.info("Created the next version of %s: %s", dataset, version.get("tag") or version.get("uri"))
        return summarize_version(version, dataset=dataset, created=True)

    def _reuse(self, dataset: str, version: dict[str, Any]) -> dict[str, Any]:
        if not self.if_not_exists:
            raise AirflowFailException(
                f"Dataset {dataset} already has an unreleased next version ({version.get('tag') or version.get('uri')}). "
                "Release it (RedivisReleaseVersionOperator) or delete it in Redivis first, or set if_not_exists=True "
                "to load into it."
            )
        self.log.info(
            "Dataset %s already has a next version (%s); if_not_exists=True reuses it",
            dataset,
            version.get("tag") or version.get("uri"),
        )
        return summarize_version(version, dataset=dataset, created=False)


class RedivisReleaseVersionOperator(BaseOperator):
    """Release the dataset's ``next`` version and wait until Redivis has finished releasing it.

    Redivis releases only a version whose ``canRelease`` is true: not while an upload in it is
    queued or running, nor while one has failed. That is checked first, and the task fails with
    what to do. A release that Redivis ends ``failed`` fails the task with its ``releaseErrorMessage``.
    A retried task whose earlier try already started the release waits for that release.

    :param dataset: ``owner.dataset``. Templated.
    :param release_notes: the version's release notes. Templated.
    :param wait_for_release: poll the version until the release has finished (default True).
    :param poll_interval: seconds between polls.
    :param timeout: seconds to wait for the release to finish.
    :param redivis_conn_id: the Redivis connection.

    Returns (XCom) ``{"uri", "tag", "status", "isReleased", "dataset"}``.
    """

    template_fields: Sequence[str] = ("dataset", "release_notes")
    ui_color = "#b6d7a8"

    def __init__(
        self,
        *,
        dataset: str,
        release_notes: str | None = None,
        wait_for_release: bool = True,
        poll_interval: float = 10.0,
        timeout: float = 3600.0,
        redivis_conn_id: str = RedivisHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.dataset = dataset
        self.release_notes = release_notes
        self.wait_for_release = wait_for_release
        self.poll_interval = poll_interval
        self.timeout = timeout
        self.redivis_conn_id = redivis_conn_id
        if poll_interval <= 0 or timeout <= 0:
            raise RedivisConfigError("poll_interval and timeout must be positive numbers of seconds.")
        if not is_template(dataset):
            validate_dataset_reference(dataset)

    def execute(self, context: Any) -> dict[str, Any]:
        return _fail_fast(self._execute)

    def _execute(self) -> dict[str, Any]:
        dataset = validate_dataset_reference(self.dataset)
        hook = RedivisHook(redivis_conn_id=self.redivis_conn_id)
        version = self._release(hook, dataset)
        if not self.wait_for_release:
            return summarize_version(version, dataset=dataset)
        released = hook.wait_for_release(
            dataset, version, poll_interval=self.poll_interval, timeout=self.timeout
        )
        self.log.info("Released %s as %s", dataset, released.get("tag") or released.get("uri"))
        return summarize_version(released, dataset=dataset)

    def _release(self, hook: RedivisHook, dataset: str) -> dict[str, Any]:
        """Ask for the release; only a refusal makes the version worth reading, to say why or to wait."""
        try:
            version = hook.release_version(dataset, release_notes=self.release_notes)
        except RedivisNotFoundError as exc:
            raise _no_next_version(dataset, exc) from exc
        except RedivisAPIError as exc:
            if exc.status in (401, 403) or not 400 <= exc.status < 500:
                raise
            found = _next_version(hook, dataset)
            if found is None:
                raise _no_next_version(dataset, exc) from exc
            if found.get("status") in RELEASE_PENDING_STATUSES:
                # An earlier try (or someone else) started this release: wait for it rather than start another.
                self.log.info(
                    "The release of %s's next version is already %s; waiting for it",
                    dataset,
                    found["status"],
                )
                return found
            if not found.get("canRelease"):
                raise RedivisError(_cannot_release_message(dataset, found)) from exc
            raise
        except (requests.ConnectionError, requests.Timeout):
            # The release may have started: look before anyone posts again.
            version = hook.get_version(dataset, "next")
            if version.get("status") not in RELEASE_PENDING_STATUSES and not version.get("isReleased"):
                raise
            self.log.info("The answer to the release of %s was lost, but the release has started", dataset)
        self.log.info(
            "Releasing the next version of %s (%s)", dataset, version.get("tag") or version.get("uri")
        )
        return version


def _next_version(hook: RedivisHook, dataset: str) -> dict[str, Any] | None:
    """The dataset's unreleased version, or None when a look finds none (or no dataset)."""
    try:
        return hook.get_version(dataset, "next")
    except RedivisNotFoundError:
        return None


def _no_next_version(dataset: str, exc: RedivisAPIError) -> AirflowFailException:
    return AirflowFailException(
        f"Dataset {dataset} has no unreleased next version to release ({exc.message}). Create one with "
        "RedivisCreateNextVersionOperator before the uploads; if an earlier run released it already, there "
        "is nothing left to do."
    )


def _cannot_release_message(dataset: str, version: Mapping[str, Any]) -> str:
    return (
        f"Redivis will not release the next version of {dataset} yet (canRelease is false"
        + (f"; version status {version.get('status')!r}" if version.get("status") else "")
        + "). This happens while an upload in it is still queued or running, or after one has failed: wait "
        "for the uploads (RedivisUploadSensor), delete or replace any failed upload, then run this task again."
    )
