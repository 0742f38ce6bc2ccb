"""Survivor recovery's verify stage (DESIGN §7, step 4): raw records in; genesis, members,
chunks and heads out.

- `check_batch` runs `records.validate` (size, structure, hash or key, signature)
  over a batch, without membership. It is pure, so it can run in a worker process.
- `Verifier` turns the verdicts into the genesis, the membership view (from the
  genesis and every valid certificate found, chained to the founder by
  `MembershipView`), and the chunks and heads of admitted authors. Nothing counts
  because a peer sent it; a record that fails is dropped and counted by reason.
- `Checker` verifies batches *while* the sweep fetches: each batch the collector
  fills is checked by the first free verifier, a pool worker or this process
  between network events, and its verdicts are applied in arrival order. A
  checked batch's raw records then live on only inside the `Chunk`s that keep
  them, and its verdicts are dropped, so memory holds the records about once,
  never raw bytes plus decoded copies of all of them.

Pool and here: Ed25519 in `cryptography` holds the GIL and a verify costs ~150-280
µs on a small core, so it is the floor of the whole recovery. A pool adds a core's
worth of verifying, for ~1 s of CPU per worker to start (spawn, imports), ~40 MiB
per worker, and pickling both ways. It once lost on 2 cores, when this process
waited on it and the survivors' hand-off passes took the CPU; with both sides
verifying it nearly doubles the rate (see `default_workers`).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pickle
import subprocess
import sys
import tempfile
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import fields
from typing import IO

import trio

from .errors import ErrorCode, LocalError
from .ids import sha256
from .membership import MembershipView
from .records import Cert, Chunk, Genesis, Head, Record, Roster, load_trusted
from .recovery_fetch import Batch
from .recovery_report import RecoveryProgress, Stage
from .verify_worker import FRAME, ChunkFields, Verdict, check_batch

__all__ = [
    "VERIFY_BATCH",
    "Checker",
    "ChunkFields",
    "RawSpill",
    "SpilledChunk",
    "Verdict",
    "Verifier",
    "check_batch",
]

VERIFY_BATCH = 512  # records per batch: amortises pickling, keeps progress ticking
# Records verified here between two yields to trio: ~15 ms at 250 µs each, far below
# any RPC timeout, so the node keeps answering and fetching while this process verifies.
LOCAL_SLICE = 64
# Workers at most: each is an interpreter (~26-30 MiB) that the recovery's own verifying
# competes with; more than the cores only adds memory.
MAX_WORKERS = 8
WORKERS_START_BACKLOG = 2  # batches waiting for a verifier before the workers start
HELP_BACKLOG = 2  # batches waiting per worker before this process checks some too
# Batches a worker holds at once: it starts the next as soon as it answers one,
# without waiting for this process to be scheduled; more only delays this one's help.
WORKER_DEPTH = 2
PIPE_BYTES = 1 << 20  # the workers' pipes (Linux default 64 KiB; 1 MiB is the usual cap)


class RawSpill:
    """Verified chunks' raw bytes, in an unlinked temporary file instead of memory.

    A recovery holds every chunk it found until it writes them out. Their bytes
    were most of its memory (100,000 chunks of ~300 B: 65 MiB of records next to
    ~100 MiB of the log's own structures); on disk they cost the page cache, which
    the kernel can take back, not this process's memory. Reading a payload back
    is one `pread`. The file goes when the last chunk that names it does.
    """

    def __init__(self) -> None:
        # no `with`: the file lives as long as the chunks that read from it
        self._file: IO[bytes] = tempfile.TemporaryFile(prefix="chorusdht-recover-")  # noqa: SIM115
        self._fd = self._file.fileno()
        self.size = 0

    def put(self, raw: bytes) -> int:
        """Append `raw`; returns where it starts."""
        at = self.size
        if os.pwrite(self._fd, raw, at) != len(raw):  # a short write: the disk is full
            raise OSError(f"recovery spill file took part of {len(raw)} bytes")
        self.size += len(raw)
        return at

    def read(self, at: int, n: int) -> bytes:
        raw = os.pread(self._fd, n, at)
        if len(raw) != n:  # our own file, written by us: anything else is a local fault
            raise OSError(f"recovery spill file is short at {at}")
        return raw

    def chunk(
        self, key: bytes, raw: bytes, mesh: bytes, author: bytes, seq: int,
        prev: bytes | None, parents: tuple[bytes, ...], lamport: int, time: int, size: int,
    ) -> Chunk:  # fmt: skip
        """A `Chunk` whose raw bytes live here; equal to the `Chunk` it stands for.

        If the file cannot take them (disk full), the chunk keeps them in memory.
        """
        try:
            at = self.put(raw)
        except OSError:
            return Chunk(key, raw, mesh, author, seq, prev, parents, lamport, time, size)
        c = object.__new__(SpilledChunk)
        values = (key, b"", mesh, author, seq, prev, parents, lamport, time, size)
        for slot, value in zip(_CHUNK_SLOTS, values, strict=True):
            slot.__set__(c, value)
        object.__setattr__(c, "_spill", self)  # frozen: no plain assignment
        object.__setattr__(c, "_at", at)
        object.__setattr__(c, "_n", len(raw))
        return c


class SpilledChunk(Chunk):
    """A `Chunk` whose `raw` is read back from a `RawSpill` (made by `RawSpill.chunk`)."""

    __slots__ = ("_at", "_n", "_spill")
    _spill: RawSpill
    _at: int
    _n: int

    @property
    def raw(self) -> bytes:
        return self._spill.read(self._at, self._n)

    def __eq__(self, other: object) -> bool:  # equal to the plain Chunk it stands for
        if not isinstance(other, Chunk):
            return NotImplemented
        return all(getattr(self, f.name) == getattr(other, f.name) for f in fields(Chunk))

    __hash__ = Chunk.__hash__


# Chunk's own slot descriptors: SpilledChunk's `raw` property hides the parent's slot,
# so the frozen dataclass's __init__ cannot run; `RawSpill.chunk` fills the slots.
_CHUNK_SLOTS = [Chunk.__dict__[f.name] for f in fields(Chunk)]


class Verifier:
    """Turns checked records into the mesh's genesis, membership, chunks and heads (pure)."""

    def __init__(self, mesh: bytes, max_size: int, spill: RawSpill | None = None) -> None:
        self.mesh = mesh
        self.max_size = max_size
        self.spill = spill  # where held chunks keep their raw bytes; None: in memory
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

    def take(self, items: Sequence[tuple[bytes, bytes]], verdicts: Sequence[Verdict]) -> None:
        intern = self._names.setdefault  # intern(b, b): one call, no Python frame
        held, mesh_ = self.held, self.mesh
        make = Chunk if self.spill is None else self.spill.chunk
        for (key, raw), v in zip(items, verdicts, strict=True):
            if isinstance(v, str):
                self.dropped[v] += 1
            elif isinstance(v, tuple):
                mesh, author, seq, prev, parents, lamport, t, size = v
                if mesh != mesh_:
                    self.dropped["WRONG_MESH"] += 1
                    continue
                key = intern(key, key)
                held[key] = make(
                    key, raw, mesh_, intern(author, author), seq,
                    None if prev is None else intern(prev, prev),
                    tuple(map(intern, parents, parents)), lamport, t, size,
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
    """Verifying processes when the caller does not say: one per CPU but this one's.

    Measured on 2 cores (scripts/bench_recover.py, 100k entries, 10 survivors on
    the same machine): one worker took recovery from ~3,200 to ~5,900 entries/s, for
    ~42 MiB more. The pool starts only once batches queue up (see `Checker`), so a
    small recovery never pays its ~1 s of start-up.
    """
    cpus = os.cpu_count() or 1
    return min(cpus - 1, MAX_WORKERS)


class _Signal:
    """Wakes every task waiting on it; a task that waits after `fire` waits for the next."""

    def __init__(self) -> None:
        self._event = trio.Event()

    def fire(self) -> None:
        self._event.set()
        self._event = trio.Event()

    async def wait(self) -> None:
        await self._event.wait()


class _Slot:
    """One batch on its way through the checker: its verdicts once known."""

    __slots__ = ("items", "taken", "verdicts")

    def __init__(self, items: Batch) -> None:
        self.items = items
        self.taken = False  # a worker has it
        self.verdicts: list[Verdict] | None = None


class WorkerFailed(LocalError):
    """A verifying worker process died or answered out of turn."""


class _Worker:
    """One `chorusdht.verify_worker` process, one batch at a time over its pipes."""

    def __init__(self, proc: trio.Process) -> None:
        self.proc = proc
        self._buf = bytearray()

    @classmethod
    async def start(cls) -> _Worker:
        proc = await trio.lowlevel.open_process(
            [sys.executable, "-m", "chorusdht.verify_worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        for stream in (proc.stdin, proc.stdout):
            # A batch (~330 KB) and its verdicts (~100 KB) each pass in one write, so
            # neither side waits for the other to be scheduled several times a batch.
            with contextlib.suppress(OSError, AttributeError):  # not Linux, or capped
                fcntl.fcntl(stream.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)  # type: ignore[union-attr]
        return cls(proc)

    async def send(self, items: Batch, max_size: int) -> None:
        assert self.proc.stdin is not None
        body = pickle.dumps((items, max_size), protocol=pickle.HIGHEST_PROTOCOL)
        await self.proc.stdin.send_all(FRAME.pack(len(body)) + body)

    async def receive(self, n_items: int) -> list[Verdict]:
        """The verdicts of the oldest batch sent and not yet answered."""
        (n,) = FRAME.unpack(await self._read(FRAME.size))
        verdicts: list[Verdict] = pickle.loads(await self._read(n))
        if len(verdicts) != n_items:
            raise WorkerFailed(f"a verifying worker gave {len(verdicts)} verdicts for {n_items}")
        return verdicts

    async def _read(self, n: int) -> bytes:
        assert self.proc.stdout is not None
        while len(self._buf) < n:
            data = await self.proc.stdout.receive_some(1 << 20)
            if not data:
                raise WorkerFailed(f"a verifying worker exited ({self.proc.returncode})")
            self._buf += data
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out

    async def stop(self) -> None:
        """Kill the process and reap it, even when cancelled."""
        with trio.CancelScope(shield=True):
            self.proc.kill()
            await self.proc.wait()


class Checker:
    """Verifies batches as they are `put`, feeding a `Verifier` in order (see the docstring).

    Both sides verify: worker processes take batches from the front of the queue
    and this process, between network events, from the back, so neither waits
    while work is queued, and who checks a batch is settled when a verifier is
    free, not when the batch arrives. Verdicts are still applied in the order the
    batches were put. The workers start once batches queue up (a small recovery
    never pays for them); if one dies, its batch goes back to the queue.
    `check_here=False` leaves every batch to the workers (tests).

    Run `run` in a nursery, `put` batches (from the collector), then `close`; `run`
    returns once every batch put has been applied.
    """

    def __init__(
        self,
        ver: Verifier,
        workers: int | None,
        progress: RecoveryProgress,
        *,
        check_here: bool = True,
    ) -> None:
        self.ver = ver
        self.progress = progress
        self.workers = default_workers() if workers is None else max(0, workers)
        self.check_here = check_here or not self.workers
        self.queued = 0  # records put so far
        self.by_workers = 0  # records the workers checked
        self._queue: deque[_Slot] = deque()
        self._waiting: deque[_Slot] = deque()  # in the queue, not yet taken by a verifier
        self._closed = False
        self._started = False
        self._changed = _Signal()  # a batch was put or checked, or the checker closed
        self._nursery: trio.Nursery | None = None

    def put(self, items: Batch) -> None:
        """Queue a batch; a free verifier takes it."""
        slot = _Slot(items)
        self._queue.append(slot)
        self._waiting.append(slot)
        self.queued += len(items)
        self.progress.advance(Stage.VERIFY, 0, total=self.queued)
        self._maybe_start()
        self._changed.fire()

    def _maybe_start(self) -> None:
        """Start the workers once this process alone is behind (or may not check)."""
        if self._started or not self.workers or self._nursery is None:
            return
        if len(self._waiting) >= WORKERS_START_BACKLOG or not self.check_here:
            self._started = True
            for _ in range(self.workers):
                self._nursery.start_soon(self._work)

    def close(self) -> None:
        """No more batches: `run` ends after applying those queued."""
        self._closed = True
        self._changed.fire()

    def _lost_worker(self) -> None:
        self.workers -= 1
        if not self.workers:
            self.check_here = True  # the last one: this process checks the rest
        self._changed.fire()

    async def _work(self) -> None:
        try:
            worker = await _Worker.start()
        except OSError:
            self._lost_worker()
            return
        sent: deque[_Slot] = deque()  # batches the worker has, oldest first
        try:
            while True:
                while len(sent) < WORKER_DEPTH and self._waiting:
                    slot = self._waiting.popleft()
                    slot.taken = True
                    sent.append(slot)
                    await worker.send(slot.items, self.ver.max_size)
                if not sent:
                    if self._closed:
                        return
                    await self._changed.wait()
                    continue
                verdicts = await worker.receive(len(sent[0].items))
                slot = sent.popleft()
                slot.verdicts = verdicts
                self.by_workers += len(slot.items)
                self._changed.fire()
        except (WorkerFailed, trio.BrokenResourceError, trio.ClosedResourceError):
            for slot in reversed(sent):  # not lost: other verifiers take them, in order
                slot.taken = False
                self._waiting.appendleft(slot)
            self._lost_worker()
        finally:
            await worker.stop()

    def _help(self) -> bool:
        """Whether this process should check a waiting batch now.

        Alone, always. With workers running, only once they fall behind by more
        than HELP_BACKLOG batches, or once the fetch is over: until then this
        process's time is better spent fetching (measured: helping at every
        chance left the worker idle a third of the time).
        """
        if not self.check_here or not self._waiting:
            return False
        if not self._started or not self.workers:
            return True
        return self._closed or len(self._waiting) > HELP_BACKLOG * self.workers

    async def _check_here(self, slot: _Slot) -> None:
        verdicts: list[Verdict] = []
        items = slot.items
        for i in range(0, len(items), LOCAL_SLICE):
            verdicts += check_batch(items[i : i + LOCAL_SLICE], self.ver.max_size)
            await trio.sleep(0)  # let the node answer and fetch between slices
        slot.verdicts = verdicts

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            self._maybe_start()  # batches may have been put before `run`
            await self._apply()
            nursery.cancel_scope.cancel()  # the workers: nothing is left for them

    async def _apply(self) -> None:
        queue = self._queue
        while queue or not self._closed:
            head = queue[0] if queue else None
            if head is not None and head.verdicts is not None:
                queue.popleft()
                self.ver.take(head.items, head.verdicts)
                self.progress.advance(Stage.VERIFY, len(head.items))
                head.items = head.verdicts = None  # type: ignore[assignment]
            elif head is not None and self._help():
                # the head, if no worker has it; else the newest batch, leaving the
                # front to the workers
                slot = self._waiting.popleft() if not head.taken else self._waiting.pop()
                await self._check_here(slot)
            else:
                await self._changed.wait()
