"""Benchmark the memory mesh on real UDP nodes on loopback (one trio process).

    .venv/bin/python scripts/bench_memory.py                    # 10,000-entry sync
    .venv/bin/python scripts/bench_memory.py --entries 2000 --appends 200

Prints (issue 4, Benchmark):

- the Ed25519 floor: verifications per second on one core, and full chunk
  validations (CBOR, hash, signature, membership) per second;
- appends per second with `wait="local"` (the append call alone, then until the
  background replication drains) and with `wait="replicated"`, k = 20 on 21 nodes;
- the time for a new pinning member to sync a mesh of `--entries` entries held by
  20 member nodes (anti-entropy: LIST with a phase vector, then GET_MANY), as
  entries/s and as a multiple of the verify-only floor;
- bytes on the wire per entry (sum of every node's `core.stats["bytes_out"]`).

Targets: ≥ 200 replicated appends/s; a new member syncs 10,000 entries at
≥ 3,000 entries/s, within 5x of the verify-only floor (~15,000/s per core).
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import trio

from chorusdht import Identity, Node, NodeConfig, open_node
from chorusdht.memlog import MeshLog
from chorusdht.mesh import Mesh
from chorusdht.records import Chunk, validate

PAYLOAD_BYTES = 300  # an entry of "about 300 bytes" of text, as the recovery benchmark uses
AUTHORS = 4  # authors of the synced mesh; more authors only widen the phase vector
NODES = 21  # k = 20 replicas need 20 nodes besides the writer
MEMBERS = 20  # member nodes that hold the full mesh for the sync figure


def verify_floor(seconds: float = 1.0) -> tuple[float, float]:
    """(Ed25519 verifications/s, full chunk validations/s) on one core."""
    me = Identity.from_seed(bytes(32))
    log = MeshLog(b"\x07" * 32)
    chunk = log.append(me, b"x" * PAYLOAD_BYTES, time=0)
    sig = me.sign(b"y" * PAYLOAD_BYTES)
    pub = me.private_key.public_key()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for _ in range(200):
            pub.verify(sig, b"y" * PAYLOAD_BYTES)
        n += 200
    verify_rate = n / (time.perf_counter() - t0)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for _ in range(200):
            validate(chunk.key, chunk.raw, is_member=lambda mesh, key: True)
        n += 200
    return verify_rate, n / (time.perf_counter() - t0)


@asynccontextmanager
async def swarm(n: int, config: NodeConfig, seed: int) -> AsyncIterator[list[Node]]:
    """`n` UDP nodes on 127.0.0.1 with seeded identities, all bootstrapped through the first."""
    rng = random.Random(seed)

    async def serve(identity: Identity, *, task_status: trio.TaskStatus[Node]) -> None:
        async with open_node(
            listen=("127.0.0.1", 0),
            identity=identity,
            config=config,
            rng=random.Random(rng.random()),
        ) as node:
            task_status.started(node)
            await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        nodes: list[Node] = []
        for _ in range(n):
            nodes.append(await nursery.start(serve, Identity.from_seed(rng.randbytes(32))))
        for node in nodes[1:]:
            await node.bootstrap([nodes[0].address])
        try:
            yield nodes
        finally:
            nursery.cancel_scope.cancel()


def bytes_out(nodes: Sequence[Node]) -> int:
    return sum(n.core.stats["bytes_out"] for n in nodes)


async def bench_appends(appends: int, concurrency: int, seed: int) -> None:
    """Local and replicated append rates with k = 20 on NODES loopback nodes."""
    config = NodeConfig(k=20, require_membership=True)
    async with swarm(NODES, config, seed) as nodes:
        mesh = await Mesh.create(nodes[0], "bench-appends")
        payload = b"m" * PAYLOAD_BYTES

        before = bytes_out(nodes)
        t0 = time.perf_counter()
        for _ in range(appends):
            await mesh.append(payload, wait="local")
        t_call = time.perf_counter() - t0
        while mesh.pending_replication:
            await trio.sleep(0.01)
        t_drain = time.perf_counter() - t0
        local_bytes = (bytes_out(nodes) - before) / appends
        print(f"append wait=local: {appends / t_call:,.0f}/s (the call alone)")
        print(f"  replicated in the background (k=20): {appends / t_drain:,.0f}/s")

        before = bytes_out(nodes)
        acks: list[int] = []

        async def appender(count: int) -> None:
            for _ in range(count):
                acks.append((await mesh.append(payload, wait="replicated")).replicas)

        t0 = time.perf_counter()
        async with trio.open_nursery() as nursery:
            per = [appends // concurrency + (i < appends % concurrency) for i in range(concurrency)]
            for count in per:
                nursery.start_soon(appender, count)
        t_rep = time.perf_counter() - t0
        rep_bytes = (bytes_out(nodes) - before) / appends
        print(
            f"append wait=replicated, {concurrency} in flight: {appends / t_rep:,.0f}/s "
            f"(replicas acked: min {min(acks)}, mean {sum(acks) / len(acks):.1f})"
        )
        print(
            f"bytes on the wire per entry (chunk + head, k=20): local {local_bytes:,.0f}, "
            f"replicated {rep_bytes:,.0f}"
        )


def sign_mesh(authors: Sequence[Identity], mesh: bytes, n: int) -> list[Chunk]:
    """`n` entries round-robin over `authors`, each naming the others' heads (a real DAG)."""
    log = MeshLog(mesh)
    rng = random.Random(1)
    alphabet = "abcdefghijklmnopqrstuvwxyz "
    for i in range(n):
        text = "".join(rng.choices(alphabet, k=PAYLOAD_BYTES))
        log.append(authors[i % len(authors)], text.encode(), time=i)
    return log.timeline()


