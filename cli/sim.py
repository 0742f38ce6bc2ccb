"""`chorusdht sim SCENARIO`: run a netsim scenario with a progress bar and a summary table.

Registered in cli/main.py with `app.command()(sim)`. The command only parses
options, shows progress and prints; the simulation lives in `netsim`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from netsim import (
    ScenarioError,
    find_scenario,
    list_scenarios,
    load_scenario,
    recoversim,
    run_scenario,
)
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from .common import fail, unwritable_dir

__all__ = ["sim"]


def sim(
    scenario: Annotated[
        str,
        typer.Argument(
            help="A shipped scenario name (" + ", ".join(list_scenarios()) + ") or a .toml path."
        ),
    ],
    seed: Annotated[
        int, typer.Option(help="Scenario seed: the same seed gives the same metrics.")
    ] = 1,
    nodes: Annotated[
        int | None, typer.Option(help="Override the node count (event counts scale with it).")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Write metrics.json and PNG plots into this directory.")
    ] = None,
) -> None:
    """Run a netsim scenario: the real node core, many nodes, virtual time.

    Example: chorusdht sim nuke-overlay --seed 7 --out ./sim-out
    """
    err = Console(stderr=True)
    try:
        path = find_scenario(scenario)
    except ScenarioError as e:
        raise fail(str(e), 2) from None
    if nodes is not None and nodes < 1:
        raise fail("--nodes must be at least 1", 2)
    if out is not None:
        problem = unwritable_dir(out)
        if problem is not None:  # say so now, not after an hour-long run
            raise fail(f"cannot write to {out}: {problem}", 2)
    console = Console()
    if recoversim.is_recover_scenario(path):
        _sim_recover(path, seed, nodes, out, console, err)
        return
    try:
        load_scenario(path)  # a bad file is refused before the bar appears
    except ScenarioError as e:
        raise fail(str(e), 2) from None
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[virtual]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task(scenario, total=1.0, virtual="")

        def progress(now: float, end: float) -> None:
            bar.update(task, completed=now / end, virtual=f"{now / 3600:.2f} / {end / 3600:.2f} h")

        try:
            metrics = run_scenario(scenario, seed=seed, nodes=nodes, out=out, progress=progress)
        except ScenarioError as e:
            raise fail(str(e), 2) from None
    console.print(summary_table(metrics))
    wall = metrics["wall"]
    console.print(f"wall {wall['seconds']} s, peak RSS {wall['peak_rss_mib']} MiB")
    if out is not None:
        console.print(f"wrote {escape(str(out / 'metrics.json'))} and plots")


def _sim_recover(
    path: Path, seed: int, nodes: int | None, out: Path | None, console: Console, err: Console
) -> None:
    """A survivor-recovery scenario (`engine = "recover"`): netsim.recoversim, real trio nodes."""
    try:  # a bad file is refused before the bar appears
        recoversim.load_sized_spec(path, nodes)
    except ValueError as e:
        raise fail(str(e), 2) from None
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[stage]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task(path.stem, total=1.0, stage="")

        def progress(_seed: int, stage: str, done: float, total: float) -> None:
            what = recoversim.stage_text(stage, done, total)
            bar.update(task, completed=recoversim.overall(stage, done, total), stage=what)

        try:
            runs = recoversim.run_file(path, [seed], nodes=nodes, out=out, progress=progress)
        except ValueError as e:
            raise fail(str(e), 2) from None
    console.print(recoversim.summary_table(runs))
    if out is not None:
        metrics, plot = (escape(str(out / f)) for f in ("metrics.json", "recovered.png"))
        console.print(f"wrote {metrics} and {plot}")
    if not runs[0]["ok"]:
        failed = ", ".join(k for k, v in runs[0]["must_hold"].items() if not v)
        err.print(f"[red]must-hold failed:[/red] {failed}", highlight=False)
        raise typer.Exit(1)


def _two(pcts: dict[str, float], a: str, b: str, fmt: str, unit: str = "") -> str:
    """Two percentiles, or dashes when no lookup succeeded (a node alone has no peers)."""
    if a not in pcts:
        return "— / —"
    return f"{fmt.format(pcts[a])} / {fmt.format(pcts[b])}{unit}"


def _found(p: dict[str, Any]) -> str:
    return f"{_pct(p['closest_found_ratio'])} / {p['true_k_overlap_mean']:.2f}"


def _pct(x: Any) -> str:
    return "—" if x is None else f"{100 * x:.2f}%"


def summary_table(metrics: dict[str, Any]) -> Table:
    """One column per run, one row per headline number of the issue's metric set."""
    table = Table(
        title=f"{metrics['scenario']} · seed {metrics['seed']} · {metrics['nodes']} nodes"
    )
    runs = metrics.get("runs") or {"value": metrics["run"]}
    table.add_column("metric")
    for label in sorted(runs):
        table.add_column(label, justify="right")
    rows: dict[str, list[str]] = {}
    for _, r in sorted(runs.items()):
        for name, value in _rows(r):
            rows.setdefault(name, []).append(value)
    for name, values in rows.items():
        table.add_row(name, *values)
    return table


