"""Survivor recovery's verify stage (DESIGN §7, step 4): raw records in; genesis, members,
chunks and heads out.

- `check_batch` runs `records.validate` (size, structure, hash or key, signature)
  over a batch, without membership. It is pure, so it can run in a worker process.
- `Verifier` turns the verdicts into the genesis, the membership view (from the
  genesis and every valid certificate found, chained to the founder by
  `MembershipView`), and the chunks and heads of admitted authors. Nothing counts
  because a peer sent it; a record that fails is dropped and counted by reason.
- `Checker` verifies batches *while* the sweep fetches: each batch the collector
  fills is checked at once, in a process pool or here between network events, and
  its verdicts are applied in arrival order. A checked batch's raw records then
  live on only inside the `Chunk`s that keep them, and its verdicts are dropped,
  so memory holds the records about once, never raw bytes plus decoded copies of
  all of them.

Pool or not: Ed25519 in `cryptography` holds the GIL and a verify costs ~150-280 µs
on a small core, so it is the floor of the whole recovery. A pool adds a core's
worth of verifying, but costs ~1 s of CPU per worker to start (spawn, imports),
~40 MiB per worker, and pickling both ways; on a 2-core machine that also serves
the survivors, verifying here, interleaved with fetching, was faster (see
`default_workers`).
"""

from __future__ import annotations

import math
import multiprocessing
import os
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor

import trio

from .errors import ErrorCode, ValidationError
from .identity import ED25519
from .ids import sha256
from .membership import MembershipView
from .records import Cert, Chunk, Genesis, Head, Record, Roster, load_trusted, validate
from .recovery_fetch import Batch
from .recovery_report import RecoveryProgress, Stage

__all__ = ["VERIFY_BATCH", "Checker", "ChunkFields", "Verdict", "Verifier", "check_batch"]

VERIFY_BATCH = 512  # records per pool task: amortises pickling, keeps progress ticking
# Records verified here between two yields to trio: ~15 ms at 250 µs each, far below
# any RPC timeout, so the node keeps answering and fetching while this process verifies.
LOCAL_SLICE = 64
# Pool workers at most: each is a whole interpreter (~40 MiB) that the recovery's own
# verifying competes with; more than the cores only adds memory.
MAX_WORKERS = 8

ChunkFields = tuple[bytes, bytes, int, bytes | None, tuple[bytes, ...], int, int, int]
Verdict = str | ChunkFields | None
"""Per record: a drop reason, a chunk's fields (mesh, author, seq, prev, parents,
lamport, time, payload size), or None for a valid record of another kind."""


def check_batch(items: Sequence[tuple[bytes, bytes]], max_size: int) -> list[Verdict]:
    """`validate` each (key, raw) without membership; runs in a worker process or here.

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
            out.append((*f, rec.payload_size))
        else:
            out.append(None)
    return out


class Verifier:
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
        # One bytes object per hash and key: a chunk's `prev` and `parents` are other
        # chunks' keys, so 100k chunks would otherwise carry ~500k duplicate 65-byte
        # objects. Emptied by `settle`; interning is only about memory.
        self._names: dict[bytes, bytes] = {}

    def _intern(self, b: bytes) -> bytes:
        return self._names.setdefault(b, b)

    def take(self, items: Sequence[tuple[bytes, bytes]], verdicts: Sequence[Verdict]) -> None:
        intern = self._intern
        for (key, raw), v in zip(items, verdicts, strict=True):
            if isinstance(v, str):
                self.dropped[v] += 1
            elif isinstance(v, tuple):
                mesh, author, seq, prev, parents, lamport, t, size = v
                if mesh != self.mesh:
                    self.dropped["WRONG_MESH"] += 1
                    continue
                key = intern(key)
                self.held[key] = Chunk(
                    key, raw, self.mesh, intern(author), seq,
                    None if prev is None else intern(prev),
                    tuple(map(intern, parents)), lamport, t, size,
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
        self._names = {}
        if self.genesis is None:
            return []
        if self.view is None:
            self.view = MembershipView(self.genesis)
        self.view.add_certs(self.certs.values())
        members = self.view.members()
        ok = [c for c in self.held.values() if c.author in members]
        # A new dict rather than deletions: a dict never shrinks its table.
        self.held = {k: c for k, c in self.held.items() if c.author not in members}
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


def default_workers() -> int:
    """Verifying processes when the caller does not say: none below 4 CPUs.

    Measured on 2 cores (scripts/bench_recover.py, 100k entries, 10 survivors on
    the same machine): the pool's start-up and pickling, and its workers taking the
    CPU the survivors need to serve, cost more than its second core gives back.
    """
    cpus = os.cpu_count() or 1
    return 0 if cpus < 4 else min(cpus - 1, MAX_WORKERS)


def _pool(workers: int | None) -> Executor | None:
    """A verifying process pool, or None to verify in this process.

    Workers start lazily, on the first batch, so a small recovery never pays for
    them. spawn, not fork: forking a process that runs trio (and maybe its worker
    threads) can copy held locks into the child.
    """
    n = default_workers() if workers is None else workers
    if n < 1:
        return None
    return ProcessPoolExecutor(max_workers=n, mp_context=multiprocessing.get_context("spawn"))


class Checker:
    """Verifies batches as they are `put`, in order, feeding a `Verifier` (see the docstring).

    Run `run` in a nursery, `put` batches (from the collector), then `close`; `run`
    returns once every batch put has been applied. Use as a context manager: leaving
    it shuts the pool down.
    """

    def __init__(self, ver: Verifier, workers: int | None, progress: RecoveryProgress) -> None:
        self.ver = ver
        self.progress = progress
        self.pool = _pool(workers)
        self.queued = 0  # records put so far
        pending = trio.open_memory_channel[tuple[Batch, Future[list[Verdict]] | None]](math.inf)
        self._send, self._recv = pending

    def __enter__(self) -> Checker:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)

    def put(self, items: Batch) -> None:
        """Queue a batch: a pool starts on it at once; here, `run` gets to it between events."""
        fut = None
        if self.pool is not None:
            fut = self.pool.submit(check_batch, items, self.ver.max_size)
        self.queued += len(items)
        self.progress.advance(Stage.VERIFY, 0, total=self.queued)
        self._send.send_nowait((items, fut))

    def close(self) -> None:
        """No more batches: `run` ends after applying those queued."""
        self._send.close()

    async def run(self) -> None:
        async with self._recv:
            async for items, fut in self._recv:
                if fut is not None:
                    verdicts = await trio.to_thread.run_sync(fut.result, abandon_on_cancel=True)
                else:
                    verdicts = []
                    for i in range(0, len(items), LOCAL_SLICE):
                        verdicts += check_batch(items[i : i + LOCAL_SLICE], self.ver.max_size)
                        await trio.sleep(0)  # let the node answer and fetch between slices
                self.ver.take(items, verdicts)
                self.progress.advance(Stage.VERIFY, len(items))
                del items, verdicts, fut  # the raws live on only in held chunks
