#!/usr/bin/env python3
"""Shim so the shared `run_anchors.sh` finds chorusdht as `<system>_bench.py` via EXTRA."""

import runpy
from pathlib import Path

runpy.run_path(str(Path(__file__).with_name("bench_overlay.py")), run_name="__main__")
