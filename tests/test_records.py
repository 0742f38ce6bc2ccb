"""Records: make, validate (every error code) and select (pure, no I/O)."""

from __future__ import annotations

from typing import Any

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chorusdht.codec import decode, encode
from chorusdht.errors import ErrorCode, RemoteProtocolError, ValidationError
from chorusdht.identity import Identity
from chorusdht.ids import sha256
from chorusdht.records import (
    DEFAULT_MAX_RECORD,
    HEAD_CONTEXT,
    MAX_PARENTS,
    Chunk,
    Head,
    head_key,
    make_chunk,
    make_head,
    select,
    validate,
)

ALICE = Identity.from_seed(b"\x01" * 32)
BOB = Identity.from_seed(b"\x02" * 32)
MESH = sha256(b"mesh")
H1, H2, H3 = sha256(b"1"), sha256(b"2"), sha256(b"3")


def chunk(
    signer: Identity = ALICE,
    *,
    seq: int = 1,
    prev: bytes | None = None,
    parents: tuple[bytes, ...] = (),
    payload: bytes = b"hello",
) -> Chunk:
    return make_chunk(
        signer,
        mesh=MESH,
        seq=seq,
        prev=prev,
        parents=parents,
        lamport=seq,
        time=1000,
        payload=payload,
    )


def head(signer: Identity = ALICE, *, seq: int = 1, chunk_hash: bytes = H1) -> Head:
    return make_head(signer, mesh=MESH, seq=seq, chunk_hash=chunk_hash, lamport=seq)


def body_of(raw: bytes) -> dict[str, Any]:
    obj = decode(raw)
    assert isinstance(obj, dict)
    body = obj["body"]
    assert isinstance(body, dict)
    return body


def sealed(signer: Identity, body: dict[str, Any]) -> tuple[bytes, bytes]:
    """(key, raw) of `body` signed by `signer`, keyed as a chunk (SHA-256 of the bytes)."""
    raw = encode({"body": body, "sig": signer.sign(encode(body))})
    return sha256(raw), raw


def rejects(key: bytes, raw: bytes, code: ErrorCode, **kw: Any) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        validate(key, raw, **kw)
    assert info.value.code is code, str(info.value)
    return info.value


# ---- make, then validate ---------------------------------------------------------------------


def test_chunk_round_trip() -> None:
    c = chunk(seq=2, prev=H3, parents=(H2, H1), payload=b"\x00payload")
    assert c.key == sha256(c.raw)
    assert c.author == ALICE.public_key and c.mesh == MESH
    assert c.parents == tuple(sorted((H1, H2)))
    got = validate(c.key, c.raw)
    assert got == c
    assert isinstance(got, Chunk) and got.kind == "chunk"
    assert encode(decode(c.raw)) == c.raw  # canonical bytes


def test_first_chunk_round_trip() -> None:
    c = chunk()
    assert c.prev is None and c.parents == () and c.seq == 1
    assert validate(c.key, c.raw) == c


def test_head_round_trip() -> None:
    h = head(seq=7, chunk_hash=H2)
    assert h.key == head_key(MESH, ALICE.public_key) == sha256(HEAD_CONTEXT, MESH, ALICE.public_key)
    got = validate(h.key, h.raw)
    assert got == h
    assert isinstance(got, Head) and got.kind == "head" and got.seq == 7 and got.hash == H2


def test_chunk_body_has_exactly_the_design_fields() -> None:
    body = body_of(chunk().raw)
    assert set(body) == {"mesh", "author", "seq", "prev", "parents", "lamport", "time", "payload"}


