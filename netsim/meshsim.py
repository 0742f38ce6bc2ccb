"""Memory-mesh scenarios: real trio `Node`s and `Mesh`es on `SimNet`, in virtual time.

Two scenarios from the memory-mesh issue, each a plain async function that
returns its measurements (the tests assert on them; `python -m netsim.meshsim`
prints them):

- `hetero_writers`: Pi Zero and datacenter writers append to one mesh at their
  own pace; every writer is a pinning member and syncs by anti-entropy. We
  measure each writer's append rate (against the same writer alone), the lag
  from each append to its arrival in every member's timeline, and the roots.
- `partition`: a swarm is cut in two for an hour while writers on both sides
  append; after the heal we measure how long the members take to agree on one
  root, and whether any entry was lost.

Everything runs under `trio.testing.MockClock(autojump_threshold=0)` (`run`
sets it up), with Ed25519 identities derived from the seed, an in-memory store
per node and `NodeConfig(require_membership=True)`.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, TypeVar

import trio
import trio.testing

from chorusdht import Identity, MemoryStore, Node, NodeConfig, Record, open_node
from chorusdht.ids import sha256
from chorusdht.mesh import AppendResult, Mesh

from .engine import derive_seed
from .trionet import SimNet, deterministic_trio

__all__ = [
    "HeteroResult",
    "MeshSwarm",
    "ObservedMesh",
    "PartitionResult",
    "PushingMesh",
    "WriterStats",
    "alone_rate",
    "hetero_writers",
    "main",
    "partition",
    "run",
]

T = TypeVar("T")
Wait = Literal["local", "replicated"]
HOUR = 3600.0


class ObservedMesh(Mesh):
    """A Mesh that notes the virtual time at which each (author, seq) enters its timeline.

    An entry is in the timeline exactly when its author's phase reaches its seq
    (closed chunks of one author form a prefix), so watching the phase vector
    after every record is exact and costs O(authors).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.closed_at: dict[tuple[bytes, int], float] = {}
        self._seen_phase: dict[bytes, int] = {}
        super().__init__(*args, **kwargs)
        self.clock = _virtual_ms

    def on_record(self, record: Record) -> None:
        super().on_record(record)
        self._observe()

    def _observe(self) -> None:
        now = trio.current_time()
        for author, seq in self.log.phase().items():
            old = self._seen_phase.get(author, 0)
            if seq > old:
                for s in range(old + 1, seq + 1):
                    self.closed_at[(author, s)] = now
                self._seen_phase[author] = seq


class PushingMesh(ObservedMesh):
    """A prototype of a proposed `Mesh` change: push each own append to every member's node.

    Anti-entropy alone is a pull epidemic: with one random peer per round, an
    entry needs about log2(members) + ln(members) rounds to reach everyone, and
    the DHT put only covers the members that happen to be among the key's k
    closest. A fire-and-forget STORE of the new chunk to each member's node
    (members are few and must hold everything anyway) closes the gap in one
    network delay; anti-entropy then only repairs what the push lost.
    """

    async def append(self, payload: bytes, *, wait: Wait = "local") -> AppendResult:
        res = await super().append(payload, wait=wait)
        chunk = self.log.get(res.key)
        if chunk is not None:
            now = trio.current_time()
            for member in sorted(self.view.members()):
                contact = self.core.table.get(sha256(member))
                if contact is not None:
                    self.core.send_store(contact.node_id, contact.addr, chunk, now)
            self.node.pump()
        return res


def _virtual_ms() -> int:
    """The advisory `time` field of a chunk: virtual milliseconds."""
    return int(trio.current_time() * 1000)


@dataclass(slots=True)
class SimMember:
    """One simulated machine: its node, its transport class and (once it follows) its mesh."""

    node: Node
    cls: str
    scope: trio.CancelScope
    mesh: ObservedMesh | None = None


