"""The session URL, sealed for the checkpoint stores. Plain Python (``cryptography`` comes with Airflow).

A session URL lets whoever holds it write that one upload for 24 hours. Airflow shows what the stores
hold to more people than may use the Redivis token: Airflow 3.3's task state store is readable over
the REST API by anyone who may read the DAG's task instances, and below 3.3 any user who may read
Variables gets their values through the REST API unmasked. So the stores get the URL encrypted
(Fernet) with a key derived from the connection's token: what they show is useless to someone who
cannot read the connection, and a worker that can upload can always open it. Airflow's own Fernet key
is not used: it may be unset (values then stored in clear), and Airflow 3 workers do not have it.

The key is PBKDF2-HMAC-SHA256 of the token with a random salt per session URL, stored beside the
ciphertext (``pbkdf2-sha256$<iterations>$<salt>$<fernet token>``): each checkpoint has a key of its own,
and guessing a token from a stored value costs the iterations per guess. One derivation takes about
40 ms and happens once per checkpoint and try (the key is kept for the checkpoint's later saves).
Values sealed before (a bare Fernet token under an unsalted SHA-256 of the token) are still opened.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os

from cryptography.fernet import Fernet, InvalidToken

from airflow_provider_redivis.errors import RedivisError

_CONTEXT = b"airflow-provider-redivis/checkpoint-session-url/v1\x00"
_SCHEME = "pbkdf2-sha256"
#: About 40 ms on a 2-core worker; stored with each value, so it can rise without breaking old ones.
ITERATIONS = 100_000
_SALT_BYTES = 16


class SealBrokenError(RedivisError):
    """A sealed URL that this key cannot open (the token changed, or the value was altered)."""


class SessionUrlSeal:
    """Encrypts and authenticates a session URL under a key derived from the Redivis token."""

    def __init__(self, token: str) -> None:
        if not token:
            raise ValueError("a seal needs the connection's token")
        self._token = token.encode()
        #: Derived keys by (iterations, salt), and the salt of each URL sealed or opened: one derivation each.
        self._keys: dict[tuple[int, bytes], Fernet] = {}
        self._salts: dict[str, bytes] = {}

    def _fernet(self, iterations: int, salt: bytes) -> Fernet:
        if (iterations, salt) not in self._keys:
            key = hashlib.pbkdf2_hmac("sha256", self._token, _CONTEXT + salt, iterations)
            self._keys[iterations, salt] = Fernet(base64.urlsafe_b64encode(key))
        return self._keys[iterations, salt]

    def seal(self, url: str) -> str:
        salt = self._salts.setdefault(url, os.urandom(_SALT_BYTES))
        sealed = self._fernet(ITERATIONS, salt).encrypt(url.encode()).decode("ascii")
        return f"{_SCHEME}${ITERATIONS}${base64.urlsafe_b64encode(salt).decode('ascii')}${sealed}"

    def open(self, sealed: str) -> str:
        try:
            if "$" not in sealed:  # sealed by a version before the salted KDF
                legacy = base64.urlsafe_b64encode(hashlib.sha256(_CONTEXT + self._token).digest())
                return Fernet(legacy).decrypt(sealed.encode("ascii")).decode()
            scheme, iterations, salt_text, token = sealed.split("$")
            rounds = int(iterations)
            if (
                scheme != _SCHEME or not 1 <= rounds <= 10 * ITERATIONS
            ):  # a stored value sets no work without end
                raise ValueError(scheme)
            salt = base64.urlsafe_b64decode(salt_text)
            url = self._fernet(rounds, salt).decrypt(token.encode("ascii")).decode()
        except (InvalidToken, UnicodeError, ValueError, binascii.Error):
            raise SealBrokenError(
                "the sealed session URL cannot be opened with this connection's token (was the token changed?)"
            ) from None
        self._salts.setdefault(url, salt)  # later saves of this checkpoint keep its salt and key
        return url

    def __repr__(self) -> str:
        return "SessionUrlSeal(<key from the connection's token>)"
