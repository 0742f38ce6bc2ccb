"""Survivor recovery (DESIGN §7): rebuild one mesh's exact memory from whatever peers survive.

    report = await recover(node, mesh, bootstrap=[("10.0.0.7", 4000)], expect_root=root)
    write_outputs(report, Path("out"))          # memory.jsonl + phase.json
    raise SystemExit(exit_code(report))         # 0 complete, 3 partial

Stages, and the decisions behind them:

1. **Crawl.** Bootstrap, then iterative FIND_NODE toward a random id in every
   bucket's range plus a few random ids, until a round finds no new node
   (`MAX_CRAWL_ROUNDS` bounds it). Contacts come from lookup results (nodes that
   answered) and from the routing table (nodes that proved their key).
2. **DHT path, roots first.** `get` the genesis (key = mesh id), the roster and
   each rostered member's head. These are a handful of lookups.
3. **Sweep.** Every contact is `LIST`ed page by page; each key not yet claimed is
   claimed by the first peer that lists it and fetched from that peer with
   `GET_MANY`, in pipelined batches. Listing all peers at once spreads the
   fetching over them. A `RECORDS` reply is bounded by size, so `match_reply`
   works out which asked keys the peer examined and re-asks the rest. Keys a peer
   failed to give (it died, or sent bytes that do not hash to the key) are asked
   of every other peer afterwards. Mutable keys (heads, roster) are fetched from
   *every* peer, since holders may disagree about them.
   The sweep runs before the `prev`/`parents` walk on purpose: one `GET_MANY`
   brings ~50 chunks, one `get` brings one after a multi-hop lookup, so walking
   first would cost a lookup per entry. The walk (stage 6) then only chases what
   the sweep could not find: data on nodes the crawl missed.
4. **Verify.** Every record goes through `records.validate` (size, structure,
   hash or key, signature), then membership is decided here from the genesis and
   every valid certificate found (rosters and loose certs), chained to the
   founder by `MembershipView`. Nothing counts because a peer sent it; a record
   that fails is dropped and counted under its reason. Large batches verify in a
   process pool (Ed25519 in `cryptography` holds the GIL; a verify costs
   ~150-200 µs on a small core, so it is the floor of the whole recovery).
5. **Merge** into a `MeshLog`: timeline, phase vector, root, dangling, missing.
   Chunks are added in (lamport, author id, hash) order, which is causal (a
   chunk's lamport exceeds everything it names), so every add takes the log's
   append fast path and no timeline re-walk is needed.
6. **Walk** (the DHT path proper): each hash still named but missing (a `prev`,
   a parent, a head's chunk) is fetched with `get`, verified and merged, until a
   round finds nothing new. Each hash is tried once, so this ends.
7. **Report**, and optionally **reseed**: `put` every valid record again so k
   copies exist.

An encrypted mesh (seal.py) is recovered the same way: every stage works on the
ciphertext, so the root is exact with or without the mesh key. With `mesh_key`
memory.jsonl holds the plaintext; an entry it cannot open (no key, a wrong key)
keeps its ciphertext, flagged `"sealed": true`, and the report counts it.

The node's own store is swept too (a survivor may run recovery on itself), and
is trusted no more than any peer.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import multiprocessing
import os
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Protocol, TypeVar

import trio

from .codec import decode
from .errors import (
    ChorusError,
    ConfigError,
    DecodeError,
    ErrorCode,
    NetworkError,
    NotFound,
    ValidationError,
)
from .identity import ED25519
from .ids import sha256
from .membership import MembershipView
from .memlog import MeshLog
from .messages import MAX_KEYS_PER_REQUEST, MAX_RECORDS_PER_REPLY
from .node import Node
from .records import (
    DEFAULT_MAX_RECORD,
    Cert,
    Chunk,
    Genesis,
    Head,
    Record,
    Roster,
    head_key,
    load_trusted,
    roster_key,
    validate,
)
from .seal import MESH_KEY_BYTES, open_entry
from .transport import Address

__all__ = [
    "EXIT_COMPLETE",
    "EXIT_PARTIAL",
    "AuthorReport",
    "MissingChunk",
    "NullProgress",
    "PeerReport",
    "RecoveryProgress",
    "RecoveryReport",
    "ReplyMatch",
    "Stage",
    "Timings",
    "Verdict",
    "check_batch",
    "crawl",
    "entry_json",
    "exit_code",
    "match_reply",
    "recover",
    "write_outputs",
]

EXIT_COMPLETE = 0  # the contract for `chorusdht recover`
EXIT_PARTIAL = 3  # ... and 2 stays the usage-error code, set by the CLI

MAX_CRAWL_ROUNDS = 8  # each round reaches ~k new nodes per bucket; 8 covers 10^5 nodes twice over
CRAWL_RANDOM_TARGETS = 4  # extra random targets per round, for ids no bucket range samples well
CRAWL_PARALLEL = 8  # lookups in flight while crawling (each keeps alpha RPCs in flight itself)
SWEEP_PEERS_PARALLEL = 32  # peers listed at once; bounds tasks, not correctness
# A RECORDS reply holds at most MAX_RECORDS_PER_REPLY records, so asking for more keys
# only makes the request bigger; the size budget may still cut it (`match_reply`).
FETCH_BATCH = min(MAX_KEYS_PER_REQUEST, MAX_RECORDS_PER_REPLY)
FETCH_WINDOW = 4  # GET_MANY requests in flight per peer: hides the RTT, never floods one peer
WALK_PARALLEL = 16  # `get`s in flight during the walk
RESEED_PARALLEL = 16  # `put`s in flight during reseeding
PARALLEL_VERIFY_MIN = 4096  # below this, a pool's start-up (~0.3 s) costs more than it saves
VERIFY_BATCH = 1024  # records per pool task: amortises pickling, keeps progress ticking

T = TypeVar("T")
R = TypeVar("R")


# ---- progress -----------------------------------------------------------------


class Stage(StrEnum):
    CRAWL = "crawl"  # units: nodes found
    FETCH = "fetch"  # units: records received (total grows as LIST pages arrive)
    VERIFY = "verify"  # units: records verified
    RESEED = "reseed"  # units: records republished


class RecoveryProgress(Protocol):
    """What the CLI's progress bars (or netsim's log) implement. Calls come from the trio thread."""

    def start(self, stage: Stage, total: int | None) -> None: ...

    def advance(self, stage: Stage, amount: int = 1, *, total: int | None = None) -> None: ...

    def finish(self, stage: Stage) -> None: ...


class NullProgress:
    """Progress that goes nowhere: the default."""

    def start(self, stage: Stage, total: int | None) -> None:
        pass

    def advance(self, stage: Stage, amount: int = 1, *, total: int | None = None) -> None:
        pass

    def finish(self, stage: Stage) -> None:
        pass


# ---- the report ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AuthorReport:
    author: bytes  # public key
    chunks: int  # valid chunks held (in the timeline or dangling)
    first_seq: int
    last_seq: int  # highest seq held
    phase: int  # highest seq up to which the chain is complete (DESIGN §5)
    head_seq: int | None  # seq of the best valid head found; None: no valid head survived
    gaps: tuple[tuple[int, int], ...]  # inclusive seq ranges in 1..max(last, head) not held
    forked_at: int | None  # lowest seq with two signed chunks (equivocation)


@dataclass(frozen=True, slots=True)
class MissingChunk:
    """A hash that held records name but that no reachable node gave."""

    hash: bytes
    author: bytes | None  # known when a `prev` or a head names it
    seq: int | None
    needed_by: bytes  # the earliest (lowest lamport) record naming it
    blocks: int  # held chunks kept out of the timeline by it


@dataclass(frozen=True, slots=True)
class PeerReport:
    node_id: bytes | None  # None: this node's own store
    addr: Address | None
    reached: bool  # answered its LIST
    listed: int  # keys it listed for the mesh
    given: int  # records it sent
    new: int  # records first obtained from it


@dataclass(frozen=True, slots=True)
class Timings:
    """Wall-clock seconds (time.perf_counter), for the benchmark and the CLI summary."""

    crawl: float
    fetch: float
    verify: float
    merge: float
    walk: float
    reseed: float


@dataclass(frozen=True, slots=True)
class RecoveryReport:
    mesh: bytes
    genesis: Genesis
    members: frozenset[bytes]
    authors: tuple[AuthorReport, ...]
    entries: int  # chunks in the timeline
    phase: dict[bytes, int]
    root: bytes
    expect_root: bytes | None
    missing: tuple[MissingChunk, ...]  # earliest first: missing[0] broke completeness
    dangling: int  # held chunks outside the timeline
    broken_links: int  # chunks whose `prev` is not their author's seq - 1 (MeshLog.invalid)
    dropped: dict[str, int]  # invalid records by reason (ErrorCode values, WRONG_MESH)
    peers: tuple[PeerReport, ...]
    nodes_found: int  # nodes the crawl found (reached or not)
    reseeded: int  # records republished with a write quorum (0 without `reseed`)
    reseed_failed: int
    timings: Timings
    log: MeshLog = field(repr=False, compare=False)
    sealed: int = 0  # timeline entries of an encrypted mesh that the key given (if any) cannot open
    mesh_key: bytes | None = field(default=None, repr=False, compare=False)

    @property
    def encrypted(self) -> bool:
        return self.genesis.policy.encrypted

    @property
    def exact(self) -> bool | None:
        """Whether the root is the expected one; None when none was given."""
        return None if self.expect_root is None else self.root == self.expect_root

    @property
    def complete(self) -> bool:
        """Nothing named is missing, nothing dangles, and the root is as expected (if given)."""
        return (
            not self.missing
            and not self.dangling
            and not self.broken_links
            and self.exact is not False
        )

    @property
    def broken_by(self) -> MissingChunk | None:
        """The missing chunk that broke completeness: the earliest one needed."""
        return self.missing[0] if self.missing else None

    @property
    def nodes_reached(self) -> int:
        return sum(p.reached for p in self.peers if p.node_id is not None)


def exit_code(report: RecoveryReport) -> int:
    """The CLI's exit status: 0 for a complete (and, if asked, exact) memory, else 3."""
    return EXIT_COMPLETE if report.complete else EXIT_PARTIAL


