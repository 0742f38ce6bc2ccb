"""Benchmark netsim: wall seconds, peak RSS and simulated messages per wall second.

    .venv/bin/python scripts/bench_netsim.py                 # lookup-10k and a 100k bootstrap
    .venv/bin/python scripts/bench_netsim.py --nodes 2000    # both scaled down
    .venv/bin/python scripts/bench_netsim.py --only lookup

Each case runs in its own subprocess, so its peak RSS is its own; it reports its
progress on stderr every tenth of the virtual time (the 100,000-node case runs
for well over an hour). Targets (issue 3,
this 2-core machine): lookup-10k in <= 60 s and <= 1 GiB; a 100,000-node bootstrap
plus 1,000 lookups in <= 10 min and <= 4 GiB.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import textwrap

from argcheck import positive_int

BOOTSTRAP_NODES = 100_000  # the large case: OverSim's published ceiling
LOOKUP_NODES = 10_000  # lookup-10k as shipped

_CHILD = textwrap.dedent(
    """
    import json, resource, sys, time
    from netsim import run_scenario
    name, nodes = sys.argv[1], int(sys.argv[2])
    t = time.perf_counter()
    shown = [-1]

    def progress(now, end):  # a line per tenth of virtual time, on stderr (a long run)
        tenth = int(10 * now / end)
        if tenth > shown[0]:
            shown[0] = tenth
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            wall = time.perf_counter() - t
            print(f"  {name} @ {nodes}: virtual {now:.0f}/{end:.0f} s, wall {wall:.0f} s, "
                  f"peak {rss:.0f} MiB", file=sys.stderr, flush=True)

    m = run_scenario(name, seed=1, nodes=nodes, progress=progress)
    wall = time.perf_counter() - t
    r = m["run"]
    lk = r["lookups"]
    print(json.dumps({
        "scenario": name, "nodes": nodes, "wall_s": round(wall, 2),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "messages": r["messages"], "msgs_per_wall_s": round(r["messages"] / wall),
        "lookup_success": lk.get("success_ratio"), "closest_found": lk.get("closest_found_ratio"),
        "true20_mean": lk.get("true_k_overlap_mean"), "hops_p50": lk.get("hops", {}).get("p50"),
    }))
    """
)


def _run(name: str, nodes: int) -> dict[str, object]:
    # The child's progress lines (stderr) pass straight through; its result is on stdout.
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, name, str(nodes)], stdout=subprocess.PIPE, text=True
    )
    if out.returncode != 0:
        sys.exit(f"{name} @ {nodes} nodes failed (its error is above)")
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=positive_int, help="scale both cases to this many nodes")
    ap.add_argument("--only", choices=("lookup", "bootstrap"), help="run one case")
    args = ap.parse_args()
    cases = []
    if args.only in (None, "lookup"):
        cases.append(("lookup-10k", LOOKUP_NODES if args.nodes is None else args.nodes))
    if args.only in (None, "bootstrap"):
        # The same scenario shape (join, then 1,000 lookups), at the bootstrap scale.
        cases.append(("lookup-10k", BOOTSTRAP_NODES if args.nodes is None else args.nodes))
    for name, nodes in cases:
        r = _run(name, nodes)
        print(
            f"{name} @ {nodes:>7} nodes: {r['wall_s']:>8} s wall, {r['peak_rss_mib']:>7} MiB peak, "
            f"{r['msgs_per_wall_s']:>6} msgs/s ({r['messages']} msgs); lookups ok "
            f"{r['lookup_success']}, closest found {r['closest_found']}, "
            f"true-20 held {r['true20_mean']}, hops p50 {r['hops_p50']}",
            flush=True,
        )


if __name__ == "__main__":
    main()
