"""Real multi-host partitions: 8 `chorusdht join` hosts in network namespaces, cut, heal, recover.

Every host is a Linux network namespace with one veth link to a switch namespace
and its own address in a private test range, 10.213.0.0/16 by default: host i is
10.213.i.1, each host in its own /24 as separate machines on separate networks
would be (chorusdht's routing table admits at most 2 contacts per /24 per bucket,
a Sybil defence; `--same-subnet` puts every host in one /24, 10.213.77.i, to
show what that does to a LAN). The
switch namespace holds two bridges, one per group, joined by a veth trunk, so
"cut the bridge in two" is `ip link set trunk down` and healing is setting it up
again. Nothing is created in, or routed from, the root namespace: no host has a
default route, and every link, bridge and namespace lives in a namespace this
script made, so deleting those namespaces removes all of it.

The run (each step bounded in time):

  0. `chorusdht init` per host; one `chorusdht join` per host inside its namespace
     (`ip netns exec`), bootstrapped through host 1; host 1 creates a mesh and
     admits the writers (on both sides of the future split); every host follows
     and pins it; a first round of entries, and every host converges.
  1. The trunk goes down. Writers on both sides keep appending (wait=local: each
     reply is an acknowledgement); the two sides' roots diverge.
  2. The trunk comes up. Every host must reach the same root holding every
     acknowledged entry; the time from the heal is the convergence time.
  3. SIGKILL every host but the last, then run `chorusdht recover --expect-root`
     from a client namespace against the survivor alone: the recovered root must
     match and memory.jsonl must hold every acknowledged entry.

The control socket is a Unix socket in each host's data dir, so the client side
(appends, phase polls) runs from the root namespace. Needs root and `ip`.
Cleanup (processes, then namespaces) runs on success, failure, Ctrl-C, SIGTERM
and the --deadline alarm. Exit status: 0 all good, 1 a check failed, 77 cannot
create network namespaces here (not root, or no permission).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from argcheck import non_negative_float, output_dir, output_file, positive_float, positive_int
from cli.client import call

BIN = Path(sys.executable).parent / "chorusdht"
PORT = 4000
EXIT_NO_NETNS = 77  # the automake "skipped" convention
SW_NS_SUFFIX = "sw"  # the switch namespace: bridges br0/br1 and the trunk tr0-tr1
PROBE = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(1.0)
s.connect((sys.argv[1], 9))
try:
    s.send(b"probe")
    s.recv(16)
except ConnectionRefusedError:
    print("reachable")
except OSError:
    print("unreachable")
"""  # a bounded reachability probe run inside a host namespace
CLIENT_OFFSET = 100  # the recovery client is host .(100 + 1)


class Deadline(Exception):
    """The whole run took longer than --deadline."""


class CheckFailed(Exception):
    """A property the run exists to check did not hold."""


def log(msg: str) -> None:
    """One progress line on stderr, with the time since start."""
    print(f"[{time.monotonic() - T0:6.1f}s] {msg}", file=sys.stderr, flush=True)


T0 = time.monotonic()


