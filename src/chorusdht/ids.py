"""256-bit identifiers and XOR distance.

Node ids, author ids and record keys share one 256-bit space (DESIGN §2). On the
wire and in records an id is 32 raw bytes; for distance arithmetic it is an int.
"""

from __future__ import annotations

import hashlib
import random

__all__ = [
    "ID_BITS",
    "ID_BYTES",
    "distance",
    "id_to_int",
    "int_to_id",
    "random_id_in_range",
    "sha256",
]

ID_BITS = 256  # SHA-256 output; ids and keys share this space.
ID_BYTES = ID_BITS // 8


def sha256(*parts: bytes) -> bytes:
    """SHA-256 over the concatenation of `parts`."""
    h = hashlib.sha256()
    for part in parts:
        h.update(part)
    return h.digest()


def id_to_int(raw: bytes) -> int:
    """The integer value of a 32-byte id (big-endian)."""
    return int.from_bytes(raw, "big")


def int_to_id(value: int) -> bytes:
    """The 32-byte big-endian form of an id integer."""
    return value.to_bytes(ID_BYTES, "big")


def distance(a: bytes, b: bytes) -> int:
    """XOR distance between two 32-byte ids."""
    return int.from_bytes(a, "big") ^ int.from_bytes(b, "big")


def random_id_in_range(low: int, high: int, rng: random.Random) -> bytes:
    """A uniformly random id in [low, high), drawn from the injected `rng`."""
    return int_to_id(rng.randrange(low, high))