# ---- matching a bounded reply to what was asked -----------------------------------


@dataclass(frozen=True, slots=True)
class ReplyMatch:
    matched: tuple[tuple[bytes, bytes], ...]  # (asked key, raw)
    rejected: tuple[tuple[bytes, str], ...]  # (raw, reason): answers to no asked key
    rest: tuple[bytes, ...]  # asked keys the peer did not get to: ask again


def _key_of(raw: bytes, asked: dict[bytes, int], max_size: int) -> bytes | str:
    """The asked key `raw` answers, or the reason it answers none."""
    h = sha256(raw)
    if h in asked:
        return h  # content-addressed: chunk, cert, genesis
    try:
        obj = decode(raw, max_size=max_size)
    except DecodeError:
        return ErrorCode.MALFORMED.value
    body = obj.get("body") if isinstance(obj, dict) else None
    if isinstance(body, dict) and isinstance(mesh := body.get("mesh"), bytes):
        kind, author = body.get("kind"), body.get("author")
        key = None
        if kind == "head" and isinstance(author, bytes):
            key = head_key(mesh, author)
        elif kind == "roster":
            key = roster_key(mesh)
        if key is not None and key in asked:
            return key
    return ErrorCode.HASH_MISMATCH.value  # e.g. a chunk whose payload was altered


