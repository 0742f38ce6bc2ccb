"""Records and the rules that decide whether one is valid and which one wins.

Every record is canonical CBOR `{"body": {...}, "sig": bytes}`; the signature
covers the canonical encoding of `body` (DESIGN §4). The rules, in one place:

    kind    key                                         valid when                    winner
    chunk   SHA-256(record bytes)                       hash, signature, member       (immutable)
    head    SHA-256("chorusdht/head" ‖ mesh ‖ author)   key, signature, member        highest seq

A chunk's body has exactly the fields of DESIGN §4 and no `kind`; every other
record kind names itself in `body["kind"]`. Mesh genesis, certificates and the
roster are added by the memory layer through the same two functions:

- `validate(key, raw, ...)` parses and checks one record, or raises ValidationError
  with the wire error code;
- `select(current, incoming)` says whether `incoming` replaces `current`, or raises
  ValidationError(STALE_SEQ).

Both are pure. Membership is a callback, so the overlay can run without meshes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .codec import decode, encode
from .errors import DecodeError, ErrorCode, ValidationError
from .identity import ED25519, Crypto, Signer
from .ids import sha256

__all__ = [
    "DEFAULT_MAX_RECORD",
    "HEAD_CONTEXT",
    "Chunk",
    "Head",
    "MembershipCheck",
    "Record",
    "head_key",
    "make_chunk",
    "make_head",
    "select",
    "validate",
]

DEFAULT_MAX_RECORD = 16 * 1024  # DESIGN §3: a record is at most 16 KiB by default
HEAD_CONTEXT = b"chorusdht/head"  # DESIGN §4 head-key prefix
MAX_PARENTS = 64  # heads of other authors seen; a mesh with more writers links a sample
MAX_SEQ = 2**62  # far beyond any real log; keeps ints inside the codec's 64-bit range

MembershipCheck = Callable[[bytes, bytes], bool]
"""`is_member(mesh_id, author_public_key)`: True when the author may write the mesh."""


@dataclass(frozen=True, slots=True)
class Chunk:
    key: bytes
    raw: bytes
    mesh: bytes
    author: bytes
    seq: int
    prev: bytes | None
    parents: tuple[bytes, ...]
    lamport: int
    time: int
    payload: bytes

    kind = "chunk"


@dataclass(frozen=True, slots=True)
class Head:
    key: bytes
    raw: bytes
    mesh: bytes
    author: bytes
    seq: int
    hash: bytes
    lamport: int

    kind = "head"


Record = Chunk | Head


def head_key(mesh: bytes, author: bytes) -> bytes:
    return sha256(HEAD_CONTEXT, mesh, author)


def _seal(signer: Signer, body: dict[str, Any]) -> bytes:
    return encode({"body": body, "sig": signer.sign(encode(body))})


def make_chunk(
    signer: Signer,
    *,
    mesh: bytes,
    seq: int,
    prev: bytes | None,
    parents: tuple[bytes, ...] = (),
    lamport: int,
    time: int,
    payload: bytes,
) -> Chunk:
    """Sign a new chunk. `time` is advisory wall-clock milliseconds."""
    body = {
        "mesh": mesh,
        "author": signer.public_key,
        "seq": seq,
        "prev": prev,
        "parents": sorted(parents),
        "lamport": lamport,
        "time": time,
        "payload": payload,
    }
    raw = _seal(signer, body)
    return _chunk_from(sha256(raw), raw, body)


def make_head(signer: Signer, *, mesh: bytes, seq: int, chunk_hash: bytes, lamport: int) -> Head:
    body = {
        "kind": "head",
        "mesh": mesh,
        "author": signer.public_key,
        "seq": seq,
        "hash": chunk_hash,
        "lamport": lamport,
    }
    raw = _seal(signer, body)
    return _head_from(head_key(mesh, signer.public_key), raw, body)


# ---- parsing ----------------------------------------------------------------


def _malformed(why: str) -> ValidationError:
    return ValidationError(ErrorCode.MALFORMED, why)


def _b(body: dict[str, Any], name: str, size: int | None = 32) -> bytes:
    v = body.get(name)
    if not isinstance(v, bytes) or (size is not None and len(v) != size):
        raise _malformed(f"{name} must be {size or 'some'} bytes")
    return v


def _i(body: dict[str, Any], name: str, lo: int, hi: int) -> int:
    v = body.get(name)
    if type(v) is not int or not lo <= v <= hi:
        raise _malformed(f"{name} must be an int in [{lo}, {hi}]")
    return v


def _chunk_from(key: bytes, raw: bytes, body: dict[str, Any]) -> Chunk:
    if set(body) != {"mesh", "author", "seq", "prev", "parents", "lamport", "time", "payload"}:
        raise _malformed("a chunk has exactly the fields of DESIGN §4")
    seq = _i(body, "seq", 1, MAX_SEQ)
    prev = body["prev"]
    if seq == 1:
        if prev is not None:
            raise _malformed("the first chunk of an author has prev = null")
    elif not isinstance(prev, bytes) or len(prev) != 32:
        raise _malformed("prev must be the previous chunk's hash")
    parents = body["parents"]
    if not isinstance(parents, list) or len(parents) > MAX_PARENTS:
        raise _malformed("parents must be a short list")
    if any(not isinstance(p, bytes) or len(p) != 32 for p in parents) or parents != sorted(
        set(parents)
    ):
        raise _malformed("parents must be sorted, distinct 32-byte hashes")
    return Chunk(
        key=key,
        raw=raw,
        mesh=_b(body, "mesh"),
        author=_b(body, "author"),
        seq=seq,
        prev=prev,
        parents=tuple(parents),
        lamport=_i(body, "lamport", 1, MAX_SEQ),
        time=_i(body, "time", 0, MAX_SEQ),
        payload=_b(body, "payload", None),
    )


def _head_from(key: bytes, raw: bytes, body: dict[str, Any]) -> Head:
    if set(body) != {"kind", "mesh", "author", "seq", "hash", "lamport"}:
        raise _malformed("a head has fields kind, mesh, author, seq, hash, lamport")
    return Head(
        key=key,
        raw=raw,
        mesh=_b(body, "mesh"),
        author=_b(body, "author"),
        seq=_i(body, "seq", 1, MAX_SEQ),
        hash=_b(body, "hash"),
        lamport=_i(body, "lamport", 1, MAX_SEQ),
    )


def validate(
    key: bytes,
    raw: bytes,
    *,
    crypto: Crypto = ED25519,
    max_size: int = DEFAULT_MAX_RECORD,
    is_member: MembershipCheck | None = None,
) -> Record:
    """Parse and check one record stored (or found) under `key`.

    Raises ValidationError whose `code` is the wire error code: TOO_LARGE,
    MALFORMED, HASH_MISMATCH, BAD_SIGNATURE or NOT_MEMBER.
    """
    if len(raw) > max_size:
        raise ValidationError(ErrorCode.TOO_LARGE, f"{len(raw)} bytes > {max_size}")
    try:
        obj = decode(raw, max_size=max_size)
    except DecodeError as e:
        raise _malformed(str(e)) from None
    if not isinstance(obj, dict) or set(obj) != {"body", "sig"}:
        raise _malformed("a record is {body, sig}")
    body, sig = obj["body"], obj["sig"]
    if not isinstance(body, dict) or not isinstance(sig, bytes):
        raise _malformed("a record is {body: map, sig: bytes}")
    body_bytes = encode(body)
    if encode({"body": body, "sig": sig}) != raw:
        raise _malformed("a record must be canonical CBOR")
    kind = body.get("kind", "chunk")
    record: Record
    if kind == "chunk":
        if sha256(raw) != key:
            raise ValidationError(ErrorCode.HASH_MISMATCH, "chunk key is not SHA-256(record)")
        record = _chunk_from(key, raw, body)
    elif kind == "head":
        record = _head_from(key, raw, body)
        if head_key(record.mesh, record.author) != key:
            raise ValidationError(ErrorCode.HASH_MISMATCH, "head key does not match mesh/author")
    else:
        raise _malformed(f"unknown record kind {kind!r}")
    if not crypto.verify(record.author, body_bytes, sig):
        raise ValidationError(ErrorCode.BAD_SIGNATURE, "signature does not verify")
    if is_member is not None and not is_member(record.mesh, record.author):
        raise ValidationError(ErrorCode.NOT_MEMBER, "author is not a member of the mesh")
    return record


def select(current: Record | None, incoming: Record) -> bool:
    """True when `incoming` should be stored over `current`; False for an identical re-store.

    Raises ValidationError(STALE_SEQ) for a head whose seq is not higher than the
    stored head's (an equal seq with different content is equivocation, also stale).
    """
    if current is None:
        return True
    if current.raw == incoming.raw:
        return False
    if isinstance(current, Head) and isinstance(incoming, Head):
        if incoming.seq <= current.seq:
            raise ValidationError(
                ErrorCode.STALE_SEQ, f"seq {incoming.seq} is not above stored {current.seq}"
            )
        return True
    # Two different chunks cannot share a key (it is their hash); keep what we have.
    return False
