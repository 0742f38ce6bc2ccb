#!/usr/bin/env python3
"""The shared anchor workload (../shared/bench/anchors/README.md) run on chorusdht.

N chorusdht nodes in one trio process, each on its own UDP socket on 127.0.0.1,
each bootstrapping through node 0. Values are put as signed chunks (the writer
node's key signs; every replica verifies the signature before it stores), and a
get succeeds only if the verified chunk's payload equals the value put.

    scripts/bench_overlay.py --nodes 64 --ops 500 --kill-fraction 0.5   # one JSON line
    scripts/bench_overlay.py --anchors                                  # the matrix, all 3 systems

With --anchors it runs the shared `run_anchors.sh` with SYSTEMS="kademlia opendht
chorusdht" (installing the reference peers into .venv-anchors first), so every
system is measured in the same run on the same machine, and prints the median
table and the ratios.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# The shared anchors dir (workload.py, run_anchors.sh): $ANCHORS_DIR, else ../shared/bench/anchors
# beside the checkout (/work/shared/bench/anchors for /work/main).
ANCHORS = Path(os.environ.get("ANCHORS_DIR", ROOT.parent / "shared" / "bench" / "anchors"))
sys.path.insert(0, str(ANCHORS))

import trio  # noqa: E402

try:
    import workload as W  # type: ignore[import-not-found]
except ModuleNotFoundError as e:  # --help still works; a run says where the workload was looked for
    if e.name != "workload":
        raise
    W = None
from argcheck import output_dir  # noqa: E402

from chorusdht import (  # noqa: E402
    ChorusError,
    Identity,
    MemoryStore,
    Node,
    NodeConfig,
    SqliteStore,
    make_chunk,
    open_node,
    sha256,
)

MESH = sha256(b"anchor-bench-mesh")  # chunks need a mesh id; the overlay does not check it


class Swarm:
    def __init__(self) -> None:
        self.nodes: list[Node] = []
        self.scopes: list[trio.CancelScope] = []
        self.identities: list[Identity] = []

    async def run_one(
        self, ident: Identity, config: NodeConfig, seed: int, store_dir: Path | None,
        *, task_status: Any,
    ) -> None:
        store = SqliteStore(store_dir / "store.sqlite3") if store_dir else MemoryStore()
        with trio.CancelScope() as scope:
            async with open_node(identity=ident, store=store, config=config,
                                 rng=random.Random(seed)) as node:
                task_status.started((node, scope))
                await trio.sleep_forever()

    def requests(self) -> int:
        return sum(n.core.stats["requests_out"] for n in self.nodes)


async def run_phase(
    ops: list[Any], fn: Any, concurrency: int, timeout: float
) -> W.PhaseResult:
    res = W.PhaseResult(len(ops))
    limiter = trio.CapacityLimiter(concurrency)

    async def one(idx: int, op: Any) -> None:
        async with limiter:
            t0 = W.now()
            with trio.move_on_after(timeout) as scope:
                try:
                    res.ok[idx] = bool(await fn(op))
                except ChorusError:
                    res.ok[idx] = False
            res.lat[idx] = W.now() - t0
            if scope.cancelled_caught:
                res.timed_out += 1

    t0 = W.now()
    if concurrency == 1:
        for i, op in enumerate(ops):
            await one(i, op)
    else:
        async with trio.open_nursery() as nursery:
            for i, op in enumerate(ops):
                nursery.start_soon(one, i, op)
    res.wall = W.now() - t0
    return res


async def main_async(args: Any) -> dict[str, Any]:
    wl = W.Workload(args.nodes, args.ops, args.value_size, args.seed,
                    args.kill_fraction, args.kill_gets)
    config = NodeConfig(k=args.k, alpha=args.alpha)
    out: dict[str, Any] = {
        "system": "chorusdht", "nodes": args.nodes, "ops": args.ops,
        "value_size": args.value_size, "seed": args.seed, "ksize": args.k, "alpha": args.alpha,
        "concurrency": args.concurrency, "kill_fraction": args.kill_fraction,
        "store": "sqlite" if args.sqlite else "memory",
    }
    rss_base = W.rss_mb()
    swarm = Swarm()
    tmp = args.sqlite
    async with trio.open_nursery() as nursery:
        t0 = W.now()
        for i in range(args.nodes):
            ident = Identity.from_seed(sha256(f"anchor-node-{args.seed}-{i}".encode()))
            node, scope = await nursery.start(
                swarm.run_one, ident, config, args.seed * 100003 + i,
                tmp / f"n{i}" if tmp else None,
            )
            swarm.nodes.append(node)
            swarm.scopes.append(scope)
            swarm.identities.append(ident)
            if i > 0:
                with trio.move_on_after(args.op_timeout_s):
                    await node.bootstrap([swarm.nodes[0].address])
        if args.settle_s > 0:
            await trio.sleep(args.settle_s)
        out["join_s"] = round(W.now() - t0, 3)
        tables = [len(n.core.table) for n in swarm.nodes]
        out["routing_table_min"] = min(tables)
        out["routing_table_mean"] = round(sum(tables) / len(tables), 1)

        chunk_keys: dict[tuple[str, int], bytes] = {}

        def putter(phase: str) -> Any:
            ph = wl.phases[phase]

            async def put(i: int) -> bool:
                w = ph["writers"][i]
                chunk = make_chunk(swarm.identities[w], mesh=MESH, seq=1, prev=None,
                                   lamport=1, time=0, payload=ph["vals"][i])
                chunk_keys[(phase, i)] = chunk.key
                res = await swarm.nodes[w].put(chunk.raw, chunk.key)
                return res.acks >= 1
            return put

        def getter(phase: str) -> Any:
            ph = wl.phases[phase]

            async def get(op: tuple[int, int]) -> bool:
                i, reader = op
                got = await swarm.nodes[reader].get(chunk_keys[(phase, i)])
                return getattr(got.record, "payload", None) == ph["vals"][i]
            return get

        r0 = swarm.requests()
        seq_put = await run_phase(list(range(args.ops)), putter("seq"), 1, args.op_timeout_s)
        r1 = swarm.requests()
        seq_get = await run_phase(wl.phases["seq"]["gets"], getter("seq"), 1, args.op_timeout_s)
        r2 = swarm.requests()
        conc_put = await run_phase(list(range(args.ops)), putter("conc"), args.concurrency,
                                   args.op_timeout_s)
        conc_get = await run_phase(wl.phases["conc"]["gets"], getter("conc"), args.concurrency,
                                   args.op_timeout_s)
        rss_end = W.rss_mb()
        sp, sg = seq_put.summary("put"), seq_get.summary("get")
        cp, cg = conc_put.summary("put"), conc_get.summary("get")
        out.update({
            "put_ops_per_s": sp["put_ops_per_s"], "get_ops_per_s": sg["get_ops_per_s"],
            "put_p50_ms": sp["put_p50_ms"], "put_p99_ms": sp["put_p99_ms"],
            "get_p50_ms": sg["get_p50_ms"], "get_p99_ms": sg["get_p99_ms"],
            "put_success_rate": sp["put_success_rate"],
            "get_success_rate": sg["get_success_rate"],
            "put_ops_per_s_concurrent": cp["put_ops_per_s"],
            "get_ops_per_s_concurrent": cg["get_ops_per_s"],
            "put_p50_ms_concurrent": cp["put_p50_ms"], "put_p99_ms_concurrent": cp["put_p99_ms"],
            "get_p50_ms_concurrent": cg["get_p50_ms"], "get_p99_ms_concurrent": cg["get_p99_ms"],
            "put_success_rate_concurrent": cp["put_success_rate"],
            "get_success_rate_concurrent": cg["get_success_rate"],
            "timeouts": seq_put.timed_out + seq_get.timed_out + conc_put.timed_out
            + conc_get.timed_out,
            "rpcs_per_put": round((r1 - r0) / args.ops, 2),
            "rpcs_per_get": round((r2 - r1) / args.ops, 2),
            "rss_mb_per_node": round(rss_end / args.nodes, 3),
            "rss_mb": round(rss_end, 1),
            "rss_baseline_mb": round(rss_base, 1),
            "rss_mb_per_node_net": round((rss_end - rss_base) / args.nodes, 3),
        })

        if wl.killed:
            for n in wl.killed:
                swarm.scopes[n].cancel()  # the socket closes; peers are told nothing
            await trio.sleep(args.kill_settle_s)
            kres = await run_phase(wl.kill_gets, getter("seq"), args.concurrency,
                                   args.op_timeout_s)
            ks = kres.summary("get")
            out.update({
                "killed_nodes": len(wl.killed), "kill_settle_s": args.kill_settle_s,
                "kill_gets": len(wl.kill_gets),
                "get_success_after_kill": ks["get_success_rate"],
                "get_p50_ms_after_kill": ks["get_p50_ms"],
                "get_p99_ms_after_kill": ks["get_p99_ms"],
                "get_ops_per_s_after_kill": ks["get_ops_per_s"],
                "get_timeouts_after_kill": kres.timed_out,
            })
        nursery.cancel_scope.cancel()
    return out


def run_anchors() -> int:
    """Install the reference peers (once) and run all three systems in one matrix."""
    if not (ANCHORS / "run_anchors.sh").is_file():
        print(f"error: no run_anchors.sh in {ANCHORS}: {MISSING_HINT}", file=sys.stderr)
        return 2
    venv = ROOT / ".venv-anchors"
    py = venv / "bin" / "python"
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    probe = subprocess.run([str(py), "-c", "import kademlia, opendht, trio, chorusdht"],
                           capture_output=True)
    if probe.returncode != 0:
        print("installing kademlia==2.2.3 opendht==4.4.2 and chorusdht into .venv-anchors",
              file=sys.stderr)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "kademlia==2.2.3",
                        "opendht==4.4.2", "-e", str(ROOT)], check=True)
    env = dict(os.environ)
    env.setdefault("SYSTEMS", "kademlia opendht chorusdht")
    env.setdefault("OUT", str(ROOT / "out" / "anchors"))
    env["EXTRA"] = str(HERE)
    env["PY"] = str(py)
    return subprocess.call(["bash", str(ANCHORS / "run_anchors.sh")], env=env)


MISSING_HINT = "set ANCHORS_DIR to the shared anchors dir (/work/shared/bench/anchors)"


def check_args(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Usage errors for what the shared workload's parser lets through (types only)."""
    bounds = [
        ("--nodes", args.nodes, args.nodes >= 2, ">= 2"),
        ("--ops", args.ops, args.ops >= 1, ">= 1"),
        ("--value-size", args.value_size, args.value_size >= 0, ">= 0"),
        ("--concurrency", args.concurrency, args.concurrency >= 1, ">= 1"),
        ("--settle-s", args.settle_s, args.settle_s >= 0, ">= 0"),
        ("--op-timeout-s", args.op_timeout_s, args.op_timeout_s > 0, "> 0"),
        ("--kill-fraction", args.kill_fraction, 0 <= args.kill_fraction <= 1, "in [0, 1]"),
        ("--kill-settle-s", args.kill_settle_s, args.kill_settle_s >= 0, ">= 0"),
        ("--kill-gets", args.kill_gets, args.kill_gets is None or args.kill_gets >= 0, ">= 0"),
        ("--deadline-s", args.deadline_s, args.deadline_s > 0, "> 0"),
    ]
    for option, value, ok, need in bounds:
        if not ok:
            p.error(f"argument {option}: must be {need}, got {value}")
    for option, field in (("--k", "k"), ("--alpha", "alpha")):
        try:
            NodeConfig(**{field: getattr(args, field)})  # the library's own bounds
        except ChorusError as e:  # ConfigError
            p.error(f"argument {option}: {e}")
    output_dir(p, "--sqlite", args.sqlite)


