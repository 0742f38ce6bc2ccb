"""Records and the rules that decide whether one is valid and which one wins.

Every record is canonical CBOR `{"body": {...}, "sig": bytes}`; the signature
covers the canonical encoding of `body` (DESIGN §4). The rules, in one place
(`_RULES` below is this table as data):

    kind     key                                          signed by   member check   winner
    chunk    SHA-256(record bytes)                        author      author         (immutable)
    head     SHA-256("chorusdht/head" ‖ mesh ‖ author)    author      author         highest seq
    genesis  SHA-256(record bytes) = the mesh id          founder     —              (immutable)
    cert     SHA-256(record bytes)                        admitter    admitter       (immutable)
    roster   SHA-256("chorusdht/roster" ‖ mesh)           nobody      —              union (`merge`)

A chunk's body has exactly the fields of DESIGN §4 and no `kind`; every other
record kind names itself in `body["kind"]`.

Membership records:

- **genesis** `{kind, name, founder, policy}`. Its hash is the mesh id, so it is
  stored under that key and checked like a chunk. Ed25519 signatures are
  deterministic: the same founder, name and policy give the same mesh id.
- **cert** `{kind, mesh, member, admitter}`, signed by the admitter. A cert whose
  member is its own admitter is malformed. Whether the admitter may admit is the
  membership callback's question, as for a chunk's author.
- **roster** `{kind, mesh, genesis, certs}` with `sig` = empty bytes. A roster is
  the union of certificates and has no single signer, so instead of a signature it
  carries its own proof: the genesis record bytes and the raw certs (sorted,
  distinct). It is valid when the genesis hashes to `mesh`, every cert verifies,
  belongs to that mesh, and chains to the founder *within the roster*. Any node
  can therefore check a roster without knowing the mesh first. `merge` joins two
  rosters by union; `select` (the winner-takes-all rule the overlay uses) keeps
  the incoming roster only when it is a strict superset, so it never loses a cert.

`validate(key, raw, ...)` parses and checks one record, or raises ValidationError
with the wire error code; `select(current, incoming)` says whether `incoming`
replaces `current`, or raises ValidationError(STALE_SEQ); `merge(current,
incoming)` returns what a store should keep. All are pure. Membership is a
callback, so the overlay can run without meshes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import cbor2

from .codec import decode, encode
from .errors import DecodeError, ErrorCode, LocalError, ValidationError
from .identity import ED25519, Crypto, Signer
from .ids import sha256

__all__ = [
    "DEFAULT_MAX_RECORD",
    "DEFAULT_POLICY",
    "HEAD_CONTEXT",
    "MAX_PARENTS",
    "MAX_ROSTER_CERTS",
    "ROSTER_CONTEXT",
    "Admission",
    "Cert",
    "Chunk",
    "Genesis",
    "Head",
    "MembershipCheck",
    "Policy",
    "Record",
    "Roster",
    "admissions",
    "head_key",
    "load_trusted",
    "make_cert",
    "make_chunk",
    "make_genesis",
    "make_head",
    "make_roster",
    "merge",
    "roster_key",
    "select",
    "validate",
]

DEFAULT_MAX_RECORD = 16 * 1024  # DESIGN §3: a record is at most 16 KiB by default
HEAD_CONTEXT = b"chorusdht/head"  # DESIGN §4 head-key prefix
ROSTER_CONTEXT = b"chorusdht/roster"  # DESIGN §4 roster-key prefix
MAX_PARENTS = 64  # heads of other authors seen; a mesh with more writers links a sample
MAX_SEQ = 2**62  # far beyond any real log; keeps ints inside the codec's 64-bit range
# One cert is about 210 bytes of CBOR; 64 of them plus the genesis stay under the
# 16 KiB record limit. Bigger meshes need a paged roster (not built yet).
MAX_ROSTER_CERTS = 64
MAX_NAME = 128  # characters in a mesh name: a label, not a document

MembershipCheck = Callable[[bytes, bytes], bool]
"""`is_member(mesh_id, public_key)`: True when the key may write (or admit into) the mesh."""


@dataclass(frozen=True, slots=True)
class Policy:
    """The rules a founder fixes for a mesh at genesis; part of the mesh id."""

    max_roster: int = MAX_ROSTER_CERTS  # certificates one roster record may hold
    encrypted: bool = False  # payloads are opaque either way; this tells readers what to expect

    def to_body(self) -> dict[str, Any]:
        return {"max_roster": self.max_roster, "encrypted": self.encrypted}


DEFAULT_POLICY = Policy()


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
    payload_size: int

    kind = "chunk"

    @property
    def payload(self) -> bytes:
        """The entry's bytes: the tail of `raw`, not a second copy of them.

        In canonical CBOR `payload` is the body's last key (length-first order:
        "lamport" < "parents" < "payload") and the body is the envelope's last value,
        so the payload's bytes end the record. Recovery holds 100,000 of these.
        """
        return self.raw[len(self.raw) - self.payload_size :]


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


@dataclass(frozen=True, slots=True)
class Genesis:
    """The founding record of a mesh; its key is the mesh id."""

    key: bytes
    raw: bytes
    name: str
    founder: bytes
    policy: Policy

    kind = "genesis"

    @property
    def mesh(self) -> bytes:
        return self.key


@dataclass(frozen=True, slots=True)
class Cert:
    """`admitter` admits `member` into `mesh`."""

    key: bytes
    raw: bytes
    mesh: bytes
    member: bytes
    admitter: bytes

    kind = "cert"


@dataclass(frozen=True, slots=True)
class Roster:
    """The union of a mesh's certificates, self-proving: it embeds the genesis."""

    key: bytes
    raw: bytes
    mesh: bytes
    genesis: Genesis
    certs: tuple[Cert, ...]  # sorted by raw bytes, distinct

    kind = "roster"

    def members(self) -> frozenset[bytes]:
        """The founder and every certified member (all chained, or it would not be valid)."""
        return frozenset({self.genesis.founder, *(c.member for c in self.certs)})


