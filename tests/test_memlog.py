"""The mesh log as a grow-only-set CRDT: merge laws, deterministic timeline and root, sync.

Random causal DAGs are built from real signed chunks by a few fixed keys; a DAG is a
function of (seed, size, forks) and cached, so Hypothesis mostly reshuffles cached chunks.
"""

from __future__ import annotations

import random
import time
from functools import cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chorusdht.errors import ErrorCode, LocalError, ValidationError
from chorusdht.identity import Identity
from chorusdht.ids import sha256
from chorusdht.memlog import MeshLog
from chorusdht.records import Chunk, make_chunk, make_genesis, make_head, validate

AUTHORS = tuple(Identity.from_seed(bytes([0x40 + i]) * 32) for i in range(4))
MESH = make_genesis(AUTHORS[0], "memlog tests").key

State = tuple[bytes, tuple[bytes, ...], dict[bytes, int], dict[bytes, frozenset[bytes]]]


@cache
def dag(seed: int, n: int, forks: bool) -> tuple[Chunk, ...]:
    """`n` chunks by up to 4 authors, each naming random earlier chunks of the others.

    With `forks`, an author now and then signs a second chunk at its last seq.
    """
    rng = random.Random(seed)
    chains: list[list[Chunk]] = [[] for _ in AUTHORS]
    out: list[Chunk] = []
    for i in range(n):
        a = rng.randrange(len(AUTHORS))
        chain = chains[a]
        prev = chain[-1] if chain else None
        seq = prev.seq + 1 if prev else 1
        if forks and chain and rng.random() < 0.15:  # equivocate: a sibling of the last chunk
            seq = chain[-1].seq
            prev = next((c for c in reversed(chain) if c.seq == seq - 1), None)
        parents = {
            rng.choice(chains[b]).key
            for b in range(len(AUTHORS))
            if b != a and chains[b] and rng.random() < 0.6
        }
        deps = [c for c in out if c.key in parents or (prev is not None and c.key == prev.key)]
        c = make_chunk(
            AUTHORS[a],
            mesh=MESH,
            seq=seq,
            prev=None if prev is None else prev.key,
            parents=tuple(parents),
            lamport=max((d.lamport for d in deps), default=0) + 1 + rng.randrange(2),
            time=i,
            payload=f"entry {seed}/{i}".encode(),
        )
        chain.append(c)
        out.append(c)
    return tuple(out)


def log_of(chunks: list[Chunk] | tuple[Chunk, ...]) -> MeshLog:
    log = MeshLog(MESH)
    for c in chunks:
        log.add(c)
    return log


def state(log: MeshLog) -> State:
    return (log.root(), tuple(c.key for c in log.timeline()), log.phase(), log.dangling())


def held(log: MeshLog) -> set[bytes]:
    return {c.key for c in log.chunks()}


def deps(c: Chunk) -> set[bytes]:
    return set(c.parents) | ({c.prev} if c.prev else set())


def reference_timeline(chunks: list[Chunk]) -> list[bytes]:
    """The DESIGN §5 order by brute force: close, then repeatedly place the least ready."""
    by_key = {c.key: c for c in chunks}
    closed: set[bytes] = set()
    changed = True
    while changed:
        changed = False
        for c in chunks:
            if c.key not in closed and deps(c) <= closed:
                p = by_key.get(c.prev) if c.prev else None
                if p is None and c.prev is not None:
                    continue
                if p is not None and (p.author != c.author or p.seq != c.seq - 1):
                    continue
                closed.add(c.key)
                changed = True
    out: list[bytes] = []
    placed: set[bytes] = set()
    while len(out) < len(closed):
        ready = [by_key[h] for h in closed - placed if deps(by_key[h]) <= placed]
        best = min(ready, key=lambda c: (c.lamport, sha256(c.author), c.key))
        out.append(best.key)
        placed.add(best.key)
    return out


DAGS = st.tuples(st.integers(0, 40), st.integers(1, 24), st.booleans()).map(lambda t: dag(*t))


@st.composite
def subsets(draw: st.DrawFn, chunks: tuple[Chunk, ...]) -> list[Chunk]:
    """A random subset of `chunks`, in a random order."""
    picked = draw(st.lists(st.booleans(), min_size=len(chunks), max_size=len(chunks)))
    sub = [c for c, keep in zip(chunks, picked, strict=True) if keep]
    return draw(st.permutations(sub))


