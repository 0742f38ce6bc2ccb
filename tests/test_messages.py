"""Wire messages: round trips of every body type, hostile bytes, versions and sizes."""

from __future__ import annotations

import contextlib
import ipaddress
from typing import Any, get_args

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chorusdht.codec import MAX_DATAGRAM, encode
from chorusdht.errors import ConfigError, DecodeError, ErrorCode
from chorusdht.messages import (
    CHALLENGE_CONTEXT,
    MAX_CONTACTS_PER_REPLY,
    MAX_KEYS_PER_REQUEST,
    MAX_RECORDS_PER_REPLY,
    NONCE_BYTES,
    PROTOCOL_VERSION,
    SHARED_NODE_INFOS_DEFAULT,
    TXID_BYTES,
    Body,
    ErrorReply,
    FindNode,
    FindValue,
    GetMany,
    Header,
    List,
    Listed,
    Message,
    NodeInfo,
    Nodes,
    Ping,
    Pong,
    Records,
    Store,
    Stored,
    Value,
    VersionMismatch,
    challenge_payload,
    decode_message,
    encode_message,
    share_node_infos,
    shared_node_info,
)

ROUTING_BUDGET = 1200  # DESIGN §3: routing messages stay well under 1,200 bytes


def b(n: int) -> st.SearchStrategy[bytes]:
    return st.binary(min_size=n, max_size=n)


ID = b(32)
HOSTS = st.ip_addresses().map(str)
NODE_INFOS = st.builds(NodeInfo, ID, HOSTS, st.integers(min_value=1, max_value=65535))
NODE_LISTS = st.lists(NODE_INFOS, max_size=MAX_CONTACTS_PER_REPLY).map(tuple)
RECORD = st.binary(max_size=300)
RECORD_LISTS = st.lists(RECORD, max_size=8).map(tuple)
KEY_LISTS = st.lists(ID, max_size=40).map(tuple)

HEADERS = st.builds(
    Header,
    txid=b(TXID_BYTES),
    sender_id=ID,
    sender_key=ID,
    challenge=st.none() | b(NONCE_BYTES),
    proof=st.none() | b(64),
)

BODIES: dict[str, st.SearchStrategy[Any]] = {
    "ping": st.just(Ping()),
    "find_node": st.builds(FindNode, ID),
    "find_value": st.builds(FindValue, ID),
    "store": st.builds(Store, ID, st.binary(max_size=4096)),
    "list": st.builds(
        List, ID, st.none() | ID, st.integers(min_value=1, max_value=MAX_KEYS_PER_REQUEST)
    ),
    "get_many": st.builds(GetMany, KEY_LISTS),
    "pong": st.just(Pong()),
    "nodes": st.builds(Nodes, NODE_LISTS),
    "value": st.builds(Value, RECORD_LISTS, NODE_LISTS),
    "stored": st.just(Stored()),
    "error": st.builds(ErrorReply, st.sampled_from(ErrorCode), st.text(max_size=200)),
    "listed": st.builds(Listed, KEY_LISTS, st.none() | ID),
    "records": st.builds(Records, RECORD_LISTS),
}
REQUESTS = {"ping", "find_node", "find_value", "store", "list", "get_many"}


def header(**kw: Any) -> Header:
    fields: dict[str, Any] = {"txid": b"t" * 8, "sender_id": b"i" * 32, "sender_key": b"k" * 32}
    fields.update(kw)
    return Header(**fields)


def envelope(t: str, **fields: Any) -> dict[str, Any]:
    m: dict[str, Any] = {"v": PROTOCOL_VERSION, "t": t, "x": b"t" * 8, "i": b"i" * 32}
    m["k"] = b"k" * 32
    m.update(fields)
    return m


def decode_fails(data: bytes, code: ErrorCode = ErrorCode.MALFORMED) -> DecodeError:
    with pytest.raises(DecodeError) as info:
        decode_message(data)
    assert info.value.code is code
    return info.value


# ---- round trips ----------------------------------------------------------------------------


def test_every_body_type_has_a_strategy() -> None:
    names = {t.TYPE for t in get_args(Body)}
    assert names == set(BODIES)


@pytest.mark.parametrize("name", sorted(BODIES))
@settings(deadline=None, max_examples=40)
@given(data=st.data())
def test_round_trip(name: str, data: st.DataObject) -> None:
    msg = Message(data.draw(HEADERS, label="header"), data.draw(BODIES[name], label="body"))
    wire = encode_message(msg)
    assert len(wire) <= MAX_DATAGRAM
    back = decode_message(wire)
    assert back == msg
    assert type(back.body) is type(msg.body)
    assert encode_message(back) == wire  # canonical: one message, one encoding
    assert back.is_request == (name in REQUESTS)