def main() -> None:
    if W is not None:
        p = W.make_parser("chorusdht", settle_default=0.0)
    else:
        p = argparse.ArgumentParser(
            description="chorusdht loopback DHT benchmark",
            epilog=f"The workload options (--nodes, --ops, ...) come from workload.py in "
            f"ANCHORS_DIR; it is not in {ANCHORS}.",
        )
    p.add_argument("--anchors", action="store_true",
                   help="run the shared matrix (kademlia, opendht, chorusdht) with run_anchors.sh "
                        "instead, installing the reference peers into .venv-anchors once")
    p.add_argument("--k", type=int, default=20, help="replication factor (default 20)")
    p.add_argument("--alpha", type=int, default=3, help="lookup parallelism (default 3)")
    p.add_argument("--sqlite", metavar="DIR", type=Path, default=None,
                   help="keep each node's records in SQLite under DIR (default: in memory)")
    args, rest = p.parse_known_args()
    if args.anchors:
        sys.exit(run_anchors())
    if W is None:
        p.error(f"no workload.py in {ANCHORS}: {MISSING_HINT}")
    if rest:
        p.error(f"unrecognized arguments: {' '.join(rest)}")
    check_args(p, args)
    W.arm_deadline(args.deadline_s)
    W.emit(trio.run(main_async, args))


if __name__ == "__main__":
    main()
