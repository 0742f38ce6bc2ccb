"""Survivor recovery: pure parts (reply matching, exit codes), then tier 3 on real UDP.

The swarm tests lay a mesh out in the DHT as mesh.py does: genesis at the mesh
id, roster at roster_key, certs at their hashes, each author's head at
head_key, chunks at their hashes, all put with `node.put`. Pinners also hold a
full copy, written straight into their stores.
"""

from __future__ import annotations

import json
import os
import pickle
import random
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio

from chorusdht import Identity, NodeConfig, RtoConfig, open_node, recovery_verify
from chorusdht.codec import decode, encode
from chorusdht.ids import sha256
from chorusdht.memlog import MeshLog
from chorusdht.records import (
    Chunk,
    Genesis,
    Record,
    Roster,
    head_key,
    make_cert,
    make_chunk,
    make_genesis,
    make_head,
    make_roster,
)
from chorusdht.recovery import (
    EXIT_COMPLETE,
    EXIT_PARTIAL,
    NullProgress,
    exit_code,
    match_reply,
    recover,
    write_outputs,
)
from chorusdht.recovery_verify import Checker, Verifier
from chorusdht.store import RecordStore
from chorusdht.verify_worker import FRAME

from .conftest import Running, udp_swarm

K = 4  # small k: random placement alone cannot survive losing 11 of 12 nodes
FAST_RTO = RtoConfig(initial=0.3, floor=0.05, ceiling=1.0)  # dead peers cost little test time
CONFIG = NodeConfig(k=K, rto=FAST_RTO)


@dataclass
class Mesh:
    genesis: Genesis
    authors: list[Identity]
    log: MeshLog
    records: list[Record]

    @property
    def id(self) -> bytes:
        return self.genesis.key


def build_mesh(n_authors: int = 3, entries: int = 60, seed: int = 0) -> Mesh:
    """A founder admits the others; authors append round-robin; heads name each last chunk."""
    authors = [Identity.from_seed(bytes([seed, i + 1]) * 16) for i in range(n_authors)]
    genesis = make_genesis(authors[0], f"mesh-{seed}")
    certs = [make_cert(authors[0], genesis.key, a.public_key) for a in authors[1:]]
    log = MeshLog(genesis.key)
    rng = random.Random(seed)
    chunks = [
        log.append(authors[i % n_authors], f"entry {i} {rng.random()}".encode(), time=i)
        for i in range(entries)
    ]
    heads = [
        make_head(a, mesh=genesis.key, seq=c.seq, chunk_hash=c.key, lamport=c.lamport)
        for a in authors
        for c in [log.heads()[a.public_key]]
    ]
    records: list[Record] = [genesis, make_roster(genesis, certs), *certs, *chunks, *heads]
    return Mesh(genesis, authors, log, records)


def pin(store: RecordStore, records: list[Record]) -> None:
    for r in records:
        store.put(r.key, r.raw, mesh=r.mesh, kind=r.kind)


async def publish(swarm: list[Running], mesh: Mesh, pinners: list[int]) -> None:
    """Every node knows the mesh (as members do), so puts carry membership proofs."""
    roster = next(r for r in mesh.records if isinstance(r, Roster))
    for r in swarm:
        r.node.core.membership.add_roster(roster)
    for i, r in enumerate(mesh.records):
        await swarm[i % len(swarm)].node.put(r.raw, r.key)
    for p in pinners:
        pin(swarm[p].node.core.store, mesh.records)


def kill_all_but(swarm: list[Running], keep: set[int]) -> None:
    for i, r in enumerate(swarm):
        if i not in keep:
            r.kill()


def resign(raw: bytes, **changes: object) -> bytes:
    """Re-encode a record with body fields changed and the signature left as it was."""
    obj = decode(raw)
    assert isinstance(obj, dict)
    return encode({"body": {**obj["body"], **changes}, "sig": obj["sig"]})


def bad_sig(raw: bytes) -> bytes:
    obj = decode(raw)
    assert isinstance(obj, dict)
    sig = bytearray(obj["sig"])
    sig[0] ^= 1
    return encode({"body": obj["body"], "sig": bytes(sig)})


# ---- pure ------------------------------------------------------------------------


