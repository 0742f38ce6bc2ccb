"""The mesh log: a grow-only set of one mesh's chunks, with its timeline, phase vector and root.

DESIGN §5 fixes what this module computes; these are the decisions behind how.

**State.** The state is the set of chunks `add`ed. Every output below is a
function of that set alone, never of arrival order, so merging any subsets in
any order any number of times gives the same timeline, phase vector and root.

**Causal closure.** A chunk *closes* when every chunk it names (`prev` and
`parents`) has closed. Closed chunks make up the timeline; the others are held
as dangling, each waiting on a count of unclosed dependencies, and close in a
cascade when the last one arrives (Kahn's algorithm run incrementally, so a
chain delivered backwards still costs linear time). `missing()` lists the hashes
that are named but not held.

**Broken links.** A chunk whose `prev` names something other than its author's
chunk with seq − 1 is signed nonsense: it never closes and is listed by
`invalid()`. Its descendants stay dangling. This depends only on the set.

**Timeline order.** The unique topological order that, among the chunks whose
dependencies are all placed, always places the smallest (lamport, author id,
chunk hash) next; author id = SHA-256(author public key). Computing it is a heap
walk, O(n log n). It is cached: a chunk that closes with a priority above every
placed chunk's goes on the end (it has no children yet, and the walk would reach
it last), which is the common case of an append; any other close marks the cache
stale and the next `timeline()` or `root()` redoes the walk once. A batch merge
of n chunks therefore costs O(n) to add plus one O(n log n) walk. The root is a
running SHA-256 over the ordered hashes, extended on the fast path.

**Equivocation** (one author, two different chunks with the same seq). Both are
valid records, and a grow-only set cannot drop one without depending on arrival
order, so both stay: both enter the timeline (the order above handles them like
any two concurrent chunks) and the root covers both. The author's phase stops
below the fork: phase = (lowest seq with two closed chunks) − 1. `forks()`
reports it, and `since` sends the whole forked part of that author's log.

**Sync.** `since(phase)` is the anti-entropy reply: every closed chunk whose seq
is above the asker's phase for its author (from below the fork, for a forked
author), in causal order, so the asker can add them in batches without dangling.
If the asker also sends `tips()` (the hash at each phase seq), a different hash at
that seq reveals a fork the asker has not seen, and that author's whole log is
sent. Cost is proportional to what is sent; a forked author's tail is re-sent
every round, a price only an equivocating member makes anyone pay.
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from .errors import ErrorCode, LocalError, ValidationError
from .identity import ED25519, Crypto, Signer
from .ids import sha256
from .records import MAX_PARENTS, Chunk, MembershipCheck, make_chunk, validate

__all__ = ["MeshLog", "NextAppend"]

_Prio = tuple[int, bytes, bytes]  # (lamport, author id, chunk hash): the timeline tie-break
_Keys = bytes | list[bytes]  # one key, or several (an index value: see `_push`)
_K = TypeVar("_K")


@dataclass(frozen=True, slots=True)
class NextAppend:
    """The causal fields of an author's next chunk."""

    seq: int
    prev: bytes | None
    parents: tuple[bytes, ...]
    lamport: int


def _deps(c: Chunk) -> tuple[bytes, ...]:
    """The distinct chunks `c` names: its `prev` and its `parents`."""
    if c.prev is None or c.prev in c.parents:
        return c.parents
    return (c.prev, *c.parents)


def _push(index: dict[_K, _Keys], at: _K, key: bytes) -> int:
    """Add `key` under `at`: a bare key first, a list from the second on. Returns the count."""
    have = index.get(at)
    if have is None:
        index[at] = key
        return 1
    if isinstance(have, bytes):
        index[at] = [have, key]
        return 2
    have.append(key)
    return len(have)


def _keys(have: _Keys | None) -> Sequence[bytes]:
    """The keys of an index value (never iterate a bare key: that gives its bytes)."""
    if have is None:
        return ()
    return (have,) if isinstance(have, bytes) else have


