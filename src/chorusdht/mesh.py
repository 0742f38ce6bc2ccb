"""A memory mesh as one node sees it: found, admit, append, render, and stay in sync.

    mesh = await Mesh.create(node, "team-memory")          # this node's key founds it
    await mesh.admit(other_public_key)
    res = await mesh.append(b"...", wait="replicated")     # AppendResult(key, seq, replicas)
    mesh.timeline(); mesh.phase()                          # same on every complete node
    mesh.payload(chunk)                                    # plaintext (sealed meshes: see below)

How a mesh lives in the DHT (every record is put on the k closest nodes):

    key                                   record
    mesh id = SHA-256(genesis bytes)      genesis
    roster_key(mesh)                      roster (union of certificates, self-proving)
    SHA-256(cert bytes)                   each certificate
    head_key(mesh, author)                each author's latest head (highest seq wins)
    SHA-256(chunk bytes)                  every chunk

Appending never waits on another writer: the chunk is signed and committed to
this node's store first, then replicated — inline with `wait="replicated"`, or by
a background worker with `wait="local"`. A slow writer's chunks simply arrive
later and merge into their causal place (memlog.MeshLog).

A pinning node keeps every record of the mesh and syncs by anti-entropy
(DESIGN §6): each round it sends its phase vector to one random member's node
(LIST with `since`), which answers with the keys of exactly what is missing, in
causal order; the chunks then come in GET_MANY batches. A round costs what is new.
The DHT path (roster → heads → chunks, `fetch_dht`) is the fallback, and how a
new member finds its first copy.

An encrypted mesh (`Mesh.create(..., encrypt=True)`, genesis policy `encrypted`)
has every payload sealed with a 32-byte mesh key (seal.py) before the chunk is
signed, so the nodes that store it without being members hold ciphertext only.
The key is handed to members out of band and never enters the DHT. Without it a
node still syncs, validates and proves the root (all over the ciphertext), but
`payload` gives None for a sealed entry and `append` is refused.
"""

from __future__ import annotations

import math
import time as _time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import trio

from .errors import (
    ChorusError,
    ConfigError,
    ErrorCode,
    LocalError,
    NetworkError,
    NotFound,
    StoreError,
    ValidationError,
)
from .identity import Signer
from .ids import require_id, sha256
from .memlog import MeshLog
from .messages import MAX_KEYS_PER_REQUEST, MAX_RECORDS_PER_REPLY, SinceEntry
from .node import Node
from .records import (
    DEFAULT_POLICY,
    Cert,
    Chunk,
    Genesis,
    Head,
    Policy,
    Record,
    Roster,
    head_key,
    load_trusted,
    make_cert,
    make_genesis,
    make_head,
    roster_key,
)
from .seal import SEAL_OVERHEAD, is_sealed, key_opens_any, new_mesh_key, open_entry, seal
from .transport import Address

__all__ = ["AppendResult", "Mesh", "Phase", "SyncReport"]

ZERO = b"\x00" * 32
PUSH_FANOUT = 16  # member nodes a new chunk is pushed to directly; gossip covers the rest
REPLICATION_WORKERS = 4  # background puts in flight per mesh (wait="local" appends)
HEAD_LINGER = 0.2  # s a new head waits before its put, so a burst of appends shares one
# head put (a head is a full DHT put: a lookup and k STOREs, as costly as the chunk's);
# the head is only the DHT fallback's way in, members learn of chunks by push and sync
SYNC_BATCH = MAX_RECORDS_PER_REPLY  # keys per GET_MANY during sync
ENVELOPE_SLACK = 512  # bytes a chunk's envelope adds around its payload


@dataclass(frozen=True, slots=True)
class AppendResult:
    key: bytes
    seq: int
    replicas: int  # replicas that acknowledged (0 with wait="local": replication is under way)


@dataclass(frozen=True, slots=True)
class Phase:
    vector: dict[bytes, int]  # author public key -> highest seq of its complete chain
    root: bytes  # SHA-256 over the ordered chunk hashes
    entries: int


@dataclass(frozen=True, slots=True)
class SyncReport:
    peer: Address | None
    fetched: int  # new chunks merged this round