def test_match_reply_reasks_what_a_full_reply_left_out() -> None:
    mesh = build_mesh(entries=9)
    chunks = [r for r in mesh.records if isinstance(r, Chunk)]
    asked = [c.key for c in chunks]
    absent = asked[1]
    # the holder lacks asked[1] and its reply was full after asked[4]
    m = match_reply(asked, [chunks[i].raw for i in (0, 2, 3, 4)])
    assert [k for k, _ in m.matched] == [asked[0], asked[2], asked[3], asked[4]]
    assert m.rest == tuple(asked[5:])
    assert absent not in m.rest
    # an empty reply means the holder has none of them: nothing to re-ask
    assert match_reply(asked, []).rest == ()


def test_match_reply_rejects_altered_and_garbage() -> None:
    mesh = build_mesh(entries=3)
    c = next(r for r in mesh.records if isinstance(r, Chunk))
    altered = resign(c.raw, payload=b"not what was signed")
    m = match_reply([c.key, b"\x07" * 32], [altered, b"\xff\x00garbage"])
    assert m.matched == ()
    assert sorted(reason for _, reason in m.rejected) == ["HASH_MISMATCH", "MALFORMED"]
    # garbage still proves progress: the first two positions were examined
    assert m.rest == ()


def test_match_reply_finds_mutable_keys() -> None:
    mesh = build_mesh(entries=3)
    a = mesh.authors[0]
    hk = head_key(mesh.id, a.public_key)
    head = next(r for r in mesh.records if r.key == hk)
    m = match_reply([hk], [head.raw])
    assert m.matched == ((hk, head.raw),)


@pytest.mark.parametrize("workers", [0, 2])
def test_checker_verifies_as_batches_arrive_and_drops_forgeries(workers: int) -> None:
    """In this process or in worker processes, batch by batch: the verdicts of one check_batch."""
    mesh = build_mesh(n_authors=3, entries=40, seed=2)
    chunks = [r for r in mesh.records if isinstance(r, Chunk)]
    outsider = Identity.from_seed(b"\x09" * 32)
    stranger = make_chunk(outsider, mesh=mesh.id, seq=1, prev=None, lamport=1, time=0, payload=b"x")
    forged = bad_sig(chunks[3].raw)
    items = [(r.key, r.raw) for r in mesh.records]
    items += [(sha256(forged), forged), (stranger.key, stranger.raw), (b"\x5a" * 32, b"\xff")]
    random.Random(5).shuffle(items)

    def run() -> Verifier:
        ver = Verifier(mesh.id, 16 * 1024)

        async def main() -> None:
            # with workers, leave every batch to them: their pipes and frames are tested
            checker = Checker(ver, workers, NullProgress(), check_here=not workers)
            with trio.fail_after(60):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(checker.run)
                    for i in range(0, len(items), 7):
                        checker.put(items[i : i + 7])
                        await trio.sleep(0)  # batches arrive while earlier ones are checked
                    checker.close()
            assert checker.by_workers == (len(items) if workers else 0)

        trio.run(main)
        return ver

    ver = run()
    accepted = ver.settle()
    ver.finish()
    assert {c.key for c in accepted} == {c.key for c in chunks}
    assert ver.dropped == {"BAD_SIGNATURE": 1, "MALFORMED": 1, "NOT_MEMBER": 1}
    # interned: a chunk's prev is the very key object of the chunk it names
    by_key = {c.key: c for c in accepted}
    for c in accepted:
        if c.prev is not None:
            assert next(k for k in by_key if k == c.prev) is c.prev
    log = MeshLog(mesh.id)
    for c in sorted(accepted, key=lambda c: (c.lamport, sha256(c.author), c.key)):
        log.add(c)
    assert log.root() == mesh.log.root()


