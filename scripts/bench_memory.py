"""Benchmark the memory mesh on real UDP nodes on loopback.

    .venv/bin/python scripts/bench_memory.py                    # everything (a few minutes)
    .venv/bin/python scripts/bench_memory.py --skip-sync --mode procs --runs 5
    .venv/bin/python scripts/bench_memory.py --entries 2000 --appends 200

Prints (issue 4, Benchmark):

- the Ed25519 floor: verifications per second on one core, and full chunk
  validations (CBOR, hash, signature, membership) per second;
- replicated appends, k = 20 on 21 nodes, two ways (`--mode`):
  - `procs` (the deployment): every node is its own `chorusdht join` process on
    127.0.0.1, and the writer agent appends through the writer node's control
    socket (`append --wait replicated`), with 1 (sequential) or N connections in
    flight, as an agent with N threads would. Each figure is the median of
    `--runs` runs; the CPU seconds per append of the writer node, of the 20
    replicas together and of the agent show where the time goes;
  - `inproc`: all 21 nodes in this one trio process (the old figure: every
    replica's signature check shares one core);
  - with `wait="local"` too: the call alone, then until the background
    replication drains;
- the time for a new pinning member to sync a mesh of `--entries` entries held by
  20 member nodes (anti-entropy: LIST with a phase vector, then GET_MANY), as
  entries/s and as a multiple of the verify-only floor;
- bytes on the wire per entry (sum of every node's `stats["bytes_out"]`).

Targets: ≥ 200 replicated appends/s; a new member syncs 10,000 entries at
≥ 3,000 entries/s, within 5x of the verify-only floor (~15,000/s per core).
"""

from __future__ import annotations

import argparse
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio
from argcheck import positive_int, positive_int_list
from cli.client import ControlClient, call

from chorusdht import Identity, Node, NodeConfig, open_node
from chorusdht.memlog import MeshLog
from chorusdht.mesh import Mesh
from chorusdht.records import Chunk, validate

PAYLOAD_BYTES = 300  # an entry of "about 300 bytes" of text, as the recovery benchmark uses
AUTHORS = 4  # authors of the synced mesh; more authors only widen the phase vector
NODES = 21  # k = 20 replicas need 20 nodes besides the writer
MEMBERS = 20  # member nodes that hold the full mesh for the sync figure
BIN = Path(sys.executable).parent / "chorusdht"
TICK = os.sysconf("SC_CLK_TCK")  # /proc/PID/stat counts CPU time in these


def verify_floor(seconds: float = 1.0) -> tuple[float, float]:
    """(Ed25519 verifications/s, full chunk validations/s) on one core."""
    me = Identity.from_seed(bytes(32))
    log = MeshLog(b"\x07" * 32)
    chunk = log.append(me, b"x" * PAYLOAD_BYTES, time=0)
    sig = me.sign(b"y" * PAYLOAD_BYTES)
    pub = me.private_key.public_key()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for _ in range(200):
            pub.verify(sig, b"y" * PAYLOAD_BYTES)
        n += 200
    verify_rate = n / (time.perf_counter() - t0)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for _ in range(200):
            validate(chunk.key, chunk.raw, is_member=lambda mesh, key: True)
        n += 200
    return verify_rate, n / (time.perf_counter() - t0)