class MeshLog:
    """One mesh's chunks (a grow-only set) and the views DESIGN §5 derives from them.

    `add` takes chunks that `records.validate` accepted (signature and hash); with
    `is_member`, it also refuses non-members' chunks with NOT_MEMBER.
    """

    def __init__(self, mesh: bytes, *, is_member: MembershipCheck | None = None) -> None:
        self.mesh = mesh
        self._is_member = is_member
        self._chunks: dict[bytes, Chunk] = {}  # every chunk held
        self._closed: set[bytes] = set()
        self._invalid: set[bytes] = set()
        self._unmet: dict[bytes, int] = {}  # dangling chunk -> deps not yet closed
        self._waiters: dict[bytes, list[bytes]] = {}  # unclosed dep -> chunks waiting on it
        # The two indexes below hold one key, or a list once a second arrives (see `_push`):
        # most chunks have one child and most seqs one chunk, and a list per entry cost
        # ~270 B each in a 100,000-entry recovery.
        self._children: dict[bytes, _Keys] = {}  # closed chunk -> closed chunks naming it
        self._aid: dict[bytes, bytes] = {}  # author public key -> author id
        self._by_seq: dict[bytes, dict[int, _Keys]] = {}  # closed, per author, per seq
        self._top: dict[bytes, int] = {}  # highest closed seq per author
        self._fork: dict[bytes, int] = {}  # lowest seq with two closed chunks, per author
        self._last_held: dict[bytes, Chunk] = {}  # highest (seq, hash) held per author
        self._max_lamport = 0
        # Timeline cache: None means stale. `_max_prio` is the highest placed priority.
        self._order: list[bytes] | None = []
        self._hasher = hashlib.sha256()
        self._max_prio: _Prio | None = None

    # ---- adding ---------------------------------------------------------------

    def add(self, chunk: Chunk) -> bool:
        """Hold a validated chunk; True if it was new. Adding it again changes nothing."""
        if chunk.mesh != self.mesh:
            raise LocalError("this chunk belongs to another mesh's log")
        if chunk.key in self._chunks:
            return False
        if self._is_member is not None and not self._is_member(self.mesh, chunk.author):
            raise ValidationError(ErrorCode.NOT_MEMBER, "author is not a member of the mesh")
        self._chunks[chunk.key] = chunk
        self._max_lamport = max(self._max_lamport, chunk.lamport)
        last = self._last_held.get(chunk.author)
        if last is None or (chunk.seq, chunk.key) > (last.seq, last.key):
            self._last_held[chunk.author] = chunk
        unmet = [d for d in _deps(chunk) if d not in self._closed]
        if unmet:
            self._unmet[chunk.key] = len(unmet)
            for d in unmet:
                self._waiters.setdefault(d, []).append(chunk.key)
        else:
            self._close(chunk.key)
        return True

    def add_raw(self, key: bytes, raw: bytes, *, crypto: Crypto = ED25519) -> bool:
        """Validate a stored chunk record and add it; ValidationError if it is not one."""
        record = validate(key, raw, crypto=crypto, is_member=self._is_member)
        if not isinstance(record, Chunk):
            raise ValidationError(ErrorCode.MALFORMED, f"a {record.kind} is not a chunk")
        return self.add(record)

    def merge(self, other: MeshLog) -> int:
        """Add everything `other` holds; returns how many chunks were new."""
        return sum(self.add(c) for c in other.chunks())

    def append(self, signer: Signer, payload: bytes, *, time: int) -> Chunk:
        """Sign `payload` as `signer`'s next chunk and add it. `time` is advisory ms."""
        chunk = self.sign_next(signer, payload, time=time)
        self.add(chunk)
        return chunk

    def sign_next(self, signer: Signer, payload: bytes, *, time: int) -> Chunk:
        """Sign `payload` as `signer`'s next chunk without adding it (a writer commits
        it to its store first: a chunk the store refused must not be the next one's
        `prev`)."""
        n = self.next_append(signer.public_key)
        return make_chunk(
            signer,
            mesh=self.mesh,
            seq=n.seq,
            prev=n.prev,
            parents=n.parents,
            lamport=n.lamport,
            time=time,
            payload=payload,
        )

    def _close(self, key: bytes) -> None:
        """Close `key` (all its deps are closed), then every waiter that this completes."""
        stack = [key]
        while stack:
            h = stack.pop()
            c = self._chunks[h]
            if not self._link_ok(c):
                self._invalid.add(h)  # its waiters wait forever
                continue
            self._closed.add(h)
            for d in _deps(c):
                _push(self._children, d, h)
            self._count(c)
            self._place(c)
            for w in self._waiters.pop(h, ()):
                self._unmet[w] -= 1
                if not self._unmet[w]:
                    del self._unmet[w]
                    stack.append(w)

    def _link_ok(self, c: Chunk) -> bool:
        if c.prev is None:
            return True
        p = self._chunks[c.prev]
        return p.author == c.author and p.seq == c.seq - 1

    def _count(self, c: Chunk) -> None:
        at = _push(self._by_seq.setdefault(c.author, {}), c.seq, c.key)
        if at == 2 and c.seq < self._fork.get(c.author, c.seq + 1):
            self._fork[c.author] = c.seq
        self._top[c.author] = max(self._top.get(c.author, 0), c.seq)

    def _prio(self, c: Chunk) -> _Prio:
        aid = self._aid.get(c.author)
        if aid is None:
            aid = self._aid[c.author] = sha256(c.author)
        return (c.lamport, aid, c.key)

    def _place(self, c: Chunk) -> None:
        """Keep the timeline cache: append when `c` sorts after everything, else go stale."""
        if self._order is None:
            return
        prio = self._prio(c)
        if self._max_prio is None or prio > self._max_prio:
            self._order.append(c.key)
            self._hasher.update(c.key)
            self._max_prio = prio
        else:
            self._order = None

    # ---- reading --------------------------------------------------------------

    def __len__(self) -> int:
        """Chunks held, closed or not."""
        return len(self._chunks)

    def __contains__(self, key: object) -> bool:
        return key in self._chunks

    def get(self, key: bytes) -> Chunk | None:
        return self._chunks.get(key)

    def chunks(self) -> Iterator[Chunk]:
        """Every chunk held: the timeline first, then the rest."""
        for h in self._ordered():
            yield self._chunks[h]
        for h, c in self._chunks.items():
            if h not in self._closed:
                yield c

    def _ordered(self) -> list[bytes]:
        if self._order is None:
            self._order = self._walk(self._closed)
            self._hasher = hashlib.sha256(b"".join(self._order))
            self._max_prio = max((self._prio(self._chunks[h]) for h in self._order), default=None)
        return self._order

    def _walk(self, keys: set[bytes]) -> list[bytes]:
        """The timeline order of `keys`; deps outside `keys` count as already placed."""
        indeg: dict[bytes, int] = {}
        ready: list[_Prio] = []
        whole = keys is self._closed  # then every dep is in `keys` already
        for h in keys:
            ds = _deps(self._chunks[h])
            n = len(ds) if whole else sum(d in keys for d in ds)
            if n:
                indeg[h] = n
            else:
                ready.append(self._prio(self._chunks[h]))
        heapq.heapify(ready)
        out: list[bytes] = []
        while ready:
            h = heapq.heappop(ready)[2]
            out.append(h)
            for child in _keys(self._children.get(h)):
                if child in indeg:
                    indeg[child] -= 1
                    if not indeg[child]:
                        del indeg[child]
                        heapq.heappush(ready, self._prio(self._chunks[child]))
        return out

    def timeline(self) -> list[Chunk]:
        """The closed chunks in timeline order (DESIGN §5)."""
        return [self._chunks[h] for h in self._ordered()]

    def root(self) -> bytes:
        """SHA-256 over the timeline's chunk hashes, in order."""
        self._ordered()
        return self._hasher.copy().digest()

    def phase(self) -> dict[bytes, int]:
        """Author public key -> highest seq up to which its chain is complete (and unforked)."""
        return {a: self._fork.get(a, top + 1) - 1 for a, top in self._top.items()}

    def tips(self) -> dict[bytes, bytes]:
        """Author -> hash of its chunk at its phase seq (authors with phase 0 are left out)."""
        return {a: _keys(self._by_seq[a][s])[0] for a, s in self.phase().items() if s}

    def forks(self) -> dict[bytes, int]:
        """Author -> the lowest seq at which it signed two closed chunks."""
        return dict(self._fork)

    def heads(self) -> dict[bytes, Chunk]:
        """Author -> its closed chunk with the highest (seq, hash)."""
        return {a: self._chunks[max(_keys(self._by_seq[a][top]))] for a, top in self._top.items()}

    def dangling(self) -> dict[bytes, frozenset[bytes]]:
        """Each held chunk outside the timeline (not invalid) -> the hashes blocking it.

        A blocker is an ancestor that is missing, or held but `invalid`.
        """
        memo: dict[bytes, frozenset[bytes]] = {}
        for start in self._unmet:
            stack = [start]
            while stack:  # iterative post-order: a long dangling chain must not recurse
                h = stack[-1]
                if h in memo:
                    stack.pop()
                    continue
                todo = [d for d in _deps(self._chunks[h]) if d in self._unmet and d not in memo]
                if todo:
                    stack.extend(todo)
                    continue
                stack.pop()
                out: set[bytes] = set()
                for d in _deps(self._chunks[h]):
                    if d in self._unmet:
                        out |= memo[d]
                    elif d not in self._closed:
                        out.add(d)  # missing, or invalid
                memo[h] = frozenset(out)
        return memo

    def missing(self) -> frozenset[bytes]:
        """Hashes that held chunks name but that are not held."""
        return frozenset(d for d in self._waiters if d not in self._chunks)

    def invalid(self) -> frozenset[bytes]:
        """Held chunks whose `prev` is not their author's chunk with seq − 1."""
        return frozenset(self._invalid)

    # ---- sync and appending ---------------------------------------------------

    def since(
        self,
        phase: Mapping[bytes, int],
        *,
        tips: Mapping[bytes, bytes] | None = None,
    ) -> list[Chunk]:
        """The closed chunks a holder of `phase` (and `tips`) lacks, in causal order.

        Send the list in batches in this order: each batch extends a causal prefix,
        so nothing in it dangles at the receiver. Compute the list once per round;
        it may repeat chunks the receiver holds past its phase (a forked author's
        tail), so recomputing it per batch need not make progress.
        """
        picked: set[bytes] = set()
        for a, top in self._top.items():
            have = min(phase.get(a, 0), self._fork.get(a, top + 1) - 1)
            theirs = None if tips is None else tips.get(a)
            forked = theirs is not None and theirs not in _keys(self._by_seq[a].get(have))
            if forked and 0 < have <= top:
                have = 0  # the asker holds a branch we do not: a fork it has not seen
            for s in range(have + 1, top + 1):
                picked.update(_keys(self._by_seq[a][s]))
        return [self._chunks[h] for h in self._walk(picked)]

    def next_append(self, author: bytes) -> NextAppend:
        """seq, prev, parents and lamport for `author`'s next chunk.

        Parents are the current heads of the *other* authors, less those the
        author's previous chunk already named; past MAX_PARENTS, the most recent
        (highest lamport) heads are linked. Lamport is max(seen) + 1.
        """
        last = self._last_held.get(author)
        named = set(last.parents) if last is not None else set()
        heads = [c for a, c in self.heads().items() if a != author and c.key not in named]
        heads.sort(key=lambda c: (c.lamport, c.key), reverse=True)
        return NextAppend(
            seq=1 if last is None else last.seq + 1,
            prev=None if last is None else last.key,
            parents=tuple(sorted(c.key for c in heads[:MAX_PARENTS])),
            lamport=self._max_lamport + 1,
        )
