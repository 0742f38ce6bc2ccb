"""A simulated datagram network for *trio* nodes: the same `Node` and `Mesh` code, in virtual time.

`netsim.engine` drives `NodeCore`s directly from a heapq loop; that is the
fast path for overlay scenarios. The memory layer (`chorusdht.mesh.Mesh`) is
written against the trio `Node` API (`node.spawn`, `await node.put`, ...), so
mesh scenarios run the real trio driver over this network instead, under
`trio.testing.MockClock(autojump_threshold=0)`: virtual hours pass in wall
seconds and nothing touches a socket.

    net = SimNet(seed=7)
    async with trio.open_nursery() as nursery:
        await nursery.start(net.run)                     # the one delivery task
        t = net.transport("pizero")                      # a Transport for open_node
        async with open_node(transport=t, ...) as node: ...

**Links.** Node classes, per-node access RTTs, loss and jitter come from
`netsim.network` (the model the heapq engine uses): a node draws its RTT from
its class once, a datagram a→b takes half the mean of the two RTTs times ±10%
jitter, plus a seeded sub-millisecond nudge so no two deliveries share a
deadline.

**Delivery.** One scheduler task owns a heap of `(deadline, seq, ...)`. It
sleeps until the earliest deadline (the same cancel-scope-deadline pattern as
`Node._timer_loop`), hands every due datagram to its receiver's inbox and wakes
the receiver. `seq` is a global counter, so the heap never compares payloads.

**Faults.** `partition(groups)` puts every listed address in its group (others
stay in group 0); a datagram crossing groups is dropped when sent and again on
arrival, so a partition also cuts datagrams in flight. `heal()` ends it.
`kill(addr)` drops everything to and from a node; `revive(addr)` undoes it.

**Determinism.** Every random draw comes from a per-node `random.Random`
derived from the seed by label (`derive_seed`, never `hash()`), and nothing
here iterates a set. trio itself randomises the order in which it runs a batch
of ready tasks; `deterministic_trio(seed)` pins that order the way trio's own
Hypothesis plugin does, so a seed reproduces a run (see `SimNet.fingerprint`).
"""

from __future__ import annotations

import hashlib
import heapq
import random
from collections import Counter, deque
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import trio

from chorusdht import Address

from .engine import derive_seed
from .network import DEFAULT_CLASSES, LinkModel, NodeClass, address_for

__all__ = ["SimNet", "SimTransport", "deterministic_trio"]

NUDGE = 2e-4  # up to 0.2 ms added per datagram: breaks deadline ties, far below any class RTT
DRAIN_BEFORE_YIELD = 64  # datagrams handed to a node in a row before it lets others run (as UDP)


def deterministic_trio(seed: int) -> None:
    """Make trio run each batch of ready tasks in a seeded order (process-wide).

    trio shuffles or reverses every batch on purpose, from an unseeded module
    random. Its Hypothesis plugin switches to a sorted-then-seeded-shuffle
    order; this does the same with our seed. It only changes the order among
    tasks that are ready at the same instant, which any correct program allows.
    """
    from trio._core import _run

    _run._ALLOW_DETERMINISTIC_SCHEDULING = True  # type: ignore[misc]
    _run._r.seed(derive_seed(seed, "trio-scheduler"))


class SimTransport:
    """One node's end of the simulated network (implements `chorusdht.Transport`)."""

    def __init__(
        self, net: SimNet, index: int, cls: NodeClass, rtt: float, rng: random.Random
    ) -> None:
        self.net = net
        self.index = index
        self.cls = cls
        self.rtt = rtt
        self.rng = rng
        self._addr = address_for(index)
        self._inbox: deque[tuple[bytes, Address]] = deque()
        self._lot = trio.lowlevel.ParkingLot()
        self._drained = 0
        self.closed = False
        self.group = 0
        self.alive = True

    @property
    def local_addr(self) -> Address:
        return self._addr

    def send(self, data: bytes, addr: Address) -> None:
        """Queue `data` for `addr`; never blocks. Loss, partitions and deaths drop it."""
        self.net._send(self, data, addr)

    async def receive(self) -> tuple[bytes, Address]:
        while not self._inbox:
            if self.closed:
                raise trio.ClosedResourceError("the transport is closed")
            self._drained = 0
            await self._lot.park()
        self._drained += 1
        if self._drained >= DRAIN_BEFORE_YIELD:
            self._drained = 0
            await trio.lowlevel.checkpoint()
        return self._inbox.popleft()

    def close(self) -> None:
        self.closed = True
        self._inbox.clear()
        self._lot.unpark_all()

    def _deliver(self, data: bytes, src: Address) -> None:
        self._inbox.append((data, src))
        if self._lot:
            self._lot.unpark_all()


