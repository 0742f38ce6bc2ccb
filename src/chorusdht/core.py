"""The sans-IO protocol core of one node (the aioquic `QuicConnection` pattern).

The core never reads a clock, never sleeps and never touches a socket. Its
driver (trio in production, netsim's event loop in simulation) does four things:

    core.receive_datagram(data, addr, now)   # a datagram arrived
    core.datagrams_to_send()                 # -> [(bytes, addr)] to transmit now
    core.get_timer() / core.handle_timer(now)
    core.next_event()                        # -> OpDone for finished operations

and starts operations with `put`, `get`, `find_node`, `bootstrap`, `ping`,
`list_keys` and `get_many`, each returning an op id that a later OpDone names.

Randomness (transaction ids, nonces, jitter) comes from the injected
`random.Random`, so one seed reproduces a simulation exactly.

Remote bad input never escapes: a datagram that fails to decode, a forged
proof, a response nobody asked for, an invalid record, all are counted in
`stats` and dropped, or answered with an ERROR code.
"""

from __future__ import annotations

import contextlib
import heapq
import math
import random
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TypeAlias

from .config import NodeConfig
from .errors import ChorusError, DecodeError, ErrorCode, ValidationError
from .handoff import Handoff
from .identity import ED25519, Crypto, Signer
from .ids import id_to_int, key_id, puzzle_ok, sha256
from .membership import MembershipBook, membership_proof, verify_proof
from .messages import (
    MAX_CONTACTS_PER_REPLY,
    MAX_RECORDS_PER_REPLY,
    NONCE_BYTES,
    TXID_BYTES,
    Body,
    ErrorReply,
    FindNode,
    FindValue,
    GetMany,
    Header,
    List,
    Listed,
    Message,
    NodeInfo,
    Nodes,
    Ping,
    Pong,
    Records,
    SinceEntry,
    Store,
    Stored,
    Value,
    VersionMismatch,
    challenge_payload,
    decode_message,
    encode_message,
    shared_node_info,
)
from .ops import BootstrapOp, GetOp, LookupOp, Op, PutOp, SingleRpcOp
from .records import (
    Cert,
    Chunk,
    Genesis,
    Head,
    MembershipCheck,
    Record,
    Roster,
    load_trusted,
    merge,
    validate,
)
from .results import Event, OpDone, Result
from .routing import Added, BucketFull, Contact, RoutingTable
from .rto import RttTable
from .store import RecordStore, StoredContact

__all__ = ["NodeCore", "Pending"]

REPLY_BUDGET = 24 * 1024  # bytes of records per VALUE/RECORDS reply, under the 32 KiB datagram
DROP_AFTER_STALE = 3  # a stale contact silent for 3x the stale threshold is dropped outright
RATE_LIMIT_TRACKED_IPS = 65536  # source IPs with a token bucket (LRU); ~6 MB at most
RATE_LIMIT_REPLY_EVERY = 64  # answer one dropped request in 64 with RATE_LIMITED, drop the rest
MASS_FAILURE_WINDOW = 32  # outcomes of the last requests watched for a mass failure
MASS_FAILURE_TIMEOUTS = 24  # this many timed out among them: sweep the table
_WINDOW_MASK = (1 << MASS_FAILURE_WINDOW) - 1
SWEEP_COOLDOWN = 600.0  # s between two sweeps
SWEEP_IN_FLIGHT = 16  # PINGs a sweep has out at once
SWEEP_MIN_ALIVE = 3  # fewer contacts answered a sweep: it tries the nodes heard of too
SWEEP_ENOUGH_ALIVE = 0.25  # or fewer than this fraction of them answered
RECENT_DEAD_FOR = 60.0  # s a contact that failed a request is not offered to lookups
RECENT_DEAD_MAX = 4096  # such ids remembered at most
PROBES_PER_TICK = 8  # stale contacts pinged per probe tick; bounded so probing never floods
PROOF_CACHE = 4096  # (mesh, member) pairs whose membership proof we verified and keep
GONE_STALE_KEPT = 1024  # ids of contacts dropped as stale, remembered (~100 KB)
PROVEN_CACHE = 8192  # ids remembered as having proven their key (~0.5 MB)
REPUBLISH_PACING = 0.05  # seconds between republish batches when many keys are due at once


SyncSource = Callable[[tuple[SinceEntry, ...], int, int, tuple[str, int]], tuple[list[bytes], bool]]
"""(phase vector, offset, limit, asker) -> (chunk keys the asker lacks from `offset` on,
more?). The asker's address lets the source pull back when the asker is ahead."""


class _Outcomes:
    """Whether each of the last MASS_FAILURE_WINDOW watched requests timed out, as bits.

    An int and a count: a `deque(maxlen=32)` of bools took ~760 bytes per node.
    """

    __slots__ = ("bits", "count")

    def __init__(self) -> None:
        self.bits = 0  # bit i: the request i places back timed out
        self.count = 0  # outcomes held, at most MASS_FAILURE_WINDOW

    def add(self, timed_out: bool) -> None:
        self.bits = ((self.bits << 1) | timed_out) & _WINDOW_MASK
        if self.count < MASS_FAILURE_WINDOW:
            self.count += 1

    def timeouts(self) -> int:
        return self.bits.bit_count()

    def clear(self) -> None:
        self.bits = self.count = 0


@dataclass(slots=True, eq=False)
class Pending:
    """One request awaiting its response."""

    txid: bytes
    addr: tuple[str, int]
    node_id: bytes | None
    msg: Message
    owner: Op
    sent_at: float
    challenge: bytes | None
    attempts: int = 1
    slow: bool = False
    done: bool = False
    # Every attempt goes out under its own transaction id, so a reply says which
    # attempt it answers and always gives a true RTT sample (no Karn ambiguity,
    # which would otherwise stop a 2 s contact from ever teaching us its RTT).
    sends: list[tuple[bytes, float]] = field(default_factory=list)


@dataclass(slots=True)
class _Bucket:
    """A token bucket: `rate` tokens per second, at most one second's worth banked."""

    tokens: float
    last: float

    def take(self, now: float, rate: int) -> bool:
        self.tokens = min(float(rate), self.tokens + (now - self.last) * rate)
        self.last = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


# A timer: (deadline, seq, fire, request). A plain tuple, because the heap compares
# entries on every push and pop; `seq` breaks ties, so `fire` is never compared. A
# request's retransmission timer carries its Pending, so a timer whose request was
# answered is dropped unfired (see `get_timer`); other timers carry None.
_Timer: TypeAlias = tuple[float, int, Callable[[float], None], "Pending | None"]


class _EvictPing(Op):
    """PING the least-recently-seen contact of a full bucket; evict it if it fails."""

    def __init__(self, core: NodeCore, oldest: Contact) -> None:
        super().__init__(core, False)
        self.oldest = oldest

    def on_response(self, p: Pending, msg: Message, now: float) -> None:
        self.core.table.ping_succeeded(self.oldest.node_id, now)
        self.finish_quietly()

    def on_timeout(self, p: Pending, now: float) -> None:
        # One missed PING is not death (DESIGN §3): the failure was already counted,
        # and the contact is replaced only once it is stale (`_contact_failed`).
        self.finish_quietly()

    def finish_quietly(self) -> None:
        self.finished = True
        self.core.evict_pings.pop(self.oldest.node_id, None)