def match_reply(
    asked: Sequence[bytes], raws: Sequence[bytes], *, max_size: int = DEFAULT_MAX_RECORD
) -> ReplyMatch:
    """Which asked key each raw record answers, and which keys to ask again.

    A holder walks the asked keys in order, skips those it lacks and stops when the
    reply is full, so the reply's records answer an increasing run of asked keys.
    The keys up to the last one answered were all examined (absent ones need not be
    re-asked), and so were at least the first `len(raws)` keys. The rest is
    re-asked; since a non-empty reply always covers at least one key, re-asking
    ends even against a peer that answers garbage.
    """
    index = {k: i for i, k in enumerate(asked)}
    matched: list[tuple[bytes, bytes]] = []
    rejected: list[tuple[bytes, str]] = []
    examined = len(raws) - 1
    for raw in raws:
        key = _key_of(raw, index, max_size)
        if isinstance(key, str):
            rejected.append((raw, key))
        else:
            matched.append((key, raw))
            examined = max(examined, index[key])
    got = {k for k, _ in matched}
    rest = tuple(k for k in asked[examined + 1 :] if k not in got) if raws else ()
    return ReplyMatch(tuple(matched), tuple(rejected), rest)


# ---- verifying ------------------------------------------------------------------

ChunkFields = tuple[bytes, bytes, int, bytes | None, tuple[bytes, ...], int, int, bytes]
Verdict = str | ChunkFields | None
"""Per record: a drop reason, a chunk's fields (mesh, author, seq, prev, parents,
lamport, time, payload), or None for a valid record of another kind."""


def check_batch(items: Sequence[tuple[bytes, bytes]], max_size: int) -> list[Verdict]:
    """`validate` each (key, raw) without membership; runs in a worker process.

    Chunks come back as plain tuples, which pickle several times faster than
    dataclasses; the parent rebuilds `Chunk`s around the raw bytes it already holds.
    """
    out: list[Verdict] = []
    for key, raw in items:
        try:
            rec = validate(key, raw, crypto=ED25519, max_size=max_size)
        except ValidationError as e:
            out.append(e.code.value)
            continue
        if isinstance(rec, Chunk):
            f = (rec.mesh, rec.author, rec.seq, rec.prev, rec.parents, rec.lamport, rec.time)
            out.append((*f, rec.payload))
        else:
            out.append(None)
    return out


