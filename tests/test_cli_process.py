"""Tier 3: the real `chorusdht` executable in subprocesses on loopback.

init → join → mesh create → append → log → status → SIGTERM, the exit codes,
and every bad input of issue 6 as one stderr line and a non-zero exit.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

CHORUSDHT = str(Path(sys.executable).parent / "chorusdht")
RUN_TIMEOUT = 30.0  # s for one short command; none should come near it


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CHORUSDHT, *args], capture_output=True, text=True, input=stdin, timeout=RUN_TIMEOUT
    )


def ok(*args: str) -> str:
    res = cli(*args)
    assert res.returncode == 0, (args, res.stdout, res.stderr)
    return res.stdout


def fails(*args: str, code: int = 1) -> str:
    """Run a command that must fail with one clear stderr line; return that line."""
    res = cli(*args)
    assert res.returncode == code, (args, res.returncode, res.stdout, res.stderr)
    assert "Traceback" not in res.stderr
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    return lines[0]


class NodeProc:
    """A `chorusdht join` process whose stdout we read line by line."""

    def __init__(self, data_dir: Path, port: int, *extra: str) -> None:
        self.data_dir = data_dir
        self.port = port
        self.proc = subprocess.Popen(
            [CHORUSDHT, "join", "-d", str(data_dir), "--listen", f"127.0.0.1:{port}", *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        self.lines: list[str] = []
        self._partial = b""  # the start of a line not yet complete

    def wait_for(self, word: str, timeout: float = 15.0) -> str:
        # Raw reads of the pipe, split here: `select` on the file object would miss lines
        # that its readline() had already buffered (several lines arriving in one read,
        # as under load), and wait for the deadline with them in hand.
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.lines:
                if line.startswith(word):
                    return line
            ready, _, _ = select.select([fd], [], [], 0.2)
            if ready:
                data = os.read(fd, 65536)
                if not data:
                    err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                    raise AssertionError(f"node exited before {word!r}: {self.lines} {err}")
                *done, self._partial = (self._partial + data).split(b"\n")
                self.lines += [line.decode().strip() for line in done]
        raise AssertionError(f"no {word!r} within {timeout}s: {self.lines}")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
        return self.proc.wait(timeout=15)


@pytest.fixture
def nodes() -> Iterator[list[NodeProc]]:
    started: list[NodeProc] = []
    yield started
    for n in started:
        if n.proc.poll() is None:
            os.killpg(n.proc.pid, signal.SIGKILL)
            n.proc.wait(timeout=10)


def test_lifecycle_and_bad_input(tmp_path: Path, nodes: list[NodeProc]) -> None:
    n1, n2, n3 = (str(tmp_path / n) for n in ("n1", "n2", "n3"))
    for d in (n1, n2, n3):
        ok("init", "-d", d)
    p1 = free_port()
    a = NodeProc(Path(n1), p1, "--sync-interval", "1")
    nodes.append(a)
    a.wait_for("ready")
    b = NodeProc(Path(n2), free_port(), "--bootstrap", f"127.0.0.1:{p1}", "--sync-interval", "1")
    nodes.append(b)
    assert b.wait_for("joined").startswith("joined contacts=")
    b.wait_for("ready")

    # a running node: its data dir is locked, its port is taken
    assert "is locked by another running node" in fails("join", "-d", n1, "--listen", "127.0.0.1:0")
    assert "already in use" in fails("join", "-d", n3, "--listen", f"127.0.0.1:{p1}")
    # an unknown mesh, at join and on a running node
    unknown = "ab" * 32
    line = fails(
        "join",
        "-d",
        n3,
        "--listen",
        "127.0.0.1:0",
        "--bootstrap",
        f"127.0.0.1:{p1}",
        "--mesh",
        unknown,
    )
    assert f"unknown mesh {unknown}" in line
    assert "unknown mesh ffff" in fails("append", "hi", "-d", n1, "--mesh", "ffff")

    mesh = ok("mesh", "create", "team", "-d", n1).splitlines()[-1]
    assert len(mesh) == 64
    first = ok("append", "first entry", "-d", n1)
    assert first.startswith("appended seq 1 ")
    assert "replicas: " in ok("append", "second entry", "-d", n1, "--wait", "replicated")
    res = cli("append", "-d", n1, stdin="from stdin")
    assert res.returncode == 0 and "seq 3" in res.stdout

    # a follower that is not a member cannot append
    ok("mesh", "follow", mesh, "-d", n2)
    assert "NOT_MEMBER" in fails("append", "intruder", "-d", n2)
    # a payload over the size limit
    big = tmp_path / "big.bin"
    big.write_bytes(b"x" * 40_000)
    assert "TOO_LARGE" in fails("append", "--file", str(big), "-d", n1)
    # import: a good file, then one that breaks half-way (the count is told)
    good = tmp_path / "good.jsonl"
    good.write_text('{"payload": "imported 1"}\n{"payload": "imported 2"}\n')
    assert "imported 2 entries" in ok("import", str(good), "-d", n1)
    half = tmp_path / "half.jsonl"
    half.write_text('{"payload": "fine"}\n' + json.dumps({"payload": "y" * 30_000}) + "\n")
    line = fails("import", str(half), "-d", n1)
    assert "line 2" in line and "1 of 2 entries were imported" in line
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"payload": "ok"}\nnot json\n')
    assert "line 2: not JSON" in fails("import", str(bad), "-d", n1)

    rows = [json.loads(r) for r in ok("log", "--json", "-d", n1).splitlines()]
    assert [r["payload"] for r in rows] == [
        "first entry",
        "second entry",
        "from stdin",
        "imported 1",
        "imported 2",
        "fine",
    ]
    assert "first entry" in ok("log", "-d", n1)
    assert "first entry" in ok("get", rows[0]["hash"], "-d", n1)
    phase = json.loads(ok("phase", "--json", "-d", n1))
    assert phase["entries"] == 6 and len(phase["root"]) == 64
    status = json.loads(ok("status", "--json", "-d", n1))
    assert status["contacts"] >= 1 and status["stored_records"] >= 6
    assert status["pinned"] == [mesh] and "stale_contacts" in status["backlog"]

    # the follower syncs the same memory (anti-entropy or the DHT path)
    deadline = time.monotonic() + 20
    while json.loads(ok("phase", "--json", "-d", n2))["root"] != phase["root"]:
        assert time.monotonic() < deadline, "the follower never caught up"
        time.sleep(0.5)

    # recover from the running nodes: 0 when complete and exact, 3 when the root differs
    out = str(tmp_path / "rec")
    seed = f"127.0.0.1:{p1}"
    ok("recover", "--mesh", mesh, "--bootstrap", seed, "--out", out, "--expect-root", phase["root"])
    assert (Path(out) / "memory.jsonl").read_text().count("\n") == 6
    res = cli(
        "recover", "--mesh", mesh, "--bootstrap", seed, "--out", out, "--expect-root", "00" * 32
    )
    assert res.returncode == 3, res.stderr

    # SIGTERM stops both cleanly; then nothing answers on the socket
    assert b.stop() == 0 and a.stop() == 0
    assert not (Path(n1) / "control.sock").exists()
    assert "no node running in" in fails("status", "-d", n1)


def test_unreachable_bootstrap_fails_in_bounded_time(tmp_path: Path) -> None:
    ok("init", "-d", str(tmp_path / "n"))
    t0 = time.monotonic()
    line = fails(
        "join",
        "-d",
        str(tmp_path / "n"),
        "--listen",
        "127.0.0.1:0",
        "--bootstrap",
        f"127.0.0.1:{free_port()}",
        "--bootstrap-timeout",
        "2",
    )
    assert "no bootstrap node answered" in line
    assert time.monotonic() - t0 < 10


def test_key_and_address_errors(tmp_path: Path) -> None:
    d = str(tmp_path / "n")
    assert "no key in" in fails("join", "-d", d)
    ok("init", "-d", d)
    assert "bad address" in fails("join", "-d", d, "--listen", "127.0.0.1:http", code=2)
    (tmp_path / "n" / "node.key").write_text("chorusdht-ed25519-v1\nzz\n")
    assert "corrupt key file" in fails("join", "-d", d, "--listen", "127.0.0.1:0")
    assert "corrupt key file" in fails("init", "-d", d)
    assert cli("--version").stdout.startswith("chorusdht ")


def test_demo_core_path() -> None:
    """scripts/demo.py, scaled down: nodes up, a mesh, appends, SIGKILLs, exact recovery."""
    demo = Path(__file__).resolve().parent.parent / "scripts" / "demo.py"
    res = subprocess.run(
        [sys.executable, str(demo), "--nodes", "3", "--members", "2", "--entries", "3"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert "the root matches" in res.stdout
