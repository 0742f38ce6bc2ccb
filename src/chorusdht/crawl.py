"""Find every reachable node by dumping each live peer's routing table, breadth first.

A lookup returns the k nodes nearest one target. A crawl built on lookups sees
each peer's neighbourhood but little of the rest of its table, and right after a
mass failure most of the contacts it is told about are dead. A full-size
recovery run (2,000 nodes, 90% killed) reached only 157 of the 200 survivors that
way; the chunks held by the other 43 were missed.

A table dump asks each peer that answers one FIND_NODE per bucket of *its*
table. The target for depth i shares exactly i leading bits with the peer's id,
so the reply is that bucket's contents (up to k), padded with deeper contacts
when the bucket holds fewer. Asking depth 0, 1, 2, ... until a reply comes back
short (then it held everything deeper too) sees every contact of every live
peer, and therefore every live node that any reached node knows. Crawlers of
public DHTs (for example IPFS's) work this way.

Cost: one FIND_NODE per bucket of each live peer (about log2(N / k) + 3 of
them) and one timed-out request per dead contact, with `CRAWL_PARALLEL` peers
at once.
"""

from __future__ import annotations

import random
from collections.abc import Collection

import trio

from .errors import ChorusError
from .ids import id_to_int
from .messages import MAX_CONTACTS_PER_REPLY
from .node import Node
from .transport import Address

__all__ = ["CRAWL_PARALLEL", "DumpProgress", "crawl_tables", "depth_target"]

CRAWL_PARALLEL = 16  # peers dumped at once
MAX_DEPTH = 64  # buckets asked per peer at most (a table of 2^64 nodes)

ID_BITS = 256


def depth_target(node_id: bytes, depth: int, rng: random.Random) -> bytes:
    """A random id sharing exactly `depth` leading bits with `node_id`."""
    me = id_to_int(node_id)
    flip = 1 << (ID_BITS - 1 - depth)
    low = rng.getrandbits(ID_BITS - 1 - depth) if depth < ID_BITS - 1 else 0
    high_bits = (me >> (ID_BITS - depth)) << (ID_BITS - depth) if depth else 0
    prefix = high_bits | ((me & flip) ^ flip)
    return (prefix | low).to_bytes(32, "big")


class DumpProgress:
    """What `crawl_tables` reports as it goes; the default reports nothing."""

    def found(self, n: int) -> None:
        pass


async def crawl_tables(
    node: Node,
    start: dict[bytes, Address],
    *,
    rng: random.Random,
    progress: DumpProgress | None = None,
    skip: Collection[bytes] = (),
) -> tuple[dict[bytes, Address], set[bytes]]:
    """Dump the tables of `start` and of every node they lead to.

    Returns (every node seen: id -> address, the ids of those that answered).
    This node and the ids in `skip` (found dead before) are left out of both.
    """
    progress = progress or DumpProgress()
    seen: dict[bytes, Address] = {}
    skip = set(skip)
    answered: set[bytes] = set()
    send, recv = trio.open_memory_channel[tuple[bytes, Address]](float("inf"))
    pending = 0  # peers queued or being dumped; the crawl ends when it reaches 0

    def learn(node_id: bytes, addr: Address) -> None:
        nonlocal pending
        if node_id == node.node_id or node_id in seen or node_id in skip:
            return
        seen[node_id] = addr
        pending += 1
        progress.found(1)
        send.send_nowait((node_id, addr))

    full = min(node.core.config.k, MAX_CONTACTS_PER_REPLY)

    async def dump(node_id: bytes, addr: Address) -> None:
        for depth in range(MAX_DEPTH):
            target = depth_target(node_id, depth, rng)
            try:
                res = await node.ask_nodes(addr, node_id, target)
            except ChorusError:
                return  # dead, or gone mid-dump: what it already told us stands
            answered.add(node_id)
            for n in res.nodes:
                learn(n.node_id, (n.host, n.port))
            if len(res.nodes) < full:
                # A short reply holds every contact the peer has at this depth or
                # deeper (deeper ones pad a bucket that has room): its table is seen.
                return

    async def worker() -> None:
        nonlocal pending
        async for node_id, addr in recv:
            try:
                await dump(node_id, addr)
            finally:
                pending -= 1
                if pending == 0:
                    send.close()

    for node_id, addr in start.items():
        learn(node_id, addr)
    if pending == 0:
        return seen, answered
    async with trio.open_nursery() as nursery:
        for _ in range(CRAWL_PARALLEL):
            nursery.start_soon(worker)
    return seen, answered