Record = Chunk | Head | Genesis | Cert | Roster


@dataclass(frozen=True, slots=True)
class Admission:
    """How a key got into a mesh: `depth` certs from the founder, the last being `via`."""

    depth: int
    via: Cert | None  # None for the founder


def head_key(mesh: bytes, author: bytes) -> bytes:
    return sha256(HEAD_CONTEXT, mesh, author)


def roster_key(mesh: bytes) -> bytes:
    return sha256(ROSTER_CONTEXT, mesh)


def admissions(founder: bytes, certs: Iterable[Cert]) -> dict[bytes, Admission]:
    """Every key that chains to `founder` through `certs`, with its shortest chain.

    Breadth-first from the founder, so cycles and certs from unadmitted keys are
    simply never reached. Among the certs that admit a key at its least depth the
    one with the smallest hash wins, so the answer depends only on the set.
    """
    by_admitter: dict[bytes, list[Cert]] = {}
    for c in certs:
        by_admitter.setdefault(c.admitter, []).append(c)
    out: dict[bytes, Admission] = {founder: Admission(0, None)}
    level, depth = [founder], 0
    while level:
        depth += 1
        best: dict[bytes, Cert] = {}
        for admitter in level:
            for c in by_admitter.get(admitter, ()):
                if c.member not in out and (c.member not in best or c.key < best[c.member].key):
                    best[c.member] = c
        for member, c in best.items():
            out[member] = Admission(depth, c)
        level = sorted(best)
    return out


# ---- making records -----------------------------------------------------------


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
    return _chunk_from(sha256(raw), raw, body, DEFAULT_MAX_RECORD)


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
    return _head_from(head_key(mesh, signer.public_key), raw, body, DEFAULT_MAX_RECORD)


def make_genesis(signer: Signer, name: str, policy: Policy = DEFAULT_POLICY) -> Genesis:
    """Found a mesh: `signer` is the founder; the returned record's key is the mesh id."""
    body = {
        "kind": "genesis",
        "name": name,
        "founder": signer.public_key,
        "policy": policy.to_body(),
    }
    raw = _seal(signer, body)
    try:
        return _genesis_from(sha256(raw), raw, body, DEFAULT_MAX_RECORD)
    except ValidationError as e:
        raise LocalError(f"bad genesis: {e}") from None


def make_cert(signer: Signer, mesh: bytes, member: bytes) -> Cert:
    """`signer` admits `member` into `mesh`. Whether `signer` may admit is checked on use."""
    if member == signer.public_key:
        raise LocalError("a key cannot admit itself")
    body = {"kind": "cert", "mesh": mesh, "member": member, "admitter": signer.public_key}
    raw = _seal(signer, body)
    try:
        return _cert_from(sha256(raw), raw, body, DEFAULT_MAX_RECORD)
    except ValidationError as e:
        raise LocalError(f"bad certificate: {e}") from None