@settings(deadline=None, max_examples=50)
@given(
    seq=st.integers(min_value=1, max_value=2**40),
    parents=st.lists(st.binary(min_size=32, max_size=32), max_size=5, unique=True),
    lamport=st.integers(min_value=1, max_value=2**40),
    time=st.integers(min_value=0, max_value=2**50),
    payload=st.binary(max_size=2048),
)
def test_any_well_formed_chunk_round_trips(
    seq: int, parents: list[bytes], lamport: int, time: int, payload: bytes
) -> None:
    c = make_chunk(
        ALICE,
        mesh=MESH,
        seq=seq,
        prev=None if seq == 1 else H1,
        parents=tuple(parents),
        lamport=lamport,
        time=time,
        payload=payload,
    )
    assert validate(c.key, c.raw) == c


# ---- TOO_LARGE ------------------------------------------------------------------------------


def test_too_large() -> None:
    c = chunk(payload=b"x" * DEFAULT_MAX_RECORD)
    assert len(c.raw) > DEFAULT_MAX_RECORD
    rejects(c.key, c.raw, ErrorCode.TOO_LARGE)


def test_max_size_is_configurable() -> None:
    c = chunk(payload=b"x" * 200)
    assert validate(c.key, c.raw, max_size=len(c.raw)) == c
    rejects(c.key, c.raw, ErrorCode.TOO_LARGE, max_size=len(c.raw) - 1)


def test_too_large_is_checked_before_parsing() -> None:
    rejects(b"\x00" * 32, b"\xff" * (DEFAULT_MAX_RECORD + 1), ErrorCode.TOO_LARGE)


# ---- MALFORMED ------------------------------------------------------------------------------


def test_non_canonical_bytes_are_malformed() -> None:
    c = chunk()
    obj = decode(c.raw)
    assert isinstance(obj, dict)
    # Same content, map keys in insertion order: "body" before "sig" is not length-first.
    raw = cbor2.dumps({"body": obj["body"], "sig": obj["sig"]}, canonical=False)
    assert raw != c.raw and decode(raw) == obj
    rejects(sha256(raw), raw, ErrorCode.MALFORMED)


def test_non_shortest_integer_head_is_malformed() -> None:
    c = chunk()
    # 0xa2 = map(2). Re-encode it with a one-byte length argument: 0xb8 0x02.
    raw = b"\xb8\x02" + c.raw[1:]
    assert decode(raw) == decode(c.raw)
    rejects(sha256(raw), raw, ErrorCode.MALFORMED)


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x00",
        b"\xa0",  # {}
        encode([1, 2]),
        encode({"body": {}}),
        encode({"body": {}, "sig": b"", "x": 1}),
        encode({"body": b"", "sig": b""}),
        encode({"body": {}, "sig": "text"}),
        b"\xa2\x64body",  # truncated
        b"\xc0\x00",  # a tag
    ],
)
def test_not_a_record_is_malformed(raw: bytes) -> None:
    rejects(sha256(raw), raw, ErrorCode.MALFORMED)


def _mutated(change: dict[str, Any], drop: tuple[str, ...] = ()) -> tuple[bytes, bytes]:
    body = body_of(chunk(seq=2, prev=H1).raw)
    body.update(change)
    for name in drop:
        del body[name]
    return sealed(ALICE, body)


@pytest.mark.parametrize(
    ("change", "drop"),
    [
        ({"extra": 1}, ()),
        ({}, ("time",)),
        ({}, ("payload",)),
        ({"kind": "chunk"}, ()),  # a chunk names no kind
        ({"seq": 0}, ()),
        ({"seq": -1}, ()),
        ({"seq": "1"}, ()),
        ({"seq": True}, ()),
        ({"mesh": b"short"}, ()),
        ({"mesh": "not bytes" * 4}, ()),
        ({"author": b"\x00" * 31}, ()),
        ({"prev": None}, ()),  # seq 2 needs a prev
        ({"prev": b"\x00" * 31}, ()),
        ({"parents": b"\x00" * 32}, ()),
        ({"parents": [b"\x00" * 31]}, ()),
        ({"parents": [b"\x00" * 32, b"\x00" * 32]}, ()),  # duplicate
        ({"parents": [sha256(bytes([i])) for i in range(MAX_PARENTS + 1)]}, ()),
        ({"lamport": 0}, ()),
        ({"time": -1}, ()),
        ({"payload": "text"}, ()),
    ],
)
def test_wrong_chunk_fields_are_malformed(change: dict[str, Any], drop: tuple[str, ...]) -> None:
    key, raw = _mutated(change, drop)
    rejects(key, raw, ErrorCode.MALFORMED)


