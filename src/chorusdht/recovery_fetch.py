"""Survivor recovery's network stages (DESIGN §7, steps 1 and 3): crawl, LIST and GET_MANY.

See `recovery`'s docstring for the decisions. Everything fetched goes into a
`Collector`, which keeps one copy of each record and hands full batches to the
verifier as they arrive, so verifying overlaps fetching.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import trio

from .codec import decode
from .crawl import DumpProgress, crawl_tables
from .errors import ChorusError, DecodeError, ErrorCode, NetworkError
from .ids import sha256
from .messages import MAX_KEYS_PER_REQUEST, MAX_RECORDS_PER_REPLY
from .node import Node
from .records import DEFAULT_MAX_RECORD, head_key, roster_key
from .recovery_report import NullProgress, PeerReport, RecoveryProgress, Stage
from .transport import Address

__all__ = ["Collector", "Peer", "ReplyMatch", "Sweep", "crawl", "limited", "match_reply"]

SWEEP_PEERS_PARALLEL = 32  # peers listed at once; bounds tasks, not correctness
# A RECORDS reply holds at most MAX_RECORDS_PER_REPLY records, so asking for more keys
# only makes the request bigger; the size budget may still cut it (`match_reply`).
FETCH_BATCH = min(MAX_KEYS_PER_REQUEST, MAX_RECORDS_PER_REPLY)
CRAWL_PAUSE = 15.0  # seconds between crawls when the caller has patience (see `crawl`)
FETCH_WINDOW = 4  # GET_MANY requests in flight per peer: hides the RTT, never floods one peer
T = TypeVar("T")
R = TypeVar("R")


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


# ---- fetching ---------------------------------------------------------------------


@dataclass(slots=True)
class Peer:
    node_id: bytes | None
    addr: Address
    reached: bool = False
    listed: int = 0
    given: int = 0
    new: int = 0

    def report(self) -> PeerReport:
        return PeerReport(self.node_id, self.addr, self.reached, self.listed, self.given, self.new)


Batch = list[tuple[bytes, bytes]]  # (key, raw) records on their way to the verifier


class Collector:
    """Every record obtained so far, deduplicated, with what was rejected on arrival.

    New records go to `sink` (the verifier) in batches of `batch` as they arrive,
    and the collector keeps only their keys, so each raw record lives in one place
    and is dropped as soon as it fails. Without a sink they wait in `unverified`.
    """

    def __init__(self, mesh: bytes, max_size: int, progress: RecoveryProgress) -> None:
        self.mesh = mesh
        self.max_size = max_size
        self.progress = progress
        self.content: set[bytes] = set()  # content keys obtained; the raw went on
        self.mutable: dict[bytes, set[bytes]] = {}  # head/roster key -> distinct raws (a few)
        self.rejected: set[bytes] = set()  # hashes of raws rejected, so each counts once
        self.dropped: Counter[str] = Counter()
        self.claimed: set[bytes] = set()
        self.orphans: set[bytes] = set()  # claimed, but the claiming peer did not give it
        self.unverified: Batch = []  # not yet handed to the sink
        self.sink: Callable[[Batch], None] | None = None
        self.batch = 1

    def have(self, key: bytes) -> bool:
        return key in self.content or key in self.mutable

    def add(self, key: bytes, raw: bytes) -> bool:
        """Keep one record; True if it is new. Content keys must hash (checked by caller)."""
        if sha256(raw) == key:
            if key in self.content:
                return False
            self.content.add(key)
        else:
            raws = self.mutable.setdefault(key, set())
            if raw in raws:
                return False
            raws.add(raw)
        self.unverified.append((key, raw))
        self.progress.advance(Stage.FETCH)
        if len(self.unverified) >= self.batch:
            self.flush()
        return True

    def flush(self) -> None:
        """Hand what is unverified to the sink, if there is one."""
        if self.sink is not None and self.unverified:
            items, self.unverified = self.unverified, []
            self.sink(items)

    def reject(self, raw: bytes, reason: str) -> None:
        h = sha256(raw)
        if h not in self.rejected:
            self.rejected.add(h)
            self.dropped[reason] += 1

    def take_reply(self, peer: Peer, m: ReplyMatch) -> None:
        peer.given += len(m.matched) + len(m.rejected)
        for key, raw in m.matched:
            if self.add(key, raw):
                peer.new += 1
        for raw, reason in m.rejected:
            self.reject(raw, reason)


async def limited(
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


class Sweep:
    """LIST and GET_MANY against every peer (see the module docstring, stage 3)."""

    def __init__(self, node: Node, col: Collector) -> None:
        self.node = node
        self.col = col

    async def fetch(self, peer: Peer, keys: list[bytes]) -> list[bytes]:
        """Ask `peer` for `keys`; return those it did not give."""
        col, lacking = self.col, []
        batch = keys
        while batch:
            try:
                res = await self.node.get_many(peer.addr, batch, peer.node_id)
            except NetworkError:
                return [k for k in batch if not col.have(k)]
            m = match_reply(batch, res.records, max_size=col.max_size)
            col.take_reply(peer, m)
            rest = set(m.rest)
            lacking += [k for k in batch if k not in rest and not col.have(k)]
            batch = list(m.rest)
        return lacking

    async def _fetcher(self, peer: Peer, recv: trio.MemoryReceiveChannel[list[bytes]]) -> None:
        async with recv:
            async for keys in recv:
                self.col.orphans.update(await self.fetch(peer, keys))

    async def sweep_peer(self, peer: Peer) -> None:
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
                            peer.addr, col.mesh, cursor, MAX_KEYS_PER_REQUEST, node_id=peer.node_id
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

    def sweep_local(self, own: Peer) -> None:
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

    async def fill_from_all(self, peers: list[Peer], keys: set[bytes], *, every: bool) -> None:
        """Ask each reached peer for `keys`: until found, or (`every`) from all of them."""
        for peer in peers:
            ask = sorted(keys) if every else sorted(k for k in keys if not self.col.have(k))
            if not ask:
                return
            chunks = [ask[i : i + FETCH_BATCH] for i in range(0, len(ask), FETCH_BATCH)]

            async def one(keys_: list[bytes], peer_: Peer = peer) -> list[bytes]:
                return await self.fetch(peer_, keys_)

            await limited(one, chunks, FETCH_WINDOW)


# ---- crawling ---------------------------------------------------------------------


async def crawl(
    node: Node,
    bootstrap: Sequence[tuple[str, int] | str],
    *,
    rng: random.Random | None = None,
    progress: RecoveryProgress | None = None,
    patience: float = 0.0,
) -> dict[bytes, Address]:
    """Every node reachable from `bootstrap`: node id -> address (this node left out).

    Joins through `bootstrap`, then dumps the routing table of every node that
    answers, breadth first (`chorusdht.crawl`): a lookup-based crawl sees only each
    peer's neighbourhood, and missed a fifth of the survivors after a 90% kill.

    Right after a mass failure the survivors are still finding each other (each
    sweeps its table once most of its requests time out), and the one we ask may
    know no other yet: in nuke99-chorus, 30 s after the kill, a recovery reached 1
    of the 10 survivors (the next, a minute later, reached 9). With `patience`
    seconds, while fewer than half of the nodes heard of answer, the tables of
    those that did are dumped again every CRAWL_PAUSE, until `patience` is spent;
    nodes that did not answer are not asked again.
    Raises LookupFailed when no bootstrap node answers.
    """
    rng = rng or node.core.rng
    progress = progress or NullProgress()
    progress.start(Stage.CRAWL, None)
    await node.bootstrap(bootstrap)
    start = {c.node_id: c.addr for c in node.core.table}
    ticks = _CrawlTicks(progress)
    seen, answered = await crawl_tables(node, start, rng=rng, progress=ticks)
    waited = 0.0
    while answered and 2 * len(answered) < len(seen) and waited < patience:
        pause = min(CRAWL_PAUSE, patience - waited)
        await trio.sleep(pause)
        waited += pause
        again = {i: seen[i] for i in sorted(answered)}
        dead = seen.keys() - answered
        more, more_answered = await crawl_tables(node, again, rng=rng, progress=ticks, skip=dead)
        seen.update(more)
        answered |= more_answered
    for c in node.core.table:  # met while crawling (challenged, so proven)
        seen.setdefault(c.node_id, c.addr)
    progress.finish(Stage.CRAWL)
    return seen


class _CrawlTicks(DumpProgress):
    def __init__(self, progress: RecoveryProgress) -> None:
        self.progress = progress

    def found(self, n: int) -> None:
        self.progress.advance(Stage.CRAWL, n)