# -- the CRDT laws and determinism ----------------------------------------------------------


@settings(deadline=None, max_examples=150)
@given(st.data(), DAGS)
def test_merge_is_commutative_associative_idempotent(
    data: st.DataObject, chunks: tuple[Chunk, ...]
) -> None:
    a, b, c = (log_of(data.draw(subsets(chunks))) for _ in range(3))

    def merged(*logs: MeshLog) -> MeshLog:
        out = MeshLog(MESH)
        for log in logs:
            out.merge(log)
        return out

    ab, ba = merged(a, b), merged(b, a)
    assert state(ab) == state(ba) and held(ab) == held(ba)
    left, right = merged(merged(a, b), c), merged(a, merged(b, c))
    assert state(left) == state(right) and held(left) == held(right)
    aa = merged(a, a)
    assert state(aa) == state(a) and held(aa) == held(a)
    assert a.merge(a) == 0


@settings(deadline=None, max_examples=150)
@given(st.data(), DAGS)
def test_timeline_and_root_ignore_arrival_order(
    data: st.DataObject, chunks: tuple[Chunk, ...]
) -> None:
    sub = data.draw(subsets(chunks))
    log = log_of(sub)
    shuffled = log_of(data.draw(st.permutations(sub)))
    assert state(log) == state(shuffled)
    order = [c.key for c in log.timeline()]
    assert order == reference_timeline(sub)
    assert log.root() == sha256(*order)
    pos = {h: i for i, h in enumerate(order)}
    for c in log.timeline():
        assert all(pos[d] < pos[c.key] for d in deps(c))


@settings(deadline=None, max_examples=100)
@given(DAGS, st.data())
def test_root_is_maintained_incrementally(chunks: tuple[Chunk, ...], data: st.DataObject) -> None:
    """Asking for the root after every add (the fast path) agrees with a fresh walk."""
    order = data.draw(st.permutations(chunks))
    log = MeshLog(MESH)
    for c in order:
        log.add(c)
        assert log.root() == sha256(*[c.key for c in log_of(list(log.chunks())).timeline()])


def test_phase_heads_and_next_append() -> None:
    chunks = dag(7, 30, False)
    log = log_of(chunks)
    counts = {a.public_key: sum(c.author == a.public_key for c in chunks) for a in AUTHORS}
    assert log.phase() == {a: n for a, n in counts.items() if n}
    for a, head in log.heads().items():
        assert head.seq == counts[a]
    me = AUTHORS[1].public_key
    n = log.next_append(me)
    assert n.seq == counts[me] + 1 and n.prev == log.heads()[me].key
    assert n.lamport == max(c.lamport for c in chunks) + 1
    assert set(n.parents) <= {h.key for a, h in log.heads().items() if a != me}
    c = log.append(AUTHORS[1], b"next", time=99)
    assert c.seq == n.seq and log.timeline()[-1] == c and log.dangling() == {}
    assert validate(c.key, c.raw) == c
    again = log.next_append(me)
    assert again.parents == () and again.prev == c.key  # nothing new since c


# -- dangling entries -------------------------------------------------------------------------


@settings(deadline=None, max_examples=100)
@given(DAGS, st.data())
def test_dangling_until_the_ancestor_arrives(
    chunks: tuple[Chunk, ...], data: st.DataObject
) -> None:
    gone = data.draw(st.sampled_from(chunks))
    log = log_of([c for c in chunks if c is not gone])
    full = log_of(chunks)
    descendants: set[bytes] = set()
    for c in chunks:  # chunks are in creation order, so one pass finds every descendant
        if gone.key in deps(c) or deps(c) & descendants:
            descendants.add(c.key)
    closed = {c.key for c in log.timeline()}
    assert closed.isdisjoint(descendants)
    assert set(log.dangling()) == descendants
    assert all(blockers == {gone.key} for blockers in log.dangling().values())
    assert log.missing() == (frozenset({gone.key}) if descendants else frozenset())
    log.add(gone)
    assert state(log) == state(full)
    assert log.dangling() == {} and log.missing() == frozenset()


