"""Benchmark survivor recovery: N entries from 10 survivor processes on loopback.

    .venv/bin/python scripts/bench_recover.py                  # 100,000 entries (slow to prepare)
    .venv/bin/python scripts/bench_recover.py --entries 20000

Steps: a child process signs the mesh (so its memory does not count) into one
SQLite template store; each survivor process gets a copy of it (a pinner holds
the full mesh) and serves it; this process then recovers the mesh through a
fresh ephemeral node and prints entries/s, peak RSS against the size of the
recovered records, and the time spent crawling, fetching, verifying and merging.
Target (issue 5): at least 5,000 entries/s, peak memory at most 3x the data.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import json
import os
import random
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path

import trio
from argcheck import non_negative_int, output_file, positive_int

from chorusdht import ChorusError, NodeConfig, open_node
from chorusdht.identity import Identity
from chorusdht.memlog import MeshLog
from chorusdht.records import Record, make_cert, make_genesis, make_head, make_roster
from chorusdht.recovery import Stage, recover
from chorusdht.store import SqliteStore

PAYLOAD_BYTES = 300  # the "about 300 bytes" per entry
AUTHORS = 5  # entries go round-robin over them; each needs one for its head
SURVIVORS = 10
TEMPLATE = "template.sqlite3"


def prepare(out: Path, entries: int, seed: int) -> None:
    """Sign the mesh, write every record to a template store and the expected root."""
    rng = random.Random(seed)
    authors = [Identity.from_seed(rng.randbytes(32)) for _ in range(AUTHORS)]
    genesis = make_genesis(authors[0], "bench")
    certs = [make_cert(authors[0], genesis.key, a.public_key) for a in authors[1:]]
    log = MeshLog(genesis.key)
    alphabet = "abcdefghijklmnopqrstuvwxyz "
    for i in range(entries):
        text = "".join(rng.choices(alphabet, k=PAYLOAD_BYTES))
        log.append(authors[i % AUTHORS], text.encode(), time=i)
    heads = [
        make_head(a, mesh=genesis.key, seq=c.seq, chunk_hash=c.key, lamport=c.lamport)
        for a in authors
        for c in [log.heads()[a.public_key]]
    ]
    records: list[Record] = [genesis, make_roster(genesis, certs), *certs, *log.chunks(), *heads]
    path = out / TEMPLATE
    SqliteStore(path).close()  # creates the schema; rows go in below in one transaction
    db = sqlite3.connect(path)
    with db:
        db.executemany(
            "INSERT OR REPLACE INTO records (key, mesh, kind, raw) VALUES (?, ?, ?, ?)",
            [(r.key, r.mesh, r.kind, r.raw) for r in records],
        )
    db.close()
    doc = {
        "mesh": genesis.key.hex(),
        "root": log.root().hex(),
        "phase": {a.hex(): s for a, s in log.phase().items()},
        "entries": entries,
        "bytes": sum(len(r.raw) for r in records),
    }
    (out / "expected.json").write_text(json.dumps(doc))


async def serve(data_dir: Path, bootstrap: str | None, addr_file: Path, handoff: bool) -> None:
    async with open_node(data_dir=data_dir, config=NodeConfig(handoff=handoff)) as node:
        if bootstrap:
            host, port = bootstrap.rsplit(":", 1)
            for attempt in range(10):  # the seed may be busy loading or handing off keys
                try:
                    await node.bootstrap([(host, int(port))])
                    break
                except ChorusError:
                    await trio.sleep(0.5 * (attempt + 1))
        host, port = node.address
        addr_file.write_text(f"{host}:{port}")
        await trio.sleep_forever()


def _wait_file(path: Path, timeout: float) -> str:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if path.exists() and path.read_text():
            return path.read_text()
        time.sleep(0.05)
    raise SystemExit(f"survivor did not start: {path}")


def _spawn(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, __file__, *args])


def _stat(pid: int | str) -> list[str]:
    """/proc/PID/stat's fields after the command name: [0] is field 3 (state)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _stat_cpu(stat: list[str]) -> float:
    """User + system CPU seconds from `_stat` (fields 14 and 15)."""
    return (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pids: list[int]) -> float:
    """User + system CPU the processes `pids` have used so far (Linux /proc)."""
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):
            total += _stat_cpu(_stat(pid))
    return total