class _Verifier:
    """Turns checked records into the mesh's genesis, membership, chunks and heads (pure)."""

    def __init__(self, mesh: bytes, max_size: int) -> None:
        self.mesh = mesh
        self.max_size = max_size
        self.dropped: Counter[str] = Counter()
        self.genesis: Genesis | None = None
        self.certs: dict[bytes, Cert] = {}
        self.rosters: dict[bytes, Roster] = {}  # by raw hash: every valid roster seen
        self.view: MembershipView | None = None
        self.held: dict[bytes, Chunk] = {}  # valid signature, membership not yet shown
        self.held_heads: list[Head] = []
        self.heads: dict[bytes, Head] = {}  # author -> best valid head of a member
        self._names: dict[bytes, bytes] = {}  # interned mesh/author bytes: one object per key

    def _intern(self, b: bytes) -> bytes:
        return self._names.setdefault(b, b)

    def take(self, items: Sequence[tuple[bytes, bytes]], verdicts: Sequence[Verdict]) -> None:
        for (key, raw), v in zip(items, verdicts, strict=True):
            if isinstance(v, str):
                self.dropped[v] += 1
            elif isinstance(v, tuple):
                mesh, author, seq, prev, parents, lamport, t, payload = v
                if mesh != self.mesh:
                    self.dropped["WRONG_MESH"] += 1
                    continue
                self.held[key] = Chunk(
                    key, raw, self.mesh, self._intern(author), seq, prev, parents, lamport, t,
                    payload,
                )  # fmt: skip
            else:
                self._take_other(load_trusted(key, raw, max_size=self.max_size))

    def _take_other(self, rec: Record) -> None:
        if rec.mesh != self.mesh:
            self.dropped["WRONG_MESH"] += 1
        elif isinstance(rec, Genesis):
            self.genesis = rec
        elif isinstance(rec, Roster):
            self.genesis = self.genesis or rec.genesis
            self.rosters[sha256(rec.raw)] = rec
            for c in rec.certs:
                self.certs[c.key] = c
        elif isinstance(rec, Cert):
            self.certs[rec.key] = rec
        elif isinstance(rec, Head):
            self.held_heads.append(rec)
        else:  # a chunk never reaches here (it has a ChunkFields verdict)
            self.dropped[ErrorCode.MALFORMED.value] += 1

    def settle(self) -> list[Chunk]:
        """Apply membership to what is held; return the chunks newly accepted.

        Chunks and heads of keys not (yet) admitted stay held: a cert found later
        in the walk may admit them. `finish` drops what is still held.
        """
        if self.genesis is None:
            return []
        if self.view is None:
            self.view = MembershipView(self.genesis)
        self.view.add_certs(self.certs.values())
        members = self.view.members()
        ok = [c for c in self.held.values() if c.author in members]
        for c in ok:
            del self.held[c.key]
        still: list[Head] = []
        for h in self.held_heads:
            if h.author not in members:
                still.append(h)
                continue
            best = self.heads.get(h.author)
            if best is None or (h.seq, h.key) > (best.seq, best.key):
                self.heads[h.author] = h
        self.held_heads = still
        return ok

    def finish(self) -> None:
        """Count what membership never covered: chunks, heads and certs of non-members."""
        not_member = ErrorCode.NOT_MEMBER.value
        self.dropped[not_member] += len(self.held) + len(self.held_heads)
        if self.view is not None:
            self.dropped[not_member] += len(self.view.pending())
        self.held.clear()
        self.held_heads.clear()


def _pool(workers: int | None) -> Executor | None:
    """A verifying process pool, or None to verify in this process.

    Workers start lazily, on the first batch, so a small recovery never pays for
    them. spawn, not fork: forking a process that runs trio (and maybe its worker
    threads) can copy held locks into the child.
    """
    n = workers if workers is not None else (os.cpu_count() or 1)
    if n < 2:
        return None
    return ProcessPoolExecutor(max_workers=n, mp_context=multiprocessing.get_context("spawn"))


async def _check_all(
    col: _Collector, progress: RecoveryProgress
) -> tuple[list[tuple[bytes, bytes]], list[Verdict]]:
    """Every record collected so far and its verdict: pool batches, then the rest here."""
    items: list[tuple[bytes, bytes]] = []
    out: list[Verdict] = []
    if col.pool is not None and len(col.unverified) >= PARALLEL_VERIFY_MIN:
        col.submit()
    for batch, fut in col.submitted:
        out.extend(await trio.to_thread.run_sync(fut.result, abandon_on_cancel=True))
        items.extend(batch)
        progress.advance(Stage.VERIFY, len(batch))
    col.submitted = []
    rest, col.unverified = col.unverified, []
    for i in range(0, len(rest), VERIFY_BATCH):
        batch = rest[i : i + VERIFY_BATCH]
        out.extend(check_batch(batch, col.max_size))
        items.extend(batch)
        progress.advance(Stage.VERIFY, len(batch))
        await trio.sleep(0)  # let the node answer its peers between batches
    return items, out


# ---- fetching ---------------------------------------------------------------------


@dataclass(slots=True)
class _Peer:
    node_id: bytes | None
    addr: Address
    reached: bool = False
    listed: int = 0
    given: int = 0
    new: int = 0

    def report(self) -> PeerReport:
        return PeerReport(self.node_id, self.addr, self.reached, self.listed, self.given, self.new)


