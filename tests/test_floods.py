"""Floods and quotas (tier 1, virtual time): a flooding peer is limited, honest ones are not."""

from __future__ import annotations

import random

from chorusdht import ErrorCode, Identity, MemoryStore, NodeConfig, NodeCore, make_chunk
from chorusdht.messages import (
    ErrorReply,
    Header,
    Message,
    Store,
    Stored,
    decode_message,
    encode_message,
)

FLOODER = ("10.9.9.9", 4000)  # labels only: these cores never touch a socket
HONEST = ("10.1.1.1", 4000)


def core(config: NodeConfig) -> NodeCore:
    return NodeCore(
        Identity.from_seed(b"\x11" * 32),
        MemoryStore(),
        rng=random.Random(1),
        now=0.0,
        config=config,
    )


def store_from(c: NodeCore, sender: Identity, addr: tuple[str, int], i: int, now: float) -> object:
    chunk = make_chunk(
        sender,
        mesh=b"\x02" * 32,
        seq=1,
        prev=None,
        lamport=1,
        time=i,
        payload=random.Random(i).randbytes(512),
    )
    msg = Message(
        Header(i.to_bytes(8, "big"), sender.node_id, sender.public_key),
        Store(chunk.key, chunk.raw),
    )
    c.receive_datagram(encode_message(msg), addr, now)
    replies = [decode_message(d) for d, a in c.datagrams_to_send() if a == addr]
    answers = [r.body for r in replies if r.header.txid == msg.header.txid]
    return answers[0] if answers else None


def test_a_flooding_peer_is_rate_limited_and_honest_stores_still_succeed() -> None:
    c = core(NodeConfig(rate_limit_per_ip=100, rate_limit_global=1000))
    flooder, honest = Identity.from_seed(b"\x21" * 32), Identity.from_seed(b"\x22" * 32)
    outcomes = []
    for i in range(2000):  # 2,000 STOREs in one virtual second from one address
        outcomes.append(store_from(c, flooder, FLOODER, i, now=i / 2000))
    stored = sum(isinstance(o, Stored) for o in outcomes)
    limited = sum(isinstance(o, ErrorReply) and o.code is ErrorCode.RATE_LIMITED for o in outcomes)
    assert stored <= 200  # a one-second burst plus one second of refill
    assert limited >= 1 and c.stats["rate_limited"] >= 1700
    ok = [store_from(c, honest, HONEST, 10_000 + i, now=1.0 + i / 100) for i in range(50)]
    assert all(isinstance(o, Stored) for o in ok)


def test_a_peer_past_its_storage_quota_gets_quota_and_others_still_store() -> None:
    c = core(NodeConfig(max_bytes_per_origin=20_000, rate_limit_per_ip=None))
    flooder, honest = Identity.from_seed(b"\x23" * 32), Identity.from_seed(b"\x24" * 32)
    outcomes = [store_from(c, flooder, FLOODER, i, now=float(i)) for i in range(100)]
    quota = [o for o in outcomes if isinstance(o, ErrorReply) and o.code is ErrorCode.QUOTA]
    assert quota and sum(isinstance(o, Stored) for o in outcomes) < 40
    ok = [store_from(c, honest, HONEST, 1000 + i, now=200.0 + i) for i in range(20)]
    assert all(isinstance(o, Stored) for o in ok)


def test_a_full_node_refuses_new_records_but_keeps_what_it_has() -> None:
    c = core(NodeConfig(max_store_bytes=30_000, max_bytes_per_origin=None))
    sender = Identity.from_seed(b"\x25" * 32)
    outcomes = [store_from(c, sender, HONEST, i, now=float(i)) for i in range(100)]
    assert any(isinstance(o, ErrorReply) and o.code is ErrorCode.QUOTA for o in outcomes)
    kept = sum(isinstance(o, Stored) for o in outcomes)
    assert len(c.store) == kept and c.store.total_bytes() <= 30_000