def test_seq_one_with_prev_is_malformed() -> None:
    body = body_of(chunk().raw)
    body["prev"] = H1
    key, raw = sealed(ALICE, body)
    rejects(key, raw, ErrorCode.MALFORMED)
    with pytest.raises(ValidationError) as info:
        make_chunk(ALICE, mesh=MESH, seq=1, prev=H1, lamport=1, time=0, payload=b"")
    assert info.value.code is ErrorCode.MALFORMED


def test_unsorted_parents_are_malformed() -> None:
    body = body_of(chunk(seq=2, prev=H1, parents=(H1, H2, H3)).raw)
    body["parents"] = sorted([H1, H2, H3], reverse=True)
    key, raw = sealed(ALICE, body)
    rejects(key, raw, ErrorCode.MALFORMED)


def test_head_with_wrong_fields_is_malformed() -> None:
    body = body_of(head().raw)
    for change in ({"extra": 1}, {"seq": 0}, {"hash": b"\x00"}, {"lamport": "x"}):
        b = dict(body, **change)
        raw = encode({"body": b, "sig": ALICE.sign(encode(b))})
        rejects(head_key(MESH, ALICE.public_key), raw, ErrorCode.MALFORMED)
    b = {k: v for k, v in body.items() if k != "hash"}
    raw = encode({"body": b, "sig": ALICE.sign(encode(b))})
    rejects(head_key(MESH, ALICE.public_key), raw, ErrorCode.MALFORMED)


def test_unknown_kind_is_malformed() -> None:
    body = dict(body_of(head().raw), kind="roster?")
    key, raw = sealed(ALICE, body)
    rejects(key, raw, ErrorCode.MALFORMED)


# ---- HASH_MISMATCH --------------------------------------------------------------------------


def test_chunk_key_must_be_the_hash_of_its_bytes() -> None:
    c = chunk()
    rejects(sha256(b"another"), c.raw, ErrorCode.HASH_MISMATCH)
    rejects(chunk(payload=b"other").key, c.raw, ErrorCode.HASH_MISMATCH)


def test_head_key_must_match_mesh_and_author() -> None:
    h = head()
    rejects(head_key(MESH, BOB.public_key), h.raw, ErrorCode.HASH_MISMATCH)
    rejects(head_key(sha256(b"other mesh"), ALICE.public_key), h.raw, ErrorCode.HASH_MISMATCH)
    rejects(sha256(h.raw), h.raw, ErrorCode.HASH_MISMATCH)  # a head is not keyed by its hash


# ---- BAD_SIGNATURE --------------------------------------------------------------------------


def test_chunk_resigned_by_another_key() -> None:
    c = chunk()
    body = body_of(c.raw)
    assert body["author"] == ALICE.public_key
    key, raw = sealed(BOB, body)  # the author field still says Alice; Bob signed
    assert key != c.key
    rejects(key, raw, ErrorCode.BAD_SIGNATURE)


def test_chunk_claiming_another_author() -> None:
    body = dict(body_of(chunk().raw), author=BOB.public_key)
    key, raw = sealed(ALICE, body)
    rejects(key, raw, ErrorCode.BAD_SIGNATURE)


@pytest.mark.parametrize("index", [0, 17, 31, 32, 63])
def test_flipped_signature_byte(index: int) -> None:
    c = chunk()
    obj = decode(c.raw)
    assert isinstance(obj, dict)
    sig = bytearray(obj["sig"])
    sig[index] ^= 0x01
    raw = encode({"body": obj["body"], "sig": bytes(sig)})
    rejects(sha256(raw), raw, ErrorCode.BAD_SIGNATURE)