class MeshSwarm:
    """Nodes on one SimNet, all bootstrapped through the first; one mesh among them."""

    def __init__(self, net: SimNet, nursery: trio.Nursery, config: NodeConfig) -> None:
        self.net = net
        self.nursery = nursery
        self.config = config
        self.members: list[SimMember] = []

    async def add(self, cls: str) -> SimMember:
        index = len(self.members)
        seed = derive_seed(self.net.seed, "identity", index).to_bytes(8, "big") * 4
        identity = Identity.from_seed(seed)
        rng = random.Random(derive_seed(self.net.seed, "node-rng", index))
        m: SimMember = await self.nursery.start(
            _serve, self.net.transport(cls), identity, self.config, rng, cls
        )
        self.members.append(m)
        return m

    async def bootstrap_all(self) -> None:
        seed = self.members[0].node.address
        for m in self.members[1:]:
            await m.node.bootstrap([seed])

    async def found(
        self,
        founder: SimMember,
        joiners: Sequence[SimMember],
        kind: type[ObservedMesh] = ObservedMesh,
    ) -> bytes:
        """Create a mesh on `founder`, admit every joiner, have each join and pin it."""
        mesh = await kind.create(founder.node, "sim")
        assert isinstance(mesh, ObservedMesh)
        founder.mesh = mesh
        for m in joiners:
            await mesh.admit(m.node.core.identity.public_key)
        for m in joiners:
            joined = await kind.join(m.node, mesh.id)
            assert isinstance(joined, ObservedMesh)
            m.mesh = joined
        return mesh.id

    def meshes(self) -> list[ObservedMesh]:
        return [m.mesh for m in self.members if m.mesh is not None]


async def _serve(
    transport: Any,
    identity: Identity,
    config: NodeConfig,
    rng: random.Random,
    cls: str,
    *,
    task_status: Any = trio.TASK_STATUS_IGNORED,
) -> None:
    with trio.CancelScope() as scope:
        async with open_node(
            transport=transport, identity=identity, store=MemoryStore(), config=config, rng=rng
        ) as node:
            task_status.started(SimMember(node, cls, scope))
            await trio.sleep_forever()


@dataclass(slots=True)
class Writer:
    """A writer's log of appends: (virtual time, seq) each."""

    mesh: ObservedMesh
    cls: str
    think: float
    appends: list[tuple[float, int]] = field(default_factory=list)


async def _write(w: Writer, start: float, until: float, wait: Wait) -> None:
    """Append one entry every `think` seconds (first one at `start`) until `until`."""
    await trio.sleep_until(start)
    while (now := trio.current_time()) < until:
        res = await w.mesh.append(f"{w.cls} entry at {now:.3f}".encode(), wait=wait)
        w.appends.append((now, res.seq))
        await trio.sleep(w.think)


async def _until_quiet(meshes: Sequence[Mesh]) -> None:
    """Wait (virtual time) for the background replication of local appends to drain."""
    while any(m.pending_replication for m in meshes):
        await trio.sleep(1.0)


def _roots(meshes: Sequence[Mesh]) -> list[bytes]:
    return [m.log.root() for m in meshes]


# ---- hetero-writers --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WriterStats:
    cls: str
    think: float
    appends: int
    per_hour: float  # appends per virtual hour while writing
    ideal_per_hour: float  # 3600 / think
    alone_per_hour: float  # the same writer with nobody else around


@dataclass(frozen=True, slots=True)
class HeteroResult:
    hours: float
    interval: float
    members: int
    nodes: int
    writers: list[WriterStats]
    pizero_entries: int
    pizero_lag_max: float  # seconds from append to the last member's timeline
    pizero_lag_p50: float
    late: int  # (pizero entry, member) pairs later than 2 sync intervals
    missing: int  # (entry, member) pairs never in the member's timeline
    entries: int
    distinct_roots: int
    net: dict[str, Any]
    wall_seconds: float
    fingerprint: str


