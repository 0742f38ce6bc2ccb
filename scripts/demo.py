"""The chorusdht demo: 16 real nodes, a 4-member mesh, 15 SIGKILLs, one exact recovery.

Run it with `scripts/demo` (which sets up .venv first). Every node is a real
`chorusdht join` process on 127.0.0.1 with its own data dir; the members write
through their control sockets; recovery is the real `chorusdht recover`. Every
process started here is stopped on the way out, also on Ctrl-C or failure.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from argcheck import output_dir, positive_float, positive_int
from cli.client import call
from rich.console import Console
from rich.table import Table

BIN = Path(sys.executable).parent / "chorusdht"
console = Console()


def free_port() -> int:
    """A UDP port nobody uses right now (bind port 0, read it, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Node:
    """One `chorusdht join` process in its own process group, logging to a file."""

    def __init__(self, index: int, data_dir: Path, port: int) -> None:
        self.index = index
        self.data_dir = data_dir
        self.port = port
        self.proc: subprocess.Popen[bytes] | None = None
        self.public_key = ""

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, bootstrap: str | None, sync_interval: float) -> None:
        args = [str(BIN), "join", "-d", str(self.data_dir), "--listen", self.addr]
        args += ["--sync-interval", str(sync_interval), "--bootstrap-timeout", "20"]
        if bootstrap:
            args += ["--bootstrap", bootstrap]
        log = (self.data_dir / "join.log").open("wb")
        self.proc = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def ready(self) -> bool:
        """The node printed `ready` (its control socket is up); raises if it died."""
        if self.proc is not None and self.proc.poll() is not None:
            log = (self.data_dir / "join.log").read_text(errors="replace").strip()
            raise RuntimeError(f"node {self.index} exited: {log.splitlines()[-1:]}")
        return "\nready " in "\n" + (self.data_dir / "join.log").read_text(errors="replace")

    def call(self, cmd: str, **args: Any) -> dict[str, Any]:
        return call(self.data_dir, cmd, **args)

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def wait_until(what: str, check: Any, timeout: float) -> None:
    """Poll `check()` until true, with a spinner; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    with console.status(what):
        while not check():
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out after {timeout:g}s: {what}")
            time.sleep(0.2)


def run(args: argparse.Namespace, base: Path, nodes: list[Node]) -> int:
    t0 = time.monotonic()
    n, m = args.nodes, args.members
    console.rule(f"[bold]chorusdht demo: {n} nodes, {m} members, then {n - 1} SIGKILLs")
    for i in range(n):
        nodes.append(Node(i, base / f"node{i:02d}", free_port()))
    inits = [
        subprocess.Popen([str(BIN), "init", "-d", str(x.data_dir)], stdout=subprocess.PIPE)
        for x in nodes
    ]
    for x, p in zip(nodes, inits, strict=True):
        out, _ = p.communicate(timeout=30)
        x.public_key = out.decode().split("public key:")[1].strip()
    seed = nodes[0]
    seed.start(None, args.sync_interval)
    wait_until("starting the seed node", seed.ready, 20)
    for x in nodes[1:]:
        x.start(seed.addr, args.sync_interval)
    wait_until(f"starting {n - 1} more nodes", lambda: all(x.ready() for x in nodes), 30)
    console.print(f"[green]✓[/] {n} nodes up on 127.0.0.1 ports {nodes[0].port}…  data in {base}")

    founder, members = nodes[0], nodes[:m]
    survivor = members[-1]  # a member, so it pins the whole mesh
    mesh = founder.call("mesh_create", name="demo-memory")["id"]
    for x in members[1:]:
        founder.call("mesh_admit", mesh=mesh, member=x.public_key)
    for x in members[1:]:
        x.call("follow", mesh=mesh, pin=True)
    console.print(f"[green]✓[/] mesh [bold]{mesh[:16]}…[/] with {m} members (node 0 founded it)")

    for i in range(args.entries):
        for x in members:
            x.call("append", mesh=mesh, text=f"node {x.index} remembers fact #{i + 1}")
    total = args.entries * m
    console.print(f"[green]✓[/] {m} members appended {args.entries} entries each ({total})")

    def converged() -> bool:
        phases = [x.call("phase", mesh=mesh) for x in members]
        backlog = sum(x.call("status")["backlog"]["pending_replication"] for x in members)
        return (
            backlog == 0
            and all(p["entries"] == total for p in phases)
            and (len({p["root"] for p in phases}) == 1)
        )

    wait_until("replicating and syncing between members", converged, args.sync_timeout)
    root = survivor.call("phase", mesh=mesh)["root"]
    table = Table("node", "role", "entries", "root", "records stored")
    for x in nodes:
        st = x.call("status")
        ms = [s for s in st["meshes"] if s["id"] == mesh]
        role = "founder" if x is founder else ("member" if x in members else "DHT node")
        entries = str(ms[0]["entries"]) if ms else "—"
        table.add_row(
            str(x.index),
            role,
            entries,
            ms[0]["root"][:16] if ms else "—",
            str(st["stored_records"]),
        )
    console.print(table)
    console.print(f"[bold]state root[/] {root}")

    victims = [x for x in nodes if x is not survivor]
    for x in victims:
        x.signal(signal.SIGKILL)
    for x in victims:
        assert x.proc is not None
        x.proc.wait(timeout=10)
    console.print(
        f"[red]✗[/] SIGKILLed {len(victims)} nodes (the founder too); only node "
        f"{survivor.index} ({survivor.addr}) is alive"
    )

    out = base / "recovered"
    console.rule("chorusdht recover")
    cmd = [str(BIN), "recover", "--mesh", mesh, "--bootstrap", survivor.addr, "--out", str(out)]
    cmd += ["--expect-root", root, "--listen", "127.0.0.1:0"]
    console.print("$ " + " ".join(c if len(c) < 40 else c[:12] + "…" for c in cmd[1:]))
    rc = subprocess.run(cmd, timeout=120).returncode
    phase = json.loads((out / "phase.json").read_text())
    lines = (out / "memory.jsonl").read_text().count("\n")
    same = phase["root"] == root and lines == total
    console.rule()
    if rc == 0 and same:
        console.print(
            f"[bold green]recovered all {lines} entries from 1 of {n} nodes; the root matches[/]"
        )
    else:
        console.print(f"[bold red]recovery exit {rc}, {lines} entries, root matches: {same}[/]")
    survivor.signal(signal.SIGTERM)
    assert survivor.proc is not None
    stopped = survivor.proc.wait(timeout=15)
    console.print(
        f"survivor stopped cleanly (exit {stopped}); whole run {time.monotonic() - t0:.1f} s"
    )
    return 0 if rc == 0 and same and stopped == 0 else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=16, help="chorusdht join processes (16)")
    parser.add_argument("--members", type=int, default=4, help="mesh members, founder included (4)")
    parser.add_argument("--entries", type=positive_int, default=30, help="entries per member (30)")
    parser.add_argument(
        "--sync-interval", type=positive_float, default=1.0, help="anti-entropy period, s"
    )
    parser.add_argument(
        "--sync-timeout", type=positive_float, default=40.0, help="give up syncing after, s"
    )
    parser.add_argument("--out", type=Path, help="keep the data dirs here (default: a temp dir)")
    args = parser.parse_args()
    if not 2 <= args.members <= args.nodes:
        parser.error("need 2 <= --members <= --nodes")
    output_dir(parser, "--out", args.out)
    base = Path(tempfile.mkdtemp(prefix="chorusdht-demo-", dir=args.out))
    nodes: list[Node] = []
    try:
        return run(args, base, nodes)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]")
        return 130
    except Exception as e:  # a demo failure: say what, then clean up below
        console.print(f"[bold red]demo failed:[/] {e}")
        return 1
    finally:
        for x in nodes:
            x.signal(signal.SIGKILL)
        for x in nodes:
            if x.proc is not None:
                x.proc.wait(timeout=10)
        if args.out is None:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
