"""Crash safety (issue 7, part 5): the suite's 10 cycles of scripts/crash_cycles.py.

Each cycle starts a real `chorusdht join` process on one kept data dir, appends
through its control socket until a SIGKILL at a random moment, then checks the
SQLite store (`PRAGMA integrity_check`, every acknowledged append present) before
restarting, and the restarted node's timeline after. The full run is
`.venv/bin/python scripts/crash_cycles.py --cycles 100`.
"""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
CYCLES = 10
DEADLINE = 55.0  # s: a cycle costs a node start (~2 s) plus up to 0.5 s of appends


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "crash_cycles", ROOT / "scripts" / "crash_cycles.py"
    )
    assert spec is not None and spec.loader is not None
    sys.path.insert(0, str(ROOT / "scripts"))  # its shared helpers (scripts/argcheck.py)
    module = importlib.util.module_from_spec(spec)
    sys.modules["crash_cycles"] = module
    spec.loader.exec_module(module)
    return module


crash = _load()


@pytest.mark.integration
@pytest.mark.timeout(90)
def test_ten_sigkill_cycles_lose_no_acknowledged_append(tmp_path: Path) -> None:
    start = time.monotonic()
    report = crash.run_cycles(
        CYCLES, data_dir=tmp_path / "node", seed=3, min_kill=0.1, max_kill=0.5, deadline=DEADLINE
    )
    assert time.monotonic() - start < DEADLINE + 15
    assert len(report.cycles) == CYCLES, "the deadline cut the run short"
    for c in report.cycles:
        assert c.integrity == "ok", c
        assert c.missing_in_store == 0, c
        assert c.missing_in_log == 0, c
    assert report.acked > 0 and report.cycles[-1].entries >= report.acked
    assert sum(c.acked > 0 for c in report.cycles) >= CYCLES // 2  # the kills hit mid-write
