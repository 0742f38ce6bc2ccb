"""Real multi-host partitions: scripts/netns_cluster.py on 8 network namespaces.

Each host is a network namespace on a veth bridge with its own address in a
private test range; one `chorusdht join` per host. The run cuts the network in
two while writers append on both sides, heals it and requires one root on every
host, then SIGKILLs 7 of the 8 hosts and requires `chorusdht recover` from the
last one to return every acknowledged entry under the same root.

It needs root (network namespaces); it skips, with the reason, only when it
cannot create one. The script cleans up after itself; this test also deletes any
namespace left with its prefix (a timed-out run), and checks none remains.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "netns_cluster.py"
DEADLINE = 80.0  # s: the script's own hard limit (it cleans up when it fires)
EXIT_NO_NETNS = 77  # the script's "cannot create network namespaces" status


def _netns_unavailable() -> str | None:
    """Why namespaces cannot be made here, or None: a real `ip netns add` probe."""
    if sys.platform != "linux":
        return "network namespaces are Linux only"
    if os.geteuid() != 0:
        return "not root: creating network namespaces needs root (CAP_SYS_ADMIN)"
    try:
        proc = subprocess.run(
            ["ip", "netns", "add", f"cdhtprobe{os.getpid()}"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except FileNotFoundError:
        return "the `ip` command (iproute2) is not installed"
    if proc.returncode != 0:
        return f"`ip netns add` failed: {proc.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", f"cdhtprobe{os.getpid()}"], timeout=10, check=False)
    return None


def _ours(prefix: str) -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10)
    names = [line.split()[0] for line in out.stdout.splitlines() if line.strip()]
    return [n for n in names if n.startswith(prefix + "-")]


def _sweep(prefix: str) -> None:
    """Kill what runs in, then delete, every namespace named `prefix-*` (ours only)."""
    for ns in _ours(prefix):
        pids = subprocess.run(
            ["ip", "netns", "pids", ns], capture_output=True, text=True, timeout=10
        ).stdout
        for pid in pids.split():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10, check=False)


def test_partition_heal_and_recover_on_8_namespaces(tmp_path: Path) -> None:
    why = _netns_unavailable()
    if why is not None:
        pytest.skip(f"cannot create network namespaces: {why}")
    prefix = f"cdhtt{os.getpid()}"
    summary_file = tmp_path / "summary.json"
    cmd = [sys.executable, str(SCRIPT), "--hosts", "8", "--writers", "3"]
    cmd += ["--partition", "5", "--sync-interval", "0.5", "--converge-timeout", "25"]
    cmd += ["--recover-timeout", "20", "--deadline", str(DEADLINE)]
    cmd += ["--net", "10.214", "--prefix", prefix, "--json-out", str(summary_file)]
    proc = subprocess.Popen(
        cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        output, _ = proc.communicate(timeout=DEADLINE + 10)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)  # the script cleans up on SIGTERM
        try:
            output, _ = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            output, _ = proc.communicate()
        pytest.fail(f"netns_cluster.py overran its deadline:\n{output[-3000:]}")
    finally:
        _sweep(prefix)
    assert _ours(prefix) == [], "namespaces left behind"
    if proc.returncode == EXIT_NO_NETNS:  # the probe above passed, so this is a failure
        pytest.fail(f"the script could not create namespaces:\n{output[-2000:]}")
    assert summary_file.exists(), output[-3000:]
    s = json.loads(summary_file.read_text())
    assert proc.returncode == 0 and s["ok"], f"{s.get('error')}\n{output[-3000:]}"
    assert s["entries_during_cut"]["A"] > 0 and s["entries_during_cut"]["B"] > 0
    assert s["entries"]["A"] + s["entries"]["B"] == s["entries_total"]
    assert s["root_match"] and s["recover_exit"] == 0
    assert s["recovered_entries"] == s["entries_total"]
    assert s["acknowledged_lost"] == 0