class _Collector:
    """Every raw record obtained so far, deduplicated, with what was rejected on arrival."""

    def __init__(self, mesh: bytes, max_size: int, progress: RecoveryProgress) -> None:
        self.mesh = mesh
        self.max_size = max_size
        self.progress = progress
        self.content: dict[bytes, bytes] = {}  # key -> the one raw that hashes to it
        self.mutable: dict[bytes, set[bytes]] = {}  # head/roster key -> distinct raws
        self.rejected: set[bytes] = set()  # hashes of raws rejected, so each counts once
        self.dropped: Counter[str] = Counter()
        self.claimed: set[bytes] = set()
        self.orphans: set[bytes] = set()  # claimed, but the claiming peer did not give it
        self.unverified: list[tuple[bytes, bytes]] = []  # not yet handed to the verifier
        # With a process pool, full batches are verified while fetching goes on.
        self.pool: Executor | None = None
        self.submitted: list[tuple[list[tuple[bytes, bytes]], Future[list[Verdict]]]] = []

    def have(self, key: bytes) -> bool:
        return key in self.content or key in self.mutable

    def add(self, key: bytes, raw: bytes) -> bool:
        """Keep one record; True if it is new. Content keys must hash (checked by caller)."""
        if sha256(raw) == key:
            if key in self.content:
                return False
            self.content[key] = raw
        else:
            raws = self.mutable.setdefault(key, set())
            if raw in raws:
                return False
            raws.add(raw)
        self.unverified.append((key, raw))
        self.progress.advance(Stage.FETCH)
        if self.pool is not None and len(self.unverified) >= VERIFY_BATCH:
            self.submit()
        return True

    def submit(self) -> None:
        """Hand what is unverified to the pool (call only with a pool)."""
        assert self.pool is not None
        items, self.unverified = self.unverified, []
        if items:
            self.submitted.append((items, self.pool.submit(check_batch, items, self.max_size)))

    def reject(self, raw: bytes, reason: str) -> None:
        h = sha256(raw)
        if h not in self.rejected:
            self.rejected.add(h)
            self.dropped[reason] += 1

    def take_reply(self, peer: _Peer, m: ReplyMatch) -> None:
        peer.given += len(m.matched) + len(m.rejected)
        for key, raw in m.matched:
            if self.add(key, raw):
                peer.new += 1
        for raw, reason in m.rejected:
            self.reject(raw, reason)


async def _limited(
    fn: Callable[[T], Awaitable[R]], args: Iterable[T], limit: int
) -> list[R | ChorusError]:
    """Run `fn` over `args`, at most `limit` at once; a ChorusError is returned, not raised."""
    items = list(args)
    out: list[R | ChorusError] = [NetworkError("not run")] * len(items)
    it = iter(enumerate(items))

    async def worker() -> None:
        for i, a in it:
            try:
                out[i] = await fn(a)
            except ChorusError as e:
                out[i] = e

    async with trio.open_nursery() as nursery:
        for _ in range(min(limit, len(items))):
            nursery.start_soon(worker)
    return out


class _Sweep:
    """LIST and GET_MANY against every peer (see the module docstring, stage 3)."""

    def __init__(self, node: Node, col: _Collector) -> None:
        self.node = node
        self.col = col

    async def fetch(self, peer: _Peer, keys: list[bytes]) -> list[bytes]:
        """Ask `peer` for `keys`; return those it did not give."""
        col, lacking = self.col, []
        batch = keys
        while batch:
            try:
                res = await self.node.get_many(peer.addr, batch)
            except NetworkError:
                return [k for k in batch if not col.have(k)]
            m = match_reply(batch, res.records, max_size=col.max_size)
            col.take_reply(peer, m)
            rest = set(m.rest)
            lacking += [k for k in batch if k not in rest and not col.have(k)]
            batch = list(m.rest)
        return lacking

    async def _fetcher(self, peer: _Peer, recv: trio.MemoryReceiveChannel[list[bytes]]) -> None:
        async with recv:
            async for keys in recv:
                self.col.orphans.update(await self.fetch(peer, keys))

    async def sweep_peer(self, peer: _Peer) -> None:
        """Page through `peer`'s keys for the mesh, fetching unclaimed ones as pages arrive."""
        col = self.col
        send, recv = trio.open_memory_channel[list[bytes]](math.inf)
        async with trio.open_nursery() as nursery:
            for _ in range(FETCH_WINDOW):
                nursery.start_soon(self._fetcher, peer, recv.clone())
            recv.close()
            async with send:
                cursor: bytes | None = None
                while True:
                    try:
                        page = await self.node.list_keys(
                            peer.addr, col.mesh, cursor, MAX_KEYS_PER_REQUEST
                        )
                    except NetworkError:
                        break
                    peer.reached = True
                    peer.listed += len(page.keys)
                    fresh = [k for k in page.keys if k not in col.claimed and not col.have(k)]
                    col.claimed.update(fresh)
                    col.progress.advance(Stage.FETCH, 0, total=len(col.claimed))
                    for i in range(0, len(fresh), FETCH_BATCH):
                        send.send_nowait(fresh[i : i + FETCH_BATCH])
                    if page.cursor is None:
                        break
                    cursor = page.cursor

    def sweep_local(self, own: _Peer) -> None:
        """The node's own store is one more holder, and no more trusted than the others."""
        store, col = self.node.core.store, self.col
        cursor: bytes | None = None
        own.reached = True
        while True:
            keys = store.list_mesh(col.mesh, cursor, MAX_KEYS_PER_REQUEST)
            own.listed += len(keys)
            for k in keys:
                raw = store.get(k)
                if raw is not None:
                    col.take_reply(own, match_reply([k], [raw], max_size=col.max_size))
            if len(keys) < MAX_KEYS_PER_REQUEST:
                return
            cursor = keys[-1]

    async def fill_from_all(self, peers: list[_Peer], keys: set[bytes], *, every: bool) -> None:
        """Ask each reached peer for `keys`: until found, or (`every`) from all of them."""
        for peer in peers:
            ask = sorted(keys) if every else sorted(k for k in keys if not self.col.have(k))
            if not ask:
                return
            chunks = [ask[i : i + FETCH_BATCH] for i in range(0, len(ask), FETCH_BATCH)]

            async def one(keys_: list[bytes], peer_: _Peer = peer) -> list[bytes]:
                return await self.fetch(peer_, keys_)

            await _limited(one, chunks, FETCH_WINDOW)