class WorkerRss:
    """Samples the resident set and CPU of this process's verifying worker processes.

    The peak printed for "this process" does not count them, so a run with
    `--workers` reports the sum of the workers' peaks next to it.
    """

    def __init__(self) -> None:
        self.peaks: dict[int, int] = {}
        self.cpu: dict[int, float] = {}  # CPU seconds each worker had used when last seen
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> WorkerRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        me = str(os.getpid())
        while not self._stop.wait(0.1):
            for pid in os.listdir("/proc"):
                if not pid.isdigit():
                    continue
                try:
                    stat = _stat(pid)
                    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                    if stat[1] != me or b"chorusdht.verify_worker" not in cmdline:
                        continue
                    rss = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
                except (OSError, IndexError, ValueError):
                    continue
                rss *= os.sysconf("SC_PAGE_SIZE")
                self.peaks[int(pid)] = max(self.peaks.get(int(pid), 0), rss)
                self.cpu[int(pid)] = _stat_cpu(stat)

    @property
    def total(self) -> int:
        return sum(self.peaks.values())


def _rss_now() -> int:
    """This process's resident set now, in bytes (ru_maxrss only gives the peak)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class RssTrace:
    """Progress that prints the resident set as each recovery stage starts and ends."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()

    def _say(self, what: str, stage: Stage) -> None:
        dt = time.perf_counter() - self.t0
        print(f"  {dt:6.2f} s  {what:6} {stage.value:7} RSS {_rss_now() / 2**20:6.1f} MiB")

    def start(self, stage: Stage, total: int | None) -> None:
        self._say("start", stage)

    def advance(self, stage: Stage, amount: int = 1, *, total: int | None = None) -> None:
        pass

    def finish(self, stage: Stage) -> None:
        self._say("finish", stage)


def _settle(pids: list[int], quiet: float = 0.2, limit: float = 180.0) -> float:
    """Wait until the survivors together use under `quiet` CPU-seconds a second.

    Survivors started together hand keys off to each other (LIST, then STORE what
    is lacking) for a while; recovering meanwhile measures that, not recovery.
    """
    t = time.perf_counter()
    time.sleep(5.0)  # hand-off passes start HANDOFF_DELAY (~2 s) after a join
    last = _cpu_seconds(pids)
    while time.perf_counter() - t < limit:
        time.sleep(1.0)
        now = _cpu_seconds(pids)
        if now - last < quiet:
            break
        last = now
    return time.perf_counter() - t