def split(total: int, parts: int) -> list[int]:
    """`total` appends over `parts` appenders, as evenly as they go."""
    return [total // parts + (i < total % parts) for i in range(parts)]


def summary(rates: list[float]) -> str:
    med, lo, hi = statistics.median(rates), min(rates), max(rates)
    return f"{med:,.0f}/s, median of {len(rates)} runs (min {lo:,.0f}, max {hi:,.0f})"


# ---- all nodes in this process ------------------------------------------------


@asynccontextmanager
async def swarm(n: int, config: NodeConfig, seed: int) -> AsyncIterator[list[Node]]:
    """`n` UDP nodes on 127.0.0.1 with seeded identities, all bootstrapped through the first."""
    rng = random.Random(seed)

    async def serve(identity: Identity, *, task_status: trio.TaskStatus[Node]) -> None:
        async with open_node(
            listen=("127.0.0.1", 0),
            identity=identity,
            config=config,
            rng=random.Random(rng.random()),
        ) as node:
            task_status.started(node)
            await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        nodes: list[Node] = []
        for _ in range(n):
            nodes.append(await nursery.start(serve, Identity.from_seed(rng.randbytes(32))))
        for node in nodes[1:]:
            await node.bootstrap([nodes[0].address])
        try:
            yield nodes
        finally:
            nursery.cancel_scope.cancel()


def bytes_out(nodes: Sequence[Node]) -> int:
    return sum(n.core.stats["bytes_out"] for n in nodes)


async def bench_appends(appends: int, concurrency: Sequence[int], runs: int, seed: int) -> None:
    """Local and replicated append rates with k = 20 on NODES nodes in this one process."""
    config = NodeConfig(k=20, require_membership=True)
    async with swarm(NODES, config, seed) as nodes:
        mesh = await Mesh.create(nodes[0], "bench-appends")
        payload = b"m" * PAYLOAD_BYTES

        before = bytes_out(nodes)
        t0 = time.perf_counter()
        for _ in range(appends):
            await mesh.append(payload, wait="local")
        t_call = time.perf_counter() - t0
        while mesh.pending_replication:
            await trio.sleep(0.01)
        t_drain = time.perf_counter() - t0
        local_bytes = (bytes_out(nodes) - before) / appends
        print(f"[in-process] append wait=local: {appends / t_call:,.0f}/s (the call alone)")
        print(f"  replicated in the background (k=20): {appends / t_drain:,.0f}/s")

        before, total = bytes_out(nodes), 0
        acks: list[int] = []

        async def appender(count: int) -> None:
            for _ in range(count):
                acks.append((await mesh.append(payload, wait="replicated")).replicas)

        for c in concurrency:
            rates = []
            for _ in range(runs):
                t0 = time.perf_counter()
                async with trio.open_nursery() as nursery:
                    for count in split(appends, c):
                        nursery.start_soon(appender, count)
                rates.append(appends / (time.perf_counter() - t0))
                total += appends
                while mesh.pending_replication:  # runs do not inherit each other's heads
                    await trio.sleep(0.01)
            print(f"[in-process] append wait=replicated, {c} in flight: {summary(rates)}")
        print(f"  replicas acked: min {min(acks)}, mean {sum(acks) / len(acks):.1f}")
        rep_bytes = (bytes_out(nodes) - before) / total
        print(
            f"  bytes on the wire per entry (chunk + head, k=20): local {local_bytes:,.0f}, "
            f"replicated {rep_bytes:,.0f}"
        )


# ---- every node its own process ---------------------------------------------


class Proc:
    """One `chorusdht join` process with its own data dir, logging to a file."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.addr = ""  # HOST:PORT, once the node logged `listening`
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, bootstrap: str | None) -> None:
        # Port 0: the node picks a free port and logs it (no race between picking and binding).
        args = [str(BIN), "join", "-d", str(self.data_dir), "--listen", "127.0.0.1:0"]
        args += ["--k", "20"]
        args += ["--bootstrap", bootstrap] if bootstrap else []
        log = (self.data_dir / "join.log").open("wb")
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)

    def ready(self) -> bool:
        """The node printed `ready` (its control socket is up); raises if it died."""
        text = (self.data_dir / "join.log").read_text(errors="replace")
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"{self.data_dir.name} exited: {text.strip().splitlines()[-1:]}")
        if not self.addr and (m := re.search(r"^listening addr=(\S+)", text, re.M)):
            self.addr = m[1]
        return "\nready " in "\n" + text

    def call(self, cmd: str, **args: Any) -> dict[str, Any]:
        return call(self.data_dir, cmd, **args)

    def cpu(self) -> float:
        """CPU seconds (user + system) the process used so far."""
        assert self.proc is not None
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def wait_until(what: str, check: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout:g} s: {what}")
        time.sleep(0.05)


def open_client(data_dir: Path) -> ControlClient:
    """A control connection; retried while the node's accept backlog (16) is full."""
    for _ in range(100):
        try:
            return ControlClient(data_dir)
        except BlockingIOError:
            time.sleep(0.01)
    return ControlClient(data_dir)


def agent_appends(writer: Proc, mesh: str, total: int, threads: int, wait: str) -> float:
    """`total` appends through `threads` control connections at once; seconds taken."""
    text = "m" * PAYLOAD_BYTES
    errors: list[BaseException] = []
    clients = [open_client(writer.data_dir) for _ in range(threads)]

    def worker(client: ControlClient, count: int) -> None:
        try:
            for _ in range(count):
                reply = client.call("append", mesh=mesh, text=text, wait=wait)
                if wait == "replicated" and reply["replicas"] < reply["quorum"]:
                    raise RuntimeError(f"append acked by {reply['replicas']} replicas")
        except BaseException as e:  # re-raised below, from the main thread
            errors.append(e)

    workers = [
        threading.Thread(target=worker, args=(c, n))
        for c, n in zip(clients, split(total, threads), strict=True)
    ]
    t0 = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - t0
    for c in clients:
        c.close()
    if errors:
        raise errors[0]
    return elapsed


def bench_processes(appends: int, concurrency: Sequence[int], runs: int) -> None:
    """Replicated appends with k = 20: NODES `chorusdht join` processes, the writer agent here."""
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        nodes = [Proc(Path(tmp) / f"n{i:02d}") for i in range(NODES)]
        inits = [
            subprocess.Popen([str(BIN), "init", "-d", str(x.data_dir)], stdout=subprocess.PIPE)
            for x in nodes
        ]
        for p in inits:
            p.communicate(timeout=60)
        try:
            writer, replicas = nodes[0], nodes[1:]
            writer.start(None)
            wait_until("the writer node starts", writer.ready, 30)
            for x in replicas:
                x.start(writer.addr)
            wait_until("20 replica nodes start", lambda: all(x.ready() for x in replicas), 90)
            wait_until(
                "the writer knows every node",
                lambda: writer.call("status")["contacts"] >= NODES - 1,
                30,
            )
            mesh = writer.call("mesh_create", name="bench-appends")["id"]
            # The writer is among the k = 20 closest to any key, so 19 replicas get each record.
            wait_until(
                "19 replicas hold the genesis and 19 the roster",
                lambda: sum(x.call("status")["stored_records"] for x in replicas) >= 38,
                30,
            )

            def drained() -> bool:
                return writer.call("status")["backlog"]["pending_replication"] == 0

            def wire() -> int:
                return sum(x.call("status")["stats"]["bytes_out"] for x in nodes)

            agent_appends(writer, mesh, 50, 1, "replicated")  # warm-up: RTT estimates, caches
            wait_until("the warm-up drains", drained, 60)
            print(
                f"[{NODES} processes] k=20, writer = one `chorusdht join` node, agent appends "
                f"through its control socket; {appends} appends per run"
            )

            t_call = agent_appends(writer, mesh, appends, 1, "local")
            t0 = time.perf_counter()
            wait_until("wait=local appends drain", drained, 300)
            t_drain = t_call + time.perf_counter() - t0
            print(f"[processes] append wait=local: {appends / t_call:,.0f}/s (the call alone)")
            print(f"  replicated in the background (k=20): {appends / t_drain:,.0f}/s")

            before_bytes, total = wire(), 0
            procs = [writer, *replicas]
            for c in concurrency:
                rates: list[float] = []
                cpu = [0.0, 0.0, 0.0]  # writer node, 20 replicas, this agent process
                for _ in range(runs):
                    cpu0 = [x.cpu() for x in procs]
                    agent0 = time.process_time()
                    t = agent_appends(writer, mesh, appends, c, "replicated")
                    rates.append(appends / t)
                    wait_until("replication drains between runs", drained, 120)
                    time.sleep(0.2)  # the STOREs past the quorum finish too: all their CPU counts
                    used = [b - a for a, b in zip(cpu0, (x.cpu() for x in procs), strict=True)]
                    cpu[0] += used[0]
                    cpu[1] += sum(used[1:])
                    cpu[2] += time.process_time() - agent0
                    total += appends
                print(f"[processes] append wait=replicated, {c} in flight: {summary(rates)}")
                n, cores = appends * runs, os.cpu_count() or 1
                print(
                    f"  CPU per append: writer node {1e3 * cpu[0] / n:.2f} ms, "
                    f"20 replicas {1e3 * cpu[1] / n:.2f} ms, agent {1e3 * cpu[2] / n:.2f} ms; "
                    f"CPU-bound ceiling on {cores} cores: {cores * n / sum(cpu):,.0f}/s"
                )
            print(
                f"  bytes on the wire per replicated entry (chunk + head, k=20): "
                f"{(wire() - before_bytes) / total:,.0f}"
            )
        finally:
            for x in nodes:
                x.stop()


# ---- a new member syncs -------------------------------------------------------


def sign_mesh(authors: Sequence[Identity], mesh: bytes, n: int) -> list[Chunk]:
    """`n` entries round-robin over `authors`, each naming the others' heads (a real DAG)."""
    log = MeshLog(mesh)
    rng = random.Random(1)
    alphabet = "abcdefghijklmnopqrstuvwxyz "
    for i in range(n):
        text = "".join(rng.choices(alphabet, k=PAYLOAD_BYTES))
        log.append(authors[i % len(authors)], text.encode(), time=i)
    return log.timeline()


async def bench_sync(entries: int, seed: int, floor: float) -> bool:
    """A new pinning member syncs `entries` entries held by MEMBERS member nodes; True if
    its root matches."""
    config = NodeConfig(k=20, require_membership=True)
    async with swarm(MEMBERS + 1, config, seed + 1) as nodes:
        holders, newcomer = nodes[:MEMBERS], nodes[MEMBERS]
        founder = await Mesh.create(holders[0], "bench-sync")
        for node in nodes[1:]:
            await founder.admit(node.core.identity.public_key)
        meshes = [founder] + [await Mesh.join(n, founder.id) for n in holders[1:]]
        t0 = time.perf_counter()
        authors = [n.core.identity for n in holders[:AUTHORS]]
        assert all(isinstance(a, Identity) for a in authors)
        chunks = sign_mesh(authors, founder.id, entries)  # type: ignore[arg-type]
        t_sign = time.perf_counter() - t0
        now = trio.current_time()
        for node in holders:  # every holder pins the full mesh (as a member that synced)
            for c in chunks:
                node.core.keep_local(c, now)
        root = founder.phase().root
        assert all(m.phase().root == root for m in meshes)
        print(
            f"prepared {entries:,} entries on {MEMBERS} member nodes "
            f"(signing {entries / t_sign:,.0f}/s)"
        )

        before = bytes_out(nodes)
        t0 = time.perf_counter()
        mesh = await Mesh.join(newcomer, founder.id)
        t_join = time.perf_counter() - t0
        rounds = 0
        while mesh.phase().entries < entries and rounds < 50:
            await mesh.sync()
            rounds += 1
        elapsed = time.perf_counter() - t0
        got = mesh.phase()
        sent = bytes_out(nodes) - before
        ok = got.root == root and got.entries == entries
        rate = entries / elapsed
        print(
            f"new member sync: {got.entries:,}/{entries:,} entries in {elapsed:.2f} s "
            f"({rate:,.0f} entries/s; join {t_join:.2f} s, {rounds} anti-entropy rounds), "
            f"root {'matches' if ok else 'DIFFERS'}"
        )
        print(
            f"  {floor / rate:.1f}x the verify-only floor ({floor:,.0f}/s); "
            f"target >= 3,000 entries/s and <= 5x"
        )
        print(
            f"  bytes on the wire per synced entry: {sent / entries:,.0f} "
            f"(all nodes, both directions counted once as bytes_out)"
        )
        print(
            f"  rejected: {mesh.rejected}; peers holding the mesh: {len(await mesh.peers())}; "
            f"chunk size ~{sum(len(c.raw) for c in chunks[:100]) / min(100, entries):,.0f} B"
        )
        return ok


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Benchmark the memory mesh on loopback UDP.")
    p.add_argument(
        "--entries", type=positive_int, default=10_000, help="entries in the synced mesh"
    )
    p.add_argument("--appends", type=positive_int, default=300, help="appends per run")
    p.add_argument(
        "--runs", type=positive_int, default=5, help="runs per figure (the median is printed)"
    )
    p.add_argument(
        "--concurrency",
        type=positive_int_list,
        default="1,8,32",
        help="replicated appends in flight, comma-separated",
    )
    p.add_argument(
        "--mode",
        choices=["procs", "inproc", "both"],
        default="both",
        help="replicas as separate processes, in this process, or both",
    )
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--skip-appends", action="store_true")
    p.add_argument("--skip-sync", action="store_true")
    a = p.parse_args(argv)
    verify_rate, validate_rate = verify_floor()
    print(
        f"Ed25519 verify floor: {verify_rate:,.0f}/s per core "
        f"({1e6 / verify_rate:.0f} µs); full chunk validate: {validate_rate:,.0f}/s"
    )
    if not a.skip_appends and a.mode in ("procs", "both"):
        bench_processes(a.appends, a.concurrency, a.runs)
    if not a.skip_appends and a.mode in ("inproc", "both"):
        trio.run(bench_appends, a.appends, a.concurrency, a.runs, a.seed)
    if not a.skip_sync and not trio.run(bench_sync, a.entries, a.seed, verify_rate):
        return 1  # the new member's root differs: a failed check
    return 0


if __name__ == "__main__":
    sys.exit(main())
