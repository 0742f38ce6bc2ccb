"""Tier 3: 30 nodes in one trio process on real UDP sockets on loopback."""

from __future__ import annotations

import random

import pytest
import trio

from chorusdht import Identity, NodeConfig, NotFound

from .conftest import chunk_for, udp_swarm

pytestmark = pytest.mark.integration

N_NODES = 30
N_CHUNKS = 200
K = 20
REPUBLISH = 4.0  # seconds: shortened so the repair phase fits in a test


async def test_put_get_kill_half_and_repair() -> None:
    config = NodeConfig(k=K, republish_interval=REPUBLISH, repair_delay=1.0)
    rng = random.Random(7)
    authors = [Identity.from_seed(bytes([i]) * 32) for i in range(4)]
    with trio.fail_after(120):
        async with udp_swarm(N_NODES, config, seed=1) as swarm:
            chunks = [chunk_for(authors[i % 4], i) for i in range(N_CHUNKS)]
            writers = {}
            for key, raw in chunks:
                w = rng.randrange(N_NODES)
                writers[key] = w
                res = await swarm[w].node.put(raw, key)
                assert res.acks == K, f"put acknowledged by {res.acks}, want {K}"

            for key, raw in chunks:
                reader = rng.choice([i for i in range(N_NODES) if i != writers[key]])
                got = await swarm[reader].node.get(key)
                assert got.record.raw == raw

            dead = set(rng.sample(range(N_NODES), N_NODES // 2))
            for i in sorted(dead):
                swarm[i].kill()
            live = [r for i, r in enumerate(swarm) if i not in dead]

            for key, raw in chunks:
                got = await rng.choice(live).node.get(key)
                assert got.record.raw == raw

            # About one (shortened) republish interval later, every chunk is back on
            # min(k, live) nodes: with 15 survivors and k = 20, on all of them. Real
            # sockets on a shared CPU: poll, with a bound of a few intervals.
            want = min(K, len(live))

            def short() -> list[bytes]:
                return [
                    key for key, _ in chunks if sum(key in r.node.core.store for r in live) < want
                ]

            with trio.move_on_after(REPUBLISH * 4):
                while short():
                    await trio.sleep(0.25)
            missing = short()
            assert not missing, f"{len(missing)} chunks below {want} replicas"


async def test_get_missing_key_is_not_found() -> None:
    with trio.fail_after(30):
        async with udp_swarm(5, NodeConfig(k=4)) as swarm:
            with pytest.raises(NotFound):
                await swarm[3].node.get(b"\x42" * 32)
