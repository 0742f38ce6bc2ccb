"""Mesh genesis, certificates, the roster and membership proofs: pure, no network."""

from __future__ import annotations

from functools import cache
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chorusdht.codec import encode
from chorusdht.errors import ErrorCode, LocalError, ValidationError
from chorusdht.identity import Identity
from chorusdht.ids import sha256
from chorusdht.membership import MembershipBook, MembershipView, membership_proof, verify_proof
from chorusdht.memlog import MeshLog
from chorusdht.records import (
    Cert,
    Chunk,
    Genesis,
    Policy,
    Roster,
    make_cert,
    make_chunk,
    make_genesis,
    make_roster,
    merge,
    roster_key,
    select,
    validate,
)


@cache
def ident(i: int) -> Identity:
    return Identity.from_seed(bytes([i + 1]) * 32)


FOUNDER, A, B, C, X, Y = (ident(i) for i in range(6))


@cache
def genesis(name: str = "team", max_roster: int = 64) -> Genesis:
    return make_genesis(FOUNDER, name, Policy(max_roster=max_roster))


MESH = genesis().key


def seal(signer: Identity, body: dict[str, Any]) -> bytes:
    """Sign an arbitrary body, bypassing the make_* guards (to build bad records)."""
    return encode({"body": body, "sig": signer.sign(encode(body))})


def rejected(key: bytes, raw: bytes, **kw: Any) -> ErrorCode:
    with pytest.raises(ValidationError) as info:
        validate(key, raw, **kw)
    return info.value.code


def flips(raw: bytes) -> list[bytes]:
    """Every single-byte change of `raw` (two xor masks per position)."""
    out = []
    for i in range(len(raw)):
        for mask in (0x01, 0x80):
            b = bytearray(raw)
            b[i] ^= mask
            out.append(bytes(b))
    return out


# -- genesis and certificates ---------------------------------------------------------------


def test_genesis_is_stored_under_its_hash() -> None:
    g = genesis()
    assert g.key == sha256(g.raw) == g.mesh
    got = validate(g.key, g.raw)
    assert isinstance(got, Genesis) and got == g
    assert got.founder == FOUNDER.public_key and got.policy == Policy(max_roster=64)
    assert rejected(sha256(b"elsewhere"), g.raw) is ErrorCode.HASH_MISMATCH
    assert make_genesis(FOUNDER, "team", Policy()).key == g.key  # deterministic id
    assert make_genesis(FOUNDER, "other").key != g.key


def test_bad_genesis_bodies() -> None:
    body = {"kind": "genesis", "name": "", "founder": FOUNDER.public_key, "policy": {}}
    raw = seal(FOUNDER, body)
    assert rejected(sha256(raw), raw) is ErrorCode.MALFORMED
    body = {
        "kind": "genesis",
        "name": "n",
        "founder": FOUNDER.public_key,
        "policy": {"max_roster": 65, "encrypted": False},
    }
    raw = seal(FOUNDER, body)
    assert rejected(sha256(raw), raw) is ErrorCode.MALFORMED  # over MAX_ROSTER_CERTS
    good = {**body, "policy": {"max_roster": 3, "encrypted": False}}
    raw = seal(A, good)  # signed by someone other than the founder it names
    assert rejected(sha256(raw), raw) is ErrorCode.BAD_SIGNATURE
    with pytest.raises(LocalError):
        make_genesis(FOUNDER, "x" * 500)


def test_cert_validates_and_admitter_must_be_member() -> None:
    view = MembershipView(genesis())
    cert = make_cert(FOUNDER, MESH, A.public_key)
    assert cert.key == sha256(cert.raw)
    assert validate(cert.key, cert.raw, is_member=view.is_member) == cert
    by_stranger = make_cert(X, MESH, Y.public_key)
    code = rejected(by_stranger.key, by_stranger.raw, is_member=view.is_member)
    assert code is ErrorCode.NOT_MEMBER
    assert rejected(sha256(b"x"), cert.raw) is ErrorCode.HASH_MISMATCH


def test_self_admitted_cert_is_rejected() -> None:
    with pytest.raises(LocalError):
        make_cert(A, MESH, A.public_key)
    body = {"kind": "cert", "mesh": MESH, "member": A.public_key, "admitter": A.public_key}
    raw = seal(A, body)
    assert rejected(sha256(raw), raw) is ErrorCode.MALFORMED


