"""Which rows the confident thresholds are computed from, when not all of them.

cleanlab's ``LabelInspector`` notes that the thresholds pass may run on a subset
of the data. Here a row belongs to the subset when a fixed hash of its id falls
below ``fraction * 2**64``: the same rows on every runner, batch size, worker
count and file order, because nothing but the id decides. Pure numpy, no Beam.

The hash of an integer id is splitmix64's output function applied to the id's
64-bit two's complement::

    z = (id + 0x9E3779B97F4A7C15) mod 2**64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) mod 2**64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) mod 2**64
    hash = z ^ (z >> 31)

A string or bytes id is first mapped to 64 bits as the little-endian value of
the 8-byte BLAKE2b digest of its UTF-8 bytes, then hashed the same way.
"""

from __future__ import annotations

import hashlib
from fractions import Fraction

import numpy as np

_GOLDEN_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_MIX_1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX_2 = np.uint64(0x94D049BB133111EB)
_MAX_UINT64 = (1 << 64) - 1


def check_fraction(fraction: float) -> float:
    """Returns ``fraction`` as a float after checking it is in (0, 1]."""
    value = float(fraction)
    if not (0.0 < value <= 1.0):
        raise ValueError(f"threshold_sample_fraction must be in (0, 1], got {fraction!r}")
    return value


def _ids_as_uint64(ids: np.ndarray) -> np.ndarray:
    ids = np.asarray(ids)
    if ids.dtype.kind in "iu":
        return ids.astype(np.int64, copy=False).view(np.uint64) if ids.dtype.kind == "i" else ids.astype(np.uint64)
    values = []
    for value in ids.tolist():
        data = value if isinstance(value, bytes) else str(value).encode("utf-8")
        values.append(int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little"))
    return np.array(values, dtype=np.uint64)


def id_hashes(ids: np.ndarray) -> np.ndarray:
    """The 64-bit hash of each id (see the module docstring), as uint64."""
    z = _ids_as_uint64(ids) + _GOLDEN_GAMMA  # numpy's uint64 arithmetic wraps modulo 2**64
    z = (z ^ (z >> np.uint64(30))) * _MIX_1
    z = (z ^ (z >> np.uint64(27))) * _MIX_2
    return z ^ (z >> np.uint64(31))


def hash_limit(fraction: float) -> int:
    """Rows whose hash is below this are in the sample: ``floor(fraction * 2**64)``."""
    return min(int(Fraction(check_fraction(fraction)) * (1 << 64)), _MAX_UINT64 + 1)


def in_sample(ids: np.ndarray, fraction: float) -> np.ndarray:
    """True for the rows whose id is in the threshold sample of this ``fraction``."""
    limit = hash_limit(fraction)
    if limit > _MAX_UINT64:
        return np.ones(len(ids), dtype=bool)
    return id_hashes(ids) < np.uint64(limit)