class _Admit(Op):
    """PING an unknown sender with a challenge; a valid proof admits it (handled in core)."""

    def __init__(self, core: NodeCore, node_id: bytes) -> None:
        super().__init__(core, False)
        self.node_id = node_id

    def on_response(self, p: Pending, msg: Message, now: float) -> None:
        self.core.verifying.pop(self.node_id, None)

    def on_timeout(self, p: Pending, now: float) -> None:
        self.core.verifying.pop(self.node_id, None)


class _Probe(Op):
    """PING a suspect contact: an answer clears it, a failure counts one more."""

    def __init__(self, core: NodeCore, node_id: bytes) -> None:
        super().__init__(core, False)
        self.node_id = node_id

    def on_response(self, p: Pending, msg: Message, now: float) -> None:
        self.core.probing_done(self.node_id)

    def on_timeout(self, p: Pending, now: float) -> None:
        self.core.probing_done(self.node_id)


class _SelfLookup(LookupOp):
    """The periodic lookup of our own id (`NodeCore._refresh_neighbourhood`).

    Not `watched`: it asks all k closest, and in a partition half of them are on
    the other side; counted, its timeouts started sweeps all through the split
    (partition scenario, seed 2: 721 sweeps against 271, twice the messages).
    """

    watched = False


_HEARD = Ping()  # the PING a sweep sends to a node heard of (told apart by identity)


class _Sweep(Op):
    """After a mass failure: PING every contact, a few at a time, then refresh.

    Right after most of the network died, the table still looks healthy: nobody
    has talked to the dead yet. Silent contacts turn stale here (a sweep's
    timeout counts twice, the suspect probe adds the third), so replies and
    lookups offer only the living; then a join-style refresh (own id, every
    bucket) meets the survivors this node did not know.

    When fewer than SWEEP_MIN_ALIVE contacts answer, the table held almost only
    the dead (after 99% of 2,000 nodes died, 4 of the 20 survivors knew no living
    node): the sweep then PINGs the nodes heard of in replies (`core.heard`), and
    those that answer the challenge enter the table like any proven contact. It
    does so too when under a quarter answered: the few it reached may be an island
    of their own, and a survivor whose own table and book hold only the dead is
    found only by one that heard of it (the PING makes it learn the pinger too).
    """

    def __init__(self, core: NodeCore) -> None:
        super().__init__(core, False)
        stale = core.config.evict_after_failures
        self.todo = [c for c in core.table if c.failures < stale]  # suspects too
        # Fewer answers than this: the table held mostly the dead; try the book too.
        self.enough = max(SWEEP_MIN_ALIVE, math.ceil(len(self.todo) * SWEEP_ENOUGH_ALIVE))
        self.book: list[NodeInfo] | None = None  # set once the table proved (nearly) dead
        self.waiting = 0
        self.alive = 0

    def start(self, now: float) -> _Sweep:
        self._more(now)
        return self

    def _more(self, now: float) -> None:
        table = self.core.table
        while self.waiting < SWEEP_IN_FLIGHT:
            if self.todo:
                c = self.todo.pop()
                if table.get(c.node_id) is c:
                    self.waiting += 1
                    self.request(c.addr, c.node_id, Ping(), now)
            elif self.book and self.alive < self.enough:
                n = self.book.pop()
                if n.node_id not in table:
                    self.waiting += 1
                    self.core.stats["sweep_heard_pinged"] += 1
                    self.request((n.host, n.port), n.node_id, _HEARD, now)
            else:
                break
        if self.waiting or self.finished:
            return
        if self.book is None and self.alive < self.enough and self.core.heard:
            self.book = list(self.core.heard.values())  # newest heard last: PINGed first
            self._more(now)
            return
        if not self.todo and not (self.book and self.alive < self.enough):
            self.finished = True
            BootstrapOp(self.core, [], report=False, then=self.core.repair_all).start(now)

    def on_response(self, p: Pending, msg: Message, now: float) -> None:
        self.waiting -= 1
        self.alive += 1
        if p.msg.body is _HEARD:
            self.core.stats["sweep_heard_found"] += 1
        self._more(now)

    def on_timeout(self, p: Pending, now: float) -> None:
        self.waiting -= 1
        if p.node_id is not None:
            self.core._contact_failed(p.node_id, now)
        self._more(now)


class _Liveness(Op):
    """PING a bucket's long-silent LRS contact until it answers or turns stale.

    Each failure counts (`_contact_failed`); a dead contact reaches the stale
    threshold within seconds, which repairs the keys it was near (`_repair_around`).
    Not `watched`: the dead are never heard from again, so they become their
    bucket's LRS contacts and these PINGs find them far more often than deaths
    are common. Counted in the mass-failure window (with the stale probes that
    follow, `_StaleProbe`), 3 dead contacts of 20 started a sweep, and the waves
    scenario sent twice the messages.
    """

    watched = False

    def __init__(self, core: NodeCore, contact: Contact) -> None:
        super().__init__(core, False)
        self.contact = contact

    def send(self, now: float) -> None:
        c = self.contact
        if self.core.table.get(c.node_id) is c:
            self.core.request(c.addr, c.node_id, Ping(), self, now)
        else:  # dropped or replaced meanwhile
            self.core.probing_done(c.node_id)

    def on_response(self, p: Pending, msg: Message, now: float) -> None:
        self.core.probing_done(self.contact.node_id)

    def on_timeout(self, p: Pending, now: float) -> None:
        core, c = self.core, self.contact
        if core.table.get(c.node_id) is c and c.failures < core.config.evict_after_failures:
            core.schedule(now + core.rng.uniform(0.1, 1.0), self.send)
        else:
            core.probing_done(c.node_id)


class _Fire(Op):
    """A request whose answer nobody waits for (hand-off, path caching)."""

    def on_response(self, p: Pending, msg: Message, now: float) -> None:
        pass

    def on_timeout(self, p: Pending, now: float) -> None:
        pass


class _StaleProbe(_Fire):
    """A PING of a contact that stopped answering (or of one known before a mass
    failure). Not `watched`: these go to the likely dead by design, every tick."""

    watched = False


