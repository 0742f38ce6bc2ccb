"""How far one nuke-overlay run can fall from the bound 1 - f^k, by placement alone.

    .venv/bin/python scripts/placement_variance.py                  # f = 0.5, 0.9, 0.99
    .venv/bin/python scripts/placement_variance.py --fraction 0.9 --placements 40

No network here: N random node ids, C random keys, each key held by exactly its k
XOR-closest nodes (what a put achieves), then a random fraction f of the nodes
killed. The held fraction's mean is the bound, but one run's value is not: keys
near each other share most of their holders, so their fates are tied and a run
moves by a few points. This prints the mean, the spread and how many runs fall
below "bound minus 1 point", the nuke-overlay must-hold.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
from collections.abc import Callable
from functools import partial

from argcheck import positive_int
from rich.console import Console
from rich.progress import Progress


def held_fractions(
    nodes: int,
    chunks: int,
    k: int,
    fraction: float,
    placements: int,
    kills: int,
    seed: int,
    step: Callable[[], None] = lambda: None,
) -> list[float]:
    """Held fraction of every (layout, kill) run; `step()` after each layout."""
    rng = random.Random(seed)
    out: list[float] = []
    for _ in range(placements):
        ids = [rng.getrandbits(256) for _ in range(nodes)]
        holders = []
        for _ in range(chunks):
            key = rng.getrandbits(256)
            holders.append(sorted(range(nodes), key=lambda i: ids[i] ^ key)[:k])
        for _ in range(kills):
            dead = set(rng.sample(range(nodes), round(fraction * nodes)))
            held = sum(1 for h in holders if any(i not in dead for i in h))
            out.append(held / chunks)
        step()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=2000)
    ap.add_argument("--chunks", type=int, default=2000)
    ap.add_argument("-k", type=int, default=20)
    ap.add_argument("--fraction", type=float, action="append", help="killed fraction (repeat)")
    ap.add_argument("--placements", type=positive_int, default=20, help="random id/key layouts")
    ap.add_argument("--kills", type=positive_int, default=100, help="random kills per layout")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    if args.k < 1 or args.nodes < args.k or args.chunks < 1:
        ap.error("need nodes >= k >= 1 and chunks >= 1")
    fractions = args.fraction or [0.5, 0.9, 0.99]
    for f in fractions:
        if not 0.0 < f < 1.0:
            ap.error(f"a killed fraction must be between 0 and 1, got {f}")
    err = Console(stderr=True)  # progress goes there: stdout holds only the figures
    for f in fractions:
        if not err.is_terminal:
            print(f"f = {f}: {args.placements} layouts x {args.kills} kills", file=sys.stderr)
        with Progress(console=err, transient=True, disable=not err.is_terminal) as bar:
            task = bar.add_task(f"f = {f}: layouts", total=args.placements)
            vals = held_fractions(
                args.nodes,
                args.chunks,
                args.k,
                f,
                args.placements,
                args.kills,
                args.seed,
                step=partial(bar.advance, task),
            )
        bound = 1 - f**args.k
        below = sum(1 for v in vals if v < bound - 0.01)
        print(
            f"f = {f}: bound {bound:.2%}; held mean {statistics.mean(vals):.2%}, "
            f"sd {statistics.pstdev(vals) * 100:.2f} points, min {min(vals):.2%}; "
            f"{below} of {len(vals)} runs ({below / len(vals):.0%}) below bound - 1 point",
            flush=True,
        )


if __name__ == "__main__":
    main()