def test_a_batch_whose_worker_dies_is_checked_by_this_process() -> None:
    """The worker process is killed after its first batch: no batch is lost."""
    mesh = build_mesh(n_authors=2, entries=30, seed=4)
    items = [(r.key, r.raw) for r in mesh.records]
    ver = Verifier(mesh.id, 16 * 1024)
    answered: list[int] = []
    real_receive = recovery_verify._Worker.receive

    async def answer_then_die(self: recovery_verify._Worker, n_items: int) -> list:
        if answered:
            self.proc.kill()  # a real death: the read sees the pipe close
        answered.append(n_items)
        return await real_receive(self, n_items)

    async def main() -> None:
        with pytest.MonkeyPatch.context() as m, trio.fail_after(60):
            m.setattr(recovery_verify._Worker, "receive", answer_then_die)
            checker = Checker(ver, 1, NullProgress(), check_here=False)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(checker.run)
                for i in range(0, len(items), 5):
                    checker.put(items[i : i + 5])
                checker.close()
            assert 0 < checker.by_workers < len(items)  # the worker did some, then died

    trio.run(main)
    accepted = ver.settle()
    assert {c.key for c in accepted} == {r.key for r in mesh.records if isinstance(r, Chunk)}


def _default_sigint() -> None:
    """In the child: Ctrl-C as on a terminal (a shell's background job inherits it ignored)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_leaves_a_verifying_worker_quiet() -> None:
    """On a terminal Ctrl-C reaches the whole process group: each verifying worker printed
    a KeyboardInterrupt traceback beside the CLI's quiet exit. A worker leaves Ctrl-C to
    its parent and ends with its input."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "chorusdht.verify_worker"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=_default_sigint,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        body = pickle.dumps(([], 1024))
        proc.stdin.write(FRAME.pack(len(body)) + body)
        proc.stdin.flush()
        (n,) = FRAME.unpack(proc.stdout.read(FRAME.size))
        assert pickle.loads(proc.stdout.read(n)) == []  # it is in its loop
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)  # its input ends
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0 and stderr == b""


# ---- tier 3: real UDP on loopback ------------------------------------------------------


@pytest.mark.integration
async def test_recover_from_last_survivor_is_exact(tmp_path: Path) -> None:
    mesh = build_mesh(n_authors=3, entries=60)
    with trio.fail_after(90):
        async with udp_swarm(12, CONFIG, seed=3) as swarm:
            await publish(swarm, mesh, pinners=list(range(8)))
            kill_all_but(swarm, {5})
            async with open_node(config=CONFIG) as client:
                report = await recover(
                    client,
                    mesh.id,
                    bootstrap=[swarm[5].node.address],
                    expect_root=mesh.log.root(),
                )
    assert report.root == mesh.log.root()
    assert report.phase == mesh.log.phase()
    assert report.exact is True and report.complete
    assert exit_code(report) == EXIT_COMPLETE
    assert report.entries == 60 and not report.missing and not report.dropped
    assert report.members == frozenset(a.public_key for a in mesh.authors)
    assert {a.author: (a.first_seq, a.last_seq, a.head_seq, a.gaps) for a in report.authors} == {
        a.public_key: (1, 20, 20, ()) for a in mesh.authors
    }
    survivor = [p for p in report.peers if p.reached and p.node_id is not None]
    assert len(survivor) == 1 and survivor[0].listed == len(mesh.records)

    memory, phase = write_outputs(report, tmp_path / "out")
    lines = [json.loads(line) for line in memory.read_text().splitlines()]
    assert [bytes.fromhex(e["hash"]) for e in lines] == [c.key for c in mesh.log.timeline()]
    assert sha256(b"".join(bytes.fromhex(e["hash"]) for e in lines)) == mesh.log.root()
    assert lines[0]["payload"].startswith("entry 0 ")
    doc = json.loads(phase.read_text())
    assert doc["root"] == mesh.log.root().hex()
    assert doc["phase"] == {a.hex(): s for a, s in mesh.log.phase().items()}


