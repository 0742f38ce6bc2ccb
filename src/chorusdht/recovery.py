"""Survivor recovery (DESIGN §7): rebuild one mesh's exact memory from whatever peers survive.

    report = await recover(node, mesh, bootstrap=[("10.0.0.7", 4000)], expect_root=root)
    write_outputs(report, Path("out"))          # memory.jsonl + phase.json
    raise SystemExit(exit_code(report))         # 0 complete, 3 partial

Stages, and the decisions behind them:

1. **Crawl.** Bootstrap, then dump the routing table of every node that
   answers, breadth first: one FIND_NODE per bucket of *its* table, until a
   reply comes back short (`chorusdht.crawl`). This reaches every live node that
   any reached node knows; lookups toward random targets saw only neighbourhoods
   and, after a 90% kill, missed a fifth of the survivors.
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
4. **Verify**, while the sweep goes on (`recovery_verify`). Every record goes
   through `records.validate` (size, structure, hash or key, signature) as soon
   as its batch is collected, then membership is decided here from the genesis and
   every valid certificate found (rosters and loose certs), chained to the founder
   by `MembershipView`. Nothing counts because a peer sent it; a record that fails
   is dropped and counted under its reason. A checked batch leaves one copy of each
   valid chunk and nothing else: its fields in a `Chunk` (hashes interned), its raw
   bytes in a temporary file (`RawSpill`; `raw` reads them back), so memory holds
   the log's structure, not the data.
   Ed25519 verification is the floor of the whole recovery (~150-280 µs a record
   on a small core): worker processes (`verify_worker`, one per spare CPU, see
   `recovery_verify.default_workers`) verify beside this one.
5. **Merge** into a `MeshLog`: timeline, phase vector, root, dangling, missing.
   Chunks are added in (lamport, author id, hash) order, which is causal (a
   chunk's lamport exceeds everything it names), so every add takes the log's
   append fast path and no timeline re-walk is needed.
6. **Walk** (the DHT path proper): each hash still named but missing (a `prev`,
   a parent, a head's chunk) is fetched with `get`, verified and merged, until a
   round finds nothing new. Each hash is tried once, so this ends.
7. **Report**, and optionally **reseed**: `put` every valid record again so k
   copies exist.

Modules: `recovery_fetch` (crawl, LIST, GET_MANY, reply matching),
`recovery_verify` (checking and membership), `recovery_report` (the report, the
progress hooks, memory.jsonl); this module runs the stages in order.

An encrypted mesh (seal.py) is recovered the same way: every stage works on the
ciphertext, so the root is exact with or without the mesh key. With `mesh_key`
memory.jsonl holds the plaintext; an entry it cannot open (no key, a wrong key)
keeps its ciphertext, flagged `"sealed": true`, and the report counts it.

The node's own store is swept too (a survivor may run recovery on itself), and
is trusted no more than any peer.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence

import trio

from .errors import ChorusError, ConfigError, NotFound, ValidationError
from .ids import require_id, sha256
from .memlog import MeshLog
from .node import Node
from .records import Chunk, Head, Roster, head_key, load_trusted, roster_key, validate
from .recovery_fetch import (
    SWEEP_PEERS_PARALLEL,
    Collector,
    Peer,
    ReplyMatch,
    Sweep,
    crawl,
    limited,
    match_reply,
)
from .recovery_report import (
    EXIT_COMPLETE,
    EXIT_PARTIAL,
    AuthorReport,
    MissingChunk,
    NullProgress,
    PeerReport,
    RecoveryProgress,
    RecoveryReport,
    Stage,
    Timings,
    entry_json,
    exit_code,
    write_outputs,
)
from .recovery_verify import VERIFY_BATCH, Checker, RawSpill, Verdict, Verifier, check_batch
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

_Verifier = Verifier  # the name tests/test_forgery.py knows
WALK_PARALLEL = 16  # `get`s in flight during the walk
RESEED_PARALLEL = 16  # `put`s in flight during reseeding

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


async def _fetch(
    node: Node, col: Collector, found: dict[bytes, Address]
) -> tuple[Peer, list[Peer]]:
    """Roots by the DHT, then the sweep of every peer (stages 2 and 3); (own store, peers)."""
    mesh = col.mesh
    for raw in [await _get_raw(node, mesh), await _get_raw(node, roster_key(mesh))]:
        if raw is not None:
            _take_root(col, raw)
    members = _members_hint(col, mesh, col.max_size)
    raws = await limited(lambda m: _get_raw(node, head_key(mesh, m)), members, WALK_PARALLEL)
    for m, got_head in zip(members, raws, strict=True):
        if isinstance(got_head, bytes):
            col.add(head_key(mesh, m), got_head)
    sweep = Sweep(node, col)
    own = Peer(None, node.address)
    sweep.sweep_local(own)
    peers = [Peer(nid, addr) for nid, addr in sorted(found.items())]
    await limited(sweep.sweep_peer, peers, SWEEP_PEERS_PARALLEL)
    col.claimed = set()  # every claim is settled: fetched, or an orphan
    reached = [p for p in peers if p.reached]
    await sweep.fill_from_all(reached, col.orphans, every=False)
    mutable = {roster_key(mesh), *col.mutable, *(head_key(mesh, m) for m in members)}
    await sweep.fill_from_all(reached, mutable, every=True)
    return own, peers


async def recover(
    node: Node,
    mesh: bytes,
    *,
    bootstrap: Sequence[tuple[str, int] | str],
    expect_root: bytes | None = None,
    progress: RecoveryProgress | None = None,
    reseed: bool = False,
    workers: int | None = None,
    mesh_key: bytes | None = None,
    patience: float = 0.0,
) -> RecoveryReport:
    """Rebuild mesh `mesh` from every node reachable through `bootstrap`.

    `workers` sets the verifying processes (None: `recovery_verify.default_workers`;
    0: in this process). `mesh_key` opens an encrypted mesh's payloads in the outputs.
    `patience` (seconds): right after a mass failure, keep crawling that long while
    most nodes heard of are silent, as survivors find each other (`crawl`).
    Raises LookupFailed when no bootstrap node answers, and NotFound when
    no valid genesis of the mesh survives anywhere (nothing could be verified).
    """
    mesh = require_id(mesh, "mesh id")
    if mesh_key is not None and len(mesh_key) != MESH_KEY_BYTES:
        raise ConfigError(f"a mesh key is {MESH_KEY_BYTES} bytes ({2 * MESH_KEY_BYTES} hex digits)")
    progress = progress or NullProgress()
    max_size = node.core.config.max_record
    t0 = time.perf_counter()
    found = await crawl(node, bootstrap, progress=progress, patience=patience)
    t1 = time.perf_counter()

    # -- fetch: roots by the DHT, then the sweep; every batch is verified as it arrives
    col = Collector(mesh, max_size, progress)
    ver = Verifier(mesh, max_size, RawSpill())
    checker = Checker(ver, workers, progress)
    col.sink, col.batch = checker.put, VERIFY_BATCH
    progress.start(Stage.FETCH, None)
    progress.start(Stage.VERIFY, None)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(checker.run)
        try:
            own, peers = await _fetch(node, col, found)
        finally:
            col.flush()
            checker.close()
        progress.finish(Stage.FETCH)
        t2 = time.perf_counter()
    # -- verify: what the checker has not done by the end of the fetch
    col.sink = None
    col.content = set()  # the held chunks have the keys now; the walk asks only for others
    reached = [p for p in peers if p.reached]
    accepted = ver.settle()
    _teach(node, ver)
    t3 = time.perf_counter()

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
        got = await limited(lambda k: _get_raw(node, k), keys, WALK_PARALLEL)
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


def _teach(node: Node, ver: Verifier) -> None:
    """Tell the node's core the verified membership, so its own `get`s (the walk) and
    `put`s (reseeding, which then carry membership proofs) judge members as we do."""
    if ver.genesis is not None:
        node.core.membership.add_genesis(ver.genesis).add_certs(ver.certs.values())


def _take_root(col: Collector, raw: bytes) -> None:
    """A genesis or roster the DHT path found; keyed by what it is (checked again later)."""
    try:
        rec = load_trusted(sha256(raw), raw, max_size=col.max_size)
    except ValidationError:
        return
    key = roster_key(rec.mesh) if isinstance(rec, Roster) else sha256(raw)
    col.add(key, raw)


def _members_hint(col: Collector, mesh: bytes, max_size: int) -> list[bytes]:
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
    node: Node, ver: Verifier, log: MeshLog, progress: RecoveryProgress
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

    results = await limited(put, recs, RESEED_PARALLEL)
    progress.finish(Stage.RESEED)
    failed = sum(isinstance(r, ChorusError) for r in results)
    return len(results) - failed, failed