def test_a_chain_delivered_backwards_closes_at_once() -> None:
    a = AUTHORS[0]
    chain: list[Chunk] = []
    for i in range(200):
        prev = chain[-1].key if chain else None
        c = make_chunk(a, mesh=MESH, seq=i + 1, prev=prev, lamport=i + 1, time=0, payload=b"")
        chain.append(c)
    log = log_of(chain[:0:-1])
    assert log.timeline() == [] and len(log.dangling()) == 199
    log.add(chain[0])
    assert log.timeline() == chain and log.phase() == {a.public_key: 200}


def test_broken_prev_link_is_invalid() -> None:
    a, b = AUTHORS[0], AUTHORS[1]
    first_a = make_chunk(a, mesh=MESH, seq=1, prev=None, lamport=1, time=0, payload=b"a")
    liar = make_chunk(b, mesh=MESH, seq=2, prev=first_a.key, lamport=2, time=0, payload=b"b")
    child = make_chunk(b, mesh=MESH, seq=3, prev=liar.key, lamport=3, time=0, payload=b"c")
    log = log_of([child, liar, first_a])
    assert [c.key for c in log.timeline()] == [first_a.key]
    assert log.invalid() == {liar.key}
    assert log.dangling() == {child.key: frozenset({liar.key})}
    assert log.missing() == frozenset()


# -- equivocation -----------------------------------------------------------------------------


def test_equivocation_keeps_both_and_stops_the_phase() -> None:
    a, b = AUTHORS[0], AUTHORS[1]
    one = make_chunk(a, mesh=MESH, seq=1, prev=None, lamport=1, time=0, payload=b"1")
    left = make_chunk(a, mesh=MESH, seq=2, prev=one.key, lamport=2, time=0, payload=b"L")
    right = make_chunk(a, mesh=MESH, seq=2, prev=one.key, lamport=2, time=0, payload=b"R")
    after = make_chunk(a, mesh=MESH, seq=3, prev=left.key, lamport=3, time=0, payload=b"3")
    other = make_chunk(b, mesh=MESH, seq=1, prev=None, lamport=4, time=0, payload=b"b")
    everything = [one, left, right, after, other]
    log = log_of(everything)
    assert log.phase() == {a.public_key: 1, b.public_key: 1}
    assert log.forks() == {a.public_key: 2}
    assert len(log.timeline()) == 5
    assert state(log) == state(log_of(everything[::-1]))
    # Two holders that each saw one branch: the tips reveal the fork and sync converges.
    x, y = log_of([one, left, after]), log_of([one, right])
    # by seq alone, x thinks y holds its chain up to seq 2 and sends only seq 3 (it dangles)
    assert [c.key for c in x.since(y.phase())] == [after.key]
    sent = x.since(y.phase(), tips=y.tips())
    assert {c.key for c in sent} == {one.key, left.key, after.key}
    sync(x, y)
    assert x.root() == y.root() == log_of([one, left, right, after]).root()


# -- sync -------------------------------------------------------------------------------------


def sync(x: MeshLog, y: MeshLog, batch: int | None = None) -> int:
    """Anti-entropy until neither side learns anything; returns rounds used."""
    rounds = 0
    while True:
        rounds += 1
        moved = 0
        for src, dst in ((x, y), (y, x)):
            reply = src.since(dst.phase(), tips=dst.tips())
            step = batch or len(reply) or 1
            for i in range(0, len(reply), step):
                for c in reply[i : i + step]:
                    moved += dst.add(c)
                assert dst.dangling().keys().isdisjoint(c.key for c in reply[: i + step])
        if not moved:
            return rounds


@settings(deadline=None, max_examples=150)
@given(st.data(), DAGS)
def test_since_sync_converges(data: st.DataObject, chunks: tuple[Chunk, ...]) -> None:
    x, y = log_of(data.draw(subsets(chunks))), log_of(data.draw(subsets(chunks)))
    union = MeshLog(MESH)
    union.merge(x)
    union.merge(y)
    sync(x, y, batch=data.draw(st.sampled_from([None, 1, 3])))
    assert x.root() == y.root() == union.root()
    assert x.phase() == y.phase() == union.phase()
    again = x.since(y.phase(), tips=y.tips())
    assert all(c.key in y for c in again)  # nothing new; only a fork's tail is re-sent