def _key_of(raw: bytes) -> bytes:
    """The key a served record is stored under: its hash, or for a head or a roster,
    the key derived from its mesh (and author)."""
    digest = sha256(raw)
    try:
        rec = load_trusted(digest, raw)
    except ValidationError:
        return digest
    if isinstance(rec, Head):
        return head_key(rec.mesh, rec.author)
    if isinstance(rec, Roster):
        return roster_key(rec.mesh)
    return digest


def _wall_ms() -> int:
    return int(_time.time() * 1000)


class Mesh:
    """One mesh followed by one node. Build it with `create`, `join` or `load`."""

    def __init__(
        self,
        node: Node,
        genesis: Genesis,
        author: Signer,
        *,
        pin: bool = True,
        clock: Callable[[], int] = _wall_ms,
        key: bytes | None = None,
    ) -> None:
        self.node = node
        self.core = node.core
        self.genesis = genesis
        self.id = genesis.key
        self.author = author
        self.key: bytes | None = None  # the mesh key of an encrypted mesh, when we hold it
        self.pin = pin
        self.clock = clock
        self.view = self.core.membership.add_genesis(genesis)
        self.log = MeshLog(self.id, is_member=self.core.member_check())
        self.rejected = 0
        self._since_cache: tuple[tuple[tuple[SinceEntry, ...], int], list[bytes]] | None = None
        self._peers: dict[bytes, Address] = {}  # member node id -> address
        self._pulling: set[Address] = set()  # askers we are pulling back from right now
        send, recv = trio.open_memory_channel[Record](2**31 - 1)
        self._to_replicate, self._replicate_queue = send, recv
        self.pending_replication = 0
        self._head: Head | None = None  # the newest head not yet put (one per mesh: ours)
        self._head_seq = 0  # the seq of the newest head queued
        self._head_due = trio.Event()
        node.meshes[self.id] = self
        if pin:
            self.core.pinned.add(self.id)  # a full copy: exempt from quotas
        self.core.sync_sources[self.id] = self._since_source
        self._load_local()
        if key is not None:
            self.set_key(key)

    # ---- construction -------------------------------------------------------

    @classmethod
    async def create(
        cls,
        node: Node,
        name: str,
        *,
        author: Signer | None = None,
        policy: Policy = DEFAULT_POLICY,
        pin: bool = True,
        clock: Callable[[], int] = _wall_ms,
        encrypt: bool = False,
        key: bytes | None = None,
    ) -> Mesh:
        """Found a new mesh with `author` (default: the node's own key) as founder;
        LocalError when the node already follows it (same author, name and policy).

        `encrypt` makes an encrypted mesh: its payloads are sealed with `key` (default:
        a fresh random one, then `mesh.key`), which members must get out of band.
        """
        author = author or node.core.identity
        if encrypt or key is not None:
            policy = Policy(max_roster=policy.max_roster, encrypted=True)
            key = key if key is not None else new_mesh_key()
        genesis = make_genesis(author, name, policy)
        if genesis.key in node.meshes:  # the same founder, name and policy: the same id
            raise LocalError(f"mesh {name!r} already exists (id {genesis.key.hex()})")
        mesh = cls(node, genesis, author, pin=pin, clock=clock, key=key)
        with mesh._forgotten_on_error():  # a store that refused it: a retry starts afresh
            mesh._keep(genesis)
            mesh._keep(mesh.view.roster())
        await mesh.start()
        await mesh._publish(genesis)
        await mesh._publish(mesh.view.roster())
        return mesh

    @classmethod
    async def join(
        cls,
        node: Node,
        mesh_id: bytes,
        *,
        author: Signer | None = None,
        pin: bool = True,
        clock: Callable[[], int] = _wall_ms,
        key: bytes | None = None,
    ) -> Mesh:
        """Follow an existing mesh: fetch its genesis and roster, then its log.

        `key` is the mesh key of an encrypted mesh; it is checked against the entries
        fetched (ConfigError when it opens none of them)."""
        mesh_id = require_id(mesh_id, "mesh id")
        if mesh_id in node.meshes:
            existing: Mesh = node.meshes[mesh_id]
            if key is not None:
                existing.set_key(key)
            return existing
        try:
            got = await node.get(mesh_id)
        except NotFound:
            raise LocalError(f"unknown mesh {mesh_id.hex()}: no node holds its genesis") from None
        if not isinstance(got.record, Genesis):
            raise LocalError(f"{mesh_id.hex()} is not a mesh id")
        mesh = cls(node, got.record, author or node.core.identity, pin=pin, clock=clock)
        with mesh._forgotten_on_error():
            mesh._keep(got.record)
        await mesh.start()
        await mesh.refresh_roster()
        # A member's node answers with everything in a few GET_MANY batches; the DHT
        # path (one lookup per chunk) is only the fallback when no member answers.
        report = await mesh.sync()
        if report.peer is None or report.fetched == 0:
            await mesh.fetch_dht()
        if key is not None:
            mesh.set_key(key)
        return mesh

    @classmethod
    def load(
        cls,
        node: Node,
        mesh_id: bytes,
        *,
        author: Signer | None = None,
        key: bytes | None = None,
    ) -> Mesh:
        """Follow a mesh whose records this node's store already holds (a restart)."""
        raw = node.core.store.get(mesh_id)
        if raw is None:
            raise LocalError(f"unknown mesh {mesh_id.hex()}: not in this node's store")
        genesis = load_trusted(mesh_id, raw)
        if not isinstance(genesis, Genesis):
            raise LocalError(f"{mesh_id.hex()} is not a mesh id")
        return cls(node, genesis, author or node.core.identity, key=key)

    def _load_local(self) -> None:
        """Rebuild the view and the log from what the local store holds for this mesh."""
        store, cursor = self.core.store, None
        chunks: list[Chunk] = []
        while True:
            keys = store.list_mesh(self.id, cursor, 1024)
            for key in keys:
                raw = store.get(key)
                if raw is None:
                    continue
                rec = load_trusted(key, raw)
                if isinstance(rec, Roster):
                    self.view.add_certs(rec.certs)
                elif isinstance(rec, Cert):
                    self.view.add_cert(rec)
                elif isinstance(rec, Chunk):
                    chunks.append(rec)
            if len(keys) < 1024:
                break
            cursor = keys[-1]
        for c in chunks:
            self._add_chunk(c)

    def forget(self) -> None:
        """Unregister this mesh from its node (its records stay in the store): a create,
        join or follow that failed half-way leaves nothing behind, and a retry starts
        afresh."""
        self.node.meshes.pop(self.id, None)
        self.core.pinned.discard(self.id)
        self.core.sync_sources.pop(self.id, None)

    @contextmanager
    def _forgotten_on_error(self) -> Iterator[None]:
        try:
            yield
        except BaseException:
            self.forget()
            raise

    async def start(self) -> None:
        """Start the background replication workers (called by create/join)."""
        for _ in range(REPLICATION_WORKERS):
            self.node.spawn(self._replicate_worker)
        self.node.spawn(self._head_worker)

    # ---- records ------------------------------------------------------------

    def _keep(self, record: Record) -> None:
        """Validate-free local commit of a record we made or already validated."""
        self.core.keep_local(record, trio.current_time())

    async def _publish(self, record: Record, quorum: int | None = None) -> int:
        try:
            res = await self.node.put(record.raw, record.key, quorum=quorum, early=True)
        except ChorusError:
            return 0
        return res.acks

    def on_record(self, record: Record) -> None:
        """A record of this mesh was stored here (a STORE from a peer, or our own)."""
        if isinstance(record, Chunk):
            self._add_chunk(record)
        elif isinstance(record, Roster):
            self.view.add_certs(record.certs)
        elif isinstance(record, Cert):
            self.view.add_cert(record)

    def _add_chunk(self, chunk: Chunk) -> bool:
        try:
            return self.log.add(chunk)
        except ValidationError:
            self.rejected += 1
            return False

    # ---- sealed payloads ----------------------------------------------------

    @property
    def encrypted(self) -> bool:
        """Whether the genesis policy says payloads are sealed with a mesh key."""
        return self.genesis.policy.encrypted

    def set_key(self, key: bytes) -> None:
        """Hold the mesh key: appends are sealed with it, sealed entries open with it.

        ConfigError for a key of the wrong length, for a mesh that is not encrypted,
        and for a key that opens none of the sealed entries held (a sample of them).
        """
        if len(key) != 32:
            raise ConfigError("a mesh key is 32 bytes (64 hex digits)")
        if not self.encrypted:
            raise ConfigError(f"mesh {self.id.hex()[:16]}… is not encrypted: it takes no key")
        sample = [
            (c.mesh, c.author, c.seq, c.payload) for c in self.log.chunks() if is_sealed(c.payload)
        ]
        if not key_opens_any(key, sample):
            raise ConfigError(
                f"wrong mesh key: it opens none of the sealed entries of mesh {self.id.hex()[:16]}…"
            )
        self.key = key

    def payload(self, chunk: Chunk) -> bytes | None:
        """The plaintext of an entry; None when it is sealed and our key (if any) cannot open it."""
        return open_entry(chunk, self.encrypted, self.key)

    def sealed_count(self) -> int:
        """Entries of the timeline that this node cannot open (0 for a plain mesh)."""
        if not self.encrypted:
            return 0
        return sum(self.payload(c) is None for c in self.log.timeline())

    @property
    def payload_limit(self) -> int:
        """The largest payload `append` takes, in bytes."""
        limit = self.core.config.max_record - ENVELOPE_SLACK
        return limit - SEAL_OVERHEAD if self.encrypted else limit

    # ---- the public API -----------------------------------------------------

    async def admit(self, member: bytes) -> Cert:
        """Admit `member` (a raw 32-byte Ed25519 public key); the author must be a member."""
        if len(member) != 32:
            raise LocalError("a member key is 32 bytes (64 hex digits)")
        if not self.view.is_member(self.id, self.author.public_key):
            raise LocalError("only a member can admit: this node's key is not a member")
        cert = make_cert(self.author, self.id, member)
        # The store first: a cert it refuses (a full disk) admits no one, here or after
        # a restart (which rebuilds the view from the stored certs).
        self._keep(cert)
        self.view.add_cert(cert)
        roster = self.view.roster()
        try:
            self._keep(roster)
        except StoreError:  # the cert is stored, the member admitted; a later roster has it too
            self.core.stats["rosters_not_stored"] += 1
        await self._publish(cert)
        await self._publish(roster)
        return cert

    async def append(
        self, payload: bytes, *, wait: Literal["local", "replicated"] = "local"
    ) -> AppendResult:
        """Write an entry. It is durable here first; `wait` says whether to await replicas.

        With `wait="replicated"` the result counts the replicas that acknowledged: 0
        when the write quorum was not reached (no other node reachable, say). The
        entry is kept here all the same, and republish and anti-entropy sync carry it
        to the others later."""
        if wait not in ("local", "replicated"):
            raise LocalError(f"wait is 'local' or 'replicated', got {wait!r}")
        if isinstance(payload, bytearray | memoryview):
            payload = bytes(payload)
        if not isinstance(payload, bytes):
            hint = " (encode text first: text.encode())" if isinstance(payload, str) else ""
            raise LocalError(f"a payload is bytes, got {type(payload).__name__}{hint}")
        if not self.view.is_member(self.id, self.author.public_key):
            raise ValidationError(ErrorCode.NOT_MEMBER, "this key is not a member of the mesh")
        limit = self.payload_limit
        if len(payload) > limit:
            raise ValidationError(
                ErrorCode.TOO_LARGE, f"payload is {len(payload)} bytes, the limit is {limit}"
            )
        if self.encrypted:
            if self.key is None:
                raise LocalError(
                    f"mesh {self.id.hex()[:16]}… is encrypted and this node has no key for it "
                    "(follow it with the mesh key)"
                )
            me = self.author.public_key
            seq = self.log.next_append(me).seq
            payload = seal(self.key, self.id, me, seq, payload)
        # The store first: a chunk it refuses (a full disk) never enters the log, so the
        # next append does not chain onto an entry a restart would not have.
        chunk = self.log.sign_next(self.author, payload, time=self.clock())
        self._keep(chunk)
        self.log.add(chunk)
        head = make_head(
            self.author, mesh=self.id, seq=chunk.seq, chunk_hash=chunk.key, lamport=chunk.lamport
        )
        try:
            self._keep(head)
        except StoreError:  # the entry is durable; the head is a pointer the next one replaces
            self.core.stats["heads_not_stored"] += 1
        self._push(chunk)
        # The head only points at the newest chunk: it goes out in the background
        # (after the chunk), where a newer head replaces one not yet put.
        if wait == "local":
            self.pending_replication += 1
            self._to_replicate.send_nowait(chunk)
            self._queue_head(head)
            return AppendResult(chunk.key, chunk.seq, 0)
        acks = await self._publish(chunk)
        self._queue_head(head)
        return AppendResult(chunk.key, chunk.seq, acks)

    def _queue_head(self, head: Head) -> None:
        if head.seq <= self._head_seq:
            return  # concurrent appends: a newer head was queued already
        self._head_seq = head.seq
        if self._head is None:
            self.pending_replication += 1  # one pending head, however often it is replaced
            self._head_due.set()
        self._head = head

    def _push(self, chunk: Chunk) -> None:
        """Send a new chunk straight to the pinning members' nodes we know (at most
        PUSH_FANOUT of them, at random): they have it in one round trip instead of
        waiting for an anti-entropy round to reach them; the rounds catch the rest."""
        peers = sorted(self._peers.items())
        if len(peers) > PUSH_FANOUT:
            peers = self.core.rng.sample(peers, PUSH_FANOUT)
        now = trio.current_time()
        for node_id, addr in peers:
            self.core.send_store(node_id, addr, chunk, now)
        if peers:
            self.node.pump()

    async def _replicate_worker(self) -> None:
        async for record in self._replicate_queue:
            try:
                await self._publish(record, quorum=1)
            finally:
                self.pending_replication -= 1

    async def _head_worker(self) -> None:
        """Put the newest head, at most one put at a time, HEAD_LINGER after it is due."""
        while True:
            await self._head_due.wait()
            self._head_due = trio.Event()
            await trio.sleep(HEAD_LINGER)
            head, self._head = self._head, None
            try:
                if head is not None:
                    await self._publish(head, quorum=1)
            finally:
                self.pending_replication -= 1

    def timeline(self) -> list[Chunk]:
        return self.log.timeline()

    def phase(self) -> Phase:
        return Phase(dict(self.log.phase()), self.log.root(), len(self.log.timeline()))

    def dangling(self) -> dict[bytes, frozenset[bytes]]:
        return self.log.dangling()

    # ---- sync ---------------------------------------------------------------

    def _since_source(
        self, since: tuple[SinceEntry, ...], offset: int, limit: int, asker: Address
    ) -> tuple[list[bytes], bool]:
        """Answer a peer's phase vector with the keys it lacks (cached across pages).

        Push-pull: when the asker's vector shows it holds what we lack, we pull from
        it at once, so a healed partition converges in about one round, not after
        every node happened to pick a peer from the other side.
        """
        if offset == 0 and asker not in self._pulling:
            mine, tips = self.log.phase(), self.log.tips()
            if any(
                e.seq > mine.get(e.author, 0)
                or (e.seq == mine.get(e.author, 0) and e.tip not in (ZERO, tips.get(e.author)))
                for e in since
            ):
                self._pulling.add(asker)
                self.node.spawn(self._pull_back, asker)
        stamp = (since, len(self.log))  # a grown log answers afresh
        if self._since_cache is None or self._since_cache[0] != stamp:
            phase = {e.author: e.seq for e in since}
            tips = {e.author: e.tip for e in since if e.tip != ZERO}
            keys = [c.key for c in self.log.since(phase, tips=tips)]
            self._since_cache = (stamp, keys)
        keys = self._since_cache[1]
        return keys[offset : offset + limit], offset + limit < len(keys)

    async def _pull_back(self, peer: Address) -> None:
        try:
            await self.sync(peer)
        except ChorusError:
            pass
        finally:
            self._pulling.discard(peer)

    def _my_since(self) -> tuple[SinceEntry, ...]:
        tips = self.log.tips()
        return tuple(
            SinceEntry(a, s, tips.get(a, ZERO)) for a, s in sorted(self.log.phase().items())
        )

    async def peers(self) -> list[Address]:
        """Addresses of the other members' nodes (a member's node id is its key's hash)."""
        out = []
        for member in sorted(self.view.members()):
            node_id = sha256(member)
            if node_id == self.core.node_id:
                continue
            addr = self._peers.get(node_id)
            if addr is None:
                contact = self.core.table.get(node_id)
                if contact is None:
                    try:
                        res = await self.node.find_node(node_id)
                    except ChorusError:
                        continue
                    hit = [n for n in res.nodes if n.node_id == node_id]
                    if not hit:
                        continue
                    addr = (hit[0].host, hit[0].port)
                else:
                    addr = contact.addr
                self._peers[node_id] = addr
            out.append(addr)
        return out

    async def sync(self, peer: Address | None = None) -> SyncReport:
        """One anti-entropy round: our phase vector to one random member's node."""
        if peer is None:
            candidates = await self.peers()
            if not candidates:
                return SyncReport(None, 0)
            peer = self.core.rng.choice(candidates)
        since = self._my_since()
        # The member's node id, when we know it: a node that proved its key once is
        # not challenged again (each challenge costs it a signature and us a verify),
        # and a reply from any other node at that address is refused.
        node_id = next((n for n, a in sorted(self._peers.items()) if a == peer), None)
        fetched, cursor = 0, None
        while True:
            try:
                page = await self.node.list_keys(
                    peer, self.id, cursor, MAX_KEYS_PER_REQUEST, since=since, node_id=node_id
                )
            except NetworkError:
                self._peers = {k: v for k, v in self._peers.items() if v != peer}
                break
            fetched += await self._fetch(peer, [k for k in page.keys if k not in self.log], node_id)
            if page.cursor is None:
                break
            cursor = page.cursor
        return SyncReport(peer, fetched)

    async def _fetch(self, peer: Address, keys: list[bytes], node_id: bytes | None = None) -> int:
        """GET_MANY `keys` from `peer` in batches; merge every valid chunk."""
        new = 0
        roster_refreshed = False
        while keys:
            batch, keys = keys[:SYNC_BATCH], keys[SYNC_BATCH:]
            try:
                got = await self.node.get_many(peer, batch, node_id)
            except NetworkError:
                return new
            if not got.records:
                break  # the peer no longer holds them: give up this round
            served = set()
            for raw in got.records:
                key = _key_of(raw)
                served.add(key)
                try:
                    rec = self.core.validate(key, raw)
                except ValidationError as e:
                    if e.code is ErrorCode.NOT_MEMBER and not roster_refreshed:
                        roster_refreshed = True
                        await self.refresh_roster()
                        try:
                            rec = self.core.validate(key, raw)
                        except ValidationError:
                            self.rejected += 1
                            continue
                    else:
                        self.rejected += 1
                        continue
                if isinstance(rec, Chunk) and rec.mesh == self.id:
                    self._keep(rec)
                    new += 1
            if served.isdisjoint(batch):
                break  # the peer answered none of what we asked: try again next round
            keys = [k for k in batch if k not in served] + keys  # what the reply left out
        return new

    async def refresh_roster(self) -> None:
        """Fetch the roster from the DHT and merge its certificates."""
        try:
            got = await self.node.get(roster_key(self.id))
        except NotFound:
            return
        if isinstance(got.record, Roster) and got.record.mesh == self.id:
            self.view.add_certs(got.record.certs)
            self._keep(got.record)

    async def fetch_dht(self) -> int:
        """The DHT path: every member's head, then `prev`/`parents` walks. Returns chunks added."""
        added = 0
        wanted: list[bytes] = []
        for member in sorted(self.view.members()):
            try:
                got = await self.node.get(head_key(self.id, member))
            except NotFound:
                continue
            if isinstance(got.record, Head) and got.record.hash not in self.log:
                wanted.append(got.record.hash)
        seen: set[bytes] = set()
        while wanted:
            key = wanted.pop()
            if key in seen or key in self.log:
                continue
            seen.add(key)
            try:
                got = await self.node.get(key)
            except NotFound:
                continue
            rec = got.record
            if isinstance(rec, Chunk) and rec.mesh == self.id:
                self._keep(rec)
                added += 1
                wanted.extend(d for d in (rec.prev, *rec.parents) if d is not None)
        return added

    async def sync_forever(
        self, interval: float, *, task_status: Any = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Anti-entropy rounds every `interval` seconds (jittered), plus the DHT path
        when no member's node can be reached."""
        if not (math.isfinite(interval) and interval > 0):  # 0 would sync back to back
            raise ConfigError(
                f"the sync interval must be a positive number of seconds, got {interval}"
            )
        task_status.started()
        while True:
            await trio.sleep(interval * self.core.rng.uniform(0.75, 1.25))
            try:
                report = await self.sync()
                if report.peer is None:
                    await self.fetch_dht()
            except ChorusError:
                pass
