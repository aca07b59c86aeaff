"""The session URL, sealed for the checkpoint stores. Plain Python (``cryptography`` comes with Airflow).

A session URL lets whoever holds it write that one upload for 24 hours. Airflow shows what the stores
hold to more people than may use the Redivis token: Airflow 3.3's task state store is readable over
the REST API by anyone who may read the DAG's task instances, and below 3.3 any user who may read
Variables gets their values through the REST API unmasked. So the stores get the URL encrypted
(Fernet) with a key derived from the connection's token: what they show is useless to someone who
cannot read the connection, and a worker that can upload can always open it. Airflow's own Fernet key
is not used: it may be unset (values then stored in clear), and Airflow 3 workers do not have it.
"""

from __future__ import annotations

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken

from airflow_provider_redivis.errors import RedivisError

_CONTEXT = b"airflow-provider-redivis/checkpoint-session-url/v1\x00"


class SealBrokenError(RedivisError):
    """A sealed URL that this key cannot open (the token changed, or the value was altered)."""


class SessionUrlSeal:
    """Encrypts and authenticates a session URL under a key derived from the Redivis token."""

    def __init__(self, token: str) -> None:
        if not token:
            raise ValueError("a seal needs the connection's token")
        key = base64.urlsafe_b64encode(hashlib.sha256(_CONTEXT + token.encode()).digest())
        self._fernet = Fernet(key)

    def seal(self, url: str) -> str:
        return self._fernet.encrypt(url.encode()).decode("ascii")

    def open(self, sealed: str) -> str:
        try:
            return self._fernet.decrypt(sealed.encode("ascii")).decode()
        except (InvalidToken, UnicodeError, ValueError):
            raise SealBrokenError(
                "the sealed session URL cannot be opened with this connection's token (was the token changed?)"
            ) from None

    def __repr__(self) -> str:
        return "SessionUrlSeal(<key from the connection's token>)"
