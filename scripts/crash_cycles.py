"""Crash safety (issue 7, part 5): append under load, SIGKILL, check, restart; N times.

    .venv/bin/python scripts/crash_cycles.py --cycles 100

One data dir lives across all cycles. Each cycle:

1. starts `chorusdht join --data-dir D --listen 127.0.0.1:0 --json-logs` (a real
   process, no bootstrap: a one-node mesh) and waits for its `ready` event; the
   first cycle also founds a mesh through the control socket (`mesh_create`);
2. runs a writer thread that appends as fast as the node answers through the
   control socket (`append`, wait="local", the command `chorusdht append` sends),
   recording every hash the node acknowledged. A "local" acknowledgement is sent
   after `Mesh.append` committed the chunk and its head to SQLite (autocommit,
   WAL, synchronous=NORMAL): durable against a process crash;
3. SIGKILLs the node at a random moment (`--min-kill`..`--max-kill` seconds after
   the writer started);
4. before any restart, opens store.sqlite3 with sqlite3 and requires
   `PRAGMA integrity_check` = ok and every acknowledged hash (of this and all
   earlier cycles) present in the records table;
5. at the next start, requires every acknowledged hash in the node's timeline
   (the `log` control command, as `chorusdht log --json` prints it).

Prints a line per cycle and the totals; exit status 0 when every cycle passed.
Only 127.0.0.1 and a temporary (or given) data dir are used; every process it
starts is killed before it returns.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from argcheck import non_negative_float, output_dir, positive_float, positive_int
from cli.client import ControlClient

__all__ = ["CrashReport", "Cycle", "main", "run_cycles"]

CLI = Path(sys.executable).with_name("chorusdht")
READY_TIMEOUT = 30.0  # s for a node to start and open its control socket
STORE_FILE = "store.sqlite3"


@dataclass
class Cycle:
    index: int
    acked: int  # appends acknowledged in this cycle
    killed_after: float  # s after the writer started
    integrity: str
    missing_in_store: int
    missing_in_log: int  # checked at the next start (-1: not checked yet)
    entries: int  # entries in the timeline at the next start

    @property
    def ok(self) -> bool:
        return self.integrity == "ok" and self.missing_in_store == 0 and self.missing_in_log <= 0


@dataclass
class CrashReport:
    cycles: list[Cycle] = field(default_factory=list)
    acked: int = 0
    seconds: float = 0.0

    @property
    def survived(self) -> int:
        return sum(c.ok for c in self.cycles)

    @property
    def ok(self) -> bool:
        return bool(self.cycles) and self.survived == len(self.cycles)


def _start(cli: Path, data_dir: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [str(cli), "join", "--data-dir", str(data_dir), "--listen", "127.0.0.1:0", "--json-logs"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            err = proc.stderr.read() if proc.stderr else ""
            raise RuntimeError(f"the node exited before it was ready: {err.strip()}")
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if event.get("event") == "ready":
            return proc
    proc.kill()
    proc.wait()
    raise RuntimeError("the node did not get ready in time")


def _writer(data_dir: Path, stop: threading.Event, acked: list[str], tag: str) -> None:
    """Append until the node dies (or `stop`); keep every hash the node acknowledged."""
    try:
        client = ControlClient(data_dir, timeout=10.0)
    except Exception:
        return
    i = 0
    try:
        while not stop.is_set():
            reply = client.call("append", text=f"{tag} entry {i}", wait="local")
            acked.append(str(reply["hash"]))  # acknowledged: only now does it count
            i += 1
    except Exception:  # the node was killed mid-request: that append was never acknowledged
        return
    finally:
        with contextlib.suppress(OSError):
            client.close()


def _check_store(path: Path, acked: list[str]) -> tuple[str, int]:
    """(integrity_check result, acknowledged hashes absent), on the store as the kill left it.

    Opened read/write, as the restart will: SQLite rolls the WAL forward on open,
    exactly what the next `chorusdht join` would see.
    """
    db = sqlite3.connect(path)
    try:
        (result,) = db.execute("PRAGMA integrity_check").fetchone()
        keys = {bytes(r[0]).hex() for r in db.execute("SELECT key FROM records")}
    finally:
        db.close()
    return str(result), sum(1 for h in acked if h not in keys)


def run_cycles(
    cycles: int,
    *,
    data_dir: Path | None = None,
    seed: int = 1,
    min_kill: float = 0.2,
    max_kill: float = 1.5,
    deadline: float = 3600.0,
    cli: Path = CLI,
    progress: bool = False,
) -> CrashReport:
    """Run `cycles` crash cycles on `data_dir` (a fresh temporary one by default)."""
    rng = random.Random(seed)
    report = CrashReport()
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="chorus-crash-") as tmp:
        d = data_dir or Path(tmp) / "node"
        init = subprocess.run(
            [str(cli), "init", "--data-dir", str(d)], capture_output=True, text=True, check=False
        )
        if init.returncode != 0 and "already" not in (init.stdout + init.stderr):
            raise RuntimeError(f"chorusdht init failed: {init.stderr.strip()}")
        all_acked: list[str] = []
        proc = _start(cli, d)
        try:
            with _Client(d) as client:
                meshes = client.call("status")["meshes"]
                if not meshes:
                    client.call("mesh_create", name="crash-cycles")
            for i in range(cycles):
                if time.monotonic() - start > deadline:
                    break
                acked: list[str] = []
                stop = threading.Event()
                writer = threading.Thread(
                    target=_writer, args=(d, stop, acked, f"cycle {i}"), daemon=True
                )
                writer.start()
                wait = rng.uniform(min_kill, max_kill)
                time.sleep(wait)
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                stop.set()
                writer.join(timeout=15)
                all_acked.extend(acked)
                integrity, missing = _check_store(d / STORE_FILE, all_acked)
                cycle = Cycle(i, len(acked), round(wait, 3), integrity, missing, -1, 0)
                report.cycles.append(cycle)
                proc = _start(cli, d)
                with _Client(d) as client:
                    rows = client.call("log")["rows"]
                hashes = {r["hash"] for r in rows}
                cycle.missing_in_log = sum(1 for h in all_acked if h not in hashes)
                cycle.entries = len(rows)
                if progress:
                    print(
                        f"cycle {i + 1:>3}: {len(acked):>4} appends acknowledged, SIGKILL after "
                        f"{wait:.2f} s, integrity {integrity}, missing in store {missing}, "
                        f"missing after restart {cycle.missing_in_log}, {len(rows)} entries",
                        flush=True,
                    )
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
    report.acked = len(all_acked)
    report.seconds = time.monotonic() - start
    return report


class _Client(ControlClient):
    """A control client that retries the connect while the socket appears."""

    def __init__(self, data_dir: Path) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            try:
                super().__init__(data_dir, timeout=30.0)
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def __enter__(self) -> _Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cycles", type=positive_int, default=100)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--data-dir", type=Path, default=None, help="kept across cycles (default: temp)")
    p.add_argument(
        "--min-kill", type=non_negative_float, default=0.2, help="earliest SIGKILL, s after start"
    )
    p.add_argument(
        "--max-kill", type=non_negative_float, default=1.5, help="latest SIGKILL, s after start"
    )
    p.add_argument("--max-seconds", type=positive_float, default=3600.0)
    args = p.parse_args(argv)
    if args.min_kill > args.max_kill:
        p.error(f"need --min-kill <= --max-kill, got {args.min_kill:g} > {args.max_kill:g}")
    output_dir(p, "--data-dir", args.data_dir)
    if os.name != "posix":
        print("needs POSIX signals", file=sys.stderr)
        return 2
    try:
        report = run_cycles(
            args.cycles,
            data_dir=args.data_dir,
            seed=args.seed,
            min_kill=args.min_kill,
            max_kill=args.max_kill,
            deadline=args.max_seconds,
            progress=True,
        )
    except RuntimeError as e:  # the node would not init or start: say why, in one line
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(
        f"cycles survived {report.survived}/{len(report.cycles)}, appends acknowledged "
        f"{report.acked:,}; {report.seconds:.0f} s"
    )
    lost = sum(max(c.missing_in_store, c.missing_in_log, 0) for c in report.cycles)
    print(f"acknowledged appends lost: {lost}")
    print("PASS" if report.ok else "FAIL")
    return 0 if report.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
