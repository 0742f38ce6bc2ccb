"""Bad arguments to scripts/*.py: exit 2 with one `error:` line, before any run starts.

Each case runs the script as a subprocess with arguments that argparse (or the
checks in scripts/argcheck.py right after it) must reject; nothing here starts a
node, a benchmark or a namespace.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "scripts"
BAD = "/proc/nonexistent/x"  # a path no one can create

CASES = [
    ("bench_netsim.py", ["--nodes", "0", "--only", "lookup"], "--nodes"),
    ("bench_netsim.py", ["--nodes", "-5"], "--nodes"),
    ("bench_memory.py", ["--skip-appends", "--entries", "-3"], "--entries"),
    ("bench_memory.py", ["--appends", "0"], "--appends"),
    ("bench_memory.py", ["--runs", "0"], "--runs"),
    ("bench_memory.py", ["--concurrency", "a,b"], "--concurrency"),
    ("bench_memory.py", ["--concurrency", "0"], "--concurrency"),
    ("fuzz_node.py", ["--count", "0"], "--count"),
    ("fuzz_node.py", ["--max-seconds", "0"], "--max-seconds"),
    ("fuzz_node.py", ["--check-every", "0"], "--check-every"),
    ("fuzz_node.py", ["--rss-every", "0"], "--rss-every"),
    ("demo.py", ["--nodes", "4", "--members", "2", "--entries", "-2"], "--entries"),
    ("demo.py", ["--out", BAD], "--out"),
    ("crash_cycles.py", ["--cycles", "0"], "--cycles"),
    ("crash_cycles.py", ["--max-seconds", "0"], "--max-seconds"),
    ("crash_cycles.py", ["--data-dir", BAD], "--data-dir"),
    ("crash_cycles.py", ["--min-kill", "-1", "--max-kill", "-0.5"], "--min-kill"),
    ("crash_cycles.py", ["--min-kill", "2", "--max-kill", "1"], "--min-kill"),
    ("bench_recover.py", ["--entries", "4"], "--entries"),
    ("bench_recover.py", ["--survivors", "0"], "--survivors"),
    # valid otherwise and tiny, so even a regression would end in seconds
    ("bench_recover.py", ["--entries", "5", "--survivors", "1", "--profile", BAD], "--profile"),
    ("netns_cluster.py", ["--partition", "0"], "--partition"),
    ("placement_variance.py", ["--placements", "0"], "--placements"),
    ("placement_variance.py", ["--kills", "-1"], "--kills"),
]


def run(script: str, args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPTS / script), *args],
        capture_output=True,
        text=True,
        timeout=45,
        env={**os.environ, **env},
    )


def assert_usage_error(res: subprocess.CompletedProcess[str], option: str) -> None:
    assert res.returncode == 2, res.stdout[-2000:] + res.stderr[-2000:]
    assert "Traceback" not in res.stderr, res.stderr
    errors = [line for line in res.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and option in errors[0], res.stderr
    assert res.stdout == ""


@pytest.mark.parametrize(("script", "args", "option"), CASES)
def test_bad_argument_is_one_usage_error(script: str, args: list[str], option: str) -> None:
    assert_usage_error(run(script, args), option)


def test_bench_overlay_without_anchors(tmp_path: Path) -> None:
    missing = str(tmp_path / "no-anchors")
    help_ = run("bench_overlay.py", ["--anchors", "--help"], ANCHORS_DIR=missing)
    assert help_.returncode == 0 and "--anchors" in help_.stdout, help_.stderr
    assert help_.stderr == ""  # help only: no venv, no pip
    res = run("bench_overlay.py", ["--nodes", "8"], ANCHORS_DIR=missing)
    assert_usage_error(res, "ANCHORS_DIR")
    assert missing in res.stderr


ANCHORS = Path(os.environ.get("ANCHORS_DIR", ROOT.parent / "shared" / "bench" / "anchors"))


@pytest.mark.skipif(not (ANCHORS / "workload.py").exists(), reason="no shared anchors here")
@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["--k", "0"], "--k"),
        (["--alpha", "0"], "--alpha"),
        (["--ops", "0"], "--ops"),
        (["--sqlite", BAD], "--sqlite"),
    ],
)
def test_bench_overlay_bad_argument(args: list[str], option: str) -> None:
    res = run("bench_overlay.py", ["--nodes", "8", "--ops", "20", *args], ANCHORS_DIR=str(ANCHORS))
    assert_usage_error(res, option)
