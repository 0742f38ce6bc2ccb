"""Forgery and authority (issue 7, part 2): a corpus of hostile records, each refused
at STORE (a real NodeCore answers ERROR with a code), again at read (validation at a
reader, and a GET through another core), and never rendered by recovery.

The corpus, for a mesh founded by F with one admitted member M:

    record                                  STORE code       read code
    chunk whose payload differs from hash   HASH_MISMATCH    HASH_MISMATCH
    valid chunk re-signed by another key    BAD_SIGNATURE    BAD_SIGNATURE
    chunk re-authored by an outsider        NOT_MEMBER       NOT_MEMBER
    head replayed with an old seq           STALE_SEQ        STALE_SEQ
    head with a bad signature, higher seq   BAD_SIGNATURE    BAD_SIGNATURE
    cert not chained to the founder         NOT_MEMBER       NOT_MEMBER
    self-admitted member (cert)             MALFORMED        MALFORMED
    roster smuggling an unchained cert      NOT_MEMBER       NOT_MEMBER
    chunk claiming another mesh             NOT_MEMBER       NOT_MEMBER

Every forgery is sent with M's real membership proof attached, the most a forger
can borrow. `test_forgery_table` prints the table (pytest -s).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Any

import pytest

from chorusdht.codec import decode, encode
from chorusdht.config import NodeConfig
from chorusdht.core import NodeCore
from chorusdht.errors import ChorusError, ErrorCode, NotFound, ValidationError
from chorusdht.identity import Identity
from chorusdht.ids import sha256
from chorusdht.membership import MembershipView, membership_proof
from chorusdht.memlog import MeshLog
from chorusdht.messages import (
    ErrorReply,
    Header,
    Message,
    Store,
    Stored,
    decode_message,
    encode_message,
)
from chorusdht.records import (
    Chunk,
    Record,
    make_cert,
    make_chunk,
    make_genesis,
    make_head,
    make_roster,
    merge,
    roster_key,
)
from chorusdht.recovery import _Verifier, check_batch
from chorusdht.results import GetResult
from chorusdht.store import MemoryStore

from .simnet import Net

FOUNDER = Identity.from_seed(sha256(b"forgery founder"))
MEMBER = Identity.from_seed(sha256(b"forgery member"))
OUTSIDER = Identity.from_seed(sha256(b"forgery outsider"))
OUTSIDER2 = Identity.from_seed(sha256(b"forgery outsider 2"))
SENDER = Identity.from_seed(sha256(b"forgery sender"))
SENDER_ADDR = ("10.20.30.40", 4000)  # a label: these cores never touch a socket


def seal(signer: Identity, body: dict[str, Any]) -> bytes:
    """A record envelope with `body` signed by `signer`, whoever the body names."""
    return encode({"body": body, "sig": signer.sign(encode(body))})


def body_of(raw: bytes) -> dict[str, Any]:
    obj = decode(raw)
    assert isinstance(obj, dict) and isinstance(obj["body"], dict)
    return dict(obj["body"])


def with_sig(raw: bytes, sig: bytes) -> bytes:
    return encode({"body": body_of(raw), "sig": sig})


@dataclass(frozen=True)
class Forgery:
    name: str
    key: bytes
    raw: bytes
    store_code: ErrorCode
    read_code: ErrorCode
    forged_chunk: bool = False  # a chunk recovery must never render


@dataclass
class World:
    genesis: Any
    roster: Any
    honest: list[Record]
    chunks: list[Chunk]
    proof: tuple[bytes, ...]
    forgeries: list[Forgery]

    @property
    def mesh(self) -> bytes:
        return bytes(self.genesis.key)


def build_world() -> World:
    genesis = make_genesis(FOUNDER, "forgery-mesh")
    mesh = genesis.key
    cert = make_cert(FOUNDER, mesh, MEMBER.public_key)
    roster = make_roster(genesis, [cert])
    view = MembershipView.from_roster(roster)
    proof = tuple(membership_proof(view, MEMBER.public_key))
    log = MeshLog(mesh)
    chunks = [log.append(MEMBER, f"entry {i}".encode(), time=i) for i in range(3)]
    head = make_head(MEMBER, mesh=mesh, seq=3, chunk_hash=chunks[2].key, lamport=chunks[2].lamport)
    old_head = make_head(
        MEMBER, mesh=mesh, seq=2, chunk_hash=chunks[1].key, lamport=chunks[1].lamport
    )
    other_genesis = make_genesis(OUTSIDER, "someone else's mesh")

    c0 = chunks[0]
    altered = encode({"body": body_of(c0.raw) | {"payload": b"rewritten"}, "sig": b""})
    altered = with_sig(altered, decode(c0.raw)["sig"])  # type: ignore[index]
    resigned = with_sig(c0.raw, OUTSIDER.sign(encode(body_of(c0.raw))))
    reauthored = seal(OUTSIDER, body_of(c0.raw) | {"author": OUTSIDER.public_key})
    high = make_head(MEMBER, mesh=mesh, seq=99, chunk_hash=sha256(b"nowhere"), lamport=99)
    sig = bytearray(decode(high.raw)["sig"])  # type: ignore[index]
    sig[5] ^= 0x40
    bad_high = with_sig(high.raw, bytes(sig))
    unchained = make_cert(OUTSIDER2, mesh, OUTSIDER.public_key)
    self_cert = seal(
        OUTSIDER,
        {"kind": "cert", "mesh": mesh, "member": OUTSIDER.public_key,
         "admitter": OUTSIDER.public_key},
    )  # fmt: skip
    smuggle_body = body_of(roster.raw) | {"certs": sorted([cert.raw, unchained.raw])}
    smuggled = encode({"body": smuggle_body, "sig": b""})
    elsewhere = make_chunk(
        MEMBER, mesh=other_genesis.key, seq=1, prev=None, lamport=1, time=0, payload=b"x"
    )
    nm = ErrorCode
    forgeries = [
        Forgery("chunk whose payload differs from its hash", c0.key, altered,
                nm.HASH_MISMATCH, nm.HASH_MISMATCH, True),
        Forgery("valid chunk re-signed by another key", sha256(resigned), resigned,
                nm.BAD_SIGNATURE, nm.BAD_SIGNATURE, True),
        Forgery("chunk re-authored by an outsider", sha256(reauthored), reauthored,
                nm.NOT_MEMBER, nm.NOT_MEMBER, True),
        Forgery("head replayed with an old seq", old_head.key, old_head.raw,
                nm.STALE_SEQ, nm.STALE_SEQ),
        Forgery("head with a bad signature and a higher seq", high.key, bad_high,
                nm.BAD_SIGNATURE, nm.BAD_SIGNATURE),
        Forgery("cert not chained to the founder", unchained.key, unchained.raw,
                nm.NOT_MEMBER, nm.NOT_MEMBER),
        Forgery("self-admitted member", sha256(self_cert), self_cert,
                nm.MALFORMED, nm.MALFORMED),
        Forgery("roster smuggling an unchained cert", roster_key(mesh), smuggled,
                nm.NOT_MEMBER, nm.NOT_MEMBER),
        Forgery("chunk claiming another mesh", elsewhere.key, elsewhere.raw,
                nm.NOT_MEMBER, nm.NOT_MEMBER, True),
    ]  # fmt: skip
    honest: list[Record] = [genesis, roster, cert, *chunks, head]
    return World(genesis, roster, honest, chunks, proof, forgeries)


WORLD = build_world()


def member_node(seed: bytes, *, holds: bool, cache_on_get: bool = True) -> NodeCore:
    """A node of the mesh as `chorusdht join` runs it: membership required, roster known."""
    core = NodeCore(
        Identity.from_seed(sha256(b"node", seed)),
        MemoryStore(),
        rng=random.Random(seed),
        now=0.0,
        config=NodeConfig(require_membership=True, cache_on_get=cache_on_get, k=4),
    )
    core.membership.add_roster(WORLD.roster)
    if holds:
        for r in WORLD.honest:
            core.keep_local(r, 0.0)
    return core


def store_code(core: NodeCore, f: Forgery, txid: int) -> str:
    """Send `f` in a STORE datagram (with the member's proof); the reply's code."""
    msg = Message(
        Header(txid.to_bytes(8, "big"), SENDER.node_id, SENDER.public_key),
        Store(f.key, f.raw, WORLD.proof),
    )
    core.receive_datagram(encode_message(msg), SENDER_ADDR, 1.0)
    replies = [decode_message(d) for d, a in core.datagrams_to_send() if a == SENDER_ADDR]
    body = next(r.body for r in replies if r.header.txid == msg.header.txid)
    if isinstance(body, Stored):
        return "STORED"
    assert isinstance(body, ErrorReply)
    return body.code.value


def read_code(reader: NodeCore, f: Forgery) -> str:
    """What a reader holding the honest records makes of `f`: validate, then merge."""
    try:
        rec = reader.validate(f.key, f.raw, WORLD.proof)
        merge(reader.local_record(f.key), rec)
    except ValidationError as e:
        return e.code.value
    return "ACCEPTED"


def test_the_honest_records_are_accepted() -> None:
    """The control: the same path takes every honest record (so a refusal means something)."""
    core = member_node(b"control", holds=False)
    for i, r in enumerate(WORLD.honest):
        assert store_code(core, Forgery("honest", r.key, r.raw, ErrorCode.MALFORMED,
                                        ErrorCode.MALFORMED), i) == "STORED", r.kind  # fmt: skip


@pytest.mark.parametrize("f", WORLD.forgeries, ids=lambda f: f.name.replace(" ", "-"))
def test_each_forgery_is_rejected_at_store_with_its_code(f: Forgery) -> None:
    core = member_node(b"target", holds=True)
    assert store_code(core, f, 1) == f.store_code.value
    assert core.store.get(f.key) != f.raw


@pytest.mark.parametrize("f", WORLD.forgeries, ids=lambda f: f.name.replace(" ", "-"))
def test_each_forgery_is_rejected_again_at_read(f: Forgery) -> None:
    reader = member_node(b"reader", holds=True)
    assert read_code(reader, f) == f.read_code.value


def test_a_get_through_another_core_never_returns_a_forgery() -> None:
    """A forger's node serves each forgery to FIND_VALUE; an honest node serves the truth.

    The reader's GET validates what it receives: it returns the honest record, or
    NotFound when only the forger holds the key, never the forgery.
    """
    deadline = time.monotonic() + 30
    wire = Net()
    forger = wire.place(("10.1.0.1", 4000), member_node(b"forger", holds=False))
    holder = wire.place(("10.2.0.1", 4000), member_node(b"holder", holds=True))
    reader = wire.place(("10.3.0.1", 4000), member_node(b"reader", holds=False, cache_on_get=False))
    for core in (holder, reader):
        assert not isinstance(wire.wait(core, core.bootstrap([("10.1.0.1", 4000)], wire.now)),
                              ChorusError)  # fmt: skip
    honest_by_key = {r.key: r.raw for r in WORLD.honest}
    rows = []
    for f in WORLD.forgeries:
        forger.store.put(f.key, f.raw, mesh=WORLD.mesh, kind="chunk")  # planted, unchecked
        before = reader.stats["invalid_values"]
        out = wire.wait(reader, reader.get(f.key, wire.now))
        if isinstance(out, GetResult):
            assert out.record.raw != f.raw, f.name
            assert out.record.raw == honest_by_key[f.key], f.name
            rows.append((f.name, "honest record"))
        else:
            assert isinstance(out, NotFound), (f.name, out)
            rows.append((f.name, "NotFound"))
        forger.store.delete(f.key)
        if f.read_code is not ErrorCode.STALE_SEQ:  # an old head is valid on its own
            assert reader.stats["invalid_values"] > before or f.key in honest_by_key, f.name
    assert time.monotonic() < deadline
    assert {name for name, _ in rows} == {f.name for f in WORLD.forgeries}


def test_recovery_never_renders_a_forgery() -> None:
    """Recovery's verify and merge stages (check_batch, _Verifier, MeshLog) over the honest
    records plus the whole corpus: the same timeline and root as the honest log alone."""
    items = [(r.key, r.raw) for r in WORLD.honest] + [(f.key, f.raw) for f in WORLD.forgeries]
    random.Random(3).shuffle(items)
    ver = _Verifier(WORLD.mesh, 16 * 1024)
    ver.take(items, check_batch(items, 16 * 1024))
    accepted = ver.settle()
    ver.finish()
    log = MeshLog(WORLD.mesh)
    for c in sorted(accepted, key=lambda c: (c.lamport, c.author, c.key)):
        log.add(c)
    honest = MeshLog(WORLD.mesh)
    for c in WORLD.chunks:
        honest.add(c)
    rendered = {c.key for c in log.timeline()}
    assert rendered == {c.key for c in WORLD.chunks}
    assert not rendered & {sha256(f.raw) for f in WORLD.forgeries}
    assert log.root() == honest.root() and log.phase() == honest.phase()
    assert ver.heads[MEMBER.public_key].seq == 3  # neither the replay nor the forged 99
    assert set(ver.view.members() if ver.view else ()) == {FOUNDER.public_key, MEMBER.public_key}
    dropped = dict(ver.dropped)
    assert dropped.get("HASH_MISMATCH", 0) >= 1  # the altered payload
    assert dropped.get("BAD_SIGNATURE", 0) >= 2  # the re-signed chunk and the forged head
    assert dropped.get("MALFORMED", 0) >= 1  # the self-admitted cert
    assert dropped.get("NOT_MEMBER", 0) >= 2  # the outsider's chunk and the unchained cert
    assert dropped.get("WRONG_MESH", 0) >= 1  # the chunk of another mesh


def test_forgery_table() -> None:
    """Print record | code at STORE | code at read (pytest -s shows it)."""
    core = member_node(b"table-target", holds=True)
    reader = member_node(b"table-reader", holds=True)
    rows = [(f.name, store_code(core, f, i), read_code(reader, f))
            for i, f in enumerate(WORLD.forgeries)]  # fmt: skip
    width = max(len(r[0]) for r in rows)
    print(f"\n{'record':<{width}}  {'STORE':<14} read")
    for name, at_store, at_read in rows:
        print(f"{name:<{width}}  {at_store:<14} {at_read}")
    assert all(s not in ("STORED", "ACCEPTED") and r != "ACCEPTED" for _, s, r in rows)
    assert len(rows) == 9
