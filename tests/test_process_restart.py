"""Tier 3: a real `chorusdht join` process, SIGKILL, restart from the same data dir."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from chorusdht import Identity, NodeConfig, make_chunk, open_node
from chorusdht.records import make_genesis

pytestmark = pytest.mark.integration

CHORUSDHT = str(Path(sys.executable).parent / "chorusdht")


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def start_node(data_dir: Path, port: int) -> trio.Process:
    proc = await trio.lowlevel.open_process(
        [CHORUSDHT, "join", "--data-dir", str(data_dir), "--listen", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    seen = b""
    while b"listening" not in seen:  # the node prints its address once bound
        chunk = await proc.stdout.receive_some()
        assert chunk, f"node exited early: {seen!r}"
        seen += chunk
    return proc


async def test_acknowledged_store_survives_sigkill(tmp_path: Path) -> None:
    subprocess.run([CHORUSDHT, "init", "--data-dir", str(tmp_path / "node")], check=True)
    port = free_udp_port()
    # `chorusdht join` refuses chunks of meshes it cannot judge, so write a real one:
    # a genesis by the author, then a chunk whose STORE carries the membership proof.
    author = Identity.from_seed(b"\x07" * 32)
    genesis = make_genesis(author, "restart-test")
    chunk = make_chunk(
        author,
        mesh=genesis.key,
        seq=1,
        prev=None,
        lamport=1,
        time=0,
        payload=b"kept across SIGKILL",
    )
    key, raw = chunk.key, chunk.raw
    config = NodeConfig(k=4, write_quorum=1)
    with trio.fail_after(60):
        proc = await start_node(tmp_path / "node", port)
        try:
            async with open_node(config=config) as writer:
                await writer.bootstrap([("127.0.0.1", port)])
                await writer.put(genesis.raw, genesis.key)
                result = await writer.put(raw, key)
                assert result.acks >= 1 and len(result.replicas) == 1
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            await proc.wait()
        assert proc.returncode == -signal.SIGKILL

        proc = await start_node(tmp_path / "node", port)
        try:
            async with open_node(config=config) as reader:  # a fresh node: no local copy
                await reader.bootstrap([("127.0.0.1", port)])
                got = await reader.get(key)
                # The reader started empty, so the restarted node served the record:
                # by FIND_VALUE, or by handing it off as soon as the reader joined.
                assert got.record.raw == raw
        finally:
            proc.terminate()
            await proc.wait()
        assert proc.returncode == 0, "SIGTERM must stop the node cleanly"
