"""PNG plots of a run's metrics (matplotlib, Agg backend: no display needed).

Three figures, each drawn for every run of a sweep:

- `replicas.png`: live replicas per chunk over time (median, 10th percentile, min)
  against k;
- `lookup_latency_cdf.png`: the CDF of successful lookup latencies;
- `recovered.png`: the fraction of acknowledged chunks still held over time, the
  fraction on all of their k closest live nodes (what a heal or a repair restores),
  and after each nuke the retrievable fraction next to the bound 1 − f^k.

A figure with nothing to draw (no chunk stored, no lookup done) says so in its middle
rather than being blank. Survivor-recovery scenarios (netsim.recoversim) get their own
`recovered.png` from `write_recover_plots`: what each survivor recovered.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # the backend must be chosen first
from matplotlib.ticker import MaxNLocator

__all__ = ["write_plots", "write_recover_plots"]

DPI = 100  # 640x480 PNGs: readable, a few tens of KB each


def _runs(metrics: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    if "runs" in metrics:
        return sorted(metrics["runs"].items())
    return [(metrics["scenario"], metrics["run"])]


def write_plots(metrics: dict[str, Any], out: Path) -> list[Path]:
    runs = _runs(metrics)
    k = metrics["k"]
    paths = []

    fig, ax = plt.subplots()
    for label, run in runs:
        rows = run["replicas"]
        if rows:
            hours = [r["t"] / 3600 for r in rows]
            ax.plot(hours, [r["median"] for r in rows], label=f"{label} median")
            ax.plot(hours, [r["p10"] for r in rows], linestyle="--", label=f"{label} p10")
            ax.plot(hours, [r["min"] for r in rows], linestyle=":", label=f"{label} min")
    ax.axhline(k, color="grey", linewidth=0.8, label=f"k = {k}")
    ax.set(xlabel="virtual time (h)", ylabel="live replicas per chunk", title="Replicas per key")
    _legend(ax)
    if not any(run["replicas"] for _, run in runs):
        _nothing(ax, "no chunk was stored in this scenario")
    paths.append(_save(fig, out / "replicas.png"))

    fig, ax = plt.subplots()
    for label, run in runs:
        cdf = run["lookups"].get("latency_cdf", [])
        if cdf:
            ys = [i / (len(cdf) - 1) for i in range(len(cdf))]
            ax.step(cdf, ys, where="post", label=label)
    ax.set(
        xlabel="lookup latency (s, virtual)",
        ylabel="fraction of lookups",
        title="Lookup latency CDF",
    )
    _legend(ax)
    if not any(run["lookups"].get("latency_cdf") for _, run in runs):
        _nothing(ax, "no lookup succeeded in this scenario")
    paths.append(_save(fig, out / "lookup_latency_cdf.png"))

    fig, ax = plt.subplots()
    for label, run in runs:
        rows = run["replicas"]
        if rows:
            ax.plot(
                [r["t"] / 3600 for r in rows],
                [r["held_fraction"] for r in rows],
                label=f"{label}: held by a live node",
            )
            ax.plot(
                [r["t"] / 3600 for r in rows],
                [r["placed"] / r["keys"] for r in rows],
                linestyle="--",
                label=f"{label}: on all its k closest",
            )
        for i, heal in enumerate(run.get("heals", [])):
            x = heal["t"] / 3600
            name = "partition healed" if i == 0 else None
            ax.axvline(x, color="green", linewidth=0.8, linestyle=":", label=name)
        for nuke in run["nukes"]:
            got = run.get("recovered", {}).get("retrievable")
            x = nuke["t"] / 3600
            ax.scatter([x], [nuke["bound"]], marker="_", s=200, color="red")
            if got is not None:
                ax.scatter([x], [got], marker="o", label=f"{label}: retrievable")
    ax.set(
        xlabel="virtual time (h)",
        ylabel="fraction of acknowledged chunks",
        title="Recovered fraction (red bar: bound 1 − f^k)",
        ylim=(0, 1.05),
    )
    _legend(ax)
    if not any(run["replicas"] or run["nukes"] for _, run in runs):
        _nothing(ax, "no chunk was stored in this scenario")
    paths.append(_save(fig, out / "recovered.png"))
    return paths


def write_recover_plots(runs: list[dict[str, Any]], out: Path) -> list[Path]:
    """`recovered.png` of a survivor-recovery run: per survivor, the entries it
    recovered as a fraction of all appended, against those acked before the kill and
    those some survivor still held (what a recovery can reach at most)."""
    fig, ax = plt.subplots()
    for run in runs:
        appended = run["appended"] or 1
        got = [r["entries"] / appended for r in run["recoveries"]]
        xs = list(range(1, len(got) + 1))
        ax.plot(xs, got, marker="o", linestyle="", label=f"seed {run['seed']}: recovered")
        acked = run["acked_before_cutoff"] / appended
        label = f"seed {run['seed']}: acked before the kill"
        ax.axhline(acked, color="red", linewidth=0.8, label=label)
        if "survived_anywhere" in run:
            held = run["survived_anywhere"] / appended
            label = f"seed {run['seed']}: held by a survivor"
            ax.axhline(held, color="grey", linestyle="--", linewidth=0.8, label=label)
    ax.set(
        xlabel="survivor (one recovery each)",
        ylabel="fraction of appended entries",
        title="Entries recovered by each survivor",
        ylim=(0, 1.05),
    )
    most = max((len(run["recoveries"]) for run in runs), default=0)
    ax.set_xlim(0.5, most + 0.5)
    if most <= 20:  # survivors are counted: whole-number ticks
        ax.set_xticks(range(1, most + 1))
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    _legend(ax)
    if not any(run["recoveries"] for run in runs):
        _nothing(ax, "no survivor ran a recovery")
    return [_save(fig, out / "recovered.png")]


def _nothing(ax: Any, why: str) -> None:
    ax.text(0.5, 0.5, why, ha="center", va="center", transform=ax.transAxes, color="grey")


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def _legend(ax: Any) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small")