def make_roster(genesis: Genesis, certs: Iterable[Cert]) -> Roster:
    """The roster of `genesis`'s mesh holding the chained ones among `certs`.

    Certs for other meshes and certs that do not chain to the founder are left
    out. Past the bound, certs nearest the founder win (then the smallest hash),
    which keeps every kept cert's chain inside the roster.
    """
    mesh = genesis.key
    pool = {c.key: c for c in certs if c.mesh == mesh}
    admitted = admissions(genesis.founder, pool.values())
    chained = [c for c in pool.values() if c.admitter in admitted]
    chained.sort(key=lambda c: (admitted[c.admitter].depth, c.key))
    kept = sorted(chained[: genesis.policy.max_roster], key=lambda c: c.raw)
    body = {"kind": "roster", "mesh": mesh, "genesis": genesis.raw, "certs": [c.raw for c in kept]}
    raw = encode({"body": body, "sig": b""})
    return Roster(roster_key(mesh), raw, mesh, genesis, tuple(kept))


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


def _fields(body: dict[str, Any], *names: str) -> None:
    if set(body) != set(names):
        raise _malformed(f"a {body.get('kind', 'chunk')} has exactly the fields {', '.join(names)}")


# Canonical `{"body": b, "sig": s}` is these bytes, then s, then _BODY_KEY, then b: a map
# of 2, and the shorter key "sig" sorts first (length-first order, see codec).
_ENVELOPE_HEAD = b"\xa2\x63sig"
_BODY_KEY = b"\x64body"


# The exact byte layout of a canonical chunk record, item heads and all: its map keys
# in canonical order, unsigned ints, 32-byte hashes, a short array of them, and the
# payload's head (its length and the parents' count are checked in `_chunk_shaped`).
_UINT = rb"(?:[\x00-\x17]|\x18.|\x19..|\x1a.{4}|\x1b.{8})"
_H32 = rb"\x58\x20.{32}"
_CHUNK_SHAPE = re.compile(
    rb"\xa2\x63sig\x58\x40.{64}\x64body\xa8\x63seq" + _UINT + rb"\x64mesh" + _H32
    + rb"\x64prev(?:\xf6|" + _H32 + rb")\x64time" + _UINT + rb"\x66author" + _H32
    + rb"\x67lamport" + _UINT + rb"\x67parents(\x98[\x18-\x40]|[\x80-\x97])((?:" + _H32
    + rb")*)\x67payload([\x40-\x57]|\x58.|\x59..|\x5a.{4})",
    re.DOTALL,
)  # fmt: skip


def _chunk_shaped(raw: bytes) -> bool:
    """Whether `raw` has exactly a chunk's layout, which lies inside the codec's data model.

    Such bytes can go to cbor2 without `codec.decode`'s item-by-item scan: no tags,
    floats, indefinite lengths or deep nesting can hide in them. That scan cost
    ~30 µs of a chunk's ~190 µs in recovery. Anything else takes the scan.
    """
    m = _CHUNK_SHAPE.match(raw)
    if m is None:
        return False
    head, hashes, size = m.group(1, 2, 3)
    if len(hashes) != 34 * (head[-1] if len(head) == 2 else head[0] & 0x1F):
        return False
    n = size[0] & 0x1F if len(size) == 1 else int.from_bytes(size[1:], "big")
    return m.end() + n == len(raw)


def _open(raw: bytes, max_size: int) -> tuple[dict[str, Any], bytes, bytes]:
    """Decode a record envelope: (body, sig, canonical body bytes)."""
    if len(raw) > max_size:
        raise ValidationError(ErrorCode.TOO_LARGE, f"{len(raw)} bytes > {max_size}")
    try:
        obj = cbor2.loads(raw) if _chunk_shaped(raw) else decode(raw, max_size=max_size)
    except DecodeError as e:
        raise _malformed(str(e)) from None
    if not isinstance(obj, dict) or set(obj) != {"body", "sig"}:
        raise _malformed("a record is {body, sig}")
    body, sig = obj["body"], obj["sig"]
    if not isinstance(body, dict) or not isinstance(sig, bytes):
        raise _malformed("a record is {body: map, sig: bytes}")
    # decoded values are inside the data model: no need for encode's own walk. The
    # envelope is encoded once, from the body's bytes (which the signature needs anyway).
    body_bytes = encode(body, check=False)
    if _ENVELOPE_HEAD + encode(sig, check=False) + _BODY_KEY + body_bytes != raw:
        raise _malformed("a record must be canonical CBOR")
    return body, sig, body_bytes


