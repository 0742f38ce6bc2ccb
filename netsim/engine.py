"""The discrete-event loop: many `NodeCore`s driven directly, in virtual time.

Why not trio on MockClock? The core is sans-IO (DESIGN §1), so a driver is just
"deliver this input at this `now`, then carry out what the core asked for". A
plain `heapq` loop does that without a scheduler, tasks or cancel scopes; the
prototypes measured it 6–9x faster than trio on MockClock, with the same core,
so the code that ships is the code simulated. Only the driver differs, and it
is as thin as `chorusdht.node.Node.pump`.

The heap holds `(time, seq, kind, a, b, c)` tuples:

- DELIVER: a datagram (bytes) or decoded message arrives at node `a` from `c`;
- TIMER: node `a`'s earliest core timer is due (`b` is its incarnation);
- ACTION: a scenario callback `a(now)`.

Determinism. `seq` is a global counter, so equal times pop in the order they
were pushed and the heap never compares payloads. Every random choice comes
from `random.Random`s derived from the scenario seed (`derive_seed`), never from
hash order: nodes live in a list and are looked up by address in a dict, but no
dict or set of bytes is ever iterated to make a decision.

Delivery mode. `wire=True` encodes every message to CBOR and decodes it at the
receiver, exactly as UDP would (`datagrams_to_send`/`receive_datagram`).
`wire=False` hands the frozen `Message` object over (`messages_to_send`/
`receive_message`), which skips ~3 µs of CBOR per datagram; with
`count_bytes=True` it still encodes each message once, only to count its size.
"""

from __future__ import annotations

import bisect
import hashlib
import heapq
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from chorusdht import (
    ED25519,
    ChorusError,
    Crypto,
    Identity,
    MemoryStore,
    Message,
    NodeConfig,
    NodeCore,
    encode_message,
)
from chorusdht.results import Result

from .network import LinkModel, NodeClass, address_for
from .simcrypto import SIM_CRYPTO, SimIdentity, make_identity

__all__ = ["Outcome", "SimNode", "Simulator", "derive_seed"]

Outcome = Result | ChorusError
Callback = Callable[[Outcome, float], None]

_DELIVER = 0
_TIMER = 1
_ACTION = 2


def derive_seed(seed: int, *labels: object) -> int:
    """A 64-bit seed for one purpose, independent of PYTHONHASHSEED (unlike `hash()`)."""
    text = "/".join([str(seed), *map(str, labels)]).encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "big")


@dataclass(slots=True, eq=False)
class SimNode:
    """One simulated machine. Its `core` is replaced on restart; its address is kept."""

    index: int
    addr: tuple[str, int]
    cls: NodeClass
    rtt: float
    identity: Identity | SimIdentity
    store: MemoryStore
    core: NodeCore | None = None
    alive: bool = False
    joined: bool = False
    incarnation: int = 0
    group: int = 0
    timer_at: float | None = None
    born: float = 0.0
    lives: int = 0
    waiters: dict[int, Callback] = field(default_factory=dict)


def _index(node: SimNode) -> int:
    return node.index