def test_since_sends_only_what_is_new() -> None:
    chunks = dag(3, 40, False)
    x, y = log_of(chunks), log_of(chunks[:30])
    sent = x.since(y.phase())
    assert {c.key for c in sent} == {c.key for c in chunks[30:]}
    assert x.since(x.phase()) == []


def test_two_writers_append_independently_and_converge() -> None:
    x, y = MeshLog(MESH), MeshLog(MESH)
    for i in range(30):
        x.append(AUTHORS[0], f"x{i}".encode(), time=i)
        if i % 3 == 0:  # the slow writer appends a third as often and syncs rarely
            y.append(AUTHORS[1], f"y{i}".encode(), time=i)
        if i % 10 == 9:
            sync(x, y)
    sync(x, y)
    assert x.root() == y.root()
    assert x.phase() == {AUTHORS[0].public_key: 30, AUTHORS[1].public_key: 10}


# -- records --------------------------------------------------------------------------------


def test_tampered_chunk_or_head_is_rejected() -> None:
    c = dag(5, 12, False)[-1]
    head = make_head(AUTHORS[0], mesh=MESH, seq=c.seq, chunk_hash=c.key, lamport=c.lamport)
    for rec in (c, head):
        assert validate(rec.key, rec.raw) == rec
        for i in range(len(rec.raw)):
            for mask in (0x01, 0x20, 0xFF):
                bad = bytearray(rec.raw)
                bad[i] ^= mask
                with pytest.raises(ValidationError):
                    validate(rec.key, bytes(bad))


def test_wrong_mesh_and_non_chunk_records() -> None:
    log = MeshLog(MESH)
    elsewhere = make_chunk(
        AUTHORS[0], mesh=sha256(b"x"), seq=1, prev=None, lamport=1, time=0, payload=b""
    )
    with pytest.raises(LocalError):
        log.add(elsewhere)
    g = make_genesis(AUTHORS[0], "memlog tests")
    with pytest.raises(ValidationError) as info:
        log.add_raw(g.key, g.raw)
    assert info.value.code is ErrorCode.MALFORMED
    c = dag(1, 1, False)[0]
    assert log.add_raw(c.key, c.raw) and not log.add_raw(c.key, c.raw)


# -- scale ------------------------------------------------------------------------------------


def fake_chunks(n: int, writers: int, seed: int) -> list[Chunk]:
    """Unsigned chunks with a realistic causal shape (the log never looks at signatures)."""
    rng = random.Random(seed)
    keys = [sha256(b"writer", bytes([i])) for i in range(writers)]
    last: list[Chunk | None] = [None] * writers
    lamport = 0
    out: list[Chunk] = []
    for i in range(n):
        a = rng.randrange(writers)
        prev = last[a]
        parents = tuple(
            sorted({h.key for b in rng.sample(range(writers), 2) if b != a and (h := last[b])})
        )
        lamport = max(lamport, prev.lamport if prev else 0) + 1
        c = Chunk(
            key=sha256(i.to_bytes(8, "big")),
            raw=b"",
            mesh=MESH,
            author=keys[a],
            seq=prev.seq + 1 if prev else 1,
            prev=prev.key if prev else None,
            parents=parents,
            lamport=lamport - rng.randrange(3) if prev is None else lamport,
            time=0,
            payload_size=0,
        )
        last[a] = c
        out.append(c)
    return out


def test_merging_100k_entries_is_roughly_linear() -> None:
    chunks = fake_chunks(100_000, 20, 0)
    shuffled = chunks[:]
    random.Random(1).shuffle(shuffled)
    t0 = time.perf_counter()
    log = log_of(shuffled)
    root = log.root()
    elapsed = time.perf_counter() - t0
    assert len(log.timeline()) == 100_000 and log.dangling() == {}
    assert log_of(chunks).root() == root
    assert elapsed < 30, f"{elapsed:.1f}s: something is quadratic"  # measured about 1 s


def test_root_after_every_append_stays_cheap() -> None:
    chunks = fake_chunks(20_000, 10, 2)
    log = MeshLog(MESH)
    t0 = time.perf_counter()
    for c in chunks:
        log.add(c)
        log.root()
    assert time.perf_counter() - t0 < 20  # the append fast path; a re-sort each time is minutes
    assert log.root() == log_of(chunks[::-1]).root()