def test_chain_to_founder_in_any_order() -> None:
    c1 = make_cert(FOUNDER, MESH, A.public_key)
    c2 = make_cert(A, MESH, B.public_key)
    c3 = make_cert(B, MESH, C.public_key)
    view = MembershipView(genesis())
    view.add_cert(c3)
    view.add_cert(c2)
    assert not view.is_member(MESH, C.public_key)
    assert view.pending() == tuple(sorted((c2, c3), key=lambda c: c.key))
    assert view.add_cert(c1) and not view.add_cert(c1)
    assert view.members() == {k.public_key for k in (FOUNDER, A, B, C)}
    assert view.pending() == ()
    assert view.chain(C.public_key) == (c1, c2, c3)
    assert view.chain(FOUNDER.public_key) == ()
    assert not view.is_member(sha256(b"other mesh"), A.public_key)


def test_unchained_and_cyclic_certs_never_count() -> None:
    view = MembershipView(genesis())
    view.add_certs([make_cert(X, MESH, Y.public_key), make_cert(Y, MESH, X.public_key)])
    view.add_cert(make_cert(FOUNDER, MESH, A.public_key))
    assert view.members() == {FOUNDER.public_key, A.public_key}
    assert len(view.pending()) == 2
    with pytest.raises(LocalError):
        view.chain(X.public_key)


def test_cert_for_another_mesh_is_refused() -> None:
    other = genesis("other").key
    view = MembershipView(genesis())
    with pytest.raises(ValidationError) as info:
        view.add_cert(make_cert(FOUNDER, other, A.public_key))
    assert info.value.code is ErrorCode.NOT_MEMBER
    book = MembershipBook()
    book.add_genesis(genesis())
    with pytest.raises(LocalError):
        book.add_cert(make_cert(FOUNDER, other, A.public_key))  # its genesis is unknown
    assert book.add_cert(make_cert(FOUNDER, MESH, A.public_key))
    assert book.is_member(MESH, A.public_key) and not book.is_member(other, A.public_key)


def test_shortest_chain_wins_regardless_of_order() -> None:
    long = [make_cert(FOUNDER, MESH, A.public_key), make_cert(A, MESH, B.public_key)]
    short = make_cert(FOUNDER, MESH, B.public_key)
    v1, v2 = MembershipView(genesis()), MembershipView(genesis())
    v1.add_certs([*long, short])
    v2.add_certs([short, *reversed(long)])
    assert v1.chain(B.public_key) == v2.chain(B.public_key) == (short,)


# -- chunks from non-members ------------------------------------------------------------------


def chunk_by(author: Identity, mesh: bytes = MESH) -> Chunk:
    return make_chunk(author, mesh=mesh, seq=1, prev=None, lamport=1, time=0, payload=b"hi")


def test_chunk_from_non_member_is_rejected() -> None:
    view = MembershipView(genesis())
    view.add_cert(make_cert(FOUNDER, MESH, A.public_key))
    ok, bad = chunk_by(A), chunk_by(X)
    assert validate(ok.key, ok.raw, is_member=view.is_member) == ok
    assert rejected(bad.key, bad.raw, is_member=view.is_member) is ErrorCode.NOT_MEMBER
    log = MeshLog(MESH, is_member=view.is_member)
    assert log.add(ok)
    with pytest.raises(ValidationError) as info:
        log.add(bad)
    assert info.value.code is ErrorCode.NOT_MEMBER
    with pytest.raises(ValidationError) as info:
        log.add_raw(bad.key, bad.raw)
    assert info.value.code is ErrorCode.NOT_MEMBER
    assert bad.key not in log and [c.key for c in log.timeline()] == [ok.key]


# -- membership proofs ------------------------------------------------------------------------


def full_view() -> MembershipView:
    view = MembershipView(genesis())
    view.add_certs(
        [
            make_cert(FOUNDER, MESH, A.public_key),
            make_cert(A, MESH, B.public_key),
            make_cert(B, MESH, C.public_key),
            make_cert(X, MESH, Y.public_key),
        ]
    )
    return view


def test_membership_proof_verifies_standalone() -> None:
    view = full_view()
    for who in (FOUNDER, A, B, C):
        proof = membership_proof(view, who.public_key)
        assert len(proof) == 1 + len(view.chain(who.public_key))
        assert verify_proof(MESH, who.public_key, proof)
    proof = membership_proof(view, C.public_key)
    assert not verify_proof(MESH, B.public_key, proof)  # proves C, not B
    assert not verify_proof(genesis("other").key, C.public_key, proof)
    assert not verify_proof(MESH, C.public_key, [proof[0], proof[2], proof[1], proof[3]])
    assert not verify_proof(MESH, C.public_key, proof[:1] + proof[2:])  # a link missing
    assert not verify_proof(MESH, C.public_key, [])
    with pytest.raises(LocalError):
        membership_proof(view, Y.public_key)
    forged = [proof[0], make_cert(X, MESH, Y.public_key).raw]
    assert not verify_proof(MESH, Y.public_key, forged)


def test_tampered_proof_fails() -> None:
    proof = membership_proof(full_view(), C.public_key)
    for i, raw in enumerate(proof):
        for bad in flips(raw)[::7]:
            assert not verify_proof(MESH, C.public_key, [*proof[:i], bad, *proof[i + 1 :]])