def _chunk_from(key: bytes, raw: bytes, body: dict[str, Any], max_size: int) -> Chunk:
    _fields(body, "mesh", "author", "seq", "prev", "parents", "lamport", "time", "payload")
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
        payload_size=_payload_size(raw, _b(body, "payload", None)),
    )


def _payload_size(raw: bytes, payload: bytes) -> int:
    if not raw.endswith(payload):  # canonical CBOR puts it last (see Chunk.payload)
        raise _malformed("a chunk's payload must end the record")
    return len(payload)


def _head_from(key: bytes, raw: bytes, body: dict[str, Any], max_size: int) -> Head:
    _fields(body, "kind", "mesh", "author", "seq", "hash", "lamport")
    return Head(
        key=key,
        raw=raw,
        mesh=_b(body, "mesh"),
        author=_b(body, "author"),
        seq=_i(body, "seq", 1, MAX_SEQ),
        hash=_b(body, "hash"),
        lamport=_i(body, "lamport", 1, MAX_SEQ),
    )


def _genesis_from(key: bytes, raw: bytes, body: dict[str, Any], max_size: int) -> Genesis:
    _fields(body, "kind", "name", "founder", "policy")
    name, policy = body["name"], body["policy"]
    if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME:
        raise _malformed(f"a mesh name is 1 to {MAX_NAME} characters")
    if not isinstance(policy, dict) or set(policy) != {"max_roster", "encrypted"}:
        raise _malformed("policy has exactly the fields max_roster, encrypted")
    if not isinstance(policy["encrypted"], bool):
        raise _malformed("policy.encrypted must be a bool")
    return Genesis(
        key=key,
        raw=raw,
        name=name,
        founder=_b(body, "founder"),
        policy=Policy(_i(policy, "max_roster", 1, MAX_ROSTER_CERTS), policy["encrypted"]),
    )


def _cert_from(key: bytes, raw: bytes, body: dict[str, Any], max_size: int) -> Cert:
    _fields(body, "kind", "mesh", "member", "admitter")
    cert = Cert(key, raw, _b(body, "mesh"), _b(body, "member"), _b(body, "admitter"))
    if cert.member == cert.admitter:
        raise _malformed("a key cannot admit itself")
    return cert


def _roster_from(key: bytes, raw: bytes, body: dict[str, Any], max_size: int) -> Roster:
    """Structure only; `_roster_proof` checks the embedded signatures and chains."""
    _fields(body, "kind", "mesh", "genesis", "certs")
    mesh, genesis_raw, certs_raw = _b(body, "mesh"), _b(body, "genesis", None), body["certs"]
    if roster_key(mesh) != key:  # before any parsing of the embedded records
        raise ValidationError(ErrorCode.HASH_MISMATCH, "roster key does not match its mesh")
    if sha256(genesis_raw) != mesh:
        raise ValidationError(ErrorCode.HASH_MISMATCH, "embedded genesis is not the mesh's")
    if not isinstance(certs_raw, list) or len(certs_raw) > MAX_ROSTER_CERTS:
        raise _malformed(f"certs must be a list of at most {MAX_ROSTER_CERTS}")
    if any(not isinstance(c, bytes) for c in certs_raw) or certs_raw != sorted(set(certs_raw)):
        raise _malformed("certs must be sorted, distinct record bytes")
    genesis = _genesis_from(mesh, genesis_raw, _open(genesis_raw, max_size)[0], max_size)
    if len(certs_raw) > genesis.policy.max_roster:
        raise _malformed(f"the mesh policy allows {genesis.policy.max_roster} certs per roster")
    certs = tuple(_cert_from(sha256(c), c, _open(c, max_size)[0], max_size) for c in certs_raw)
    if any(c.mesh != mesh for c in certs):
        raise _malformed("a roster holds certificates of its own mesh only")
    return Roster(key, raw, mesh, genesis, certs)


def _roster_proof(roster: Roster, crypto: Crypto, max_size: int) -> None:
    """Every embedded signature verifies and every cert chains to the founder."""
    g = roster.genesis
    for raw, signer in [(g.raw, g.founder), *((c.raw, c.admitter) for c in roster.certs)]:
        _, sig, body_bytes = _open(raw, max_size)
        if not crypto.verify(signer, body_bytes, sig):
            raise ValidationError(ErrorCode.BAD_SIGNATURE, "an embedded record does not verify")
    admitted = admissions(g.founder, roster.certs)
    if any(c.admitter not in admitted for c in roster.certs):
        raise ValidationError(ErrorCode.NOT_MEMBER, "a certificate does not chain to the founder")