class Simulator:
    """Owns the clock, the heap, the network and every node."""

    def __init__(
        self,
        *,
        seed: int,
        config: NodeConfig,
        link: LinkModel,
        fast_crypto: bool = False,
        wire: bool = False,
        count_bytes: bool = False,
    ) -> None:
        self.seed = seed
        self.config = config
        self.link = link
        self.fast_crypto = fast_crypto
        self.crypto: Crypto = SIM_CRYPTO if fast_crypto else ED25519
        self.wire = wire
        self.count_bytes = count_bytes or wire
        self.now = 0.0
        self.rng = random.Random(derive_seed(seed, "scenario"))
        self._net_rng = random.Random(derive_seed(seed, "network"))
        # One generator for every core, not one each: a Mersenne Twister holds 2.5 KB
        # of state (244 MiB at 100,000 nodes). A core's draws then depend on the
        # others' as well, all in the one deterministic event order, so a seed still
        # reproduces a run exactly.
        self._core_rng = random.Random(derive_seed(seed, "cores"))
        self._heap: list[tuple[float, int, int, object, object, object]] = []
        self._seq = 0
        self.nodes: list[SimNode] = []
        self.by_addr: dict[tuple[str, int], SimNode] = {}
        self.live: list[SimNode] = []  # kept in index order: random picks index into it
        self._live_dirty = False
        # Joined live nodes in index order, kept up to date (`set_joined`): every join
        # picks its bootstrap node from it, and rebuilding it per join cost O(n²).
        self.joined: list[SimNode] = []
        self._drop: dict[tuple[str, str], float] = {}  # drop probability per class pair
        self.msgs_by_class: Counter[str] = Counter()
        self.bytes_by_class: Counter[str] = Counter()
        self.dropped: Counter[str] = Counter()
        self.delivered = 0
        self.partitioned = False
        self.retired_stats: Counter[str] = Counter()  # core counters of powered-off cores
        self.crashes = 0  # cores powered off so far (the runner frees their cycles)

    # ---- scheduling ---------------------------------------------------------

    def _push(self, t: float, kind: int, a: object, b: object = None, c: object = None) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (t, self._seq, kind, a, b, c))

    def at(self, t: float, action: Callable[[float], None]) -> None:
        """Run `action(now)` at virtual time `t` (never in the past)."""
        self._push(max(t, self.now), _ACTION, action)

    def run_until(self, end: float) -> None:
        """Process every event up to and including `end`, then set the clock to `end`."""
        heap = self._heap
        pop = heapq.heappop
        while heap and heap[0][0] <= end:
            t, _, kind, a, b, c = pop(heap)
            self.now = t
            if kind == _DELIVER:
                self._deliver(a, b, c)  # type: ignore[arg-type]
            elif kind == _TIMER:
                node: SimNode = a  # type: ignore[assignment]
                if node.alive and node.incarnation == b and node.timer_at == t:
                    node.timer_at = None
                    assert node.core is not None
                    node.core.handle_timer(t)
                    self._pump(node)
            else:
                a(t)  # type: ignore[operator]
        self.now = max(self.now, end)

    # ---- nodes --------------------------------------------------------------

    def spawn(self, cls: NodeClass) -> SimNode:
        """Create a powered-off node of class `cls` with a fresh identity and empty disk."""
        index = len(self.nodes)
        node_rng = random.Random(derive_seed(self.seed, "node", index))
        node = SimNode(
            index=index,
            addr=address_for(index),
            cls=cls,
            rtt=cls.draw_rtt(node_rng),
            identity=self._new_identity(index, 0),
            store=MemoryStore(),
        )
        self.nodes.append(node)
        self.by_addr[node.addr] = node
        return node

    def _new_identity(self, index: int, life: int) -> Identity | SimIdentity:
        seed = hashlib.sha256(f"netsim/{self.seed}/identity/{index}/{life}".encode()).digest()
        return make_identity(seed, fast=self.fast_crypto)

    def power_on(self, node: SimNode) -> None:
        """Start a fresh core on the node's identity and store (a boot or a restart)."""
        node.lives += 1
        node.incarnation += 1
        node.alive = True
        self.set_joined(node, False)
        node.born = self.now
        node.timer_at = None
        node.waiters = {}
        node.core = NodeCore(
            node.identity,
            node.store,
            rng=self._core_rng,
            now=self.now,
            config=self.config,
            crypto=self.crypto,
        )
        self._live_dirty = True
        self._pump(node)

    def crash(self, node: SimNode, *, keep_disk: bool) -> None:
        """Power off without warning; with `keep_disk=False` the store and key are lost too."""
        if not node.alive:
            return
        node.alive = False
        self.set_joined(node, False)
        if node.core is not None:
            self.retired_stats.update(node.core.stats)
            self.crashes += 1
        node.core = None
        node.waiters = {}
        node.timer_at = None
        if not keep_disk:
            node.store = MemoryStore()
            node.identity = self._new_identity(node.index, node.lives)
        self._live_dirty = True

    def set_joined(self, node: SimNode, joined: bool) -> None:
        """Mark `node` joined (its bootstrap finished) or not (it is new, crashed or off)."""
        if node.joined == joined:
            return
        node.joined = joined
        i = bisect.bisect_left(self.joined, node.index, key=_index)
        if joined:
            self.joined.insert(i, node)
        else:
            del self.joined[i]

    def live_nodes(self) -> list[SimNode]:
        """Alive nodes in index order (a deterministic list to draw random picks from)."""
        if self._live_dirty:
            self.live = [n for n in self.nodes if n.alive]
            self._live_dirty = False
        return self.live

    # ---- operations ---------------------------------------------------------

    def start_op(
        self, node: SimNode, start: Callable[[NodeCore, float], int], cb: Callback
    ) -> None:
        """Start an operation on a live node; `cb(outcome, now)` runs when it finishes."""
        assert node.core is not None and node.alive
        op_id = start(node.core, self.now)
        node.waiters[op_id] = cb
        self._pump(node)

    # ---- the network --------------------------------------------------------

    def _pump(self, node: SimNode) -> None:
        """Carry out what the core asked for: send, dispatch finished ops, re-arm its timer."""
        core = node.core
        if core is None:
            return
        if self.wire:
            for data, addr in core.datagrams_to_send():
                self._send(node, addr, data, len(data))
        else:
            count = self.count_bytes
            for msg, addr in core.messages_to_send():
                self._send(node, addr, msg, len(encode_message(msg)) if count else 0)
        while (event := core.next_event()) is not None:
            cb = node.waiters.pop(event.op_id, None)
            if cb is not None:
                cb(event.outcome, self.now)
        if node.core is not core or not node.alive:
            return  # a callback crashed or restarted this node
        # Re-arm whenever the core's earliest deadline moved, later too (its earliest
        # request was answered): the old TIMER event then no longer matches `timer_at`
        # and is skipped, so a node never wakes up only to fire nothing.
        t = core.get_timer()
        if t != node.timer_at:
            node.timer_at = t
            if t is not None:
                self._push(t, _TIMER, node, node.incarnation)

    def _send(self, src: SimNode, addr: tuple[str, int], payload: object, size: int) -> None:
        name = src.cls.name
        self.msgs_by_class[name] += 1
        self.bytes_by_class[name] += size
        dst = self.by_addr.get(addr)
        if dst is None:
            self.dropped["no_such_address"] += 1
            return
        if src.group != dst.group:
            self.dropped["partition"] += 1
            return
        rng = self._net_rng
        pair = (src.cls.name, dst.cls.name)
        drop = self._drop.get(pair)
        if drop is None:
            drop = self._drop[pair] = self.link.drop_probability(src.cls.loss, dst.cls.loss)
        if rng.random() < drop:
            self.dropped["loss"] += 1
            return
        delay, dup = self.link.delays(src.rtt, dst.rtt, rng)
        self._push(self.now + delay, _DELIVER, dst, payload, src)
        if dup is not None:
            self._push(self.now + dup, _DELIVER, dst, payload, src)

    def _deliver(self, dst: SimNode, payload: object, src: SimNode) -> None:
        core = dst.core
        if core is None or not dst.alive:
            self.dropped["dead"] += 1
            return
        if src.group != dst.group:
            self.dropped["partition"] += 1
            return
        self.delivered += 1
        if isinstance(payload, bytes):
            core.receive_datagram(payload, src.addr, self.now)
        else:
            assert isinstance(payload, Message)
            core.receive_message(payload, src.addr, self.now)
        self._pump(dst)

    # ---- partitions ---------------------------------------------------------

    def partition(self, groups: list[list[SimNode]]) -> None:
        """Put each list of nodes in its own group; nodes not listed stay in group 0."""
        for number, members in enumerate(groups, start=1):
            for node in members:
                node.group = number
        self.partitioned = True

    def heal(self) -> None:
        for node in self.nodes:
            node.group = 0
        self.partitioned = False