def test_ipv6_and_mapped_addresses_round_trip() -> None:
    nodes = (
        NodeInfo(b"\x01" * 32, "2001:db8::1", 4000),
        NodeInfo(b"\x02" * 32, str(ipaddress.ip_address("::ffff:192.0.2.1")), 1),
        NodeInfo(b"\x03" * 32, "192.0.2.1", 65535),
    )
    msg = Message(header(), Nodes(nodes))
    assert decode_message(encode_message(msg)) == msg


def test_challenge_payload_binds_nonce_and_requester() -> None:
    nonce, requester = b"n" * NONCE_BYTES, b"r" * 32
    assert challenge_payload(nonce, requester) == CHALLENGE_CONTEXT + nonce + requester
    assert challenge_payload(nonce, requester) != challenge_payload(nonce, b"s" * 32)


# ---- hostile bytes --------------------------------------------------------------------------


@settings(deadline=None, max_examples=300)
@given(data=st.binary(max_size=400))
def test_random_bytes_raise_only_decode_error(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        decode_message(data)


@settings(deadline=None, max_examples=300)
@given(data=st.data())
def test_mutated_messages_raise_only_decode_error(data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(sorted(BODIES)), label="type")
    wire = bytearray(encode_message(Message(data.draw(HEADERS), data.draw(BODIES[name]))))
    for _ in range(data.draw(st.integers(min_value=1, max_value=4), label="flips")):
        pos = data.draw(st.integers(min_value=0, max_value=len(wire) - 1))
        wire[pos] = data.draw(st.integers(min_value=0, max_value=255))
    cut = data.draw(st.integers(min_value=0, max_value=len(wire)), label="cut")
    for candidate in (bytes(wire), bytes(wire[:cut])):
        try:
            msg = decode_message(candidate)
        except DecodeError:
            continue
        assert decode_message(encode_message(msg)) == msg


def test_truncations_are_malformed() -> None:
    wire = encode_message(Message(header(challenge=b"c" * 16), FindNode(b"x" * 32)))
    for n in range(len(wire)):
        decode_fails(wire[:n])


def test_oversized_datagram_is_too_large() -> None:
    decode_fails(b"\x00" * (MAX_DATAGRAM + 1), ErrorCode.TOO_LARGE)
    msg = Message(header(), Store(b"k" * 32, b"r" * 2000))
    wire = encode_message(msg)
    with pytest.raises(DecodeError) as info:
        decode_message(wire, max_size=len(wire) - 1)
    assert info.value.code is ErrorCode.TOO_LARGE


def test_deep_nesting_is_malformed() -> None:
    decode_fails(b"\x81" * 200 + b"\x00")
    nested = cbor2.dumps(envelope("get_many", keys=[[[[[[[[b"x"]]]]]]]]), canonical=True)
    decode_fails(nested)


@pytest.mark.parametrize(
    "m",
    [
        [1, 2],
        envelope("nope"),
        envelope("find_node"),
        envelope("find_node", target=b"x" * 31),
        envelope("find_node", x=b"t" * 7, target=b"x" * 32),
        envelope("find_node", i=b"i" * 31, target=b"x" * 32),
        envelope("find_node", k=b"k" * 33, target=b"x" * 32),
        envelope("find_node", c=b"c" * 15, target=b"x" * 32),
        envelope("find_node", cs=b"s" * 63, target=b"x" * 32),
        envelope("store", key=b"x" * 32, rec="text"),
        envelope("list", mesh=b"m" * 32, cursor=None, limit=0),
        envelope("list", mesh=b"m" * 32, cursor=None, limit=MAX_KEYS_PER_REQUEST + 1),
        envelope("list", mesh=b"m" * 32, cursor=b"c", limit=1),
        envelope("get_many", keys=[b"k" * 32] * (MAX_KEYS_PER_REQUEST + 1)),
        envelope("get_many", keys=[b"k" * 31]),
        envelope("nodes", nodes=[[b"n" * 32, bytes(4), 1]] * (MAX_CONTACTS_PER_REPLY + 1)),
        envelope("nodes", nodes=[[b"n" * 32, bytes(5), 1]]),
        envelope("nodes", nodes=[[b"n" * 32, "127.0.0.1", 1]]),
        envelope("nodes", nodes=[[b"n" * 32, bytes(4), 0]]),
        envelope("nodes", nodes=[[b"n" * 32, bytes(4), 65536]]),
        envelope("nodes", nodes=[[b"n" * 32, bytes(4)]]),
        envelope("nodes", nodes=[[b"n" * 31, bytes(4), 1]]),
        envelope("value", recs=[b"r"] * (MAX_RECORDS_PER_REPLY + 1), nodes=[]),
        envelope("value", recs=[b"r"]),
        envelope("error", code="NOPE", detail=""),
        envelope("error", code="MALFORMED", detail="x" * 201),
        envelope("error", code="MALFORMED"),
        envelope("listed", keys=[], cursor=b"c" * 31),
        envelope("records", recs=["text"]),
        {"v": PROTOCOL_VERSION},
        {**envelope("ping"), "v": "1"},
        {k: v for k, v in envelope("ping").items() if k != "v"},
    ],
)
def test_bad_fields_are_malformed(m: object) -> None:
    err = decode_fails(encode(m))
    assert not isinstance(err, VersionMismatch)


# ---- versions -------------------------------------------------------------------------------


@pytest.mark.parametrize("version", [0, 2, 255, -1, 2**40])
def test_wrong_version_raises_version_mismatch_with_the_header(version: int) -> None:
    h = header(challenge=b"c" * 16, version=version)
    wire = encode_message(Message(h, FindNode(b"x" * 32)))
    with pytest.raises(VersionMismatch) as info:
        decode_message(wire)
    err = info.value
    assert isinstance(err, DecodeError)
    assert err.code is ErrorCode.UNSUPPORTED_VERSION
    assert err.header == h  # txid, sender and challenge: enough to answer UNSUPPORTED_VERSION


def test_wrong_version_with_an_unknown_type_is_still_a_version_mismatch() -> None:
    with pytest.raises(VersionMismatch) as info:
        decode_message(encode({**envelope("from_the_future", extra=[1]), "v": 2}))
    assert info.value.header.version == 2


def test_wrong_version_with_a_broken_header_is_plain_malformed() -> None:
    err = decode_fails(encode({**envelope("ping", x=b"short"), "v": 2}))
    assert not isinstance(err, VersionMismatch)


# ---- sizes (DESIGN §3) ----------------------------------------------------------------------


def _nodes(hosts: list[str]) -> tuple[NodeInfo, ...]:
    return tuple(NodeInfo(bytes([i]) * 32, host, 65535) for i, host in enumerate(hosts))


def _reply_size(nodes: tuple[NodeInfo, ...]) -> int:
    """A FIND_NODE reply that also answers a challenge: the largest routing reply."""
    return len(encode_message(Message(header(proof=b"p" * 64), Nodes(nodes))))


def test_find_node_reply_with_20_ipv4_contacts_is_under_1200_bytes() -> None:
    size = _reply_size(_nodes([f"203.0.113.{i}" for i in range(20)]))
    assert size < ROUTING_BUDGET, size


IPV6_MIN_MTU_PAYLOAD = 1280 - 40 - 8  # RFC 8200 minimum link MTU, less IPv6 and UDP headers


def test_find_node_reply_with_20_ipv6_contacts_is_never_fragmented() -> None:
    # An IPv6 contact is 12 bytes longer than an IPv4 one, so a full reply with a
    # challenge proof is ~1,210 bytes: over the IPv4 budget above, but it still fits
    # the IPv6 minimum MTU, so it is never fragmented on any IPv6 path.
    size = _reply_size(_nodes([f"2001:db8:aaaa:bbbb:cccc:dddd:eeee:{i:x}" for i in range(20)]))
    assert size <= IPV6_MIN_MTU_PAYLOAD, f"a FIND_NODE reply with 20 IPv6 contacts is {size} B"


def test_routing_requests_are_small() -> None:
    h = header(challenge=b"c" * 16)
    for body in (Ping(), FindNode(b"x" * 32), FindValue(b"x" * 32), Pong()):
        assert len(encode_message(Message(h, body))) < 200
    nodes = _nodes([f"203.0.113.{i}" for i in range(20)])
    assert len(encode_message(Message(header(proof=b"p" * 64), Value((), nodes)))) < 1200


def test_largest_lists_fit_a_datagram() -> None:
    keys = tuple(bytes([i % 256, i // 256]) * 16 for i in range(MAX_KEYS_PER_REQUEST))
    for body in (GetMany(keys), Listed(keys, keys[-1])):
        assert len(encode_message(Message(header(challenge=b"c" * 16), body))) < MAX_DATAGRAM


def test_share_node_infos_sizes_the_process_wide_cache() -> None:
    """Past its capacity the cache stops sharing (the first NodeInfo is made afresh);
    netsim sizes it for its node count, so every table then holds the same object."""
    ids = [bytes([i]) * 32 for i in range(1, 4)]
    share_node_infos(2)
    try:
        first = shared_node_info(ids[0], "192.0.2.1", 4000)
        assert shared_node_info(ids[0], "192.0.2.1", 4000) is first
        shared_node_info(ids[1], "192.0.2.2", 4000)
        shared_node_info(ids[2], "192.0.2.3", 4000)  # evicts the first
        again = shared_node_info(ids[0], "192.0.2.1", 4000)
        assert again == first and again is not first
        share_node_infos(8)
        kept = [shared_node_info(i, "192.0.2.9", 1) for i in ids]
        assert all(shared_node_info(i, "192.0.2.9", 1) is k for i, k in zip(ids, kept, strict=True))
        with pytest.raises(ConfigError, match="at least 1"):
            share_node_infos(0)
    finally:
        share_node_infos(SHARED_NODE_INFOS_DEFAULT)
