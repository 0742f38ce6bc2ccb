"""`run_scenario`: load a scenario, run it (once, or once per sweep value), report.

    metrics = run_scenario("lookup-10k", seed=1, nodes=2000, out=Path("out"))

With `out`, writes `metrics.json` (sorted keys, so the same scenario and seed give
the same bytes) and PNG plots. Wall-clock figures never enter metrics.json: they
differ between runs; `run_scenario` returns them under the `"wall"` key only.
"""

from __future__ import annotations

import gc
import json
import resource
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from chorusdht import unwritable_dir
from chorusdht.messages import SHARED_NODE_INFOS_DEFAULT, share_node_infos
from chorusdht.routing import SHARED_IDS_DEFAULT, share_ids

from .engine import Simulator
from .metrics import Recorder, rnd
from .scenario import Scenario, ScenarioError, find_scenario, load_scenario
from .workload import Workload

__all__ = ["Progress", "metrics_json", "run_scenario", "simulate", "writable_out"]

Progress = Callable[[float, float], None]
"""progress(virtual_now, virtual_end): called about 200 times per run."""

PROGRESS_STEPS = 200  # progress callbacks per run: smooth bar, negligible cost
GC_YOUNG_THRESHOLD = 50_000  # net allocations between young collections (see simulate)


def simulate(sc: Scenario, seed: int, progress: Progress | None = None) -> dict[str, Any]:
    """Run one scenario (no sweep) and return its metrics."""
    # Every table of the run shares one int per contact id (see routing.share_ids) and
    # one NodeInfo per contact for its replies (messages.share_node_infos).
    share_ids(max(SHARED_IDS_DEFAULT, 2 * sc.nodes))
    share_node_infos(max(SHARED_NODE_INFOS_DEFAULT, 2 * sc.nodes))
    sim = Simulator(
        seed=seed,
        config=sc.config,
        link=sc.link,
        fast_crypto=sc.fast_crypto,
        wire=sc.wire,
        count_bytes=sc.count_bytes,
    )
    rec = Recorder(k=sc.config.k)
    work = Workload(sim, sc, rec)
    work.track_evictions = any(c == "pizero" for c, _ in sc.mix) and sc.nodes <= 2000
    work.install()
    step = sc.duration / PROGRESS_STEPS
    t = 0.0
    collected_at = 0
    # The young generation is collected every 700 net allocations by default: ~6,000
    # times in a 5,000-node run, 5% of its wall time, for ~2,000 objects in cycles.
    # Every 50,000 costs nothing measurable; what a cycle holds waits a little longer.
    thresholds = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *thresholds[1:])
    try:
        while t < sc.duration:
            t = min(sc.duration, t + step)
            sim.run_until(t)
            # A large run holds millions of long-lived objects (routing tables,
            # stores), and each full collection walks all of them: at 10,000 nodes
            # that cost grows faster than the run itself. Freezing what survived
            # a step moves it out of the collector's sight; garbage still goes by
            # reference counting, and cycles made after the freeze are still found.
            # But a crashed node's core is such a cycle (its timers hold its methods):
            # frozen, it would never be freed, and churn-36h grew to gigabytes. So once
            # a tenth of the nodes' worth of cores died, thaw and collect them.
            if sim.crashes - collected_at >= max(1, sc.nodes // 10):
                collected_at = sim.crashes
                gc.unfreeze()
                gc.collect()
            gc.freeze()
            if progress is not None:
                progress(t, sc.duration)
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)
    out = rec.summarize()
    counts: dict[str, int] = {}
    for node in sim.nodes:
        counts[node.cls.name] = counts.get(node.cls.name, 0) + 1
    out["traffic"] = {
        cls: {
            "nodes": n,
            "messages": sim.msgs_by_class[cls],
            "messages_per_node": rnd(sim.msgs_by_class[cls] / n),
            "bytes": sim.bytes_by_class[cls] if sim.count_bytes else None,
            "bytes_per_node": rnd(sim.bytes_by_class[cls] / n) if sim.count_bytes else None,
        }
        for cls, n in sorted(counts.items())
    }
    stats = sim.retired_stats.copy()
    for node in sim.live_nodes():
        assert node.core is not None
        stats.update(node.core.stats)
    interesting = (
        "timeouts",
        "retransmits",
        "evicted",
        "republishes",
        "handoffs",
        "bad_proof",
        "unsolicited",
        "records_stored",
        "requests_out",
        "sweeps",
        "liveness_pings",
    )
    out["core"] = {name: stats[name] for name in interesting}
    out["network"] = {"delivered": sim.delivered, "dropped": dict(sorted(sim.dropped.items()))}
    out["live_at_end"] = len(sim.live_nodes())
    if out["nukes"]:
        last = out["nukes"][-1]
        after = out["gets"].get("after_nuke")
        out["recovered"] = {
            "fraction": last["fraction"],
            "bound": last["bound"],
            "held_at_nuke": last["held_fraction"],
            "retrievable": after["success_ratio"] if after else None,
        }
    out["messages"] = sum(sim.msgs_by_class.values())
    return out


def metrics_json(metrics: dict[str, Any]) -> str:
    return (
        json.dumps({k: v for k, v in metrics.items() if k != "wall"}, sort_keys=True, indent=1)
        + "\n"
    )


def writable_out(out: Path | str) -> Path:
    """`out` as a directory that exists and takes files, or ScenarioError: checked
    before a run, so an hour of simulation is not lost to a typo in a path."""
    out = Path(out)
    if (problem := unwritable_dir(out)) is not None:
        raise ScenarioError(f"cannot write to {out}: {problem}")
    return out


def run_scenario(
    path: str | Path,
    *,
    seed: int,
    nodes: int | None = None,
    out: Path | str | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Run a scenario by name or path; see the module docstring. ScenarioError for a
    bad file or argument, before anything runs (an unwritable `out` included)."""
    sc = load_scenario(find_scenario(str(path)))
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ScenarioError(f"seed must be a whole number, got {seed!r}")
    if nodes is not None:
        if isinstance(nodes, bool) or not isinstance(nodes, int) or nodes < 1:
            raise ScenarioError(f"nodes must be a whole number of at least 1, got {nodes!r}")
        sc = sc.scaled(nodes)
    out = writable_out(out) if out is not None else None
    started = time.perf_counter()
    metrics: dict[str, Any] = {
        "scenario": sc.name,
        "question": sc.question,
        "seed": seed,
        "nodes": sc.nodes,
        "duration": sc.duration,
        "fast_crypto": sc.fast_crypto,
        "delivery": "bytes" if sc.wire else "messages",
        "k": sc.config.k,
    }
    if sc.sweep is None:
        metrics["run"] = simulate(sc, seed, progress)
    else:
        _, name, values = sc.sweep
        runs: dict[str, Any] = {}
        for i, value in enumerate(values):

            def part(now: float, end: float, i: int = i) -> None:
                if progress is not None:
                    progress(end * i + now, end * len(values))

            runs[f"{name}={value}"] = simulate(sc.variant(value), seed, part)
        metrics["runs"] = runs
    metrics["wall"] = {
        "seconds": round(time.perf_counter() - started, 3),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    if out is not None:
        (out / "metrics.json").write_text(metrics_json(metrics))
        from .plots import write_plots  # matplotlib only when plots are asked for

        write_plots(metrics, out)
    return metrics