async def hetero_writers(
    *,
    seed: int = 1,
    hours: float = 2.0,
    interval: float = 30.0,
    datacenter: int = 8,
    pizero: int = 4,
    pinners: int = 2,
    relays: int = 0,
    think: dict[str, float] | None = None,
    wait: Wait = "local",
    k: int = 20,
    alone: bool = True,
    push: bool = False,
) -> HeteroResult:
    """12 writers (8 datacenter at 2 s, 4 Pi Zero at 45 s), all pinning members.

    `pinners` are non-writing pinning members, `relays` plain overlay nodes
    (no mesh). Writers stop after `hours`; then sync runs until every member
    holds everything or 10 intervals pass, and the roots are compared.
    """
    wall = time.perf_counter()
    thinks = {"datacenter": 2.0, "pizero": 45.0, **(think or {})}
    net = SimNet(seed)
    config = NodeConfig(k=k, require_membership=True)
    rng = random.Random(derive_seed(seed, "hetero"))
    async with trio.open_nursery() as nursery:
        await nursery.start(net.run)
        swarm = MeshSwarm(net, nursery, config)
        classes = ["datacenter"] * datacenter + ["pizero"] * pizero
        writers_m = [await swarm.add(c) for c in classes]
        pin_m = [await swarm.add("datacenter") for _ in range(pinners)]
        for _ in range(relays):
            await swarm.add("datacenter")
        await swarm.bootstrap_all()
        kind = PushingMesh if push else ObservedMesh
        await swarm.found(writers_m[0], writers_m[1:] + pin_m, kind)
        meshes = swarm.meshes()
        for mesh in meshes:
            mesh.node.spawn(mesh.sync_forever, interval)
        t0 = trio.current_time() + 1.0
        until = t0 + hours * HOUR
        writers: list[Writer] = []
        async with trio.open_nursery() as wn:
            for m in writers_m:
                assert m.mesh is not None
                w = Writer(m.mesh, m.cls, thinks[m.cls])
                writers.append(w)
                wn.start_soon(_write, w, t0 + rng.uniform(0, w.think), until, wait)
        await _until_quiet(meshes)
        total = sum(len(w.appends) for w in writers)
        for _ in range(10):
            if all(len(m.log.timeline()) == total for m in meshes):
                break
            await trio.sleep(interval)
        result = _hetero_result(writers, meshes, interval, hours, len(swarm.members), net)
        nursery.cancel_scope.cancel()
    alone_rates: dict[str, float] = {}
    if alone:
        for c in sorted(set(classes)):
            alone_rates[c] = await alone_rate(c, thinks[c], hours, seed=seed, wait=wait)
    writer_stats = [
        WriterStats(
            w.cls,
            w.think,
            len(w.appends),
            _per_hour(w.appends),
            HOUR / w.think,
            alone_rates.get(w.cls, HOUR / w.think),
        )
        for w in writers
    ]
    return HeteroResult(writers=writer_stats, wall_seconds=time.perf_counter() - wall, **result)


def _per_hour(appends: Sequence[tuple[float, int]]) -> float:
    """Appends per hour between the first and the last append (n − 1 gaps)."""
    if len(appends) < 2:
        return 0.0
    span = appends[-1][0] - appends[0][0]
    return (len(appends) - 1) * HOUR / span


