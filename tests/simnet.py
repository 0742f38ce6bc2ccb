"""An in-test network of `NodeCore`s in virtual time (the aioquic testing style).

Tests choose `now`: datagrams move between cores (and scripted bots) with chosen
delays, timers fire when virtual time reaches them, and no test sleeps.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from chorusdht.config import NodeConfig
from chorusdht.core import NodeCore
from chorusdht.errors import ChorusError
from chorusdht.identity import Identity
from chorusdht.ids import sha256
from chorusdht.results import BootstrapResult, Result
from chorusdht.store import MemoryStore

Addr = tuple[str, int]
Outcome = Result | ChorusError
Bot = Callable[[bytes, Addr], list[tuple[bytes, Addr]]]
LINK = 0.01  # default one-way delay: 20 ms round trips, well under the RTO floor


def identity(seed: int) -> Identity:
    return Identity.from_seed(sha256(b"core", seed.to_bytes(8, "big")))


@dataclass(order=True)
class _Flight:
    at: float
    seq: int
    src: Addr = field(compare=False)
    dst: Addr = field(compare=False)
    data: bytes = field(compare=False)


class Net:
    """An in-test network of cores in virtual time (the aioquic testing style)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.cores: dict[Addr, NodeCore] = {}
        self.addr_of: dict[bytes, Addr] = {}
        self.delay: dict[Addr, float] = {}  # one-way delay to and from an address
        self.silent: set[Addr] = set()  # receives nothing, so it answers nothing
        self.log: list[tuple[float, Addr, Addr, bytes]] = []
        self.outcomes: dict[Addr, dict[int, Outcome]] = {}
        # Scripted peers (attackers): a function from one datagram to its replies.
        self.bots: dict[Addr, Bot] = {}
        # Return the bytes to deliver instead, or None to drop the datagram.
        self.intercept: Callable[[Addr, Addr, bytes], bytes | None] | None = None
        self._queue: list[_Flight] = []
        self._seq = 0

    # ---- building -------------------------------------------------------------

    def add(self, seed: int, config: NodeConfig | None = None) -> NodeCore:
        addr = ("127.0.0.1", 20000 + len(self.cores))
        core = NodeCore(
            identity(seed), MemoryStore(), rng=random.Random(seed), now=self.now, config=config
        )
        return self.place(addr, core)

    def place(self, addr: Addr, core: NodeCore) -> NodeCore:
        """Put an already built core at `addr` (any label: nothing touches a socket)."""
        self.cores[addr] = core
        self.addr_of[core.node_id] = addr
        self.outcomes[addr] = {}
        return core

    def addr(self, core: NodeCore) -> Addr:
        return self.addr_of[core.node_id]

    def swarm(self, n: int, config: NodeConfig | None = None, seed: int = 0) -> list[NodeCore]:
        """`n` cores, each joined through the first one, one after another."""
        cores = [self.add(seed * 1000 + i, config) for i in range(n)]
        for core in cores[1:]:
            result = self.wait(core, core.bootstrap([self.addr(cores[0])], self.now))
            assert isinstance(result, BootstrapResult), result
        return cores

    # ---- moving datagrams and time -------------------------------------------

    def send(self, src: Addr, dst: Addr, data: bytes) -> None:
        """Put one datagram on the wire (also used to inject forged ones)."""
        self.log.append((self.now, src, dst, data))
        if self.intercept is not None:
            replaced = self.intercept(src, dst, data)
            if replaced is None:
                return
            data = replaced
        if (
            (dst not in self.cores and dst not in self.bots)
            or dst in self.silent
            or src in self.silent
        ):
            return
        self.send_at(
            self.now + self.delay.get(src, LINK) + self.delay.get(dst, 0.0), src, dst, data
        )

    def send_at(self, at: float, src: Addr, dst: Addr, data: bytes) -> None:
        """Schedule one datagram's arrival at virtual time `at`."""
        self._seq += 1
        heapq.heappush(self._queue, _Flight(at, self._seq, src, dst, data))

    def flush(self) -> None:
        for addr, core in self.cores.items():
            for data, dst in core.datagrams_to_send():
                self.send(addr, dst, data)
            while (event := core.next_event()) is not None:
                self.outcomes[addr][event.op_id] = event.outcome

    def step(self) -> None:
        """Advance to the next arrival or timer; deliveries first, then timers."""
        self.flush()
        times = [c.get_timer() for c in self.cores.values()]
        deadlines = [t for t in times if t is not None]
        if self._queue:
            deadlines.append(self._queue[0].at)
        self.now = max(self.now, min(deadlines))
        while self._queue and self._queue[0].at <= self.now:
            f = heapq.heappop(self._queue)
            if f.dst in self.cores:
                self.cores[f.dst].receive_datagram(f.data, f.src, self.now)
            else:  # a bot: it answers with datagrams of its own
                for data, to in self.bots[f.dst](f.data, f.src):
                    self.send(f.dst, to, data)
            self.flush()
        for core in self.cores.values():
            deadline = core.get_timer()
            if deadline is not None and deadline <= self.now:
                core.handle_timer(self.now)
        self.flush()

    def run_for(self, seconds: float) -> None:
        end = self.now + seconds
        while True:
            self.flush()
            times = [t for t in (c.get_timer() for c in self.cores.values()) if t is not None]
            if self._queue:
                times.append(self._queue[0].at)
            if not times or min(times) > end:
                break
            self.step()
        self.now = end

    def wait(self, core: NodeCore, op_id: int, limit: float = 120.0) -> Outcome:
        """Run until `core` reports `op_id`; fail after `limit` virtual seconds."""
        end = self.now + limit
        addr = self.addr(core)
        self.flush()
        while op_id not in self.outcomes[addr]:
            assert self.now <= end, f"op {op_id} did not finish within {limit} s"
            self.step()
        return self.outcomes[addr].pop(op_id)
