"""What a run measures, and how the raw samples become the numbers in metrics.json.

The recorder keeps raw samples in lists (appended in event order, so their order
is deterministic); `summarize` turns them into plain dicts of ints, floats
rounded to 6 significant digits and strings, so `json.dumps(sort_keys=True)` of
the same run is byte-identical. Percentiles use the nearest-rank method: no
interpolation, no floating-point ties to break.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Census",
    "GetSample",
    "LookupSample",
    "PutSample",
    "Recorder",
    "percentiles",
    "quantiles",
    "rnd",
]

PERCENTILES = (50, 90, 99)  # the OverSim set: median, tail, far tail
CDF_POINTS = 50  # quantiles kept for the latency CDF plot: 2% steps are smooth at PNG size


def rnd(x: float) -> float:
    """Round to 6 significant digits: stable text in JSON, no false precision."""
    if x == 0 or not math.isfinite(x):
        return float(x)
    return float(f"{x:.6g}")


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    s = sorted(values)
    out = {f"p{p}": rnd(s[max(0, math.ceil(p / 100 * len(s)) - 1)]) for p in PERCENTILES}
    out["max"] = rnd(s[-1])
    out["mean"] = rnd(sum(s) / len(s))
    return out


def quantiles(values: list[float], steps: int = CDF_POINTS) -> list[float]:
    """`steps + 1` evenly spaced nearest-rank quantiles: a CDF small enough for JSON."""
    if not values:
        return []
    s = sorted(values)
    return [rnd(s[min(len(s) - 1, round(i / steps * (len(s) - 1)))]) for i in range(steps + 1)]


@dataclass(frozen=True, slots=True)
class LookupSample:
    cls: str
    ok: bool
    hops: int
    latency: float
    closest_found: bool
    overlap: int  # how many of the true k closest the result holds
    tag: str = ""  # the lookups event's tag: phases of a run told apart (before / after a heal)


@dataclass(frozen=True, slots=True)
class PutSample:
    cls: str
    ok: bool
    acks: int
    latency: float


@dataclass(frozen=True, slots=True)
class GetSample:
    tag: str
    ok: bool
    wrong: bool
    latency: float
    hops: int


@dataclass(frozen=True, slots=True)
class Census:
    """Live replicas of every acknowledged chunk at one instant."""

    t: float
    live: int
    keys: int
    min: int
    p10: int
    median: int
    mean: float
    zero: int  # chunks no live node holds: lost unless a disk comes back
    below_k: int  # chunks with fewer than min(k, live) replicas
    held_fraction: float
    placed: int  # chunks held by every one of their k closest joined live nodes


@dataclass(slots=True)
class Recorder:
    k: int
    lookups: list[LookupSample] = field(default_factory=list)
    puts: list[PutSample] = field(default_factory=list)
    gets: list[GetSample] = field(default_factory=list)
    census: list[Census] = field(default_factory=list)
    losses: list[tuple[float, str]] = field(default_factory=list)
    heals: list[float] = field(default_factory=list)
    nukes: list[dict[str, Any]] = field(default_factory=list)
    joins_ok: int = 0
    joins_failed: int = 0
    join_latency: list[float] = field(default_factory=list)
    writer_down: int = 0
    live_evictions: Counter[str] = field(default_factory=Counter)

    def summarize(self) -> dict[str, Any]:
        return {
            "joins": {
                "ok": self.joins_ok,
                "failed": self.joins_failed,
                "latency": percentiles(self.join_latency),
            },
            "lookups": self._lookups(),
            "puts": self._puts(),
            "gets": self._gets(),
            "replicas": [
                {
                    "t": rnd(c.t),
                    "live": c.live,
                    "keys": c.keys,
                    "min": c.min,
                    "p10": c.p10,
                    "median": c.median,
                    "mean": rnd(c.mean),
                    "zero": c.zero,
                    "below_k": c.below_k,
                    "held_fraction": rnd(c.held_fraction),
                    "placed": c.placed,
                }
                for c in self.census
            ],
            "restore_k": self._restore(),
            "heals": self._heals(),
            "nukes": self.nukes,
            "live_evictions_by_class": dict(sorted(self.live_evictions.items())),
            "writer_down": self.writer_down,
        }

    def _lookups(self) -> dict[str, Any]:
        ls = self.lookups
        if not ls:
            return {"count": 0}
        ok = [x for x in ls if x.ok]
        by_class: dict[str, Any] = {}
        for cls in sorted({x.cls for x in ls}):
            mine = [x for x in ls if x.cls == cls]
            good = [x for x in mine if x.ok]
            by_class[cls] = {
                "count": len(mine),
                "success_ratio": rnd(len(good) / len(mine)),
                "timeout_ratio": rnd(1 - len(good) / len(mine)),
                "latency": percentiles([x.latency for x in good]),
            }
        out = _lookup_phase(ls)
        out["latency_cdf"] = quantiles([x.latency for x in ok])
        out["by_class"] = by_class
        tags = sorted({x.tag for x in ls if x.tag})
        if tags:  # only then: untagged scenarios keep their metrics.json byte for byte
            out["by_tag"] = {tag: _lookup_phase([x for x in ls if x.tag == tag]) for tag in tags}
        return out

    def _puts(self) -> dict[str, Any]:
        ps = self.puts
        if not ps:
            return {"count": 0}
        ok = [x for x in ps if x.ok]
        return {
            "count": len(ps),
            "acked": len(ok),
            "ack_ratio": rnd(len(ok) / len(ps)),
            "acks": percentiles([float(x.acks) for x in ok]),
            "latency": percentiles([x.latency for x in ok]),
        }

    def _gets(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for tag in sorted({g.tag for g in self.gets}):
            gs = [g for g in self.gets if g.tag == tag]
            ok = [g for g in gs if g.ok]
            out[tag] = {
                "count": len(gs),
                "ok": len(ok),
                "wrong_value": sum(g.wrong for g in gs),
                "success_ratio": rnd(len(ok) / len(gs)),
                "latency": percentiles([g.latency for g in ok]),
                "hops": percentiles([float(g.hops) for g in ok]),
            }
        return out

    def _heals(self) -> list[dict[str, Any]]:
        """Per heal: seconds until >= 99% of the chunks sat on all their k closest nodes.

        A partition loses no copy, so `restore_k` says nothing of it: each side
        stored what it wrote on its own side's k closest. Census resolution, an
        upper bound; None if it never happened before the end of the run.
        """
        return [{"t": rnd(t), "placed_seconds": _placed_after(self.census, t)} for t in self.heals]

    def _restore(self) -> list[dict[str, Any]]:
        """Per loss event: seconds until ≥ 99% of surviving chunks had min(k, live) replicas.

        Census resolution: the answer is a multiple-of-`sample_every` upper bound.
        None means the next loss (or the end of the run) came first.
        """
        out: list[dict[str, Any]] = []
        for i, (t, label) in enumerate(self.losses):
            nxt = self.losses[i + 1][0] if i + 1 < len(self.losses) else math.inf
            seconds = None
            for c in self.census:
                surviving = c.keys - c.zero
                if t < c.t <= nxt and surviving > 0 and c.below_k - c.zero <= 0.01 * surviving:
                    seconds = rnd(c.t - t)
                    break
            out.append({"t": rnd(t), "event": label, "seconds": seconds})
        return out


def _placed_after(census: list[Census], t: float) -> float | None:
    """Seconds from `t` to the first census where >= 99% of the chunks were placed."""
    for c in census:
        if c.t > t and c.keys and c.placed >= 0.99 * c.keys:
            return rnd(c.t - t)
    return None


def _lookup_phase(ls: list[LookupSample]) -> dict[str, Any]:
    """The headline figures of some lookups: all of a run's, or one tagged event's."""
    ok = [x for x in ls if x.ok]
    return {
        "count": len(ls),
        "success_ratio": rnd(len(ok) / len(ls)),
        "closest_found_ratio": rnd(sum(x.closest_found for x in ls) / len(ls)),
        "true_k_overlap_mean": rnd(sum(x.overlap for x in ls) / len(ls)),
        "hops": percentiles([float(x.hops) for x in ok]),
        "latency": percentiles([x.latency for x in ok]),
    }