async def run_recovery(
    seed: str,
    expected: dict[str, object],
    workers: int | None,
    trace: bool,
    top: int,
    survivors: list[int],
) -> bool:
    """Recover the mesh through a fresh node and print the figures; True if it was exact."""
    host, port = seed.rsplit(":", 1)
    mesh = bytes.fromhex(str(expected["mesh"]))
    async with open_node(config=NodeConfig(read_only=True)) as node:
        idle = _rss_now()
        t = time.perf_counter()
        cpu0, served0 = time.process_time(), _cpu_seconds(survivors)
        with WorkerRss() as workers_rss:
            report = await recover(
                node,
                mesh,
                bootstrap=[(host, int(port))],
                expect_root=bytes.fromhex(str(expected["root"])),
                workers=workers,
                progress=RssTrace() if trace else None,
            )
        wall = time.perf_counter() - t
        cpu, served = time.process_time() - cpu0, _cpu_seconds(survivors) - served0
        if top:
            snap = tracemalloc.take_snapshot()
            print(f"largest live allocations after recovery (tracemalloc, top {top}):")
            for stat in snap.statistics("lineno")[:top]:
                print(f"  {stat.size / 2**20:7.1f} MiB {stat.count:9,} blocks  {stat.traceback}")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    data = int(str(expected["bytes"]))
    tm = report.timings
    print(f"entries recovered : {report.entries:,} ({'exact' if report.exact else 'NOT exact'})")
    print(f"nodes reached     : {report.nodes_reached} of {report.nodes_found} found")
    print(f"wall time         : {wall:.2f} s  ->  {report.entries / wall:,.0f} entries/s")
    print(
        f"stages            : crawl {tm.crawl:.2f} s, fetch {tm.fetch:.2f} s, "
        f"verify {tm.verify:.2f} s, merge {tm.merge:.2f} s, walk/report {tm.walk:.2f} s"
    )
    print(
        f"peak RSS          : {rss / 2**20:,.0f} MiB for {data / 2**20:,.1f} MiB of records "
        f"({rss / data:.1f}x)"
    )
    if workers_rss.peaks:
        both = rss + workers_rss.total
        print(
            f"verifying workers : {len(workers_rss.peaks)}, peak RSS "
            f"{workers_rss.total / 2**20:,.0f} MiB together; "
            f"with this process {both / 2**20:,.0f} MiB ({both / data:.1f}x)"
        )
    worker_cpu = sum(workers_rss.cpu.values())
    print(
        f"CPU during it     : this process {cpu:.1f} s, workers {worker_cpu:.1f} s, the "
        f"{len(survivors)} survivors {served:.1f} s (of {wall * (os.cpu_count() or 1):.1f} core-s)"
    )
    print(f"idle RSS          : {idle / 2**20:,.0f} MiB (this process, node open, before recovery)")
    print(f"dropped           : {report.dropped or 'none'}")
    return report.exact


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument(
        "--entries", type=int, default=100_000, help=f"at least {AUTHORS}, one per author"
    )
    ap.add_argument("--survivors", type=positive_int, default=SURVIVORS)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument(
        "--workers",
        type=non_negative_int,
        default=None,
        help="verifying processes (default: none below 4 CPUs, else CPUs - 1)",
    )
    ap.add_argument("--no-handoff", action="store_true", help="survivors skip DESIGN §6 hand-off")
    ap.add_argument("--trace-rss", action="store_true", help="print RSS at each stage boundary")
    ap.add_argument("--profile", type=Path, help="write a cProfile of the recovery to this file")
    ap.add_argument(
        "--tracemalloc",
        type=non_negative_int,
        default=0,
        metavar="N",
        help="print the N largest live sites",
    )
    ap.add_argument("--prepare", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--bootstrap", help=argparse.SUPPRESS)
    ap.add_argument("--addr-file", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.entries < AUTHORS:
        ap.error(f"argument --entries: must be >= {AUTHORS} (one per author), got {args.entries}")
    output_file(ap, "--profile", args.profile)
    if args.prepare:
        prepare(args.prepare, args.entries, args.seed)
        return 0
    if args.serve:
        trio.run(serve, args.serve, args.bootstrap, args.addr_file, not args.no_handoff)
        return 0

    with tempfile.TemporaryDirectory(prefix="bench-recover-") as tmp_:
        tmp = Path(tmp_)
        t = time.perf_counter()
        prepare_args = ["--prepare", str(tmp), "--entries", str(args.entries)]
        prepare_args += ["--seed", str(args.seed)]
        subprocess.run([sys.executable, __file__, *prepare_args], check=True)
        expected = json.loads((tmp / "expected.json").read_text())
        print(f"prepared {args.entries:,} entries in {time.perf_counter() - t:.1f} s")
        procs: list[subprocess.Popen[bytes]] = []
        try:
            seed_addr = None
            extra = ["--no-handoff"] if args.no_handoff else []
            for i in range(args.survivors):
                d = tmp / f"s{i}"
                d.mkdir()
                shutil.copy(tmp / TEMPLATE, d / "store.sqlite3")
                af = tmp / f"s{i}.addr"
                boot = ["--bootstrap", seed_addr] if seed_addr else []
                procs.append(_spawn("--serve", str(d), "--addr-file", str(af), *boot, *extra))
                addr = _wait_file(af, 60)
                seed_addr = seed_addr or addr
            assert seed_addr is not None
            settled = _settle([p.pid for p in procs])
            print(f"survivors settled : {settled:.0f} s after start (hand-off among them done)")
            run = (
                run_recovery,
                seed_addr,
                expected,
                args.workers,
                args.trace_rss,
                args.tracemalloc,
                [p.pid for p in procs],
            )
            if args.tracemalloc:
                tracemalloc.start()
            if args.profile:
                with cProfile.Profile() as prof:
                    exact = trio.run(*run)
                prof.dump_stats(args.profile)
            else:
                exact = trio.run(*run)
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait()
        os.sync()
    return 0 if exact else 1  # a recovery that is not exact is a failed check


if __name__ == "__main__":
    sys.exit(main())
