"""`chorusdht recover`: rebuild a mesh from whatever nodes survive, prove it, write it out.

The recovery itself is `chorusdht.recover`; this command runs it on an ephemeral
node (fresh key, memory store), shows a progress bar per stage, prints the
report and writes memory.jsonl and phase.json. Exit status: 0 complete,
3 partial (see `chorusdht.exit_code`), 2 for a usage error (a bad option, a
wrong mesh key, an unwritable --out), 1 when the recovery fails (no reachable node).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import trio
import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn
from rich.table import Table

from chorusdht import (
    NodeConfig,
    RecoveryReport,
    Stage,
    exit_code,
    open_node,
    parse_addr,
    parse_hex_id,
    plain_errors,
    recover,
    write_outputs,
)

from .common import (
    KeyFileOpt,
    MeshKeyOpt,
    err,
    fail,
    mesh_key_from,
    one_line_errors,
    out,
    positive_seconds,
    unwritable_dir,
)

__all__ = ["recover_cmd"]


class _Bars:
    """RecoveryProgress as rich progress bars, one per stage."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.tasks: dict[Stage, TaskID] = {}

    def start(self, stage: Stage, total: int | None) -> None:
        self.tasks[stage] = self.progress.add_task(stage.value, total=total)

    def advance(self, stage: Stage, amount: int = 1, *, total: int | None = None) -> None:
        task = self.tasks.get(stage)
        if task is None:
            task = self.tasks[stage] = self.progress.add_task(stage.value, total=total)
        if total is not None:
            self.progress.update(task, total=total)
        self.progress.advance(task, amount)

    def finish(self, stage: Stage) -> None:
        task = self.tasks.get(stage)
        if task is not None:
            done = next(t.completed for t in self.progress.tasks if t.id == task)
            self.progress.update(task, total=done, completed=done)


def recover_cmd(
    mesh: Annotated[str, typer.Option("--mesh", "-m", help="The mesh id (64 hex digits).")],
    bootstrap: Annotated[list[str], typer.Option(help="A surviving node, HOST:PORT (repeatable).")],
    out_dir: Annotated[
        Path, typer.Option("--out", help="Directory for memory.jsonl and phase.json.")
    ] = Path("recovered"),
    expect_root: Annotated[
        str | None,
        typer.Option(help="The state root the memory must have (hex).", show_default=False),
    ] = None,
    reseed: Annotated[
        bool, typer.Option(help="Republish what was recovered so k copies exist again.")
    ] = False,
    listen: Annotated[
        str, typer.Option(help="UDP address of the ephemeral recovering node.")
    ] = "0.0.0.0:0",
    timeout: Annotated[float, typer.Option(help="Give up after this many seconds.")] = 300.0,
    patience: Annotated[
        float,
        typer.Option(
            help="Right after a mass failure, keep crawling this many seconds while most "
            "nodes heard of are silent: survivors are still finding each other."
        ),
    ] = 0.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    key_file: KeyFileOpt = None,
    mesh_key: MeshKeyOpt = None,
) -> None:
    """Survivor recovery: crawl, fetch, verify and merge a mesh; exit 3 when incomplete.

    Example: chorusdht recover --mesh 9c4e…07 --bootstrap 10.0.0.7:4000 --out ./recovered
    """
    with one_line_errors(2):
        mesh_id = parse_hex_id(mesh)
        root = parse_hex_id(expect_root, "root") if expect_root is not None else None
        seeds = [parse_addr(b) for b in bootstrap]
        listen_addr = parse_addr(listen)
        positive_seconds(timeout, "--timeout")
        if not 0 <= patience < timeout:
            raise fail(f"--patience must be at least 0 and under --timeout ({timeout:g}s)", 2)
        key = mesh_key_from(key_file, mesh_key)
        if (problem := unwritable_dir(out_dir)) is not None:
            raise fail(f"cannot write to {out_dir}: {problem}", 2)
    with one_line_errors():
        columns = (TextColumn("{task.description:>7}"), BarColumn(), MofNCompleteColumn())
        with Progress(*columns, console=err, disable=not err.is_terminal) as bars:

            async def run() -> RecoveryReport:
                with trio.fail_after(timeout), plain_errors():
                    client = NodeConfig(read_only=True)  # peers answer it, never hand it keys
                    async with open_node(listen=listen_addr, config=client) as node:
                        return await recover(
                            node,
                            mesh_id,
                            bootstrap=seeds,
                            expect_root=root,
                            progress=_Bars(bars),
                            reseed=reseed,
                            mesh_key=key,
                            patience=patience,
                        )

            try:
                report = trio.run(run)
            except trio.TooSlowError:
                raise fail(f"recovery did not finish within {timeout:g}s") from None
        if key is not None and (problem := _key_problem(report)) is not None:
            raise fail(problem, 2)  # as `mesh follow` says it; nothing is written
        try:
            memory, phase = write_outputs(report, out_dir)
        except OSError as e:
            raise fail(f"cannot write to {out_dir}: {e.strerror}") from None
    if as_json:
        print(json.dumps(report_json(report, memory, phase), indent=2, sort_keys=True))
    else:
        out.print(report_table(report))
        out.print(f"wrote {escape(str(memory))} and {escape(str(phase))}")
        few = report.nodes_found > 1 and 2 * report.nodes_reached < report.nodes_found
        if few and not report.complete:
            err.print(
                f"note: {report.nodes_reached} of the {report.nodes_found} nodes heard of "
                "answered; if the network just failed, survivors may still be finding each "
                "other: run again in a minute, or with --patience 60"
            )
    raise typer.Exit(exit_code(report))


