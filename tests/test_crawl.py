"""The recovery crawl: dump every live peer's routing table (chorusdht.crawl).

Tier 1: `depth_target` picks an id in exactly the asked bucket of a peer.
Tier 2: right after 90% of a netsim swarm dies, a crawl through one survivor
reaches every survivor that any reached survivor knows (the ground truth is
computed from the survivors' own tables), where the lookup-based crawl it
replaced missed a fifth of them at full size.
"""

from __future__ import annotations

import random
from contextlib import AsyncExitStack

import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st
from netsim.trionet import SimNet

from chorusdht import Identity, MemoryStore, Node, NodeConfig, open_node
from chorusdht.crawl import crawl_tables, depth_target
from chorusdht.ids import id_to_int
from chorusdht.recovery_fetch import crawl


@given(st.binary(min_size=32, max_size=32), st.integers(0, 255), st.integers(0, 2**32))
def test_a_depth_target_shares_exactly_depth_leading_bits(
    node_id: bytes, depth: int, seed: int
) -> None:
    target = depth_target(node_id, depth, random.Random(seed))
    diff = id_to_int(node_id) ^ id_to_int(target)
    assert len(target) == 32
    assert 256 - diff.bit_length() == depth  # the first differing bit is bit `depth`


@pytest.mark.timeout(60)
async def test_after_a_mass_failure_the_crawl_reaches_every_survivor_a_survivor_knows(
    autojump_clock: trio.testing.MockClock,
) -> None:
    net = SimNet(11)
    config = NodeConfig(k=6)
    n = 120
    with trio.fail_after(3600):
        async with trio.open_nursery() as nursery, AsyncExitStack() as stack:
            await nursery.start(net.run)
            nodes: list[Node] = []
            for i in range(n):
                node = await stack.enter_async_context(
                    open_node(
                        transport=net.transport(),
                        identity=Identity.from_seed(bytes([i]) * 32),
                        store=MemoryStore(),
                        config=config,
                        rng=random.Random(i),
                    )
                )
                if nodes:
                    await node.bootstrap([nodes[0].address])
                nodes.append(node)
            await trio.sleep(600)  # lookups and refreshes settle the tables
            rng = random.Random(3)
            alive = rng.sample(nodes, 12)
            for node in nodes:
                if node not in alive:
                    net.kill(node.address)
            via = alive[0]

            # Ground truth: survivors reachable from `via` along the survivors' tables.
            live_ids = {node.node_id: node for node in alive}
            reach = {via.node_id}
            todo = [via]
            while todo:
                for c in todo.pop().core.table:
                    if c.node_id in live_ids and c.node_id not in reach:
                        reach.add(c.node_id)
                        todo.append(live_ids[c.node_id])
            assert len(reach) >= 4  # the test means something: more than a neighbour or two

            crawler = await stack.enter_async_context(
                open_node(
                    transport=net.transport(),
                    identity=Identity.from_seed(b"c" * 32),
                    store=MemoryStore(),
                    config=config,
                    rng=random.Random(99),
                )
            )
            seen, answered = await crawl_tables(
                crawler, {via.node_id: via.address}, rng=random.Random(5)
            )
            assert answered == reach
            assert reach <= set(seen)
            nursery.cancel_scope.cancel()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("patience", [0.0, 60.0])
async def test_with_patience_the_crawl_finds_survivors_that_turn_up_after_a_mass_failure(
    autojump_clock: trio.testing.MockClock, patience: float
) -> None:
    """Right after a mass failure the survivor we ask may know no living node yet
    (nuke99-chorus: a recovery 30 s after the kill reached 1 of 10 survivors). Here
    the survivor's table holds only the dead, and another survivor reaches it 10 s
    into the crawl: with patience the crawl asks again and finds it; without, not."""
    net = SimNet(12)
    config = NodeConfig(k=20)  # room in every bucket: `late` is admitted at once
    with trio.fail_after(3600):
        async with trio.open_nursery() as nursery, AsyncExitStack() as stack:
            await nursery.start(net.run)

            async def node(i: int, **kw: object) -> Node:
                return await stack.enter_async_context(
                    open_node(
                        transport=net.transport(),
                        identity=Identity.from_seed(bytes([i]) * 32),
                        store=MemoryStore(),
                        config=kw.get("config", config),  # type: ignore[arg-type]
                        rng=random.Random(i),
                    )
                )

            nodes = [await node(i) for i in range(16)]
            for n in nodes[1:]:
                await n.bootstrap([nodes[0].address])
            await trio.sleep(300)
            via = nodes[0]
            for n in nodes[1:]:
                net.kill(n.address)
            late = await node(100)  # a survivor `via` does not know yet

            async def turn_up() -> None:
                await trio.sleep(10)
                await late.bootstrap([via.address])

            nursery.start_soon(turn_up)
            crawler = await node(99, config=NodeConfig(k=20, read_only=True))
            found = await crawl(crawler, [via.address], patience=patience)
            assert len(found) >= 8  # it heard of the dead: a mass failure, as meant
            assert (late.node_id in found) == (patience > 0)
            nursery.cancel_scope.cancel()
