"""Checksums of the source, computed as its bytes go out. Plain Python, no Airflow.

Cloud Storage reports a stored object's crc32c and md5 (base64 of the raw digest; crc32c big-endian).
crc32c is the default: Google's C implementation (``google-crc32c``) costs a fraction of md5's CPU,
so hashing no longer competes with the transfer. md5 is computed only when the caller asks for it
or the server reports nothing else (see :func:`airflow_provider_redivis.engine.protocol.verify_stored`).
"""

from __future__ import annotations

import base64
import hashlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

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


#: CRC-32C (Castagnoli), reflected: the polynomial Cloud Storage's crc32c uses.
_CRC32C_POLY = 0x82F63B78

#: Reads ``length`` bytes of the source from ``offset`` (fewer only at its end).
ReadAt = Callable[[int, int], bytes]


def source_ended(position: int, expected: int) -> SourceChangedError:
    return SourceChangedError(
        f"The source ended at byte {position}, before the {expected} bytes it had when the upload started: it "
        "changed while being read. Nothing was created; run the task again once the file is complete."
    )


def _gf2_times(matrix: list[int], vector: int) -> int:
    result, row = 0, 0
    while vector:
        if vector & 1:
            result ^= matrix[row]
        vector >>= 1
        row += 1
    return result


def _gf2_square(matrix: list[int]) -> list[int]:
    return [_gf2_times(matrix, matrix[n]) for n in range(32)]


def crc32c_combine(crc1: int, crc2: int, length2: int) -> int:
    """crc32c of A+B from crc32c(A), crc32c(B) and len(B): B can be hashed apart from A, even before it.

    The classic method: appending ``length2`` zero bytes to A is a linear map over GF(2), applied by
    squaring the one-zero-bit operator (log2(length2) 32x32 products).
    """
    if length2 <= 0:
        return crc1
    odd = [_CRC32C_POLY] + [1 << n for n in range(31)]  # one zero bit
    even = _gf2_square(odd)  # two zero bits
    odd = _gf2_square(even)  # four zero bits
    while True:
        even = _gf2_square(odd)  # first pass: one zero byte
        if length2 & 1:
            crc1 = _gf2_times(even, crc1)
        length2 >>= 1
        if not length2:
            break
        odd = _gf2_square(even)
        if length2 & 1:
            crc1 = _gf2_times(odd, crc1)
        length2 >>= 1
        if not length2:
            break
    return crc1 ^ crc2


class SourceChecksums:
    """Each byte of the source hashed once, in order, however often a range is sent again."""

    def __init__(self, algorithms: Iterable[Algorithm]) -> None:
        names = tuple(algorithms)
        self._crc32c: int | None = 0 if "crc32c" in names else None
        self._md5 = hashlib.md5() if "md5" in names else None  # noqa: S324 - Cloud Storage's checksum
        self.algorithms: tuple[Algorithm, ...] = names
        self.position = 0

    @property
    def crc32c_only(self) -> bool:
        """Only crc32c, which :meth:`append_crc32c` can extend with a range hashed apart."""
        return self.algorithms == ("crc32c",)

    def update(self, offset: int, data: bytes) -> None:
        if offset > self.position:
            raise ValueError(f"cannot hash from {offset}: only {self.position} bytes hashed so far")
        skip = self.position - offset
        if skip < len(data):
            piece = data[skip:] if skip else data
            if self._crc32c is not None:
                self._crc32c = google_crc32c.extend(self._crc32c, piece)
            if self._md5 is not None:
                self._md5.update(piece)
            self.position = offset + len(data)

    def append_crc32c(self, crc: int, length: int) -> None:
        """The next ``length`` bytes, hashed apart (crc32c only): as if :meth:`update` had seen them."""
        if not self.crc32c_only or self._crc32c is None:
            raise ValueError("only a crc32c-only checksum can take a range hashed apart")
        self._crc32c = crc32c_combine(self._crc32c, crc, length)
        self.position += length

    def hash_range(self, read_at: ReadAt, upto: int) -> None:
        """Read the source from where hashing stands up to ``upto`` (bytes an earlier try or request sent)."""
        while self.position < upto:
            piece = read_at(self.position, min(HASH_READ_SIZE, upto - self.position))
            if not piece:
                raise source_ended(self.position, upto)
            self.update(self.position, piece)

    def digests(self) -> dict[str, str]:
        """Base64 of each digest, the way Cloud Storage reports them."""
        found: dict[str, str] = {}
        if self._crc32c is not None:
            found["crc32c"] = base64.b64encode(self._crc32c.to_bytes(4, "big")).decode("ascii")
        if self._md5 is not None:
            found["md5"] = base64.b64encode(self._md5.digest()).decode("ascii")
        return found


def md5_of(read_at: ReadAt, size: int) -> str:
    """md5 of the first ``size`` bytes, read locally: for a server that reports md5 and nothing else."""
    checksums = SourceChecksums(("md5",))
    checksums.hash_range(read_at, size)
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