async def bench_sync(entries: int, seed: int, floor: float) -> None:
    """A new pinning member syncs `entries` entries held by MEMBERS member nodes."""
    config = NodeConfig(k=20, require_membership=True)
    async with swarm(MEMBERS + 1, config, seed + 1) as nodes:
        holders, newcomer = nodes[:MEMBERS], nodes[MEMBERS]
        founder = await Mesh.create(holders[0], "bench-sync")
        for node in nodes[1:]:
            await founder.admit(node.core.identity.public_key)
        meshes = [founder] + [await Mesh.join(n, founder.id) for n in holders[1:]]
        t0 = time.perf_counter()
        authors = [n.core.identity for n in holders[:AUTHORS]]
        assert all(isinstance(a, Identity) for a in authors)
        chunks = sign_mesh(authors, founder.id, entries)  # type: ignore[arg-type]
        t_sign = time.perf_counter() - t0
        now = trio.current_time()
        for node in holders:  # every holder pins the full mesh (as a member that synced)
            for c in chunks:
                node.core.keep_local(c, now)
        root = founder.phase().root
        assert all(m.phase().root == root for m in meshes)
        print(
            f"prepared {entries:,} entries on {MEMBERS} member nodes "
            f"(signing {entries / t_sign:,.0f}/s)"
        )

        before = bytes_out(nodes)
        t0 = time.perf_counter()
        mesh = await Mesh.join(newcomer, founder.id)
        t_join = time.perf_counter() - t0
        rounds = 0
        while mesh.phase().entries < entries and rounds < 50:
            await mesh.sync()
            rounds += 1
        elapsed = time.perf_counter() - t0
        got = mesh.phase()
        sent = bytes_out(nodes) - before
        ok = got.root == root and got.entries == entries
        rate = entries / elapsed
        print(
            f"new member sync: {got.entries:,}/{entries:,} entries in {elapsed:.2f} s "
            f"({rate:,.0f} entries/s; join {t_join:.2f} s, {rounds} anti-entropy rounds), "
            f"root {'matches' if ok else 'DIFFERS'}"
        )
        print(
            f"  {floor / rate:.1f}x the verify-only floor ({floor:,.0f}/s); "
            f"target >= 3,000 entries/s and <= 5x"
        )
        print(
            f"  bytes on the wire per synced entry: {sent / entries:,.0f} "
            f"(all nodes, both directions counted once as bytes_out)"
        )
        print(
            f"  rejected: {mesh.rejected}; peers holding the mesh: {len(await mesh.peers())}; "
            f"chunk size ~{sum(len(c.raw) for c in chunks[:100]) / min(100, entries):,.0f} B"
        )


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Benchmark the memory mesh on loopback UDP.")
    p.add_argument("--entries", type=int, default=10_000, help="entries in the synced mesh")
    p.add_argument("--appends", type=int, default=500, help="appends per append benchmark")
    p.add_argument("--concurrency", type=int, default=8, help="replicated appends in flight")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--skip-appends", action="store_true")
    p.add_argument("--skip-sync", action="store_true")
    a = p.parse_args(argv)
    verify_rate, validate_rate = verify_floor()
    print(
        f"Ed25519 verify floor: {verify_rate:,.0f}/s per core "
        f"({1e6 / verify_rate:.0f} µs); full chunk validate: {validate_rate:,.0f}/s"
    )
    if not a.skip_appends:
        trio.run(bench_appends, a.appends, a.concurrency, a.seed)
    if not a.skip_sync:
        trio.run(bench_sync, a.entries, a.seed, verify_rate)


if __name__ == "__main__":
    main()