def _hetero_result(
    writers: Sequence[Writer],
    meshes: Sequence[ObservedMesh],
    interval: float,
    hours: float,
    nodes: int,
    net: SimNet,
) -> dict[str, Any]:
    lags: list[float] = []
    late = missing = 0
    for w in writers:
        author = w.mesh.author.public_key
        for t, seq in w.appends:
            for m in meshes:
                at = m.closed_at.get((author, seq))
                if at is None:
                    missing += 1
                    continue
                if w.cls == "pizero":
                    lags.append(at - t)
                    late += at - t > 2 * interval
    lags.sort()
    roots = _roots(meshes)
    return {
        "hours": hours,
        "interval": interval,
        "members": len(meshes),
        "nodes": nodes,
        "pizero_entries": sum(len(w.appends) for w in writers if w.cls == "pizero"),
        "pizero_lag_max": lags[-1] if lags else 0.0,
        "pizero_lag_p50": lags[len(lags) // 2] if lags else 0.0,
        "late": late,
        "missing": missing,
        "entries": len(meshes[0].log.timeline()),
        "distinct_roots": len(set(roots)),
        "net": net.totals(),
        "fingerprint": net.fingerprint() + "/" + roots[0].hex()[:16],
    }


async def alone_rate(
    cls: str, think: float, hours: float, *, seed: int = 1, wait: Wait = "local"
) -> float:
    """Appends per hour of one writer of class `cls` that is the mesh's only node."""
    net = SimNet(derive_seed(seed, "alone", cls))
    async with trio.open_nursery() as nursery:
        await nursery.start(net.run)
        swarm = MeshSwarm(net, nursery, NodeConfig(require_membership=True))
        m = await swarm.add(cls)
        await swarm.found(m, [])
        assert m.mesh is not None
        w = Writer(m.mesh, cls, think)
        t0 = trio.current_time() + 1.0
        await _write(w, t0, t0 + hours * HOUR, wait)
        nursery.cancel_scope.cancel()
    return _per_hour(w.appends)


# ---- partition ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PartitionResult:
    nodes: int
    members: int
    writers: int
    interval: float
    appended: int
    appended_per_side: list[int]
    distinct_roots_split: int  # during the partition (before the heal)
    converge_seconds: float  # heal -> every member holds one root covering every entry
    converged: bool
    lost: int  # appended entries missing from some member at the end
    net: dict[str, Any]
    wall_seconds: float
    fingerprint: str


async def partition(
    *,
    seed: int = 2,
    nodes: int = 200,
    members: int = 20,
    writers: int = 8,
    think: float = 60.0,
    split_hours: float = 1.0,
    interval: float = 30.0,
    k: int = 20,
) -> PartitionResult:
    """Split `nodes` in two halves for `split_hours` while writers on both sides append.

    Members (the first `members` nodes after the seed node, alternating sides)
    pin the mesh; `writers` of them append every `think` seconds. Writers stop
    at the heal; convergence is polled every second of virtual time.
    """
    wall = time.perf_counter()
    net = SimNet(seed)
    config = NodeConfig(k=k, require_membership=True)
    rng = random.Random(derive_seed(seed, "partition"))
    async with trio.open_nursery() as nursery:
        await nursery.start(net.run)
        swarm = MeshSwarm(net, nursery, config)
        for _ in range(nodes):
            await swarm.add("datacenter")
        await swarm.bootstrap_all()
        # Members spread over the index range so both halves (even/odd) hold some.
        mem = swarm.members[1 : members + 1]
        await swarm.found(mem[0], mem[1:])
        meshes = swarm.meshes()
        for mesh in meshes:
            mesh.node.spawn(mesh.sync_forever, interval)
        await trio.sleep(2 * interval)  # settle: everybody holds the roster and each other
        sides = [
            [t.local_addr for t in net.transports if t.index % 2 == 0],
            [t.local_addr for t in net.transports if t.index % 2 == 1],
        ]
        net.partition(sides)
        t0 = trio.current_time()
        until = t0 + split_hours * HOUR
        ws = [Writer(m, "datacenter", think) for m in meshes[:writers]]
        async with trio.open_nursery() as wn:
            for w in ws:
                wn.start_soon(_write, w, t0 + rng.uniform(0, think), until, "local")
        await trio.sleep_until(until)
        split_roots = len(set(_roots(meshes)))
        net.heal()
        healed = trio.current_time()
        want = {(w.mesh.author.public_key, s) for w in ws for _, s in w.appends}
        converged_at = None
        for _ in range(int(10 * interval)):
            roots = _roots(meshes)
            if len(set(roots)) == 1 and all(len(m.log.timeline()) == len(want) for m in meshes):
                converged_at = trio.current_time()
                break
            await trio.sleep(1.0)
        lost = sum((a, s) not in m.closed_at for m in meshes for a, s in want)
        per_side = [0, 0]
        for w in ws:
            per_side[net[w.mesh.node.address].index % 2] += len(w.appends)
        result = PartitionResult(
            nodes=nodes,
            members=len(meshes),
            writers=len(ws),
            interval=interval,
            appended=len(want),
            appended_per_side=per_side,
            distinct_roots_split=split_roots,
            converge_seconds=(converged_at - healed) if converged_at is not None else -1.0,
            converged=converged_at is not None,
            lost=lost,
            net=net.totals(),
            wall_seconds=time.perf_counter() - wall,
            fingerprint=net.fingerprint() + "/" + _roots(meshes)[0].hex()[:16],
        )
        nursery.cancel_scope.cancel()
    return result


# ---- running -----------------------------------------------------------------


def run(
    fn: Callable[..., Any], *, seed: int = 1, virtual_limit: float = 100 * HOUR, **kwargs: Any
) -> Any:
    """Run a scenario in virtual time, trio's task order seeded; TooSlowError past the limit."""
    deterministic_trio(seed)
    clock = trio.testing.MockClock(autojump_threshold=0)

    async def limited() -> Any:
        with trio.fail_after(virtual_limit):
            return await fn(seed=seed, **kwargs)

    return trio.run(limited, clock=clock)


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m netsim.meshsim hetero|partition [...]`: print a scenario's figures as JSON."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("scenario", choices=["hetero", "partition"])
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--hours", type=float, default=None, help="writing (hetero) or split time")
    p.add_argument("--interval", type=float, default=30.0, help="anti-entropy interval (s)")
    p.add_argument("--nodes", type=int, default=200, help="partition: nodes in the swarm")
    p.add_argument("--members", type=int, default=20, help="partition: pinning members")
    p.add_argument("--relays", type=int, default=0, help="hetero: non-member overlay nodes")
    p.add_argument("--wait", choices=["local", "replicated"], default="local")
    p.add_argument("--push", action="store_true", help="hetero: prototype push-to-members")
    a = p.parse_args(argv)
    res: Any
    if a.scenario == "hetero":
        res = run(
            hetero_writers,
            seed=a.seed,
            hours=a.hours or 2.0,
            interval=a.interval,
            relays=a.relays,
            wait=a.wait,
            push=a.push,
        )
    else:
        res = run(
            partition,
            seed=a.seed,
            nodes=a.nodes,
            members=a.members,
            split_hours=a.hours or 1.0,
            interval=a.interval,
        )
    print(json.dumps(asdict(res), indent=2, default=str))


if __name__ == "__main__":
    main()