def sh(*args: str, timeout: float = 20.0, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run one command (an `ip ...` call); raise with its stderr if it fails and `check`."""
    proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {proc.stderr.strip() or proc.returncode}")
    return proc


def netns_unavailable() -> str | None:
    """Why this process cannot create network namespaces, or None when it can.

    Probes with a real `ip netns add` of a throwaway name (deleted at once).
    """
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is not installed"
    if os.geteuid() != 0:
        return "not root: creating network namespaces needs root (CAP_SYS_ADMIN)"
    probe = f"cdhtprobe{os.getpid()}"
    proc = sh("ip", "netns", "add", probe, check=False)
    if proc.returncode != 0:
        return f"`ip netns add` failed: {proc.stderr.strip()}"
    sh("ip", "netns", "del", probe, check=False)
    return None


def namespaces_with_prefix(prefix: str) -> list[str]:
    """Names of existing namespaces that start with `prefix-` (ours, from this prefix)."""
    out = sh("ip", "netns", "list", check=False).stdout
    names = [line.split()[0] for line in out.splitlines() if line.strip()]
    return [n for n in names if n.startswith(prefix + "-")]


def destroy_namespaces(prefix: str) -> list[str]:
    """SIGKILL every process left in our namespaces, then delete the namespaces.

    Deleting a namespace removes its veth ends and bridges with it. Only names
    starting with `prefix-` are touched: the ones this script (run with that
    prefix) created. Returns the names it deleted.
    """
    names = namespaces_with_prefix(prefix)
    for ns in names:
        for pid in sh("ip", "netns", "pids", ns, check=False).stdout.split():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
    for ns in names:
        for _ in range(20):  # a dying process can hold the name for a moment
            if sh("ip", "netns", "del", ns, check=False).returncode == 0:
                break
            time.sleep(0.1)
    return names


@dataclass
class Topology:
    """The namespaces, links and addresses of one run, all named from `prefix`."""

    prefix: str
    net: str  # the first two octets of the /16 test range, e.g. "10.213"
    hosts: int
    same_subnet: bool = False  # every host in one /24 (10.213.77.i) instead of one /24 each
    created: list[str] = field(default_factory=list)

    @property
    def switch(self) -> str:
        return f"{self.prefix}-{SW_NS_SUFFIX}"

    def ns(self, i: int) -> str:
        """Host i's namespace (i counts from 1)."""
        return f"{self.prefix}-h{i}"

    def ip(self, i: int) -> str:
        return f"{self.net}.77.{i}" if self.same_subnet else f"{self.net}.{i}.1"

    @property
    def cidr(self) -> str:
        return f"{self.net}.77.0/24" if self.same_subnet else f"{self.net}.0.0/16"

    @property
    def client(self) -> int:
        """The recovery client's host number (its own namespace, on group B's bridge)."""
        return CLIENT_OFFSET + 1

    def group_b(self, i: int) -> bool:
        return i > self.hosts // 2

    def _add_ns(self, name: str) -> None:
        sh("ip", "netns", "add", name)
        self.created.append(name)
        sh("ip", "-n", name, "link", "set", "lo", "up")

    def _attach(self, i: int) -> None:
        """Host i's namespace with eth0 (its address) wired to port p<i> on its group's bridge."""
        ns, port = self.ns(i), f"p{i}"
        self._add_ns(ns)
        sh(
            "ip",
            "-n",
            self.switch,
            "link",
            "add",
            port,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            ns,
        )
        bridge = "br1" if self.group_b(i) else "br0"
        sh("ip", "-n", self.switch, "link", "set", port, "master", bridge)
        sh("ip", "-n", self.switch, "link", "set", port, "up")
        sh("ip", "-n", ns, "addr", "add", f"{self.ip(i)}/{self.cidr.split('/')[1]}", "dev", "eth0")
        sh("ip", "-n", ns, "link", "set", "eth0", "up")

    def build(self) -> None:
        """Create the switch (two bridges and the trunk), every host, and the client."""
        self._add_ns(self.switch)
        for br in ("br0", "br1"):
            sh("ip", "-n", self.switch, "link", "add", br, "type", "bridge")
            sh("ip", "-n", self.switch, "link", "set", br, "up")
        sh("ip", "-n", self.switch, "link", "add", "tr0", "type", "veth", "peer", "name", "tr1")
        sh("ip", "-n", self.switch, "link", "set", "tr0", "master", "br0")
        sh("ip", "-n", self.switch, "link", "set", "tr1", "master", "br1")
        self.heal()
        for i in [*range(1, self.hosts + 1), self.client]:
            self._attach(i)

    def cut(self) -> None:
        """Split the network: the trunk between the two bridges goes down."""
        for end in ("tr0", "tr1"):
            sh("ip", "-n", self.switch, "link", "set", end, "down")

    def heal(self) -> None:
        for end in ("tr0", "tr1"):
            sh("ip", "-n", self.switch, "link", "set", end, "up")

    def reachable(self, src: int, dst: int) -> bool:
        """Can host src reach host dst? One UDP datagram to dst's port 9 (nothing listens):
        an ICMP port-unreachable back means yes, silence for 1 s means no (no `ping` needed).
        """
        proc = sh(
            "ip",
            "netns",
            "exec",
            self.ns(src),
            sys.executable,
            "-c",
            PROBE,
            self.ip(dst),
            check=False,
            timeout=10,
        )
        return proc.stdout.strip() == "reachable"


class Host:
    """One `chorusdht join` process in host i's namespace, logging to its data dir."""

    def __init__(self, topo: Topology, i: int, data_dir: Path) -> None:
        self.topo = topo
        self.i = i
        self.data_dir = data_dir
        self.proc: subprocess.Popen[bytes] | None = None
        self.public_key = ""
        self.side = "B" if topo.group_b(i) else "A"

    @property
    def addr(self) -> str:
        return f"{self.topo.ip(self.i)}:{PORT}"

    def init(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [str(BIN), "init", "-d", str(self.data_dir)], stdout=subprocess.PIPE
        )

    def start(self, bootstrap: str | None, sync_interval: float) -> None:
        args = ["ip", "netns", "exec", self.topo.ns(self.i), str(BIN), "join"]
        args += ["-d", str(self.data_dir), "--listen", self.addr]
        args += ["--sync-interval", str(sync_interval), "--bootstrap-timeout", "20"]
        if bootstrap:
            args += ["--bootstrap", bootstrap]
        out = (self.data_dir / "join.log").open("wb")
        self.proc = subprocess.Popen(
            args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )

    def ready(self) -> bool:
        """The node printed `ready`; raises if it exited."""
        text = (self.data_dir / "join.log").read_text(errors="replace")
        if self.proc is not None and self.proc.poll() is not None:
            raise CheckFailed(f"host {self.i} exited: {text.strip().splitlines()[-1:]}")
        return "\nready " in "\n" + text

    def call(self, cmd: str, **args: Any) -> dict[str, Any]:
        return call(self.data_dir, cmd, **args)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


def wait_until(
    what: str,
    check: Callable[[], bool],
    timeout: float,
    step: float = 0.2,
    state: Callable[[], str] | None = None,
) -> float:
    """Poll `check()` until true; return the seconds it took; CheckFailed after `timeout`
    (with `state()` in the message, to say where it got stuck)."""
    t = time.monotonic()
    while not check():
        if time.monotonic() - t > timeout:
            where = f" ({state()})" if state is not None else ""
            raise CheckFailed(f"timed out after {timeout:g}s: {what}{where}")
        time.sleep(step)
    return time.monotonic() - t


def cli(*args: str, timeout: float = 30.0) -> str:
    """Run a `chorusdht` subcommand from the root namespace; its stdout."""
    proc = subprocess.run([str(BIN), *args], capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise CheckFailed(f"chorusdht {args[0]}: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


@dataclass
class Ledger:
    """Every acknowledged append: its hash, by side."""

    hashes: dict[str, str] = field(default_factory=dict)  # hash -> side
    by_side: dict[str, int] = field(default_factory=lambda: {"A": 0, "B": 0})
    during_cut: dict[str, int] = field(default_factory=lambda: {"A": 0, "B": 0})

    def append(self, host: Host, mesh: str, text: str, cut: bool = False) -> None:
        reply = host.call("append", mesh=mesh, text=text)  # wait=local: durable there
        self.hashes[reply["hash"]] = host.side
        self.by_side[host.side] += 1
        if cut:
            self.during_cut[host.side] += 1


def phases(hosts: list[Host], mesh: str) -> list[dict[str, Any]]:
    return [h.call("phase", mesh=mesh) for h in hosts]


def describe(hosts: list[Host], mesh: str) -> str:
    """Each host's entry count and root prefix, for a timeout message."""
    ps = phases(hosts, mesh)
    return ", ".join(
        f"h{h.i}: {p['entries']}@{p['root'][:8]}" for h, p in zip(hosts, ps, strict=True)
    )


def diagnostics(hosts: list[Host], mesh: str | None) -> dict[str, Any]:
    """Each live host's view (entries, root, contacts, sync counters), for a failure report."""
    keys = ("out_list", "in_list", "out_get_many", "timeouts", "evicted", "out_ping")
    out: dict[str, Any] = {}
    for h in hosts:
        if h.proc is None or h.proc.poll() is not None:
            continue
        try:
            st = h.call("status")
            row = {"contacts": st["contacts"]} | {k: st["stats"].get(k, 0) for k in keys}
            if mesh is not None:
                p = h.call("phase", mesh=mesh)
                row |= {"entries": p["entries"], "root": p["root"][:12], "vector": p["vector"]}
            out[f"h{h.i}"] = row
        except Exception as e:  # a diagnostic must not hide the failure it reports
            out[f"h{h.i}"] = f"{type(e).__name__}: {e}"
    return out


def agreed(hosts: list[Host], mesh: str, entries: int) -> bool:
    """Every host in `hosts` holds exactly `entries` entries under one root."""
    ps = phases(hosts, mesh)
    return all(p["entries"] == entries for p in ps) and len({p["root"] for p in ps}) == 1


def run(
    args: argparse.Namespace,
    topo: Topology,
    base: Path,
    hosts: list[Host],
    summary: dict[str, Any],
) -> None:
    """The whole scenario, filling `summary` as it goes (CheckFailed on a failed check)."""
    summary |= {"hosts": args.hosts, "subnet": topo.cidr, "same_subnet": args.same_subnet}
    topo.build()
    log(f"{args.hosts} namespaces on bridges br0|br1 in {topo.switch}, {topo.cidr}")
    for i in range(1, args.hosts + 1):
        hosts.append(Host(topo, i, base / f"h{i}"))
    for h, p in [(h, h.init()) for h in hosts]:
        out, _ = p.communicate(timeout=30)
        h.public_key = out.decode().split("public key:")[1].strip()
    seed = hosts[0]
    seed.start(None, args.sync_interval)
    wait_until("host 1 ready", seed.ready, 30)
    for h in hosts[1:]:
        h.start(seed.addr, args.sync_interval)
    wait_until("all hosts ready", lambda: all(h.ready() for h in hosts), 40)
    log(f"{args.hosts} `chorusdht join` processes up, one per namespace, port {PORT}")

    half = args.hosts // 2
    side_a, side_b = hosts[:half], hosts[half:]
    writers = side_a[: args.writers] + side_b[: args.writers]
    survivor = hosts[-1]
    mesh = json.loads(cli("mesh", "create", "netns-partition", "-d", str(seed.data_dir), "--json"))[
        "id"
    ]
    for w in writers:  # what `chorusdht mesh admit KEY` sends, minus a process start each
        if w is not seed:
            seed.call("mesh_admit", mesh=mesh, member=w.public_key)
    for h in hosts[1:]:  # `chorusdht mesh follow ID` (pin defaults to true)
        h.call("follow", mesh=mesh, pin=True)
    summary["mesh"] = mesh
    summary["writers"] = {
        "A": [w.i for w in writers if w.side == "A"],
        "B": [w.i for w in writers if w.side == "B"],
    }
    log(f"mesh {mesh[:16]}… writers {summary['writers']}; every host follows and pins it")

    ledger = Ledger()
    for w in writers:
        ledger.append(w, mesh, f"host {w.i} before the cut")
    t = wait_until(
        "first convergence",
        lambda: agreed(hosts, mesh, len(ledger.hashes)),
        args.converge_timeout,
        state=lambda: describe(hosts, mesh),
    )
    log(f"{len(ledger.hashes)} entries on every host after {t:.1f}s")

    # 1. the cut
    topo.cut()
    if topo.reachable(1, args.hosts) or not topo.reachable(1, 2):
        raise CheckFailed("the cut did not split the network as intended")
    log(f"trunk down: hosts 1-{half} | {half + 1}-{args.hosts} (cannot reach across, can within)")
    stop = time.monotonic() + args.partition
    n = 0
    while time.monotonic() < stop and n < args.max_entries:
        for w in writers:
            ledger.append(w, mesh, f"host {w.i} during the cut, round {n}", cut=True)
        n += 1
        time.sleep(args.append_pause)
    expected = len(ledger.hashes)
    log(
        f"during the cut: side A wrote {ledger.during_cut['A']}, side B "
        f"{ledger.during_cut['B']} entries ({n} rounds)"
    )
    ps = phases(hosts, mesh)
    roots = {"A": {p["root"] for p in ps[:half]}, "B": {p["root"] for p in ps[half:]}}
    if roots["A"] & roots["B"]:
        raise CheckFailed("the two sides share a root during the cut: not partitioned")
    with contextlib.suppress(CheckFailed):  # a figure, not a requirement
        side_t = wait_until(
            "each side agrees within itself",
            lambda: all(
                agreed(s, mesh, len(ledger.hashes) - ledger.during_cut[other])
                for s, other in ((side_a, "B"), (side_b, "A"))
            ),
            args.converge_timeout / 2,
            state=lambda: describe(hosts, mesh),
        )
        summary["side_convergence_s"] = round(side_t, 2)
        log(f"each side converged internally {side_t:.1f}s after the writes stopped")

    # 2. the heal
    topo.heal()
    t_heal = time.monotonic()
    wait_until("the trunk carries traffic again", lambda: topo.reachable(1, args.hosts), 10)
    wait_until(
        f"every host at one root with {expected} entries",
        lambda: agreed(hosts, mesh, expected),
        args.converge_timeout,
        state=lambda: describe(hosts, mesh),
    )
    conv = time.monotonic() - t_heal
    root = survivor.call("phase", mesh=mesh)["root"]
    cli_phase = json.loads(cli("phase", "--json", "--mesh", mesh, "-d", str(survivor.data_dir)))
    if cli_phase["root"] != root:
        raise CheckFailed("`chorusdht phase --json` disagrees with the control socket")
    summary |= {
        "entries": {"A": ledger.by_side["A"], "B": ledger.by_side["B"]},
        "entries_during_cut": ledger.during_cut,
        "entries_total": expected,
        "convergence_after_heal_s": round(conv, 2),
        "root": root,
    }
    log(
        f"healed: all {args.hosts} hosts at root {root[:16]}… with {expected} entries "
        f"{conv:.1f}s after the heal"
    )

    # 3. kill all but the survivor, recover from it alone
    victims = [h for h in hosts if h is not survivor]
    for h in victims:
        h.kill()
    log(f"SIGKILLed hosts {[h.i for h in victims]}; host {survivor.i} ({survivor.addr}) remains")
    out = base / "recovered"
    cmd = [
        "ip",
        "netns",
        "exec",
        topo.ns(topo.client),
        str(BIN),
        "recover",
        "--mesh",
        mesh,
        "--bootstrap",
        survivor.addr,
        "--out",
        str(out),
        "--expect-root",
        root,
        "--listen",
        f"{topo.ip(topo.client)}:0",
        "--timeout",
        str(args.recover_timeout),
        "--json",
    ]
    t = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.recover_timeout + 15)
    summary["recover_s"] = round(time.monotonic() - t, 2)
    summary["recover_exit"] = proc.returncode
    if not (out / "memory.jsonl").exists():
        raise CheckFailed(f"recover wrote nothing (exit {proc.returncode}): {proc.stderr.strip()}")
    recovered = [json.loads(line) for line in (out / "memory.jsonl").read_text().splitlines()]
    got = {r["hash"] for r in recovered}
    rphase = json.loads((out / "phase.json").read_text())
    lost = set(ledger.hashes) - got
    summary |= {
        "recovered_entries": len(recovered),
        "recovered_root": rphase["root"],
        "root_match": rphase["root"] == root,
        "acknowledged_lost": len(lost),
    }
    log(
        f"recover exit {proc.returncode} in {summary['recover_s']}s: {len(recovered)} entries, "
        f"root match {summary['root_match']}, acknowledged entries lost {len(lost)}"
    )
    if proc.returncode != 0 or lost or not summary["root_match"] or len(recovered) != expected:
        raise CheckFailed("recovery from the last host is not exact")


def print_summary(s: dict[str, Any]) -> None:
    """The human summary on stdout."""
    print("netns partition run")
    print(f"  hosts                 {s.get('hosts')} namespaces in {s.get('subnet')}")
    if "entries" in s:
        e, c = s["entries"], s["entries_during_cut"]
        print(
            f"  entries written       side A {e['A']} ({c['A']} during the cut), "
            f"side B {e['B']} ({c['B']} during the cut), total {s['entries_total']}"
        )
        if "side_convergence_s" in s:
            print(f"  sides converged       {s['side_convergence_s']} s after the writes (cut)")
        print(f"  convergence after heal {s['convergence_after_heal_s']} s, root {s['root'][:16]}…")
    if "recovered_entries" in s:
        print(
            f"  recovered             {s['recovered_entries']} entries from 1 host in "
            f"{s['recover_s']} s (exit {s['recover_exit']}); root match {s['root_match']}; "
            f"acknowledged lost {s['acknowledged_lost']}"
        )
    print(f"  result                {'OK' if s.get('ok') else 'FAILED: ' + s.get('error', '')}")


@contextlib.contextmanager
def signals_to_exceptions(deadline: float) -> Iterator[None]:
    """SIGTERM/SIGHUP become SystemExit and SIGALRM after `deadline` s a Deadline, so
    `finally` cleanup runs."""

    def on_alarm(signum: int, frame: FrameType | None) -> None:
        raise Deadline(f"the run exceeded --deadline {deadline:g}s")

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    old = {s: signal.getsignal(s) for s in (signal.SIGALRM, signal.SIGTERM, signal.SIGHUP)}
    signal.signal(signal.SIGALRM, on_alarm)
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)
    signal.alarm(max(1, int(deadline)))
    try:
        yield
    finally:
        signal.alarm(0)
        for s, h in old.items():
            signal.signal(s, h)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=8, help="hosts, split in half (8)")
    parser.add_argument("--writers", type=int, default=3, help="writers per side (3)")
    parser.add_argument(
        "--partition", type=positive_float, default=15.0, help="seconds of cut writing"
    )
    parser.add_argument(
        "--append-pause", type=non_negative_float, default=0.2, help="s between rounds"
    )
    parser.add_argument(
        "--max-entries", type=positive_int, default=200, help="max rounds during the cut"
    )
    parser.add_argument(
        "--sync-interval", type=positive_float, default=0.5, help="anti-entropy period"
    )
    parser.add_argument("--converge-timeout", type=positive_float, default=60.0)
    parser.add_argument("--recover-timeout", type=positive_float, default=60.0)
    parser.add_argument(
        "--deadline", type=positive_float, default=300.0, help="hard limit, whole run"
    )
    parser.add_argument("--net", default="10.213", help="a private 10.x.0.0/16, first 2 octets")
    parser.add_argument(
        "--same-subnet", action="store_true", help="all hosts in one /24 (a LAN): see the docstring"
    )
    parser.add_argument("--prefix", default=f"cdht{os.getpid()}", help="namespace name prefix")
    parser.add_argument("--json-out", type=Path, help="also write the summary as JSON here")
    parser.add_argument("--keep", type=Path, help="keep the data dirs under this directory")
    args = parser.parse_args(argv)
    if not 4 <= args.hosts <= 64 or not 1 <= args.writers <= args.hosts // 2 - 1:
        parser.error(
            "need 4 <= --hosts <= 64 and 1 <= --writers < hosts/2 (a side keeps a non-writer)"
        )
    octets = args.net.split(".")
    if (
        len(octets) != 2
        or not all(o.isdigit() and int(o) < 256 for o in octets)
        or octets[0] != "10"
    ):
        parser.error("--net is the first two octets of a 10.x.0.0/16 test range")
    output_file(parser, "--json-out", args.json_out)  # before the run, so it is not lost
    output_dir(parser, "--keep", args.keep)
    why = netns_unavailable()
    if why is not None:
        print(f"cannot create network namespaces: {why}", file=sys.stderr)
        return EXIT_NO_NETNS
    if namespaces_with_prefix(args.prefix):
        parser.error(f"namespaces named {args.prefix}-* exist already; pick another --prefix")

    topo = Topology(args.prefix, args.net, args.hosts, args.same_subnet)
    base = Path(tempfile.mkdtemp(prefix="chorusdht-netns-", dir=args.keep))
    hosts: list[Host] = []
    summary: dict[str, Any] = {"ok": False}
    try:
        with signals_to_exceptions(args.deadline):
            try:
                run(args, topo, base, hosts, summary)
                summary["ok"] = True
            except (CheckFailed, Deadline, RuntimeError, subprocess.TimeoutExpired) as e:
                summary["error"] = str(e)
                log(f"FAILED: {e}")
                summary["diagnostics"] = diagnostics(hosts, summary.get("mesh"))
            except Exception as e:  # a control-socket error and the like: report, clean up
                summary["error"] = f"{type(e).__name__}: {e}"
                log(f"FAILED: {summary['error']}")
            finally:
                for h in hosts:
                    with contextlib.suppress(Exception):
                        h.kill()
    finally:
        gone = destroy_namespaces(args.prefix)
        left = namespaces_with_prefix(args.prefix)
        log(
            f"cleanup: deleted {len(gone)} namespaces (with their veths and bridges)"
            + (f"; LEFT OVER: {left}" if left else "")
        )
        if left:
            summary["ok"] = False
            summary["error"] = f"namespaces left over: {left}"
        if args.keep is None:
            shutil.rmtree(base, ignore_errors=True)
    print_summary(summary)
    if args.json_out is not None:
        args.json_out.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