@pytest.mark.parametrize("sig", [b"", b"\x00" * 63, b"\x00" * 64, b"\x00" * 65])
def test_signature_of_wrong_shape(sig: bytes) -> None:
    raw = encode({"body": body_of(chunk().raw), "sig": sig})
    rejects(sha256(raw), raw, ErrorCode.BAD_SIGNATURE)


def test_head_resigned_by_another_key() -> None:
    body = body_of(head().raw)
    raw = encode({"body": body, "sig": BOB.sign(encode(body))})
    rejects(head_key(MESH, ALICE.public_key), raw, ErrorCode.BAD_SIGNATURE)


def test_crypto_is_injected() -> None:
    class RejectAll:
        def verify(self, public_key: bytes, data: bytes, signature: bytes) -> bool:
            return False

    class AcceptAll:
        def verify(self, public_key: bytes, data: bytes, signature: bytes) -> bool:
            return True

    c = chunk()
    rejects(c.key, c.raw, ErrorCode.BAD_SIGNATURE, crypto=RejectAll())
    raw = encode({"body": body_of(c.raw), "sig": b"nope"})
    accepted = validate(sha256(raw), raw, crypto=AcceptAll())
    assert isinstance(accepted, Chunk) and accepted.author == ALICE.public_key


# ---- NOT_MEMBER -----------------------------------------------------------------------------


def test_not_member() -> None:
    c = chunk()
    h = head()
    seen: list[tuple[bytes, bytes]] = []

    def nobody(mesh: bytes, author: bytes) -> bool:
        seen.append((mesh, author))
        return False

    rejects(c.key, c.raw, ErrorCode.NOT_MEMBER, is_member=nobody)
    rejects(h.key, h.raw, ErrorCode.NOT_MEMBER, is_member=nobody)
    assert seen == [(MESH, ALICE.public_key)] * 2
    assert validate(c.key, c.raw, is_member=lambda m, a: a == ALICE.public_key) == c


def test_membership_is_checked_after_the_signature() -> None:
    body = body_of(chunk().raw)
    key, raw = sealed(BOB, body)
    calls: list[bytes] = []

    def member(mesh: bytes, author: bytes) -> bool:
        calls.append(author)
        return False

    rejects(key, raw, ErrorCode.BAD_SIGNATURE, is_member=member)
    assert calls == []  # a forged record never gets as far as the roster


def test_validation_error_is_a_remote_error_with_its_code_in_the_message() -> None:
    c = chunk()
    err = rejects(b"\x00" * 32, c.raw, ErrorCode.HASH_MISMATCH)
    assert isinstance(err, RemoteProtocolError)
    assert str(err).startswith("HASH_MISMATCH")


# ---- select ---------------------------------------------------------------------------------


def test_select_first_record_wins() -> None:
    assert select(None, head()) is True
    assert select(None, chunk()) is True


def test_select_higher_head_seq_wins() -> None:
    assert select(head(seq=1), head(seq=2, chunk_hash=H2)) is True
    assert select(head(seq=2), head(seq=10**6, chunk_hash=H2)) is True


@pytest.mark.parametrize(("current", "incoming"), [(2, 1), (5, 2), (3, 3)])
def test_select_equal_or_lower_seq_is_stale(current: int, incoming: int) -> None:
    with pytest.raises(ValidationError) as info:
        select(head(seq=current, chunk_hash=H1), head(seq=incoming, chunk_hash=H2))
    assert info.value.code is ErrorCode.STALE_SEQ


def test_select_identical_raw_is_no_change() -> None:
    h = head(seq=3)
    assert select(h, head(seq=3)) is False  # Ed25519 is deterministic: same bytes
    c = chunk()
    assert select(c, validate(c.key, c.raw)) is False


