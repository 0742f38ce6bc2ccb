"""256-bit identifiers and XOR distance.

Node ids, author ids and record keys share one 256-bit space (DESIGN §2). On the
wire and in records an id is 32 raw bytes; for distance arithmetic it is an int.
"""

from __future__ import annotations

import functools
import hashlib
import random

from .errors import LocalError

__all__ = [
    "ID_BITS",
    "ID_BYTES",
    "distance",
    "id_to_int",
    "int_to_id",
    "key_id",
    "puzzle_ok",
    "random_id_in_range",
    "require_id",
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


@functools.lru_cache(maxsize=1 << 14)
def key_id(public_key: bytes) -> bytes:
    """The node id a public key stands for: SHA-256(key), remembered for recent keys.

    Every datagram's header is checked against it. Peers repeat, so the cache
    answers most checks; a flood of fresh keys only cycles the bounded cache.
    """
    return hashlib.sha256(public_key).digest()


def require_id(value: object, what: str = "id") -> bytes:
    """`value` if it is a 32-byte id, else LocalError saying what was passed instead
    (a hex string is the usual slip: `parse_hex_id` turns one into an id)."""
    if isinstance(value, bytes) and len(value) == ID_BYTES:
        return value
    if isinstance(value, str):
        got = "a str (parse_hex_id turns 64 hex digits into one)"
    elif isinstance(value, bytes | bytearray | memoryview):
        got = f"{len(value)} bytes"
    else:
        got = type(value).__name__
    raise LocalError(f"a {what} is {ID_BYTES} bytes, got {got}")


def id_to_int(raw: bytes) -> int:
    """The integer value of a 32-byte id (big-endian)."""
    return int.from_bytes(raw, "big")


def int_to_id(value: int) -> bytes:
    """The 32-byte big-endian form of an id integer."""
    return value.to_bytes(ID_BYTES, "big")


def distance(a: bytes, b: bytes) -> int:
    """XOR distance between two 32-byte ids."""
    return int.from_bytes(a, "big") ^ int.from_bytes(b, "big")


def puzzle_ok(node_id: bytes, bits: int) -> bool:
    """The S/Kademlia static puzzle: SHA-256(node id) has `bits` leading zero bits.

    The id is already SHA-256(public key), so meeting the puzzle costs about 2^bits
    key generations, once per identity; checking it costs one hash. 0 is off.
    """
    if bits <= 0:
        return True
    return id_to_int(sha256(node_id)) >> (ID_BITS - bits) == 0


def random_id_in_range(low: int, high: int, rng: random.Random) -> bytes:
    """A uniformly random id in [low, high), drawn from the injected `rng`."""
    return int_to_id(rng.randrange(low, high))
