"""Shared fixtures: real UDP nodes on loopback, each in its own cancellable task."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from chorusdht import Identity, Node, NodeConfig, make_chunk, open_node


@dataclass
class Running:
    node: Node
    scope: trio.CancelScope

    def kill(self) -> None:
        """Stop abruptly: the socket closes, peers are told nothing."""
        self.scope.cancel()


async def _run(config: NodeConfig, data_dir: Path | None, seed: int, *, task_status: Any) -> None:
    with trio.CancelScope() as scope:
        async with open_node(
            listen=("127.0.0.1", 0), data_dir=data_dir, config=config, rng=random.Random(seed)
        ) as node:
            task_status.started(Running(node, scope))
            await trio.sleep_forever()


@asynccontextmanager
async def udp_swarm(
    n: int, config: NodeConfig, tmp_path: Path | None = None, seed: int = 0
) -> AsyncIterator[list[Running]]:
    """`n` nodes on 127.0.0.1, each bootstrapped through node 0."""
    async with trio.open_nursery() as nursery:
        nodes: list[Running] = []
        for i in range(n):
            data_dir = tmp_path / f"n{i}" if tmp_path is not None else None
            nodes.append(await nursery.start(_run, config, data_dir, seed * 1000 + i))
        for r in nodes[1:]:
            await r.node.bootstrap([nodes[0].node.address])
        try:
            yield nodes
        finally:
            nursery.cancel_scope.cancel()


def chunk_for(author: Identity, i: int, size: int = 256) -> tuple[bytes, bytes]:
    """A signed chunk (key, raw) with a deterministic payload."""
    payload = random.Random(i).randbytes(size)
    c = make_chunk(author, mesh=b"\x01" * 32, seq=1, prev=None, lamport=1, time=0, payload=payload)
    return c.key, c.raw