class NodeCore:
    """Protocol state of one node. See the module docstring for the driver contract."""

    # Slots, not a __dict__: netsim holds 100,000 cores, and a dict of ~50 attributes
    # is ~1.6 KB each against ~400 bytes of slots.
    __slots__ = (
        "__weakref__",  # netsim's tests check that a crashed node's core is freed
        "_closed",
        "_contacts_dirty",
        "_dead_since_sweep",
        "_due",
        "_due_heap",
        "_events",
        "_first_death",
        "_fresh_at",
        "_global_bucket",
        "_gone_stale",
        "_ip_buckets",
        "_last_repair_all",
        "_last_sweep",
        "_liveness_at",
        "_member_proofs",
        "_op_seq",
        "_origin_bytes",
        "_outbox",
        "_outcomes",
        "_pending",
        "_probing",
        "_proof_to_keep",
        "_proven",
        "_repairing",
        "_republish_soon",
        "_stale",
        "_started_at",
        "_timer_seq",
        "_timers",
        "config",
        "crypto",
        "evict_pings",
        "handoff",
        "heard",
        "identity",
        "joining",
        "membership",
        "node_id",
        "node_id_int",
        "on_record",
        "pinned",
        "public_key",
        "recent_dead",
        "rng",
        "rtt",
        "self_lookup_at",
        "stats",
        "store",
        "sync_sources",
        "table",
        "verifying",
    )

    def __init__(
        self,
        identity: Signer,
        store: RecordStore,
        *,
        rng: random.Random,
        now: float,
        config: NodeConfig | None = None,
        crypto: Crypto = ED25519,
    ) -> None:
        self.identity = identity
        self.node_id = identity.node_id
        self.node_id_int = id_to_int(identity.node_id)
        self.public_key = identity.public_key
        self.config = config or NodeConfig()
        self.store = store
        self.rng = rng
        self.crypto = crypto
        self.membership = MembershipBook()  # meshes whose genesis (and certs) we hold
        self._member_proofs: OrderedDict[tuple[bytes, bytes], tuple[bytes, ...]] = OrderedDict()
        self._proof_to_keep: tuple[bytes, ...] | None = None  # verified during this STORE
        self._outcomes = _Outcomes()
        # Ids that failed a request (after its retries) within RECENT_DEAD_FOR: node id ->
        # when. Lookups do not take them as candidates from replies (ops._contacts).
        self.recent_dead: dict[bytes, float] = {}
        # Nodes heard of in lookup replies, oldest first (config.address_book of them):
        # whom a sweep can still try when every contact of the table turned out dead.
        self.heard: dict[bytes, NodeInfo] = {}
        self._last_sweep = -SWEEP_COOLDOWN
        self.on_record: Callable[[Record, float], None] | None = None
        # Pinned meshes answer LIST-with-phase-vector from their log (see messages.List).
        self.sync_sources: dict[bytes, SyncSource] = {}
        cfg = self.config
        self.table = RoutingTable(
            self.node_id, cfg.k, subnet_limit=cfg.subnet_limit, max_contacts=cfg.max_contacts
        )
        self.rtt = RttTable(cfg.rto)
        self.stats: Counter[str] = Counter()
        # Dicts used as sets: an empty set is 216 bytes, an empty dict 64.
        self.verifying: dict[bytes, None] = {}
        self._proven: dict[bytes, None] = {}  # ids that answered a challenge, in LRU order
        self.evict_pings: dict[bytes, None] = {}
        self._pending: dict[tuple[bytes, tuple[str, int]], Pending] = {}
        self._timers: list[_Timer] = []
        self._timer_seq = 0
        self._outbox: list[tuple[Message, tuple[str, int]]] = []
        self._events: list[Event] = []  # a list, not a deque: ~700 bytes less per node
        self._op_seq = 0
        self._due: dict[bytes, float] = {}
        self._due_heap: list[tuple[float, bytes]] = []
        self._republish_soon = False
        self._dead_since_sweep: list[int] = []
        self._last_repair_all = -math.inf
        self.handoff = Handoff(self)
        self.joining = 0  # join bootstraps in progress: no hand-offs meanwhile
        self._repairing: dict[bytes, None] = {}  # keys due for repair after deaths
        self._stale: dict[bytes, None] = {}  # contacts at the failure threshold (ordered set)
        self.pinned: set[bytes] = set()  # meshes kept in full here: exempt from quotas
        self._ip_buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._global_bucket = _Bucket(float(self.config.rate_limit_global or 0), now)
        self._origin_bytes: dict[str, int] = {}
        self._contacts_dirty = False
        self._probing: set[bytes] = set()
        self._liveness_at: dict[int, float] = {}  # bucket low -> when its LRS was last PINGed
        self._first_death = 0.0
        self._started_at = now
        self._fresh_at: dict[bytes, float] = {}
        self.self_lookup_at = now  # the last lookup of our own id (join, sweep or refresh)
        # Contacts dropped for being stale, oldest first: back in the table, they are
        # handed their keys as revived contacts are (`_heard_from`).
        self._gone_stale: dict[bytes, None] = {}
        self._closed = False
        for key in store.keys():
            self._set_due(
                key, now + cfg.republish_interval * rng.uniform(0.5, 1.0 + cfg.republish_jitter)
            )
        self.schedule(now + cfg.refresh_interval * rng.uniform(0.5, 1.0), self._refresh_tick)
        self.schedule(now + cfg.contacts_save_interval, self._save_contacts_tick)
        self.schedule(now + cfg.stale_probe_interval, self._probe_tick)
        self._schedule_republish_tick(now)

    # ---- driver interface ---------------------------------------------------

    def receive_datagram(self, data: bytes, addr: tuple[str, int], now: float) -> None:
        if self._closed:
            return
        self.stats["datagrams_in"] += 1
        self.stats["bytes_in"] += len(data)
        try:
            msg = decode_message(data)
        except VersionMismatch as e:
            self.stats["bad_version"] += 1
            if e.is_request:  # answering an answer could loop between two versions forever
                self._reply(e.header, addr, ErrorReply(ErrorCode.UNSUPPORTED_VERSION, "speak v1"))
            return
        except DecodeError as e:
            self.stats["malformed" if e.code is ErrorCode.MALFORMED else "too_large"] += 1
            return
        self.receive_message(msg, addr, now)

    def receive_message(self, msg: Message, addr: tuple[str, int], now: float) -> None:
        """Handle an already-decoded message (netsim may skip the byte round trip)."""
        h = msg.header
        if h.sender_id == self.node_id or self._closed:
            return
        if key_id(h.sender_key) != h.sender_id:
            self.stats["bad_identity"] += 1
            return
        if msg.is_request:
            if not self._admit_request(addr[0], now):
                self.stats["rate_limited"] += 1
                if self.stats["rate_limited"] % RATE_LIMIT_REPLY_EVERY == 1:
                    self._reply(h, addr, ErrorReply(ErrorCode.RATE_LIMITED, "slow down"))
                return
            self._handle_request(msg, addr, now)
        else:
            self._handle_response(msg, addr, now)

    def messages_to_send(self) -> list[tuple[Message, tuple[str, int]]]:
        out, self._outbox = self._outbox, []
        return out

    def datagrams_to_send(self) -> list[tuple[bytes, tuple[str, int]]]:
        out = []
        for msg, addr in self.messages_to_send():
            data = encode_message(msg)
            self.stats["bytes_out"] += len(data)
            out.append((data, addr))
        return out

    def get_timer(self) -> float | None:
        timers = self._timers
        # Nearly every request is answered before its timer is due: drop those timers
        # here, so the driver does not wake up only to fire no-ops.
        while timers and (p := timers[0][3]) is not None and p.done:
            heapq.heappop(timers)
        return timers[0][0] if timers else None

    def handle_timer(self, now: float) -> None:
        """Fire the timers due by `now` that were set before this call. One a handler
        sets for `now` or earlier waits for the next call, so the driver gets control
        (and can stop) between rounds even if something re-arms itself with no delay."""
        timers = self._timers
        last = self._timer_seq
        while timers and timers[0][0] <= now and timers[0][1] <= last:
            heapq.heappop(timers)[2](now)

    def next_event(self) -> Event | None:
        return self._events.pop(0) if self._events else None  # rarely more than one

    def close(self) -> None:
        """Stop: persist contacts and answer nothing more."""
        self._save_contacts()
        self._closed = True

    # ---- operations ---------------------------------------------------------

    def bootstrap(self, addrs: list[tuple[str, int]], now: float, *, report: bool = True) -> int:
        """Join through `addrs`, or through the stored contacts when `addrs` is empty."""
        seeds: list[tuple[bytes | None, tuple[str, int]]] = [(None, a) for a in addrs]
        if not seeds:
            seeds = [(c.node_id, (c.host, c.port)) for c in self.store.load_contacts()]
        return BootstrapOp(self, seeds, report=report, joining=True).start(now).op_id

    def find_node(self, target: bytes, now: float) -> int:
        return LookupOp(self, target).start(now).op_id

    def put(
        self, raw: bytes, key: bytes, now: float, *, quorum: int | None = None, early: bool = False
    ) -> int:
        """Validate `raw`, keep it locally, then store it on the k closest nodes.

        The result comes when every target answered, or with `early` as soon as the
        write quorum acknowledged (the remaining STOREs carry on).
        """
        record = self.validate(key, raw)  # raises ValidationError: caller's bad record
        self._accept(record, now)  # our own store follows the same rules (STALE_SEQ)
        op = PutOp(self, record, quorum=quorum or self.config.write_quorum, early=early)
        return op.start(now).op_id

    def get(self, key: bytes, now: float) -> int:
        return GetOp(self, key).start(now).op_id

    def ping(self, addr: tuple[str, int], now: float) -> int:
        return SingleRpcOp(self, addr, None, Ping()).start(now).op_id

    def list_keys(
        self,
        addr: tuple[str, int],
        mesh: bytes,
        cursor: bytes | None,
        now: float,
        limit: int = 256,
        since: tuple[SinceEntry, ...] | None = None,
        node_id: bytes | None = None,
    ) -> int:
        """One LIST page. Give `node_id` when known: a proven peer is not challenged again."""
        return SingleRpcOp(self, addr, node_id, List(mesh, cursor, limit, since)).start(now).op_id

    def get_many(
        self, addr: tuple[str, int], keys: list[bytes], now: float, node_id: bytes | None = None
    ) -> int:
        """One GET_MANY. With `node_id`, as for `list_keys`: each challenge costs a verify."""
        return SingleRpcOp(self, addr, node_id, GetMany(tuple(keys))).start(now).op_id

    def ask_nodes(
        self, addr: tuple[str, int], node_id: bytes | None, target: bytes, now: float
    ) -> int:
        """One FIND_NODE to one peer, not a lookup: what it knows near `target`."""
        return SingleRpcOp(self, addr, node_id, FindNode(target)).start(now).op_id

    # ---- services for operations --------------------------------------------

    def next_op_id(self) -> int:
        self._op_seq += 1
        return self._op_seq

    def finish(self, op: Op, outcome: Result | ChorusError) -> None:
        if op.report:
            self._events.append(OpDone(op.op_id, outcome))

    def validate(self, key: bytes, raw: bytes, proof: tuple[bytes, ...] = ()) -> Record:
        return validate(
            key,
            raw,
            crypto=self.crypto,
            max_size=self.config.max_record,
            is_member=self.member_check(proof),
        )

    # ---- floods and quotas --------------------------------------------------

    def _admit_request(self, ip: str, now: float) -> bool:
        """Token buckets per source IP, then for the whole node (OpenDHT's defaults).

        The per-IP bucket comes first, so a flood refused there does not also drain
        the global bucket that honest peers share."""
        cfg = self.config
        if cfg.rate_limit_per_ip is not None:
            buckets = self._ip_buckets
            bucket = buckets.get(ip)
            if bucket is None:
                # A bucket idle for a second has refilled: it is the same as a new one,
                # so only IPs heard from in the last second need one (LRU order).
                while buckets and next(iter(buckets.values())).last <= now - 1.0:
                    buckets.popitem(last=False)
                bucket = buckets[ip] = _Bucket(float(cfg.rate_limit_per_ip), now)
                if len(buckets) > RATE_LIMIT_TRACKED_IPS:
                    buckets.popitem(last=False)
            else:
                buckets.move_to_end(ip)
            if not bucket.take(now, cfg.rate_limit_per_ip):
                return False
        return cfg.rate_limit_global is None or self._global_bucket.take(now, cfg.rate_limit_global)

    def _check_quota(self, record: Record, origin: str) -> None:
        """QUOTA for a new record past the node's or the origin's budget; pinned meshes
        (and records we already hold) are exempt."""
        cfg = self.config
        if record.mesh in self.pinned or record.key in self.store:
            return
        size = len(record.raw)
        if (
            cfg.max_store_bytes is not None
            and self.store.total_bytes() + size > cfg.max_store_bytes
        ):
            raise ValidationError(ErrorCode.QUOTA, "this node's store is full")
        if cfg.max_bytes_per_origin is not None:
            used = self._origin_bytes.get(origin, 0)
            if used + size > cfg.max_bytes_per_origin:
                raise ValidationError(ErrorCode.QUOTA, "your share of this node's store is used up")
            self._origin_bytes[origin] = used + size

    # ---- membership ---------------------------------------------------------

    def member_check(self, proof: tuple[bytes, ...] = ()) -> MembershipCheck:
        """Is `key` a member of `mesh`? Asked of every chunk, head and cert we validate.

        Known meshes answer from their roster view; any mesh answers yes for a key
        that proved its membership (now, with `proof`, or earlier). A mesh we know
        nothing of, with no proof, is refused when `config.require_membership`.
        """

        def check(mesh: bytes, key: bytes) -> bool:
            if self.membership.is_member(mesh, key) or (mesh, key) in self._member_proofs:
                return True
            if proof and verify_proof(mesh, key, list(proof), self.crypto):
                self._remember_proof(mesh, key, proof)
                self._proof_to_keep = proof
                return True
            return mesh not in self.membership.views and not self.config.require_membership

        return check

    def _remember_proof(self, mesh: bytes, key: bytes, proof: tuple[bytes, ...]) -> None:
        self._member_proofs[(mesh, key)] = proof
        self._member_proofs.move_to_end((mesh, key))
        if len(self._member_proofs) > PROOF_CACHE:
            self._member_proofs.popitem(last=False)

    def proof_for(self, record: Record) -> tuple[bytes, ...]:
        """The membership proof to send along with `record` in a STORE (or none)."""
        if isinstance(record, Chunk | Head):
            mesh, key = record.mesh, record.author
        elif isinstance(record, Cert):
            mesh, key = record.mesh, record.admitter
        else:
            return ()
        cached = self._member_proofs.get((mesh, key))
        if cached is not None:
            return cached
        view = self.membership.views.get(mesh)
        if view is None or not view.is_member(mesh, key):
            return ()
        proof = tuple(membership_proof(view, key))
        self._remember_proof(mesh, key, proof)
        return proof

    def store_body(self, record: Record) -> Store:
        return Store(record.key, record.raw, self.proof_for(record))

    def local_record(self, key: bytes) -> Record | None:
        """The record stored here under `key` (validated when it was stored)."""
        raw = self.store.get(key)
        if raw is None:
            return None
        try:
            return load_trusted(key, raw, max_size=self.config.max_record)
        except ValidationError:
            self.stats["local_invalid"] += 1
            return None

    def keep_local(self, record: Record, now: float) -> None:
        """Commit a record this node made or already validated (the memory layer's path)."""
        self._accept(record, now)

    def cache_record(self, record: Record, now: float) -> None:
        """Keep a copy a get found (validated), so later reads and repairs can use it."""
        with contextlib.suppress(ValidationError):  # a newer head is already here
            self._accept(record, now)

    def send_store(self, node_id: bytes, addr: tuple[str, int], record: Record, now: float) -> None:
        self.request(addr, node_id, self.store_body(record), _Fire(self, False), now)

    def request(
        self, addr: tuple[str, int], node_id: bytes | None, body: Body, owner: Op, now: float
    ) -> Pending:
        txid = self.rng.randbytes(TXID_BYTES)
        challenge = None
        contact = None if node_id is None else self.table.get(node_id)
        if contact is None and (node_id is None or node_id not in self._proven):
            challenge = self.rng.randbytes(NONCE_BYTES)
            self.stats["challenges_out"] += 1
        header = Header(
            txid,
            self.node_id,
            self.public_key,
            challenge=challenge,
            read_only=self.config.read_only,
        )
        msg = Message(header, body)
        p = Pending(txid, addr, node_id, msg, owner, now, challenge)
        p.sends.append((txid, now))
        self._pending[(txid, addr)] = p
        self._outbox.append((msg, addr))
        self.stats["requests_out"] += 1
        self.stats[f"out_{body.TYPE}"] += 1
        timeout = self.rtt.timeout_for(node_id) if contact is None else self._timeout(contact)
        self.schedule(now + timeout, lambda t: self._rpc_timer(p, t), p)
        return p

    def _timeout(self, contact: Contact) -> float:
        if contact.rtt < 0:  # not pinned: a replacement that `table.remove` promoted
            return self.rtt.timeout_for(contact.node_id)
        return self.rtt.timeout_at(contact.rtt)

    def timeout_for(self, node_id: bytes | None) -> float:
        """How long the next request to `node_id` waits for its reply (its RTO)."""
        contact = None if node_id is None else self.table.get(node_id)
        return self.rtt.timeout_for(node_id) if contact is None else self._timeout(contact)

    # ---- timers -------------------------------------------------------------

    def schedule(
        self, deadline: float, fire: Callable[[float], None], request: Pending | None = None
    ) -> None:
        """Call `fire(now)` at `deadline`; a `request`'s timer is dropped once it is done."""
        self._timer_seq += 1
        heapq.heappush(self._timers, (deadline, self._timer_seq, fire, request))

    def _settle(self, p: Pending) -> None:
        """The request is answered or given up: forget all of its transaction ids."""
        p.done = True
        for txid, _ in p.sends:
            self._pending.pop((txid, p.addr), None)

    def _rpc_timer(self, p: Pending, now: float) -> None:
        if p.done:
            return
        if p.attempts <= self.config.retries:
            p.attempts += 1
            self.stats["retransmits"] += 1
            txid = self.rng.randbytes(TXID_BYTES)
            p.msg = Message(replace(p.msg.header, txid=txid), p.msg.body)
            p.sends.append((txid, now))
            self._pending[(txid, p.addr)] = p
            self._outbox.append((p.msg, p.addr))
            # Exponential backoff per request (RFC 6298 §5.5), not per contact: a dead
            # contact must not make every later request to it wait a ceiling-long time.
            timeout = self.config.rto.clamp(self.timeout_for(p.node_id) * 2 ** (p.attempts - 1))
            self.schedule(now + timeout, lambda t: self._rpc_timer(p, t), p)
            if not p.slow:
                p.slow = True
                p.owner.on_slow(p, now)
            return
        self._settle(p)
        self.stats["timeouts"] += 1
        if p.node_id is not None:
            self._contact_failed(p.node_id, now)
        p.owner.on_timeout(p, now)
        if p.node_id is not None:
            self._note_dead(p.node_id, now)
        if p.owner.watched:
            self._outcomes.add(True)
            self._check_mass_failure(now)

    def _note_dead(self, node_id: bytes, now: float) -> None:
        """`node_id` did not answer a request or its retries: lookups skip it for a while."""
        dead = self.recent_dead
        dead.pop(node_id, None)  # re-inserted last: the dict stays in time order
        dead[node_id] = now
        self._forget_dead(now)
        if len(dead) > RECENT_DEAD_MAX:
            del dead[next(iter(dead))]

    def _forget_dead(self, now: float) -> None:
        dead = self.recent_dead
        while dead and next(iter(dead.values())) <= now - RECENT_DEAD_FOR:
            del dead[next(iter(dead))]

    def timeouts_common(self) -> bool:
        """Over a quarter of the last requests timed out: silence means death, not loss."""
        o = self._outcomes
        return o.timeouts() * 4 > o.count

    def hear(self, nodes: tuple[NodeInfo, ...]) -> None:
        """Remember nodes a reply named (unverified: only ever PINGed, never trusted)."""
        cap = self.config.address_book
        if not cap:
            return
        heard = self.heard
        for n in nodes:
            heard[n.node_id] = n
        while len(heard) > cap:
            del heard[next(iter(heard))]

    def _check_mass_failure(self, now: float) -> None:
        """Most recent requests timed out: most of the network may be gone. Sweep."""
        o = self._outcomes
        if (
            o.count == MASS_FAILURE_WINDOW
            and o.timeouts() >= MASS_FAILURE_TIMEOUTS
            and now - self._last_sweep >= SWEEP_COOLDOWN
            and not self._closed
        ):
            self._last_sweep = now
            o.clear()
            self.stats["sweeps"] += 1
            _Sweep(self).start(now)

    def _refresh_tick(self, now: float) -> None:
        cfg = self.config
        if now - self.self_lookup_at >= cfg.refresh_interval and not cfg.read_only:
            self._refresh_neighbourhood(now)
        for low, high in self.table.stale_buckets(now, cfg.refresh_interval):
            target = self.rng.randrange(low, high).to_bytes(32, "big")
            LookupOp(self, target, report=False).start(now)
        self.schedule(now + cfg.refresh_interval * self.rng.uniform(0.25, 0.5), self._refresh_tick)

    def _refresh_neighbourhood(self, now: float) -> None:
        """Look up our own id, asking all k closest, as a join does (libp2p: a self-walk).

        The bucket refresh never covers our neighbourhood: the requests of its
        nodes keep it "changed". Yet only a lookup meets neighbours nobody
        introduced. After a partition heals, both sides hold copies of the keys
        written in the split on their own side's k closest; a holder that knows
        none of the other side's nodes near the key takes itself for one of its k
        closest and republishes to its own side only, and the STORE makes the
        holders that do know them skip their turn. In the partition scenario (seed
        2) one chunk was still unread 70 minutes after the heal. The lookup proves
        the neighbours it meets (they answer its challenge), they enter the table,
        and the hand-off gives them the keys they are now among the k closest of.
        About k FIND_NODEs per node per `refresh_interval`.
        """
        self.stats["self_lookups"] += 1
        lk = _SelfLookup(self, self.node_id, report=False)
        lk.lookup.settle = self.config.k
        lk.start(now)

    def _probe_tick(self, now: float) -> None:
        """PING stale contacts that are still in the table: an overloaded peer that
        missed a few answers comes back as soon as it answers one."""
        self._forget_dead(now)
        threshold = self.config.evict_after_failures
        for node_id in list(self._stale):  # forget the ones that answered or left
            c = self.table.get(node_id)
            if c is None or c.failures < threshold:
                del self._stale[node_id]
        for node_id in list(self._stale)[:PROBES_PER_TICK]:
            del self._stale[node_id]  # re-inserted at the end: probes take turns
            self._stale[node_id] = None
            c = self.table.get(node_id)
            if c is not None:
                self.request(c.addr, c.node_id, Ping(), _StaleProbe(self, False), now)
        if len(self.table) - len(self._stale) < self.config.k:
            # Few live contacts (a mass failure): try contacts we knew before, so
            # survivors that never met find each other again.
            known = [sc for sc in self.store.load_contacts() if sc.node_id not in self.table]
            for sc in self.rng.sample(known, min(PROBES_PER_TICK, len(known))):
                self.request((sc.host, sc.port), sc.node_id, Ping(), _StaleProbe(self, False), now)
        self._probe_quiet_buckets(now)
        interval = self.config.stale_probe_interval
        self.schedule(now + interval * self.rng.uniform(0.75, 1.25), self._probe_tick)

    def _probe_quiet_buckets(self, now: float) -> None:
        """PING each bucket's LRS contact once it has been silent `liveness_interval`.

        Incoming requests keep a bucket "changed" (so it is never refreshed) while
        its dead contacts stay silent, and a node that sends nothing itself never
        times out on them: after a mass failure, a quiet holder of a copy far from
        its key would never learn that the key's k holders died, nor push the copy
        to the survivors (nuke-overlay 90%, seed 5: 2 chunks unread an hour later).
        At most one such PING per bucket per interval, and none while the bucket's
        LRS contact has been heard from lately: a busy node sends none.
        """
        interval = self.config.liveness_interval
        cutoff = now - interval
        if cutoff < self._started_at:
            return  # every contact entered the table (seen) after this core started
        last = self._liveness_at
        for low, c in self.table.quiet_buckets(cutoff):
            if last.get(low, -math.inf) > cutoff:
                continue
            if c.node_id in self._probing:
                continue
            last[low] = now
            self._probing.add(c.node_id)
            self.stats["liveness_pings"] += 1
            _Liveness(self, c).send(now)

    def _save_contacts_tick(self, now: float) -> None:
        self._save_contacts()
        self.schedule(now + self.config.contacts_save_interval, self._save_contacts_tick)

    def _save_contacts(self) -> None:
        if not self._closed and self._contacts_dirty:
            self._contacts_dirty = False
            self.store.save_contacts(
                [StoredContact(c.node_id, c.addr[0], c.addr[1], c.last_seen) for c in self.table]
            )

    # ---- republish and repair -----------------------------------------------

    def _set_due(self, key: bytes, due: float) -> None:
        self._due[key] = due
        heapq.heappush(self._due_heap, (due, key))

    def _fresh(self, key: bytes, now: float) -> None:
        """The key was just stored here (or republished): push its republish out."""
        self._fresh_at[key] = now
        self._due_later(key, now)

    def _due_later(self, key: bytes, now: float) -> None:
        cfg = self.config
        self._set_due(
            key, now + cfg.republish_interval * (1 + self.rng.uniform(0, cfg.republish_jitter))
        )

    def _schedule_republish_tick(self, now: float) -> None:
        self.schedule(now + self.config.republish_interval / 8, self._republish_tick)

    def _republish_tick(self, now: float) -> None:
        self._republish_due(now)
        self._schedule_republish_tick(now)

    def _republish_due(self, now: float) -> None:
        """Re-push due keys to the k closest nodes our table knows.

        A holder is itself among a key's k closest, and its table covers its own
        neighbourhood completely (that bucket always splits), so its view of the
        k closest is as good as a lookup's, at no lookup cost. Hand-off and bucket
        refresh keep that view current. At most `republish_batch` keys go out at
        once; the rest follow shortly, so a node holding many keys sends no burst.
        """
        heap = self._due_heap
        k = self.config.k
        sent = 0
        while heap and heap[0][0] <= now and sent < self.config.republish_batch:
            due, key = heapq.heappop(heap)
            if self._due.get(key) != due:
                continue  # superseded by a fresher due time
            record = self.local_record(key)
            if record is None:
                self._due.pop(key, None)
                self._fresh_at.pop(key, None)
                continue
            sent += 1
            near = self.healthy_closest(key, 2 * k)
            t = id_to_int(key)
            far = len(near) >= k and (self.node_id_int ^ t) > (near[k - 1].int_id ^ t)
            if far and key not in self._repairing:
                # A cached or pinned copy far from the key: its k holders republish.
                # Not `_fresh`: nothing went out, so a repair soon after must not skip it.
                self._due_later(key, now)
                continue
            self._fresh(key, now)
            self.stats["republishes"] += 1
            self._repairing.pop(key, None)
            if far:
                # A repair from far away: our table knows the key's region only thinly
                # (one bucket), so look its k closest up, as a put does, and store there.
                PutOp(self, record, quorum=1, report=False).start(now)
                continue
            # Contacts that just failed a request are passed over while k others
            # remain: after deaths, the copies go to the live nodes beyond them.
            sure = [c for c in near if c.failures == 0]
            for c in (sure + [c for c in near if c.failures])[:k]:
                self.send_store(c.node_id, c.addr, record, now)
        if heap and heap[0][0] <= now and not self._republish_soon:
            self._republish_soon = True
            self.schedule(now + REPUBLISH_PACING, self._republish_paced)

    def _republish_paced(self, now: float) -> None:
        self._republish_soon = False
        self._republish_due(now)

    def repair_all(self, now: float) -> None:
        """After a mass failure's sweep and refresh: re-push every held key soon.

        The repair that deaths trigger (`_repair_around`) starts while most of the
        dead still look alive, so its pushes largely go to them, and a key re-pushed
        is then left alone for a quarter of the republish interval. Once the sweep
        has tried every contact and the refresh has met the survivors, the table
        knows who is alive: one more push per key, jittered over `repair_delay`,
        reaches the key's live k closest. A holder that receives another holder's
        push first skips its own (the STORE resets its due time). Without it, in
        nuke-overlay at 90% (seed 1) 10 chunks that survived were unreadable an
        hour later: their copies sat on nodes far from the key.
        """
        if not self._due or now - self._last_repair_all < self.config.republish_interval / 4:
            return  # nothing held, or one such push went out lately (sweeps recur every 10 min)
        self._last_repair_all = now
        self.stats["mass_repairs"] += 1
        for key in list(self._due):
            self._repairing[key] = None
            self._set_due(key, now + self.rng.uniform(0, self.config.repair_delay))
        self.schedule(now + self.config.repair_delay / 4, self._republish_paced_quarter)

    def _repair_around(self, dead_id: bytes, now: float) -> None:
        """A contact died: within `repair_delay`, republish the keys it probably held.

        Deaths are batched: one sweep handles every contact evicted before it, so a
        mass failure costs one pass over the keys, not one per dead contact.
        """
        if not self._due:
            return
        self._dead_since_sweep.append(id_to_int(dead_id))
        if len(self._dead_since_sweep) == 1:
            self._first_death = now
            delay = self.rng.uniform(0.5, 1.0) * self.config.repair_delay
            self.schedule(now + delay, self._repair_sweep)

    def _repair_sweep(self, now: float) -> None:
        dead, self._dead_since_sweep = self._dead_since_sweep, []
        self.stats["repair_sweeps"] += 1
        k = self.config.k
        wake = False
        for key in list(self._due):
            t = id_to_int(key)
            closest = self.table.closest(key, k)
            bound = closest[-1].int_id ^ t if len(closest) >= k else 1 << 256
            fresh = self._fresh_at.get(key, 0.0)
            if fresh > self._first_death or fresh > now - self.config.republish_interval / 4:
                continue  # re-pushed since the deaths, or just now: a storm helps no one
            if any(d ^ t < bound for d in dead):
                self._repairing[key] = None  # republish it even from a copy far from the key
                # Jittered, so the first holder's push reaches the others before their
                # own turn comes and they skip it (a fresh re-store resets their due).
                self._set_due(key, now + self.rng.uniform(0, self.config.repair_delay))
                self.stats["repair_keys"] += 1
                wake = True
        if wake:
            self.schedule(now + self.config.repair_delay / 4, self._republish_paced_quarter)

    def _republish_paced_quarter(self, now: float) -> None:
        self._republish_due(now)
        if self._due_heap and self._due_heap[0][0] <= now + self.config.repair_delay:
            self.schedule(now + self.config.repair_delay / 4, self._republish_paced_quarter)

    # ---- contacts -----------------------------------------------------------

    def _prove(self, node_id: bytes) -> None:
        """Remember that `node_id` proved its key, so requests to it need no challenge.

        The id is the hash of the key that signed, so the proof never goes stale; the
        cache only saves a signature and a verification per request to contacts that
        are not in the routing table (full buckets, lookup candidates). A contact of the
        table is proven by being there: it leaves the cache when it enters the table
        (`on_contact_added`), which halves what a node keeps per contact.
        """
        if node_id in self.table:
            return
        proven = self._proven
        proven.pop(node_id, None)  # re-inserted last: a plain dict, half an OrderedDict's size
        proven[node_id] = None
        if len(proven) > PROVEN_CACHE:
            del proven[next(iter(proven))]

    def _contact_failed(self, node_id: bytes, now: float) -> None:
        """Count a failed request; a contact that keeps failing is stale.

        A stale contact is replaced as soon as its bucket has a replacement waiting.
        Without one it stays, marked by its failure count (lookups, replies and
        republish skip it), and is dropped at the next chance: Kademlia's rule, so an
        overloaded node that misses answers for a while does not empty its own table.
        """
        contact = self.table.get(node_id)
        if contact is None:
            return
        failures = self.table.record_failure(node_id)
        threshold = self.config.evict_after_failures
        if failures < threshold:
            # Suspect: confirm quickly with a PING of its own (lookups now avoid it,
            # so without a probe it might never be tried, nor repaired around).
            if node_id not in self._probing:
                self._probing.add(node_id)
                probe = _Probe(self, node_id)

                def send(t: float) -> None:
                    self.request(contact.addr, node_id, Ping(), probe, t)

                self.schedule(now + self.rng.uniform(0.1, 1.0), send)
            return
        if failures >= threshold:
            self._stale[node_id] = None
        if failures == threshold:
            self.stats["stale"] += 1
            self._repair_around(node_id, now)
        # Replace a stale contact as soon as someone waits for its place; drop it
        # anyway once it has stayed silent through several probes.
        if self.table.replacements(node_id) or failures >= DROP_AFTER_STALE * threshold:
            self.table.remove(node_id)
            if contact.rtt >= 0:
                self.rtt.unpin(node_id, contact.rtt)
                contact.rtt = -1
            self._contacts_dirty = True
            self.stats["evicted"] += 1
            gone = self._gone_stale  # if it comes back, it may have missed keys
            gone[node_id] = None
            if len(gone) > GONE_STALE_KEPT:
                del gone[next(iter(gone))]

    def probing_done(self, node_id: bytes) -> None:
        self._probing.discard(node_id)

    def healthy_closest(self, target: bytes, n: int, exclude: bytes | None = None) -> list[Contact]:
        """The `n` closest contacts that are not stale (nor `exclude`)."""
        threshold = self.config.evict_after_failures
        near = self.table.closest(target, n, exclude)
        if not self._stale:
            return near
        healthy = [c for c in near if c.failures < threshold]
        if len(healthy) < n and len(near) == n:  # stale ones in the way: look further out
            near = self.table.closest(target, len(self.table), exclude)
            healthy = [c for c in near if c.failures < threshold]
        return healthy[:n]

    def _contact_alive(
        self,
        node_id: bytes,
        addr: tuple[str, int],
        now: float,
        verified: bool,
        contact: Contact | None,
    ) -> None:
        """`node_id` answered a request; `contact` is its entry in the table, if any."""
        if contact is not None:
            self._heard_from(contact, now)
            return
        if not verified:
            return
        if not puzzle_ok(node_id, self.config.id_puzzle_bits):  # the one way into the table
            self.stats["puzzle_rejected"] += 1
            return
        offer = self.table.offer(node_id, addr, now)
        if isinstance(offer, Added):
            self.on_contact_added(offer.contact, now)
        elif isinstance(offer, BucketFull) and offer.oldest.node_id not in self.evict_pings:
            self.evict_pings[offer.oldest.node_id] = None
            old = offer.oldest
            self.request(old.addr, old.node_id, Ping(), _EvictPing(self, old), now)

    def _heard_from(self, contact: Contact, now: float) -> None:
        """A contact of the table answered or asked: it is alive (failures reset).

        One that had turned stale comes back like a newcomer for the hand-off: while
        it was unreachable (a partition, a restart) lookups and republish passed it
        over, so keys it is among the k closest of went to others. So does one
        dropped as stale that re-enters the table (`on_contact_added`). Without this it
        got them only at their next republish, an hour or more later
        (`test_a_stale_contact_that_answers_again_is_handed_the_keys_it_missed`).
        """
        revived = contact.failures >= self.config.evict_after_failures
        self.table.record_success(contact.node_id, now)
        if revived and self.config.handoff and self._due and not self.joining:
            self.stats["revived"] += 1
            self.handoff.contact_added(contact, now, revived=True)

    def on_contact_added(self, contact: Contact, now: float) -> None:
        self._proven.pop(contact.node_id, None)  # the table is its proof now (see _prove)
        # Its RTT state moves onto the contact: no entry by id while it is in the table
        # (a replacement promoted by `table.remove` keeps its entry by id instead).
        contact.rtt = self.rtt.pin(contact.node_id)
        self.stats["contacts_added"] += 1
        self._contacts_dirty = True
        # Not while we join: our half-built table would make us "closest" for most of
        # what we hold, and every node we meet would get it all again (a rejoin storm).
        revived = contact.node_id in self._gone_stale  # see _heard_from
        self._gone_stale.pop(contact.node_id, None)
        if self.config.handoff and self._due and not self.joining:
            self.handoff.contact_added(contact, now, revived=revived)

    def held_keys(self) -> list[bytes]:
        """The keys this node holds and republishes (a snapshot)."""
        return list(self._due)

    def _learn(self, node_id: bytes, addr: tuple[str, int], now: float) -> None:
        """A request came from `node_id`: refresh it, or challenge it before admitting it."""
        contact = self.table.get(node_id)
        if contact is not None:
            self._heard_from(contact, now)
            return
        if node_id in self.verifying or len(self.verifying) >= self.config.verify_queue:
            return
        if not puzzle_ok(node_id, self.config.id_puzzle_bits):
            return  # it could never be admitted: spare the challenge
        if not self.table.would_accept(
            node_id, addr, room_only=True, below=self.config.admit_below
        ):
            return  # a full bucket keeps its proven old contacts (Kademlia's LRS rule)
        self.verifying[node_id] = None
        self.request(addr, node_id, Ping(), _Admit(self, node_id), now)

    # ---- incoming -----------------------------------------------------------

    def _reply(self, h: Header, addr: tuple[str, int], body: Body) -> None:
        proof = None
        if h.challenge is not None:
            proof = self.identity.sign(challenge_payload(h.challenge, h.sender_id))
        self._outbox.append(
            (Message(Header(h.txid, self.node_id, self.public_key, proof=proof), body), addr)
        )

    def _handle_request(self, msg: Message, addr: tuple[str, int], now: float) -> None:
        h, body = msg.header, msg.body
        self.stats[f"in_{body.TYPE}"] += 1
        reply: Body
        if isinstance(body, Ping):
            reply = Pong()
        elif isinstance(body, FindNode):
            reply = Nodes(self._closest_info(body.target, h.sender_id))
        elif isinstance(body, FindValue):
            raw = self.store.get(body.key)
            if raw is not None:
                reply = Value((raw,), ())
            else:
                reply = Nodes(self._closest_info(body.key, h.sender_id))
        elif isinstance(body, Store):
            reply = self._store_request(body, addr[0], now)
        elif isinstance(body, List):
            reply = self._list(body, addr)
        elif isinstance(body, GetMany):
            reply = Records(self._records_for(body.keys))
        else:  # pragma: no cover - decode_message only yields the types above
            return
        self._reply(h, addr, reply)
        if not h.read_only:  # a client is answered, never routed to (nor handed keys)
            self._learn(h.sender_id, addr, now)

    def _list(self, body: List, asker: tuple[str, int]) -> Listed:
        source = self.sync_sources.get(body.mesh) if body.since is not None else None
        if source is None or body.since is None:
            keys = self.store.list_mesh(body.mesh, body.cursor, body.limit)
            return Listed(tuple(keys), keys[-1] if len(keys) == body.limit else None)
        offset = int.from_bytes(body.cursor, "big") if body.cursor is not None else 0
        keys, more = source(body.since, offset, body.limit, asker)
        nxt = (offset + len(keys)).to_bytes(32, "big") if more else None
        return Listed(tuple(keys), nxt)

    def _closest_info(self, target: bytes, exclude: bytes) -> tuple[NodeInfo, ...]:
        n = min(self.config.k, MAX_CONTACTS_PER_REPLY)
        out: list[NodeInfo] = []
        for c in self.healthy_closest(target, n, exclude):
            info = c.wire  # made once per contact and address (the table clears it)
            if not isinstance(info, NodeInfo):
                info = c.wire = shared_node_info(c.node_id, c.addr[0], c.addr[1])
            out.append(info)
        return tuple(out)

    def _records_for(self, keys: tuple[bytes, ...]) -> tuple[bytes, ...]:
        out: list[bytes] = []
        budget = REPLY_BUDGET
        for key in keys:
            raw = self.store.get(key)
            if raw is None:
                continue
            if len(raw) > budget or len(out) >= MAX_RECORDS_PER_REPLY:
                break
            budget -= len(raw)
            out.append(raw)
        return tuple(out)

    def _store_request(self, body: Store, origin: str, now: float) -> Body:
        if self.store.get(body.key) == body.record:
            self._fresh(body.key, now)  # the very bytes we validated before: a re-store
            self.stats["restored_fresh"] += 1
            return Stored()
        self._proof_to_keep = None
        try:
            record = self.validate(body.key, body.record, body.proof)
            self._check_quota(record, origin)
            self._accept(record, now)
        except ValidationError as e:
            self.stats[f"store_rejected_{e.code.value}"] += 1
            return ErrorReply(e.code, str(e)[:200])
        if self._proof_to_keep is not None:
            self._keep_proof(self._proof_to_keep, now)
        return Stored()

    def _keep_proof(self, proof: tuple[bytes, ...], now: float) -> None:
        """Keep the genesis and certificates that proved a new author's membership.

        Without them a chunk held here could outlive every copy of its author's
        certificate, and then nobody, recovery included, could verify it again.
        They are few (one chain per author) and are replicated like any record.
        """
        self._proof_to_keep = None
        for raw in proof:  # genesis first, then each link: each validates on the last
            key = sha256(raw)
            if key in self.store:
                continue
            try:
                self._keep(self.validate(key, raw), now)
            except ValidationError:  # pragma: no cover - verify_proof checked each one
                return

    def _accept(self, record: Record, now: float) -> None:
        """Store a validated record if it wins; raises ValidationError(STALE_SEQ)."""
        current = self.local_record(record.key)
        winner = merge(current, record)  # a roster keeps the union of both
        if winner is not current:
            self._keep(winner, now)
        else:
            self._fresh(record.key, now)
            self.stats["restored_fresh"] += 1

    def _keep(self, record: Record, now: float) -> None:
        self.store.put(record.key, record.raw, mesh=record.mesh, kind=record.kind)
        if isinstance(record, Genesis):
            self.membership.add_genesis(record)
        elif isinstance(record, Roster):
            self.membership.add_roster(record)
        elif isinstance(record, Cert) and record.mesh in self.membership.views:
            self.membership.add_cert(record)
        self.stats["records_stored"] += 1
        self._fresh(record.key, now)
        if self.on_record is not None:
            self.on_record(record, now)

    def _handle_response(self, msg: Message, addr: tuple[str, int], now: float) -> None:
        h = msg.header
        p = self._pending.get((h.txid, addr))
        if p is None:
            self.stats["unsolicited"] += 1
            return
        if p.node_id is not None and h.sender_id != p.node_id:
            self.stats["wrong_sender"] += 1
            return
        verified = False
        if p.challenge is not None:
            payload = challenge_payload(p.challenge, self.node_id)
            if h.proof is None or not self.crypto.verify(h.sender_key, payload, h.proof):
                self.stats["bad_proof"] += 1
                return
            verified = True
            self._prove(h.sender_id)
        self._settle(p)
        self.stats["responses_in"] += 1
        if p.owner.watched:
            self._outcomes.add(False)
        if self.recent_dead:
            self.recent_dead.pop(h.sender_id, None)
        contact = self.table.get(h.sender_id)
        for txid, sent_at in p.sends:
            if txid == h.txid:
                if contact is None or contact.rtt < 0:
                    self.rtt.sample(h.sender_id, now - sent_at)
                else:
                    self.rtt.sample_at(contact.rtt, now - sent_at)
                break
        if p.node_id is None:
            p.node_id = h.sender_id
        if isinstance(msg.body, ErrorReply):
            self.stats[f"error_{msg.body.code.value}"] += 1
        self._contact_alive(h.sender_id, addr, now, verified, contact)
        p.owner.on_response(p, msg, now)