@pytest.mark.integration
async def test_forgeries_are_dropped_and_counted() -> None:
    mesh = build_mesh(n_authors=3, entries=30, seed=1)
    member, outsider, outsider2 = mesh.authors[1], Identity.generate(), Identity.generate()
    chunks = [r for r in mesh.records if isinstance(r, Chunk)]
    last = mesh.log.heads()[member.public_key]
    forged_chunk = bad_sig(chunks[4].raw)
    stranger = make_chunk(outsider, mesh=mesh.id, seq=1, prev=None, lamport=1, time=0, payload=b"x")
    stranger_cert = make_cert(outsider2, mesh.id, outsider.public_key)  # chains to nobody
    high_head = make_head(
        member, mesh=mesh.id, seq=last.seq + 10, chunk_hash=os.urandom(32), lamport=999
    )
    altered = {c.key: resign(c.raw, payload=b"rewritten history") for c in chunks[10:13]}
    with trio.fail_after(90):
        async with udp_swarm(12, CONFIG, seed=4) as swarm:
            await publish(swarm, mesh, pinners=list(range(8)))
            evil = swarm[2].node.core.store
            evil.put(sha256(forged_chunk), forged_chunk, mesh=mesh.id, kind="chunk")
            evil.put(stranger.key, stranger.raw, mesh=mesh.id, kind="chunk")
            evil.put(stranger_cert.key, stranger_cert.raw, mesh=mesh.id, kind="cert")
            evil.put(high_head.key, bad_sig(high_head.raw), mesh=mesh.id, kind="head")
            evil.put(b"\x5a" * 32, b"\xff\xfe not cbor", mesh=mesh.id, kind="chunk")
            for key, raw in altered.items():
                evil.put(key, raw, mesh=mesh.id, kind="chunk")
            kill_all_but(swarm, {2, 6})
            async with open_node(config=CONFIG) as client:
                # Both survivors are named: with k = 4 the forger's buckets may hold only
                # dead contacts, and then no crawl could find the honest one through it.
                report = await recover(
                    client,
                    mesh.id,
                    bootstrap=[swarm[2].node.address, swarm[6].node.address],
                    expect_root=mesh.log.root(),
                )
    assert report.root == mesh.log.root() and report.complete, (
        report.dropped,
        report.missing,
        report.peers,
        report.entries,
    )
    assert report.phase == mesh.log.phase()
    d = report.dropped
    assert d["BAD_SIGNATURE"] == 2  # the forged chunk and the higher head
    assert d["NOT_MEMBER"] == 2  # the stranger's chunk and the cert that chains to nobody
    assert d["MALFORMED"] == 1
    # an altered copy is only seen when the forger was the one asked for that key
    assert d.get("HASH_MISMATCH", 0) <= len(altered)
    head = {a.author: a for a in report.authors}[member.public_key]
    assert head.head_seq == last.seq  # the forged higher head did not win


@pytest.mark.integration
async def test_missing_chunk_makes_a_partial_report() -> None:
    mesh = build_mesh(n_authors=3, entries=30, seed=2)
    victim = next(
        r for r in mesh.records if isinstance(r, Chunk) and r.author == mesh.authors[1].public_key
        and r.seq == 4
    )  # fmt: skip
    with trio.fail_after(90):
        async with udp_swarm(12, CONFIG, seed=5) as swarm:
            await publish(swarm, mesh, pinners=[7])
            swarm[7].node.core.store.delete(victim.key)
            kill_all_but(swarm, {7})
            async with open_node(config=CONFIG) as client:
                report = await recover(client, mesh.id, bootstrap=[swarm[7].node.address])
    assert not report.complete and exit_code(report) == EXIT_PARTIAL
    assert report.broken_by is not None and report.broken_by.hash == victim.key
    assert (report.broken_by.author, report.broken_by.seq) == (victim.author, 4)
    assert [m.hash for m in report.missing] == [victim.key]
    author = {a.author: a for a in report.authors}[victim.author]
    assert author.gaps == ((4, 4),) and author.phase == 3
    assert report.dangling > 0 and report.entries < 30


def test_a_spilled_chunk_reads_back_its_record_and_a_full_disk_keeps_it_in_memory() -> None:
    mesh = build_mesh(n_authors=1, entries=3, seed=6)
    c = next(r for r in mesh.records if isinstance(r, Chunk))
    fields = (c.key, c.raw, c.mesh, c.author, c.seq, c.prev, c.parents, c.lamport, c.time)
    spill = recovery_verify.RawSpill()
    spilled = spill.chunk(*fields, c.payload_size)
    assert isinstance(spilled, recovery_verify.SpilledChunk)
    assert spilled == c and c == spilled and hash(spilled) == hash(c)
    assert spilled.raw == c.raw and spilled.payload == c.payload
    with pytest.MonkeyPatch.context() as m:
        m.setattr(recovery_verify.os, "pwrite", lambda fd, data, at: len(data) // 2)
        kept = spill.chunk(*fields, c.payload_size)
    assert type(kept) is Chunk and kept == c
    assert spilled.raw == c.raw  # the short write did not clobber what was there