# -- the roster -------------------------------------------------------------------------------


def test_roster_round_trip_and_members() -> None:
    view = full_view()
    roster = view.roster()
    assert roster.key == roster_key(MESH)
    got = validate(roster.key, roster.raw)
    assert isinstance(got, Roster) and got == roster
    assert roster.members() == {k.public_key for k in (FOUNDER, A, B, C)}  # X→Y left out
    assert MembershipView.from_roster(roster).members() == view.members()
    assert rejected(roster_key(sha256(b"other")), roster.raw) is ErrorCode.HASH_MISMATCH


def roster_raw(mesh: bytes, genesis_raw: bytes, certs: list[Cert]) -> bytes:
    body = {
        "kind": "roster",
        "mesh": mesh,
        "genesis": genesis_raw,
        "certs": sorted(c.raw for c in certs),
    }
    return encode({"body": body, "sig": b""})


def test_roster_with_unchained_or_foreign_cert_is_rejected() -> None:
    g = genesis()
    good = [make_cert(FOUNDER, MESH, A.public_key)]
    raw = roster_raw(MESH, g.raw, [*good, make_cert(X, MESH, Y.public_key)])
    assert rejected(roster_key(MESH), raw) is ErrorCode.NOT_MEMBER
    foreign = make_cert(FOUNDER, genesis("other").key, B.public_key)
    raw = roster_raw(MESH, g.raw, [*good, foreign])
    assert rejected(roster_key(MESH), raw) is ErrorCode.MALFORMED
    raw = roster_raw(MESH, genesis("other").raw, good)
    assert rejected(roster_key(MESH), raw) is ErrorCode.HASH_MISMATCH
    body = {"kind": "roster", "mesh": MESH, "genesis": g.raw, "certs": [c.raw for c in good]}
    signed = seal(FOUNDER, body)  # a roster carries no signature of its own
    assert rejected(roster_key(MESH), signed) is ErrorCode.MALFORMED


def test_tampered_records_are_rejected() -> None:
    view = full_view()
    records = [genesis(), make_cert(FOUNDER, MESH, A.public_key), view.roster()]
    for rec in records:
        assert validate(rec.key, rec.raw) == rec
        for bad in flips(rec.raw):
            with pytest.raises(ValidationError):
                validate(rec.key, bad)


def test_roster_merge_is_a_union() -> None:
    g = genesis()
    ca = make_cert(FOUNDER, MESH, A.public_key)
    cb = make_cert(A, MESH, B.public_key)
    cc = make_cert(FOUNDER, MESH, C.public_key)
    r1, r2 = make_roster(g, [ca, cb]), make_roster(g, [cc])
    both = merge(r1, r2)
    assert isinstance(both, Roster)
    assert both == merge(r2, r1) == make_roster(g, [ca, cb, cc])
    assert merge(both, r1) is both and merge(None, r1) is r1
    assert validate(both.key, both.raw) == both
    assert select(r1, both) and not select(both, r1) and not select(r1, r2)
    assert not select(both, both)


def test_roster_bound_keeps_chains_closed() -> None:
    g = genesis("small", max_roster=2)
    m = g.key
    certs = [
        make_cert(FOUNDER, m, A.public_key),
        make_cert(A, m, B.public_key),
        make_cert(B, m, C.public_key),
        make_cert(FOUNDER, m, X.public_key),
    ]
    roster = make_roster(g, certs)
    assert len(roster.certs) == 2
    assert all(c.admitter == FOUNDER.public_key for c in roster.certs)  # nearest first
    assert validate(roster.key, roster.raw) == roster
    raw = roster_raw(m, g.raw, certs[:3])
    assert rejected(roster_key(m), raw) is ErrorCode.MALFORMED  # over the mesh's bound


@settings(deadline=None, max_examples=40)
@given(st.permutations(range(5)), st.integers(1, 4))
def test_roster_and_view_ignore_order(perm: list[int], split: int) -> None:
    ids = [A, B, C, X, Y]
    certs = [
        make_cert(FOUNDER if i == 0 else ids[i - 1], MESH, ids[i].public_key) for i in range(5)
    ]
    shuffled = [certs[i] for i in perm]
    g = genesis()
    r1, r2 = make_roster(g, shuffled[:split]), make_roster(g, shuffled[split:])
    merged = merge(r1, r2)
    assert merge(r2, r1) == merged
    view = MembershipView(g)
    view.add_certs(shuffled)
    assert view.members() == {FOUNDER.public_key, *(k.public_key for k in ids)}
    assert view.roster() == make_roster(g, certs)
    # each partial roster keeps only what already chains; the union may chain more later
    assert set(merged.members()) <= view.members()