def test_select_keeps_the_stored_chunk() -> None:
    assert select(chunk(payload=b"a"), chunk(payload=b"b")) is False


# ---- properties -----------------------------------------------------------------------------


_VALID = chunk(seq=3, prev=H1, parents=(H2, H3), payload=b"some opaque payload bytes")


def _flip_rejected(pos: int, xor: int) -> None:
    raw = bytearray(_VALID.raw)
    raw[pos] ^= xor
    flipped = bytes(raw)
    for key in (_VALID.key, sha256(flipped)):
        try:
            validate(key, flipped)
        except ValidationError:
            continue
        raise AssertionError(f"flipping byte {pos} by {xor:#x} still validates")


@settings(deadline=None, max_examples=300)
@given(data=st.data())
def test_flipping_any_byte_never_validates(data: st.DataObject) -> None:
    pos = data.draw(st.integers(min_value=0, max_value=len(_VALID.raw) - 1), label="pos")
    xor = data.draw(st.integers(min_value=1, max_value=255), label="xor")
    _flip_rejected(pos, xor)  # only ValidationError may escape validate(); anything else fails


def test_flipping_each_byte_never_validates() -> None:
    for pos in range(len(_VALID.raw)):
        for xor in (0x01, 0x80, 0xFF):
            _flip_rejected(pos, xor)


@settings(deadline=None, max_examples=200)
@given(raw=st.binary(max_size=600), key=st.binary(min_size=32, max_size=32))
def test_random_bytes_raise_only_validation_error(raw: bytes, key: bytes) -> None:
    with pytest.raises(ValidationError):
        validate(key, raw)


@settings(deadline=None, max_examples=100)
@given(
    body=st.dictionaries(
        st.sampled_from(
            [
                "mesh",
                "author",
                "seq",
                "prev",
                "parents",
                "lamport",
                "time",
                "payload",
                "kind",
                "hash",
                "x",
            ]
        ),
        st.none()
        | st.booleans()
        | st.integers(min_value=-(2**63), max_value=2**63 - 1)
        | st.binary(max_size=40)
        | st.text(max_size=8)
        | st.lists(st.binary(min_size=31, max_size=33), max_size=3),
    )
)
def test_signed_garbage_bodies_raise_only_validation_error(body: dict[str, Any]) -> None:
    key, raw = sealed(ALICE, body)
    for k in (key, head_key(MESH, ALICE.public_key)):
        with pytest.raises(ValidationError):
            validate(k, raw)


def _verdict(raw: bytes) -> object:
    try:
        rec = validate(sha256(raw), raw)
    except ValidationError as e:
        return e.code
    return (rec.kind, rec.key)


@settings(max_examples=300, deadline=None)
@given(
    parents=st.integers(0, 30),
    payload=st.binary(max_size=400),
    edits=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=3),
    cut=st.integers(-3, 3),
)
def test_the_chunk_layout_fast_path_judges_every_record_as_the_full_scan_does(
    parents: int, payload: bytes, edits: list[tuple[int, int]], cut: int
) -> None:
    import chorusdht.records as records

    hashes = sorted({sha256(bytes([i])) for i in range(parents)})
    prev = sha256(b"prev")
    fields = {"seq": 2, "prev": prev, "parents": hashes, "lamport": 3, "time": 9}
    raw = make_chunk(ALICE, mesh=sha256(b"m"), payload=payload, **fields).raw
    assert records._chunk_shaped(raw)
    b = bytearray(raw)
    for at, value in edits:  # byte edits anywhere, heads included
        b[at % len(b)] = value
    mutated = bytes(b[: len(b) + cut] if cut < 0 else b + bytes(cut))
    fast = _verdict(mutated)
    with pytest.MonkeyPatch.context() as m:
        m.setattr(records, "_chunk_shaped", lambda raw: False)
        assert _verdict(mutated) == fast
    if not edits and not cut:
        assert fast == ("chunk", sha256(raw))
