"""The CLI audit's defects, one test each: a clear single `error:` line, the right
exit status (2 for a usage error), nothing half done, and terminals spared raw bytes.

The usage errors run in-process (CliRunner); the rest drive real `chorusdht`
processes on loopback, most of them against one founder node shared by the module.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from .test_cli_process import CHORUSDHT, NodeProc, free_port, ok

pytestmark = pytest.mark.timeout(90)

runner = CliRunner()
MESH = "ab" * 32
RECOVER = ["recover", "--mesh", MESH, "--bootstrap", "127.0.0.1:1"]
TERMINAL_ENV = os.environ | {"TERM": "xterm", "COLUMNS": "200"}


# ---- A: `log --follow` says so when its node stops ---------------------------------------


def test_log_follow_says_the_node_went_away(tmp_path: Path) -> None:
    d = tmp_path / "n"
    ok("init", "-d", str(d))
    node = NodeProc(d, free_port())
    follow = None
    try:
        node.wait_for("ready")
        ok("mesh", "create", "m", "-d", str(d))
        ok("append", "hello", "-d", str(d))
        follow = subprocess.Popen(
            [CHORUSDHT, "log", "--follow", "-d", str(d)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert follow.stdout is not None and "hello" in follow.stdout.readline()
        assert node.stop() == 0
        _, stderr = follow.communicate(timeout=30)
        assert follow.returncode == 1
        lines = [line for line in stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), stderr
        assert "connection" in lines[0]
    finally:
        if follow is not None and follow.poll() is None:
            follow.kill()
            follow.wait()
        if node.proc.poll() is None:
            os.killpg(node.proc.pid, signal.SIGKILL)
            node.proc.wait(timeout=10)