def _key_problem(r: RecoveryReport) -> str | None:
    """Why the mesh key given does not fit the recovered mesh (as `Mesh.set_key` would
    refuse it), or None."""
    if not r.encrypted:
        return f"mesh {r.mesh.hex()[:16]}… is not encrypted: it takes no key"
    if r.sealed and r.sealed == r.entries:
        return f"wrong mesh key: it opens none of the sealed entries of mesh {r.mesh.hex()[:16]}…"
    return None


def report_json(r: RecoveryReport, memory: Path, phase: Path) -> dict[str, object]:
    """The headline of a report as JSON."""
    return {
        "mesh": r.mesh.hex(),
        "name": r.genesis.name,
        "entries": r.entries,
        "root": r.root.hex(),
        "expect_root": r.expect_root.hex() if r.expect_root else None,
        "exact": r.exact,
        "complete": r.complete,
        "authors": len(r.authors),
        "missing": [m.hash.hex() for m in r.missing],
        "dangling": r.dangling,
        "dropped": r.dropped,
        "nodes_found": r.nodes_found,
        "nodes_reached": r.nodes_reached,
        "reseeded": r.reseeded,
        "encrypted": r.encrypted,
        "sealed": r.sealed,
        "memory": str(memory),
        "phase": str(phase),
    }


def report_table(r: RecoveryReport) -> Table:
    """The recovery report as a rich table: verdict, authors, gaps, drops, reach."""
    verdict = "[green]complete[/]" if r.complete else "[red]incomplete[/]"
    name = escape(repr(r.genesis.name))  # the founder's text, not markup
    table = Table(title=f"recovery of mesh {name}: {verdict}", show_header=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    table.add_row("mesh", r.mesh.hex())
    table.add_row("entries", str(r.entries))
    table.add_row("root", r.root.hex())
    if r.expect_root is not None:
        match = "[green]matches[/]" if r.exact else "[red]DIFFERS[/]"
        table.add_row("expected root", f"{r.expect_root.hex()} {match}")
    table.add_row("nodes", f"{r.nodes_reached} reached of {r.nodes_found} found")
    for a in r.authors:
        gaps = ", ".join(f"{lo}-{hi}" for lo, hi in a.gaps) or "none"
        table.add_row(
            f"author {a.author.hex()[:12]}…",
            f"seq {a.first_seq}..{a.last_seq}, complete to {a.phase}, gaps {gaps}",
        )
    if r.missing:
        table.add_row("missing chunks", str(len(r.missing)))
    if r.dangling:
        table.add_row("dangling", str(r.dangling))
    if r.dropped:
        table.add_row("dropped", ", ".join(f"{k} {v}" for k, v in r.dropped.items()))
    if r.encrypted:
        sealed = (
            f"[yellow]{r.sealed} entries sealed[/] (no mesh key opens them; the root covers them)"
            if r.sealed
            else "every entry opened"
        )
        table.add_row("encrypted", sealed)
    if r.reseeded or r.reseed_failed:
        table.add_row("reseeded", f"{r.reseeded} ({r.reseed_failed} failed)")
    t = r.timings
    table.add_row(
        "timings",
        f"crawl {t.crawl:.2f}s, fetch {t.fetch:.2f}s, verify {t.verify:.2f}s, walk {t.walk:.2f}s",
    )
    return table