class SimNet:
    """The network: addresses, links, faults, counters and the delivery task."""

    def __init__(
        self,
        seed: int,
        *,
        classes: Mapping[str, NodeClass] = DEFAULT_CLASSES,
        link: LinkModel | None = None,
    ) -> None:
        self.seed = seed
        self.classes = dict(classes)
        self.link = link or LinkModel()
        self.transports: list[SimTransport] = []
        self._by_addr: dict[Address, SimTransport] = {}
        self._heap: list[tuple[float, int, SimTransport, SimTransport, bytes]] = []
        self._seq = 0
        self._scope: trio.CancelScope | None = None
        self.messages: Counter[str] = Counter()  # datagrams sent, by sender class
        self.bytes: Counter[str] = Counter()  # bytes sent, by sender class
        self.dropped: Counter[str] = Counter()  # by reason: loss, partition, dead, unknown
        self.delivered = 0

    # ---- building ---------------------------------------------------------------

    def transport(self, cls: str | NodeClass = "datacenter") -> SimTransport:
        """A new node's transport, with its own address, RTT and random stream."""
        node_cls = self.classes[cls] if isinstance(cls, str) else cls
        index = len(self.transports)
        rng = random.Random(derive_seed(self.seed, "trionet-node", index))
        t = SimTransport(self, index, node_cls, node_cls.draw_rtt(rng), rng)
        self.transports.append(t)
        self._by_addr[t.local_addr] = t
        return t

    def __getitem__(self, addr: Address) -> SimTransport:
        return self._by_addr[addr]

    # ---- faults -----------------------------------------------------------------

    def partition(self, groups: Sequence[Iterable[Address]]) -> None:
        """Split the network: group i (1-based) holds the listed addresses; others stay in 0."""
        for t in self.transports:
            t.group = 0
        for i, members in enumerate(groups, start=1):
            for addr in members:
                self._by_addr[addr].group = i

    def heal(self) -> None:
        """End every partition."""
        for t in self.transports:
            t.group = 0

    def kill(self, addr: Address) -> None:
        """Drop everything to and from `addr` (in flight too) until `revive`."""
        self._by_addr[addr].alive = False

    def revive(self, addr: Address) -> None:
        self._by_addr[addr].alive = True

    # ---- moving datagrams ---------------------------------------------------------

    def _send(self, src: SimTransport, data: bytes, addr: Address) -> None:
        name = src.cls.name
        self.messages[name] += 1
        self.bytes[name] += len(data)
        dst = self._by_addr.get(addr)
        if dst is None:
            self.dropped["unknown"] += 1
            return
        if not src.alive or not dst.alive or src.closed:
            self.dropped["dead"] += 1
            return
        if src.group != dst.group:
            self.dropped["partition"] += 1
            return
        rng = src.rng
        if rng.random() < self.link.drop_probability(src.cls.loss, dst.cls.loss):
            self.dropped["loss"] += 1
            return
        delay, dup = self.link.delays(src.rtt, dst.rtt, rng)
        now = trio.current_time()
        self._push(now + delay + NUDGE * rng.random(), src, dst, data)
        if dup is not None:
            self._push(now + dup + NUDGE * rng.random(), src, dst, data)

    def _push(self, deadline: float, src: SimTransport, dst: SimTransport, data: bytes) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (deadline, self._seq, src, dst, data))
        if self._scope is not None and deadline < self._scope.deadline:
            self._scope.deadline = deadline

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """The delivery task: run it in a nursery for as long as the network is used."""
        task_status.started()
        heap = self._heap
        while True:
            now = trio.current_time()
            while heap and heap[0][0] <= now:
                _, _, src, dst, data = heapq.heappop(heap)
                if not (src.alive and dst.alive) or dst.closed:
                    self.dropped["dead"] += 1
                elif src.group != dst.group:
                    self.dropped["partition"] += 1
                else:
                    self.delivered += 1
                    dst._deliver(data, src.local_addr)
            with trio.CancelScope(deadline=heap[0][0] if heap else float("inf")) as scope:
                self._scope = scope
                await trio.sleep_forever()
            self._scope = None

    # ---- reading ------------------------------------------------------------------

    def totals(self) -> dict[str, Any]:
        """Messages and bytes per class, drops by reason, deliveries (plain data for JSON)."""
        return {
            "messages": dict(sorted(self.messages.items())),
            "bytes": dict(sorted(self.bytes.items())),
            "dropped": dict(sorted(self.dropped.items())),
            "delivered": self.delivered,
        }

    def fingerprint(self) -> str:
        """A short digest of the counters: equal for two runs of one seed."""
        text = repr(sorted(self.totals().items())).encode()
        return hashlib.sha256(text).hexdigest()[:16]