def _rows(r: dict[str, Any]) -> list[tuple[str, str]]:
    lk = r["lookups"]
    out: list[tuple[str, str]] = []
    if lk["count"]:
        lat = lk["latency"]
        out += [
            ("lookups", str(lk["count"])),
            ("lookup success", _pct(lk["success_ratio"])),
            ("true closest found", _pct(lk["closest_found_ratio"])),
            ("true 20 closest held (mean)", f"{lk['true_k_overlap_mean']:.2f}"),
            ("hops p50 / p90", _two(lk["hops"], "p50", "p90", "{:g}")),
            ("latency p50 / p99", _two(lat, "p50", "p99", "{:.3f}", " s")),
        ]
        for cls, c in sorted(lk["by_class"].items()):
            out.append((f"  {cls} lookups failed", _pct(c["timeout_ratio"])))
        for tag, p in sorted(lk.get("by_tag", {}).items()):
            out.append((f"  closest found / 20 held ({tag})", _found(p)))
    if r["puts"]["count"]:
        out.append(("puts acked", f"{r['puts']['acked']} / {r['puts']['count']}"))
    for tag, g in sorted(r["gets"].items()):
        out.append((f"gets ok ({tag})", f"{g['ok']} / {g['count']}"))
        out.append((f"wrong values ({tag})", str(g["wrong_value"])))
    rec = r.get("recovered")
    if rec:
        out.append(("held right after nuke", _pct(rec["held_at_nuke"])))
        out.append(
            ("retrievable / bound 1-f^k", f"{_pct(rec['retrievable'])} / {_pct(rec['bound'])}")
        )
    if r["replicas"]:
        last = r["replicas"][-1]
        out.append(("replicas at end (min / median)", f"{last['min']} / {last['median']}"))
        out.append(("chunks held by no live node", str(last["zero"])))
        out.append(("on all their k closest at end", f"{last['placed']} / {last['keys']}"))
    for h in r.get("heals", []):
        s = h["placed_seconds"]
        out.append(("heal → 99% on their k closest", "not by the end" if s is None else f"{s:g} s"))
    if r["live_evictions_by_class"]:
        ev = ", ".join(f"{k} {v}" for k, v in r["live_evictions_by_class"].items())
        out.append(("live contacts evicted", ev))
    for cls, t in sorted(r["traffic"].items()):
        out.append((f"msgs / node ({cls})", f"{t['messages_per_node']:.0f}"))
        if t["bytes_per_node"] is not None:
            out.append((f"bytes / node ({cls})", f"{t['bytes_per_node']:.0f}"))
    out.append(("live at end", str(r["live_at_end"])))
    return out
