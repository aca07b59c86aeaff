"""Checksums of the source, computed as its bytes go out. Plain Python, no Airflow.

Cloud Storage reports a stored object's crc32c and md5 (base64 of the raw digest; crc32c big-endian).
crc32c is the default: Google's C implementation (``google-crc32c``) costs a fraction of md5's CPU,
so hashing no longer competes with the transfer. md5 is computed only when the caller asks for it
or the server reports nothing else (see :func:`airflow_provider_redivis.upload_protocol.verify_stored`).
"""

from __future__ import annotations

import base64
import hashlib
import logging
from typing import IO, TYPE_CHECKING, Literal

import google_crc32c

from airflow_provider_redivis.errors import RedivisConfigError, SourceChangedError

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

log = logging.getLogger(__name__)

Algorithm = Literal["crc32c", "md5"]
#: The ``checksum`` option, as google-resumable-media names it: None checks the size only.
CHECKSUM_CHOICES: tuple[str | None, ...] = ("auto", "crc32c", "md5", None)
#: How much of the source is read at a time when hashing a range locally.
HASH_READ_SIZE = 8 * 1024 * 1024

_warned_no_c_extension = False


def crc32c_is_fast() -> bool:
    """True when google-crc32c runs its C extension (its pure-Python fallback is ~100x slower)."""
    return google_crc32c.implementation == "c"


def validate_checksum(option: object) -> str | None:
    if option not in CHECKSUM_CHOICES or isinstance(option, bool):
        raise RedivisConfigError(
            f"checksum must be one of 'auto', 'crc32c', 'md5' or None, got {option!r}. 'auto' (the default) "
            "uses crc32c; None checks only the size and accepts a server that reports no hash."
        )
    return option


def algorithms_for(option: str | None) -> tuple[Algorithm, ...]:
    """What to compute while streaming for a ``checksum`` option (md5 may still be added later)."""
    global _warned_no_c_extension
    option = validate_checksum(option)
    if option is None:
        return ()
    if option == "auto":
        if crc32c_is_fast():
            return ("crc32c",)
        if not _warned_no_c_extension:
            _warned_no_c_extension = True
            log.warning("google-crc32c has no C extension here; checking uploads with md5 instead")
        return ("md5",)
    if option == "crc32c":
        return ("crc32c",)
    # md5 asked for: crc32c costs a sixth of md5 with the C extension, so both are compared where reported.
    return ("md5", "crc32c") if crc32c_is_fast() else ("md5",)


def _new_hasher(algorithm: Algorithm) -> google_crc32c.Checksum | hashlib._Hash:
    if algorithm == "crc32c":
        return google_crc32c.Checksum()
    return hashlib.md5()  # noqa: S324 - Cloud Storage's integrity checksum, not security


class SourceChecksums:
    """Each byte of the source hashed once, in order, however often a range is sent again."""

    def __init__(self, algorithms: Iterable[Algorithm]) -> None:
        self._hashers = {name: _new_hasher(name) for name in algorithms}
        self.position = 0

    @property
    def algorithms(self) -> tuple[Algorithm, ...]:
        return tuple(self._hashers)

    def update(self, offset: int, data: bytes) -> None:
        if offset > self.position:
            raise ValueError(f"cannot hash from {offset}: only {self.position} bytes hashed so far")
        skip = self.position - offset
        if skip < len(data):
            piece = data[skip:] if skip else data
            for hasher in self._hashers.values():
                hasher.update(piece)
            self.position = offset + len(data)

    def hash_range(self, reader: IO[bytes], upto: int) -> None:
        """Read the source from where hashing stands up to ``upto`` (bytes an earlier try or request sent)."""
        if self.position >= upto:
            return
        reader.seek(self.position)
        while self.position < upto:
            piece = reader.read(min(HASH_READ_SIZE, upto - self.position))
            if not piece:
                raise SourceChangedError(
                    f"The source ended at byte {self.position}, before the {upto} bytes it had when the upload "
                    "started: it changed while being read. Nothing was created; run the task again once the "
                    "file is complete."
                )
            self.update(self.position, piece)

    def digests(self) -> dict[str, str]:
        """Base64 of each digest, the way Cloud Storage reports them."""
        return {
            name: base64.b64encode(hasher.digest()).decode("ascii") for name, hasher in self._hashers.items()
        }


def md5_of(reader: IO[bytes], size: int) -> str:
    """md5 of the first ``size`` bytes, read locally: for a server that reports md5 and nothing else."""
    checksums = SourceChecksums(("md5",))
    checksums.hash_range(reader, size)
    return checksums.digests()["md5"]


def goog_hash_header(digests: Mapping[str, str]) -> str:
    """``x-goog-hash: crc32c=…,md5=…``: Cloud Storage refuses the final request if its bytes differ."""
    return ",".join(f"{name}={value}" for name, value in sorted(digests.items()))


def parse_goog_hash(value: str | None) -> dict[str, str]:
    """``crc32c=AAAAAA==,md5=…`` (one header or several joined by commas) → ``{"crc32c": …, "md5": …}``."""
    found: dict[str, str] = {}
    for part in (value or "").split(","):
        name, sep, digest = part.strip().partition("=")
        if sep and name.strip().lower() in ("crc32c", "md5") and digest.strip():
            found[name.strip().lower()] = digest.strip()
    return found