# ---- crawling ---------------------------------------------------------------------


async def crawl(
    node: Node,
    bootstrap: list[tuple[str, int]],
    *,
    rng: random.Random | None = None,
    progress: RecoveryProgress | None = None,
) -> dict[bytes, Address]:
    """Every node reachable from `bootstrap`: node id -> address (this node left out).

    Raises LookupFailed when no bootstrap node answers.
    """
    rng = rng or node.core.rng
    progress = progress or NullProgress()
    progress.start(Stage.CRAWL, None)
    await node.bootstrap(bootstrap)
    seen: dict[bytes, Address] = {}

    def learn(pairs: Iterable[tuple[bytes, Address]]) -> None:
        for node_id, addr in pairs:
            if node_id != node.node_id and node_id not in seen:
                seen[node_id] = addr
                progress.advance(Stage.CRAWL)

    learn((c.node_id, c.addr) for c in node.core.table)
    for _ in range(MAX_CRAWL_ROUNDS):
        before = len(seen)
        targets = [
            rng.randrange(low, high).to_bytes(32, "big")
            for low, high, _ in node.core.table.bucket_ranges()
        ]
        targets += [rng.randbytes(32) for _ in range(CRAWL_RANDOM_TARGETS)]
        for res in await _limited(node.find_node, targets, CRAWL_PARALLEL):
            if not isinstance(res, ChorusError):
                learn((n.node_id, (n.host, n.port)) for n in res.nodes)
        learn((c.node_id, c.addr) for c in node.core.table)
        if len(seen) == before:
            break
    progress.finish(Stage.CRAWL)
    return seen


# ---- the whole recovery --------------------------------------------------------------


async def _get_raw(node: Node, key: bytes) -> bytes | None:
    try:
        return (await node.get(key)).record.raw
    except ChorusError:
        return None


def _missing(log: MeshLog, heads: dict[bytes, Head]) -> tuple[MissingChunk, ...]:
    """Named-but-missing hashes, earliest needed first, with what is known of each."""
    first: dict[bytes, tuple[int, bytes]] = {}  # hash -> (lamport, key) of the earliest namer
    known: dict[bytes, tuple[bytes, int]] = {}  # hash -> (author, seq), when a prev or head says

    def note(h: bytes, lamport: int, by: bytes) -> None:
        if h not in first or (lamport, by) < first[h]:
            first[h] = (lamport, by)

    gone, invalid = log.missing(), log.invalid()
    for c in log.chunks():
        if c.key in invalid:
            continue
        if c.prev in gone:
            note(c.prev, c.lamport, c.key)
            known[c.prev] = (c.author, c.seq - 1)
        for p in c.parents:
            if p in gone:
                note(p, c.lamport, c.key)
    for hd in heads.values():
        if hd.hash not in log:
            note(hd.hash, hd.lamport + 1, hd.key)  # a head ranks just after its chunk
            known[hd.hash] = (hd.author, hd.seq)
    blocks: Counter[bytes] = Counter()
    for blockers in log.dangling().values():
        blocks.update(blockers)
    order = sorted(first, key=lambda h: (first[h], h))
    out = []
    for h in order:
        author, seq = known.get(h, (None, None))
        out.append(MissingChunk(h, author, seq, first[h][1], blocks[h]))
    return tuple(out)


def _authors(log: MeshLog, heads: dict[bytes, Head]) -> tuple[AuthorReport, ...]:
    seqs: dict[bytes, set[int]] = {}
    for c in log.chunks():
        seqs.setdefault(c.author, set()).add(c.seq)
    phase, forks = log.phase(), log.forks()
    out = []
    for a in sorted(set(seqs) | set(heads)):
        held = seqs.get(a, set())
        head = heads.get(a)
        top = max(max(held, default=0), head.seq if head else 0)
        gaps: list[tuple[int, int]] = []
        s = 1
        while s <= top:
            if s in held:
                s += 1
                continue
            e = s
            while e + 1 <= top and e + 1 not in held:
                e += 1
            gaps.append((s, e))
            s = e + 1
        out.append(
            AuthorReport(
                author=a,
                chunks=len(held),
                first_seq=min(held, default=0),
                last_seq=max(held, default=0),
                phase=phase.get(a, 0),
                head_seq=head.seq if head else None,
                gaps=tuple(gaps),
                forked_at=forks.get(a),
            )
        )
    return tuple(out)


