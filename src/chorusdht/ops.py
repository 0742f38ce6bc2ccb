"""Multi-message operations of the core: lookup, put, get, bootstrap, single RPCs.

Each operation is a small state machine owned by `NodeCore`. It sends requests
through `core.request(...)` and is told about each answer (`on_response`), each
soft timeout (`on_slow`) and each final failure (`on_timeout`). When it is
finished it calls `core.finish(op, outcome)`. Operations never read a clock or
touch a socket; `now` is passed in like everywhere else in the core.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from .errors import ChorusError, LookupFailed, NetworkError, NotFound, QuorumError, ValidationError
from .lookup import Lookup
from .messages import (
    Body,
    ErrorReply,
    FindNode,
    FindValue,
    GetMany,
    List,
    Listed,
    Message,
    NodeInfo,
    Nodes,
    Ping,
    Records,
    Stored,
    Value,
)
from .records import Chunk, Record, merge
from .results import (
    BootstrapResult,
    GetResult,
    ListResult,
    LookupResult,
    NodesResult,
    PingResult,
    PutResult,
    RecordsResult,
    Result,
)

if TYPE_CHECKING:
    from .core import NodeCore, Pending

__all__ = [
    "BootstrapOp",
    "GetOp",
    "LookupOp",
    "Op",
    "PutOp",
    "SingleRpcOp",
]


class Op:
    """Base: an operation with an id; `report` ops emit an OpDone event when finished."""

    # Its requests' outcomes feed the mass-failure window (core `_check_mass_failure`);
    # an op that seeks out contacts likely dead would make deaths look common.
    watched = True

    def __init__(self, core: NodeCore, report: bool) -> None:
        self.core = core
        self.op_id = core.next_op_id()
        self.report = report
        self.finished = False
        self.queries = 0

    def request(self, addr: tuple[str, int], node_id: bytes | None, body: Body, now: float) -> None:
        self.queries += 1
        self.core.request(addr, node_id, body, self, now)

    def finish(self, outcome: Result | ChorusError) -> None:
        if not self.finished:
            self.finished = True
            self.core.finish(self, outcome)

    def on_response(self, p: Pending, msg: Message, now: float) -> None:
        raise NotImplementedError

    def on_slow(self, p: Pending, now: float) -> None:
        pass

    def on_timeout(self, p: Pending, now: float) -> None:
        raise NotImplementedError


def _contacts(
    nodes: tuple[NodeInfo, ...], dead: dict[bytes, float]
) -> list[tuple[bytes, tuple[str, int]]]:
    """A reply's contacts as lookup candidates, less those that just failed us: after
    a mass failure every reply still names the dead, and each would cost a timeout."""
    return [(n.node_id, (n.host, n.port)) for n in nodes if n.node_id not in dead]


class LookupOp(Op):
    """Iterative FIND_NODE (or FIND_VALUE when `value` is set) toward `target`.

    `then` is called with the finished lookup instead of reporting, when the
    lookup is one phase of a larger operation.
    """

    def __init__(
        self,
        core: NodeCore,
        target: bytes,
        *,
        value: bool = False,
        report: bool = True,
        then: Callable[[LookupOp, float], None] | None = None,
        wide: bool = False,
    ) -> None:
        super().__init__(core, report)
        cfg = core.config
        # Contacts that failed their last request go last: after a mass failure each
        # dead contact then costs a lookup one timeout, not one per lookup.
        # A `wide` lookup starts from every contact we have, with twice the queries in
        # flight: the second try of a get, for when most of the network just died and
        # the few survivors holding a copy are not among anyone's k closest.
        near = core.table.closest(target, len(core.table) if wide else cfg.k)
        healthy = [c for c in near if c.failures == 0]
        if len(healthy) < cfg.alpha and not wide:  # the near ones failed: look further out
            healthy = [c for c in core.table.closest(target, len(core.table)) if c.failures == 0]
            healthy = healthy[: cfg.k]
        if len(healthy) < cfg.alpha:
            healthy = healthy + [c for c in near if c.failures != 0] if not wide else near
        seeds = [(c.node_id, c.addr) for c in healthy]
        self.lookup = Lookup(
            target,
            seeds,
            own_id=core.node_id,
            k=max(cfg.k, len(seeds)) if wide else cfg.k,
            alpha=2 * cfg.alpha if wide else cfg.alpha,
            settle=cfg.lookup_settle,
            subnet_limit=cfg.subnet_limit,
            puzzle_bits=cfg.id_puzzle_bits,
        )
        self.value = value
        self.then = then
        self.found: list[Record] = []
        self.found_from: bytes | None = None
        self._retried: set[bytes] = set()  # candidates given a second request

    def start(self, now: float) -> LookupOp:
        self.core.table.touch_bucket(self.lookup.target, now)
        if self.lookup.target == self.core.node_id:
            self.core.self_lookup_at = now  # see NodeCore._refresh_neighbourhood
        self._pump(now)
        return self

    def _pump(self, now: float) -> None:
        if self.finished:
            return
        if self._complete():
            self._end(now)
            return
        body: Body = FindValue(self.lookup.target) if self.value else FindNode(self.lookup.target)
        for c in self.lookup.next_queries():
            self.request(c.addr, c.node_id, body, now)
        if self._complete():
            self._end(now)

    def _complete(self) -> bool:
        if self.found and any(isinstance(r, Chunk) for r in self.found):
            return True  # an immutable chunk needs no second opinion
        return self.lookup.done

    def _end(self, now: float) -> None:
        if self.then is not None:
            self.finished = True
            self.then(self, now)
            return
        nodes = self.lookup.closest()
        if not nodes and not self.lookup.answered():
            self.finish(LookupFailed("no node answered the lookup"))
            return
        self.finish(
            LookupResult(
                self.lookup.target,
                tuple(NodeInfo(c.node_id, c.addr[0], c.addr[1]) for c in nodes),
                self.lookup.hops,
                self.queries,
            )
        )

    def on_response(self, p: Pending, msg: Message, now: float) -> None:
        if self.finished or p.node_id is None:
            return
        body = msg.body
        if isinstance(body, Nodes):
            self.core.hear(body.nodes)
            self.lookup.on_reply(p.node_id, _contacts(body.nodes, self.core.recent_dead), False)
        elif isinstance(body, Value) and self.value:
            got = self._accept_values(body.records)
            if got:
                self.found_from = self.found_from or p.node_id
            self.lookup.on_reply(p.node_id, _contacts(body.nodes, self.core.recent_dead), got)
        else:
            self.lookup.on_failure(p.node_id)
        self._pump(now)

    def _accept_values(self, raws: tuple[bytes, ...]) -> bool:
        got = False
        for raw in raws:
            try:
                rec = self.core.validate(self.lookup.target, raw)
            except ValidationError:
                self.core.stats["invalid_values"] += 1
                continue
            self.found.append(rec)
            got = True
        return got

    def on_slow(self, p: Pending, now: float) -> None:
        if not self.finished and p.node_id is not None:
            self.lookup.on_slow(p.node_id)
            self._pump(now)

    def on_timeout(self, p: Pending, now: float) -> None:
        if self.finished or p.node_id is None:
            return
        # One more request (with its own retransmission) for a candidate among the
        # `settle` closest: under 1% loss a request and its retry both fail about 4 times
        # in 10,000, and giving up on the true closest node drops the result's best entry
        # (2 of 1,000 lookups in lookup-10k). Not when timeouts are common: after a mass
        # failure the candidates that go silent are dead, and each retry is one more RTO.
        if (
            p.node_id not in self._retried
            and self.lookup.among_closest(p.node_id)
            and not self.core.timeouts_common()
        ):
            self._retried.add(p.node_id)
            self.request(p.addr, p.node_id, p.msg.body, now)
            return
        self.lookup.on_failure(p.node_id)
        self._pump(now)

    def best(self) -> Record | None:
        """The winning record among those found (highest seq for heads)."""
        best: Record | None = None
        for rec in self.found:
            with contextlib.suppress(ValidationError):  # an older head loses
                best = merge(best, rec)
        return best


class PutOp(Op):
    """Store `record` on the k closest nodes; acknowledged when `quorum` replicas hold it.

    By default the result waits for every target (so it reports all k replicas).
    With `early`, it is reported as soon as the quorum acknowledged, and the STOREs
    to the rest carry on: a writer is never held back by its slowest replica.
    """

    def __init__(
        self,
        core: NodeCore,
        record: Record,
        *,
        quorum: int,
        report: bool = True,
        early: bool = False,
    ) -> None:
        super().__init__(core, report)
        self.early = early
        self.reported = False
        self.record = record
        self.quorum = quorum
        self.acks: list[bytes] = []
        self.self_counts = False
        self.waiting = 0
        self.found = 0
        self.fallbacks: list[tuple[bytes, tuple[str, int]]] = []

    def start(self, now: float) -> PutOp:
        LookupOp(self.core, self.record.key, report=False, then=self._stored_phase).start(now)
        return self

    def _stored_phase(self, lk: LookupOp, now: float) -> None:
        self.queries += lk.queries
        k = self.core.config.k
        closest = lk.lookup.closest(k)
        self.found = len(closest)
        own = self.core.node_id_int ^ int.from_bytes(self.record.key, "big")
        self.self_counts = len(closest) < k or own < closest[-1].distance
        targets = closest[: k - 1] if self.self_counts else closest
        self.fallbacks = [(c.node_id, c.addr) for c in lk.lookup.beyond(len(targets))]
        for c in targets:
            self._send(c.node_id, c.addr, now)
        self._check()

    def _send(self, node_id: bytes, addr: tuple[str, int], now: float) -> None:
        self.waiting += 1
        self.request(addr, node_id, self.core.store_body(self.record), now)

    def on_response(self, p: Pending, msg: Message, now: float) -> None:
        if self.finished:
            return
        self.waiting -= 1
        if isinstance(msg.body, Stored) and p.node_id is not None:
            self.acks.append(p.node_id)
            if self.early and not self.reported and self._acked() >= self._quorum():
                self._report(
                    PutResult(self.record.key, self._acked(), tuple(self.acks), self.queries)
                )
        else:
            self._fallback(now)
        self._check()

    def on_timeout(self, p: Pending, now: float) -> None:
        if self.finished:
            return
        self.waiting -= 1
        self._fallback(now)
        self._check()

    def _fallback(self, now: float) -> None:
        if self.fallbacks:
            node_id, addr = self.fallbacks.pop(0)
            self._send(node_id, addr, now)

    def _acked(self) -> int:
        return len(self.acks) + (1 if self.self_counts else 0)

    def _quorum(self) -> int:
        # A mesh smaller than the quorum can at best hold a copy on every node it has.
        return min(self.quorum, self.core.config.k, self.found + 1)

    def _report(self, outcome: PutResult | QuorumError) -> None:
        self.reported = True
        if self.report:
            self.core.finish(self, outcome)

    def _check(self) -> None:
        if self.waiting > 0 or self.finished:
            return
        self.finished = True
        if self.reported:
            return
        acks, quorum = self._acked(), self._quorum()
        if not self.acks or acks < quorum:
            self._report(QuorumError(self.record.key, acks, quorum))
        else:
            self._report(PutResult(self.record.key, acks, tuple(self.acks), self.queries))


class GetOp(Op):
    """Find a valid record for `key`: local store first, then FIND_VALUE."""

    def __init__(self, core: NodeCore, key: bytes, *, report: bool = True) -> None:
        super().__init__(core, report)
        self.key = key
        self.widened = False

    def start(self, now: float) -> GetOp:
        local = self.core.local_record(self.key)
        if local is not None:
            self.finish(GetResult(self.key, local, True, 0, 0))
            return self
        LookupOp(self.core, self.key, value=True, report=False, then=self._found).start(now)
        return self

    def _found(self, lk: LookupOp, now: float) -> None:
        self.queries += lk.queries
        best = lk.best()
        if best is None and not self.widened:
            # The second try asks all k closest before it gives up, as Kademlia's value
            # lookup does: the first settles once the 3 closest answered, and after a
            # partition heals, those may be the other side's, without the chunks
            # written meanwhile (one was unread 70 minutes after a heal).
            self.widened = True
            wide = LookupOp(
                self.core, self.key, value=True, report=False, then=self._found, wide=True
            )
            wide.lookup.settle = self.core.config.k
            wide.start(now)
            return
        if best is None:
            self.finish(NotFound(f"no valid record for {self.key.hex()[:16]}…"))
            return
        if self.core.config.cache_on_get:
            self.core.cache_record(best, now)
            for c in lk.lookup.answered():
                if not c.has_value:  # the closest node on the path that lacked it
                    self.core.send_store(c.node_id, c.addr, best, now)
                    break
        self.finish(GetResult(self.key, best, False, lk.lookup.hops, self.queries))


class BootstrapOp(Op):
    """Challenge every seed address, then look up our own id to fill the table."""

    def __init__(
        self,
        core: NodeCore,
        seeds: list[tuple[bytes | None, tuple[str, int]]],
        *,
        report: bool,
        joining: bool = False,
        then: Callable[[float], None] | None = None,
    ) -> None:
        super().__init__(core, report)
        self.seeds = seeds
        self.waiting = 0
        self.refreshing = 0
        self.joining = joining
        self.then = then  # called with `now` once the table is refreshed (or failed)

    def start(self, now: float) -> BootstrapOp:
        if self.joining:
            self.core.joining += 1
        for node_id, addr in self.seeds:
            self.waiting += 1
            self.request(addr, node_id, Ping(), now)
        if not self.seeds:
            self._lookup(now)
        return self

    def on_response(self, p: Pending, msg: Message, now: float) -> None:
        self._one_done(now)

    def on_timeout(self, p: Pending, now: float) -> None:
        self._one_done(now)

    def _one_done(self, now: float) -> None:
        self.waiting -= 1
        if self.waiting == 0 and not self.finished:
            self._lookup(now)

    def _lookup(self, now: float) -> None:
        if len(self.core.table) == 0:
            self._done(LookupFailed("no bootstrap node answered"), now)
            return
        # The join lookup asks all k closest (settle = k), not just the first few: it
        # is what fills the new node's own neighbourhood, where its keys will live.
        if self.core.config.read_only:  # a client needs a way in, not a neighbourhood
            LookupOp(self.core, self.core.node_id, report=False, then=self._refreshed).start(now)
            self.refreshing = 1
            return
        lk = LookupOp(self.core, self.core.node_id, report=False, then=self._joined)
        lk.lookup.settle = self.core.config.k
        lk.start(now)

    def _joined(self, lk: LookupOp, now: float) -> None:
        # Kademlia join: refresh every bucket but our own, so the table knows the
        # whole id space, not just our neighbourhood.
        table = self.core.table
        targets = [
            self.core.rng.randrange(low, high).to_bytes(32, "big")
            for low, high, _ in table.bucket_ranges()
            if not low <= self.core.node_id_int < high
        ]
        self.refreshing = len(targets)
        for target in targets:
            LookupOp(self.core, target, report=False, then=self._refreshed).start(now)
        if not targets:
            self._done(BootstrapResult(len(table)), now)

    def _refreshed(self, lk: LookupOp, now: float) -> None:
        self.refreshing -= 1
        if self.refreshing == 0:
            self._done(BootstrapResult(len(self.core.table)), now)

    def _done(self, outcome: Result | ChorusError, now: float) -> None:
        was_finished = self.finished
        self.finish(outcome)
        if self.then is not None and not was_finished:
            self.then(now)

    def finish(self, outcome: Result | ChorusError) -> None:
        if self.joining and not self.finished:
            self.core.joining -= 1
        super().finish(outcome)


class SingleRpcOp(Op):
    """One request to one node: PING, FIND_NODE, LIST or GET_MANY (recovery's crawl and sweep)."""

    def __init__(
        self, core: NodeCore, addr: tuple[str, int], node_id: bytes | None, body: Body
    ) -> None:
        super().__init__(core, True)
        self.addr = addr
        self.node_id = node_id
        self.body = body
        self.sent_at = 0.0

    def start(self, now: float) -> SingleRpcOp:
        self.sent_at = now
        self.request(self.addr, self.node_id, self.body, now)
        return self

    def on_response(self, p: Pending, msg: Message, now: float) -> None:
        body = msg.body
        if isinstance(body, ErrorReply):
            self.finish(NetworkError(f"peer refused: {body.code.value} {body.detail}"))
        elif isinstance(self.body, Ping):
            self.finish(PingResult(msg.header.sender_id, now - self.sent_at))
        elif isinstance(self.body, List) and isinstance(body, Listed):
            self.finish(ListResult(body.keys, body.cursor))
        elif isinstance(self.body, GetMany) and isinstance(body, Records):
            self.finish(RecordsResult(body.records))
        elif isinstance(self.body, FindNode) and isinstance(body, Nodes):
            self.finish(NodesResult(msg.header.sender_id, body.nodes))
        else:
            self.finish(NetworkError(f"unexpected reply {body.TYPE}"))

    def on_timeout(self, p: Pending, now: float) -> None:
        self.finish(NetworkError(f"no answer from {self.addr[0]}:{self.addr[1]}"))
