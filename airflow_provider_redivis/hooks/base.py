"""The ground floor of :class:`~airflow_provider_redivis.hooks.redivis.RedivisHook`: one connection, one
authenticated session, one retried request.

The API calls and the waits live in ``hooks/redivis.py``; the connection's rules in ``connection.py``,
the token's origin rule in ``auth.py``, the reading of error answers in ``api_errors.py`` and the token's
request budget in ``request_budget.py``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import requests
import tenacity
from airflow.providers.common.compat.sdk import BaseHook

from airflow_provider_redivis.engine.request_budget import RequestBudget, budget_for
from airflow_provider_redivis.engine.retry import RetryPolicy, is_retryable_error, parse_retry_after
from airflow_provider_redivis.errors import (
    RedivisAPIError,
    RedivisConfigError,
    RedivisError,
    describe_failure,
)
from airflow_provider_redivis.hooks.api_errors import api_error_from_response, one_line, scrub
from airflow_provider_redivis.hooks.auth import OriginBearerAuth, RedivisSession
from airflow_provider_redivis.hooks.connection import (
    RedivisConnectionSettings,
    unknown_extras,
    user_agent,
)
from airflow_provider_redivis.provider_info import CONN_FIELDS
from airflow_provider_redivis.references import (
    encode_reference,
    validate_dataset_reference,
    validate_table_reference,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Mapping

#: Redivis's warnings ride in this header (URL-encoded); each is logged once per hook.
WARNING_HEADER = "X-REDIVIS-WARNING"


def _timeout_tuple(timeout: float | tuple[float, float]) -> tuple[float, float]:
    pair = (timeout, timeout) if isinstance(timeout, (int, float)) else tuple(timeout)
    if len(pair) != 2 or any(isinstance(t, bool) or not isinstance(t, (int, float)) or t <= 0 for t in pair):
        raise RedivisConfigError(
            f"timeout must be a positive number of seconds or a (connect, read) pair, got {timeout!r}."
        )
    return float(pair[0]), float(pair[1])


class RedivisHookBase(BaseHook):
    """One Airflow connection as an authenticated ``requests`` session, and one retried request.

    :param redivis_conn_id: the Airflow connection (type ``redivis``; token in the password).
    :param timeout: seconds, or a (connect, read) pair, overriding the connection's extras.
    :param retry_policy: replaces the policy built from the connection's extras.
    :param retry_args: ``tenacity.Retrying`` keyword arguments laid over the policy's (for example
        ``{"stop": tenacity.stop_after_attempt(1)}`` to turn retries off).
    :param max_retry_seconds: a cap on the connection's ``max_retry_seconds`` (a status check that must
        not outlast its poll interval, say); the connection's own value wins when it is lower.
    """

    conn_name_attr = "redivis_conn_id"
    default_conn_name = "redivis_default"
    conn_type = "redivis"
    hook_name = "Redivis"

    def __init__(
        self,
        redivis_conn_id: str = default_conn_name,
        *,
        timeout: float | tuple[float, float] | None = None,
        retry_policy: RetryPolicy | None = None,
        retry_args: Mapping[str, Any] | None = None,
        max_retry_seconds: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if max_retry_seconds is not None and not max_retry_seconds > 0:
            raise RedivisConfigError(
                f"max_retry_seconds must be a positive number, got {max_retry_seconds!r}."
            )
        self.redivis_conn_id = redivis_conn_id
        self._timeout_override = _timeout_tuple(timeout) if timeout is not None else None
        self._retry_policy_override = retry_policy
        self._retry_args_override = dict(retry_args or {})
        self._max_retry_seconds = max_retry_seconds
        self._settings: RedivisConnectionSettings | None = None
        self._session: RedivisSession | None = None
        self._warnings_seen: set[str] = set()
        #: ``time.monotonic()`` past which a request stops waiting for its turn in the request budget
        #: (a wait's own deadline); None: it waits as long as the task may run.
        self.budget_deadline: float | None = None
        #: Tables a wait by name has seen to exist: a 404 for the upload then means "not yet".
        self._tables_seen: set[str] = set()

    def __repr__(self) -> str:
        where = f", api_url={self._settings.api_url!r}" if self._settings else ""
        return f"{type(self).__name__}(redivis_conn_id={self.redivis_conn_id!r}{where})"

    # -- connection, session, policy -----------------------------------------------------------

    @property
    def settings(self) -> RedivisConnectionSettings:
        """Read from the Airflow connection on first use, so building the hook touches nothing."""
        if self._settings is None:
            conn = self.get_connection(self.redivis_conn_id)
            self._settings = RedivisConnectionSettings.from_connection(conn)
            if unknown := unknown_extras(conn.extra_dejson or {}):
                self.log.warning(
                    "Connection %r: ignoring extras %s; this provider reads %s",
                    self.redivis_conn_id,
                    unknown,
                    sorted(CONN_FIELDS),
                )
        return self._settings

    @property
    def api_url(self) -> str:
        """``{base URL}/api/v1`` of the connection."""
        return self.settings.api_url

    @property
    def timeout(self) -> tuple[float, float]:
        """(connect, read) seconds for every request."""
        if self._timeout_override is not None:
            return self._timeout_override
        return self.settings.connect_timeout, self.settings.read_timeout

    @property
    def retry_policy(self) -> RetryPolicy:
        """How every request of this hook is retried: the connection's budget, or the one given."""
        policy = self._retry_policy_override or RetryPolicy(
            max_attempts=self.settings.max_attempts, max_total_seconds=self.settings.max_retry_seconds
        )
        if self._max_retry_seconds is not None and self._max_retry_seconds < policy.max_total_seconds:
            return replace(policy, max_total_seconds=self._max_retry_seconds)
        return policy

    @property
    def session(self) -> requests.Session:
        """The one ``requests`` session: the token goes only to the API's origin, redirects included."""
        if self._session is None:
            settings = self.settings
            session = RedivisSession()
            session.auth = OriginBearerAuth(settings.token, settings.api_url)
            session.verify = settings.verify
            session.headers["User-Agent"] = user_agent()
            session.headers["Accept"] = "application/json"
            self._session = session
        return self._session

    @property
    def request_budget(self) -> RequestBudget:
        """This process's budget for the connection's token, shared by every hook on it."""
        settings = self.settings
        return budget_for(settings.api_url, settings.token, settings.rate_limit_interval)

    def get_conn(self) -> requests.Session:
        """:returns: the authenticated session (Airflow's name for it)."""
        return self.session

    def close(self) -> None:
        """Close the pooled connections; the hook opens a new session if used again."""
        if self._session is not None:
            self._session.close()
            self._session = None

    def __enter__(self) -> RedivisHookBase:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- one request, retried ------------------------------------------------------------------

    def _retrying(
        self, retry_if: Callable[[BaseException], bool], what: str, overrides: Mapping[str, Any] | None = None
    ) -> tenacity.Retrying:
        def log_it(state: tenacity.RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            wait = state.next_action.sleep if state.next_action else 0.0
            self.log.warning(
                "Redivis API %s failed (%s) on attempt %d; retrying in %.2f s",
                what,
                describe_failure(exc),
                state.attempt_number,
                wait,
            )

        args = self.retry_policy.retry_args(retry_if, before_sleep=log_it)
        args.update(self._retry_args_override)
        args.update(overrides or {})
        return tenacity.Retrying(**args)

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        send_json: bool = False,
        retry_if: Callable[[BaseException], bool] = is_retryable_error,
        ok_after_retry: Collection[int] = (),
        retry_overrides: Mapping[str, Any] | None = None,
    ) -> requests.Response:
        """Send ``method`` to ``{api_url}{path}`` under the retry policy; raise RedivisAPIError on >= 400.

        ``ok_after_retry``: statuses that mean success when an earlier attempt may have got through
        (a DELETE whose answer was lost finds the upload gone).
        """
        url = f"{self.api_url}{path}"
        timeout, verify, session = self.timeout, self.settings.verify, self.session
        secrets = (self.settings.token,)
        budget = self.request_budget
        attempts = 0

        def attempt() -> requests.Response:
            nonlocal attempts
            attempts += 1
            while True:
                budget.wait_for_turn(deadline=self.budget_deadline, log=self.log.info)
                self.log.debug("Redivis API %s %s", method, path)
                try:
                    response = session.request(
                        method,
                        url,
                        params=params,
                        json=json_body if send_json else None,
                        timeout=timeout,
                        verify=verify,
                    )
                except BaseException:
                    budget.answered(None)
                    raise
                budget.answered(response.headers)
                if response.status_code != 429:
                    break
                # Refused before it was acted on: a wait for the budget, sent again, never a failure.
                wait = budget.refused(
                    parse_retry_after(
                        response.headers.get("Retry-After"), server_date=response.headers.get("Date")
                    )
                )
                response.close()
                self.log.info(
                    "Redivis answered 429 (too many requests): waiting %.1f s for the token's request budget, "
                    "then sending %s %s again",
                    wait,
                    method,
                    path,
                )
            self._note_warning(response)
            if response.status_code >= 400 and not (attempts > 1 and response.status_code in ok_after_retry):
                error = api_error_from_response(response, method=method, path=path, secrets=secrets)
                response.close()
                raise error
            return response

        return self._retrying(retry_if, f"{method} {path}", retry_overrides)(attempt)

    def _note_warning(self, response: requests.Response) -> None:
        warning = response.headers.get(WARNING_HEADER)
        if warning and warning not in self._warnings_seen:
            self._warnings_seen.add(warning)
            self.log.warning("Redivis: %s", one_line(unquote(warning)))

    def _json(self, response: requests.Response, *, method: str, path: str) -> dict[str, Any]:
        if not response.content:
            return {}
        try:
            body = response.json()
        except ValueError:
            raise RedivisAPIError(
                response.status_code,
                f"the answer is not JSON: {scrub(one_line(response.text, 200), (self.settings.token,))}",
                method=method,
                path=path,
                hint=f"Check that the connection's host points at Redivis (the API is at {self.api_url})",
            ) from None
        if not isinstance(body, dict):
            raise RedivisAPIError(
                response.status_code,
                f"expected a JSON object, got {type(body).__name__}",
                method=method,
                path=path,
            )
        return body

    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        return self._json(self._request(method, path, **kwargs), method=method, path=path)

    # -- paths -------------------------------------------------------------------------------

    def _uri_path(self, uri: str) -> str:
        """A resource ``uri`` as the API returned it (``/tables/…/uploads/789``), relative to the API URL."""
        if isinstance(uri, str) and uri.startswith(self.api_url + "/"):
            uri = uri[len(self.api_url) :]
        if not isinstance(uri, str) or not uri.startswith("/") or uri.startswith("//") or "://" in uri:
            raise RedivisConfigError(
                f"Expected a resource uri as Redivis returns it, like '/tables/owner.dataset:3.table:7/"
                f"uploads/789', got {uri!r}."
            )
        return uri

    @staticmethod
    def _table_path(table: str) -> str:
        return f"/tables/{encode_reference(validate_table_reference(table))}"

    @staticmethod
    def _dataset_path(dataset: str) -> str:
        return f"/datasets/{encode_reference(validate_dataset_reference(dataset))}"

    @staticmethod
    def _check_upload_name(name: object) -> str:
        """The hook passes any name on, as Redivis judges it; the operators' stricter rule is
        :func:`~airflow_provider_redivis.engine.options.validate_upload_name`, checked before anything is sent."""
        if not isinstance(name, str) or not name.strip():
            raise RedivisConfigError(f"An upload name must be a non-empty string, got {name!r}.")
        return name

    @classmethod
    def _upload_segment(cls, name: str) -> str:
        # API rule: an upload is addressed by its name with '.' replaced by '_'.
        return encode_reference(cls._check_upload_name(name).replace(".", "_"))

    # -- Airflow's connection test ----------------------------------------------------

    def test_connection(self) -> tuple[bool, str]:
        """``GET /users/me``: cheap, and fails without a valid token. Never raises.

        :returns: (True, "Connected to … as …") or (False, what went wrong), for Airflow's Test button.
        """
        try:
            me = self._call("GET", "/users/me", retry_overrides={"stop": tenacity.stop_after_attempt(2)})
        except RedivisError as exc:
            return False, str(exc)
        except requests.RequestException as exc:
            secrets = (self._settings.token,) if self._settings else ()
            return False, scrub(
                f"Could not reach {self.api_url}: {type(exc).__name__}: {one_line(str(exc), 300)}", secrets
            )
        except Exception as exc:  # the UI wants (False, message), whatever happened
            return False, f"{type(exc).__name__}: {exc}"
        who = me.get("name") or me.get("userName") or me.get("email")
        return True, f"Connected to {self.api_url}" + (f" as {who}" if who else "") + "."