def _merge(log: MeshLog, chunks: list[Chunk]) -> None:
    """Add in timeline-priority order, which is causal: each add is the log's fast path."""
    aid = {a: sha256(a) for a in {c.author for c in chunks}}
    chunks.sort(key=lambda c: (c.lamport, aid[c.author], c.key))
    for c in chunks:
        log.add(c)


async def recover(
    node: Node,
    mesh: bytes,
    *,
    bootstrap: list[tuple[str, int]],
    expect_root: bytes | None = None,
    progress: RecoveryProgress | None = None,
    reseed: bool = False,
    workers: int | None = None,
    mesh_key: bytes | None = None,
) -> RecoveryReport:
    """Rebuild mesh `mesh` from every node reachable through `bootstrap`.

    `workers` sets the verifying processes (None: one per CPU; 0 or 1: in this
    process). `mesh_key` opens an encrypted mesh's payloads in the outputs.
    Raises LookupFailed when no bootstrap node answers, and NotFound when
    no valid genesis of the mesh survives anywhere (nothing could be verified).
    """
    if mesh_key is not None and len(mesh_key) != MESH_KEY_BYTES:
        raise ConfigError(f"a mesh key is {MESH_KEY_BYTES} bytes ({2 * MESH_KEY_BYTES} hex digits)")
    progress = progress or NullProgress()
    max_size = node.core.config.max_record
    t0 = time.perf_counter()
    found = await crawl(node, bootstrap, progress=progress)
    t1 = time.perf_counter()

    # -- fetch: roots by the DHT, then the sweep
    col = _Collector(mesh, max_size, progress)
    col.pool = _pool(workers)
    try:
        progress.start(Stage.FETCH, None)
        for raw in [await _get_raw(node, mesh), await _get_raw(node, roster_key(mesh))]:
            if raw is not None:
                _take_root(col, raw)
        members = _members_hint(col, mesh, max_size)
        raws = await _limited(lambda m: _get_raw(node, head_key(mesh, m)), members, WALK_PARALLEL)
        for m, got_head in zip(members, raws, strict=True):
            if isinstance(got_head, bytes):
                col.add(head_key(mesh, m), got_head)
        sweep = _Sweep(node, col)
        own = _Peer(None, node.address)
        sweep.sweep_local(own)
        peers = [_Peer(nid, addr) for nid, addr in sorted(found.items())]
        await _limited(sweep.sweep_peer, peers, SWEEP_PEERS_PARALLEL)
        reached = [p for p in peers if p.reached]
        await sweep.fill_from_all(reached, col.orphans, every=False)
        mutable = {roster_key(mesh), *col.mutable, *(head_key(mesh, m) for m in members)}
        await sweep.fill_from_all(reached, mutable, every=True)
        progress.finish(Stage.FETCH)
        t2 = time.perf_counter()

        # -- verify
        ver = _Verifier(mesh, max_size)
        progress.start(Stage.VERIFY, len(col.unverified) + VERIFY_BATCH * len(col.submitted))
        items, verdicts = await _check_all(col, progress)
        ver.take(items, verdicts)
        del items, verdicts
        accepted = ver.settle()
        _teach(node, ver)
        t3 = time.perf_counter()

    finally:
        if col.pool is not None:
            col.pool.shutdown(wait=False, cancel_futures=True)
        col.pool = None

    # -- merge
    log = MeshLog(mesh)
    _merge(log, accepted)
    del accepted
    t4 = time.perf_counter()

    # -- walk: chase what is named but missing, by the DHT
    tried: set[bytes] = set()
    while True:
        want = {m.hash for m in _missing(log, ver.heads)}
        if ver.view is not None:
            want |= {head_key(mesh, a) for a in ver.view.members() if a not in ver.heads}
        want -= tried
        if not want:
            break
        tried |= want
        keys = sorted(want)
        got = await _limited(lambda k: _get_raw(node, k), keys, WALK_PARALLEL)
        for k, got_raw in zip(keys, got, strict=True):
            if isinstance(got_raw, bytes):
                col.add(k, got_raw)
        items, col.unverified = col.unverified, []
        if not items:
            continue
        ver.take(items, check_batch(items, max_size))
        _merge(log, ver.settle())
    progress.finish(Stage.VERIFY)
    _teach(node, ver)
    ver.finish()
    if ver.genesis is None:
        raise NotFound(f"no valid genesis for mesh {mesh.hex()[:16]}… on {len(reached)} node(s)")
    t5 = time.perf_counter()

    reseeded = failed = 0
    if reseed:
        reseeded, failed = await _reseed(node, ver, log, progress)
    t6 = time.perf_counter()

    dropped = Counter(col.dropped)
    dropped.update(ver.dropped)
    view = ver.view
    assert view is not None  # settle() built it once the genesis was known
    encrypted = ver.genesis.policy.encrypted
    sealed = 0
    if encrypted:
        sealed = sum(open_entry(c, True, mesh_key) is None for c in log.timeline())
    return RecoveryReport(
        mesh=mesh,
        genesis=ver.genesis,
        members=view.members(),
        authors=_authors(log, ver.heads),
        entries=len(log.timeline()),
        phase=log.phase(),
        root=log.root(),
        expect_root=expect_root,
        missing=_missing(log, ver.heads),
        dangling=len(log.dangling()),
        broken_links=len(log.invalid()),
        dropped={k: v for k, v in sorted(dropped.items()) if v},
        peers=(own.report(), *(p.report() for p in peers)),
        nodes_found=len(found),
        reseeded=reseeded,
        reseed_failed=failed,
        timings=Timings(t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t6 - t5),
        log=log,
        sealed=sealed,
        mesh_key=mesh_key,
    )