@dataclass(frozen=True, slots=True)
class _Rule:
    """One row of the validation table (see the module docstring)."""

    parse: Callable[[bytes, bytes, dict[str, Any], int], Any]  # structure: (key, raw, body, max)
    key: Callable[[Any], bytes]  # the key the record must be stored under
    signer: Callable[[Any], bytes | None]  # whose signature `sig` is; None: sig must be empty
    member: Callable[[Any], bytes | None]  # the key that must be a member; None: no check
    proof: Callable[[Any, Crypto, int], None] | None = None  # checks on embedded records


_RULES: dict[str, _Rule] = {
    "chunk": _Rule(_chunk_from, lambda r: sha256(r.raw), lambda r: r.author, lambda r: r.author),
    "head": _Rule(
        _head_from, lambda r: head_key(r.mesh, r.author), lambda r: r.author, lambda r: r.author
    ),
    "genesis": _Rule(_genesis_from, lambda r: sha256(r.raw), lambda r: r.founder, lambda r: None),
    "cert": _Rule(_cert_from, lambda r: sha256(r.raw), lambda r: r.admitter, lambda r: r.admitter),
    "roster": _Rule(
        _roster_from, lambda r: roster_key(r.mesh), lambda r: None, lambda r: None, _roster_proof
    ),
}


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
    MALFORMED, HASH_MISMATCH, BAD_SIGNATURE or NOT_MEMBER. Checks run cheapest
    first: size, structure, key, signature, embedded proofs, membership.
    """
    body, sig, body_bytes = _open(raw, max_size)
    kind = body.get("kind", "chunk")
    rule = _RULES.get(kind) if isinstance(kind, str) else None
    if rule is None:  # a chunk naming itself "chunk" fails its field check instead
        raise _malformed(f"unknown record kind {kind!r}")
    record: Record = rule.parse(key, raw, body, max_size)
    if rule.key(record) != key:
        raise ValidationError(ErrorCode.HASH_MISMATCH, f"{kind} key does not match its content")
    signer = rule.signer(record)
    if signer is None:
        if sig:
            raise _malformed(f"a {kind} carries no signature of its own")
    elif not crypto.verify(signer, body_bytes, sig):
        raise ValidationError(ErrorCode.BAD_SIGNATURE, "signature does not verify")
    if rule.proof is not None:
        rule.proof(record, crypto, max_size)
    member = rule.member(record)
    if is_member is not None and member is not None and not is_member(record.mesh, member):
        raise ValidationError(ErrorCode.NOT_MEMBER, f"{kind} signer is not a member of the mesh")
    return record


def load_trusted(key: bytes, raw: bytes, *, max_size: int = DEFAULT_MAX_RECORD) -> Record:
    """Parse a record this node validated before it stored it.

    The structure is checked again, but not signatures, proofs or membership:
    they cannot have changed on our own disk, and each costs an Ed25519 verify.
    """
    body, _sig, _body_bytes = _open(raw, max_size)
    kind = body.get("kind", "chunk")
    rule = _RULES.get(kind) if isinstance(kind, str) else None
    if rule is None:
        raise _malformed(f"unknown record kind {kind!r}")
    record: Record = rule.parse(key, raw, body, max_size)
    return record


def select(current: Record | None, incoming: Record) -> bool:
    """True when `incoming` should be stored over `current`; False for an identical re-store.

    Raises ValidationError(STALE_SEQ) for a head whose seq is not higher than the
    stored head's (an equal seq with different content is equivocation, also stale).
    A roster replaces another only when it holds strictly more certs, all of the
    other's included; use `merge` to keep the union of two rosters.
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
    if isinstance(current, Roster) and isinstance(incoming, Roster):
        return {c.key for c in incoming.certs} > {c.key for c in current.certs}
    # Content-addressed records cannot share a key with different bytes; keep what we have.
    return False


def merge(current: Record | None, incoming: Record) -> Record:
    """What a store should hold after `incoming` arrives: the union for rosters, else `select`.

    Raises ValidationError(STALE_SEQ) as `select` does. Both records must have
    been validated under the same key.
    """
    if current is None:
        return incoming
    if isinstance(current, Roster) and isinstance(incoming, Roster):
        union = make_roster(current.genesis, (*current.certs, *incoming.certs))
        return current if union.raw == current.raw else union
    return incoming if select(current, incoming) else current