def _teach(node: Node, ver: _Verifier) -> None:
    """Tell the node's core the verified membership, so its own `get`s (the walk) and
    `put`s (reseeding, which then carry membership proofs) judge members as we do."""
    if ver.genesis is not None:
        node.core.membership.add_genesis(ver.genesis).add_certs(ver.certs.values())


def _take_root(col: _Collector, raw: bytes) -> None:
    """A genesis or roster the DHT path found; keyed by what it is (checked again later)."""
    try:
        rec = load_trusted(sha256(raw), raw, max_size=col.max_size)
    except ValidationError:
        return
    key = roster_key(rec.mesh) if isinstance(rec, Roster) else sha256(raw)
    col.add(key, raw)


def _members_hint(col: _Collector, mesh: bytes, max_size: int) -> list[bytes]:
    """Members named by the roster found so far: whose heads to `get`. Only a hint."""
    out: set[bytes] = set()
    for raw in col.mutable.get(roster_key(mesh), ()):
        try:
            rec = validate(roster_key(mesh), raw, max_size=max_size)
        except ValidationError:
            continue
        if isinstance(rec, Roster):
            out |= rec.members()
    return sorted(out)


async def _reseed(
    node: Node, ver: _Verifier, log: MeshLog, progress: RecoveryProgress
) -> tuple[int, int]:
    """`put` every valid record again; (acknowledged, failed)."""
    assert ver.genesis is not None
    recs: list[tuple[bytes, bytes]] = [(ver.genesis.key, ver.genesis.raw)]
    if ver.view is not None:
        roster = ver.view.roster()
        recs.append((roster.key, roster.raw))
    recs += [(c.key, c.raw) for c in ver.certs.values()]
    recs += [(h.key, h.raw) for h in ver.heads.values()]
    recs += [(c.key, c.raw) for c in log.chunks()]
    progress.start(Stage.RESEED, len(recs))

    async def put(kr: tuple[bytes, bytes]) -> int:
        res = await node.put(kr[1], kr[0])
        progress.advance(Stage.RESEED)
        return res.acks

    results = await _limited(put, recs, RESEED_PARALLEL)
    progress.finish(Stage.RESEED)
    failed = sum(isinstance(r, ChorusError) for r in results)
    return len(results) - failed, failed


# ---- outputs ----------------------------------------------------------------------


def entry_json(c: Chunk, *, encrypted: bool = False, key: bytes | None = None) -> dict[str, object]:
    """One memory.jsonl line: payload as text when it is UTF-8, else base64 with a flag.

    In an encrypted mesh the payload is the plaintext `key` opens; an entry it cannot
    open keeps its ciphertext (base64) and says `"sealed": true`.
    """
    out: dict[str, object] = {
        "author": c.author.hex(),
        "seq": c.seq,
        "lamport": c.lamport,
        "hash": c.key.hex(),
    }
    payload = open_entry(c, encrypted, key)
    if payload is None:  # ciphertext is never text, even when its bytes happen to be UTF-8
        out["payload"] = base64.b64encode(c.payload).decode("ascii")
        out["payload_encoding"] = "base64"
        out["sealed"] = True
        return out
    try:
        out["payload"] = payload.decode("utf-8")
    except UnicodeDecodeError:
        out["payload"] = base64.b64encode(payload).decode("ascii")
        out["payload_encoding"] = "base64"
    return out


def write_outputs(report: RecoveryReport, out_dir: Path) -> tuple[Path, Path]:
    """Write `memory.jsonl` (timeline order) and `phase.json`; return their paths.

    Each file is written to a temporary name and renamed, so a crash never leaves a
    half-written memory that looks complete.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    memory, phase = out_dir / "memory.jsonl", out_dir / "phase.json"
    tmp = memory.with_suffix(".jsonl.tmp")
    digest = hashlib.sha256()
    with tmp.open("w", encoding="utf-8") as f:
        for c in report.log.timeline():
            digest.update(c.key)
            row = entry_json(c, encrypted=report.encrypted, key=report.mesh_key)
            f.write(json.dumps(row, ensure_ascii=False, separators=(",", ":")))
            f.write("\n")
    assert digest.digest() == report.root  # the file is exactly the proven timeline
    tmp.replace(memory)
    doc = {
        "mesh": report.mesh.hex(),
        "root": report.root.hex(),
        "phase": {a.hex(): s for a, s in sorted(report.phase.items())},
        "entries": report.entries,
        "complete": report.complete,
        "encrypted": report.encrypted,
        "sealed": report.sealed,
    }
    tmp = phase.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    tmp.replace(phase)
    return memory, phase
