"""`chorusdht init`, `join` and `status`: make a node, run it, ask it how it is."""

from __future__ import annotations

import json
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Annotated, Any

import trio
import typer
from rich.live import Live
from rich.markup import escape
from rich.table import Table

import chorusdht
from chorusdht import (
    MAX_K,
    MAX_PUZZLE_BITS,
    ConfigError,
    Daemon,
    Identity,
    NodeConfig,
    parse_addr,
    parse_hex_id,
    plain_errors,
    puzzle_ok,
    run_daemon,
)

from .client import call
from .common import (
    DataDirOpt,
    JsonOpt,
    data_dir_from,
    err,
    fail,
    one_line_errors,
    out,
    positive_seconds,
)

__all__ = ["init", "join", "status"]

PUZZLE_REFRESH = 0.1  # s between updates of the puzzle progress line


PuzzleOpt = Annotated[
    int,
    typer.Option(
        "--puzzle-bits",
        min=0,
        max=MAX_PUZZLE_BITS,
        help="S/Kademlia static id puzzle: SHA-256(node id) must have this many leading "
        "zero bits (0: off). Every node of the overlay must use the same value.",
    ),
]


def init(data_dir: DataDirOpt = None, puzzle_bits: PuzzleOpt = 0) -> None:
    """Create the node's key (mode 0600) and data directory.

    With --puzzle-bits D the key is ground until its id meets the puzzle (about 2^D
    key generations: 16 bits take ~15 s, 24 bits ~1 hour on a small core).

    Example: chorusdht init --data-dir ./node1 --puzzle-bits 8
    """
    d = data_dir_from(data_dir)
    key = d / chorusdht.KEY_FILE
    with one_line_errors():
        try:
            if key.exists():
                ident = Identity.load(key)
                if not puzzle_ok(ident.node_id, puzzle_bits):
                    raise ConfigError(
                        f"the key in {d} does not meet a {puzzle_bits}-bit id puzzle: "
                        "init a fresh data dir"
                    )
                out.print(f"already initialised: {escape(str(d))}")
            else:
                d.mkdir(parents=True, exist_ok=True)
                with _puzzle_progress(puzzle_bits) as progress:
                    ident = Identity.generate(puzzle_bits, progress)
                ident.save(key)
                out.print(f"initialised {escape(str(d))}")
        except OSError as e:
            raise fail(f"cannot create {d}: {e.strerror}") from None
    out.print(f"node id:    {ident.node_id.hex()}")
    out.print(f"public key: {ident.public_key.hex()}")


@contextmanager
def _puzzle_progress(bits: int) -> Iterator[Callable[[int], None] | None]:
    """A progress callback for grinding a `bits`-bit id puzzle: a spinner on stderr with
    the keys tried, or None when stderr is no terminal or there is no puzzle."""
    if bits == 0 or not err.is_terminal:
        yield None
        return
    start = last = time.monotonic()
    text = f"grinding a {bits}-bit id puzzle (~{2**bits:,} keys expected)"
    with err.status(text) as spinner:

        def progress(tries: int) -> None:
            nonlocal last
            now = time.monotonic()
            if now - last >= PUZZLE_REFRESH:
                last = now
                spinner.update(f"{text}: {tries:,} tried, {now - start:.0f}s")

        yield progress


def join(
    data_dir: DataDirOpt = None,
    listen: Annotated[str, typer.Option(help="UDP address to listen on, HOST:PORT.")] = (
        "127.0.0.1:4000"
    ),
    bootstrap: Annotated[
        list[str] | None,
        typer.Option(help="A node to join through, HOST:PORT (repeatable).", show_default=False),
    ] = None,
    mesh: Annotated[
        list[str] | None,
        typer.Option(
            "--mesh", help="Follow this mesh id (repeatable; remembered).", show_default=False
        ),
    ] = None,
    pin: Annotated[
        list[str] | None,
        typer.Option(
            help="Follow and keep a full copy of this mesh even as a non-member (repeatable).",
            show_default=False,
        ),
    ] = None,
    k: Annotated[int, typer.Option(help="Replication factor and bucket size.")] = 20,
    republish: Annotated[float, typer.Option(help="Republish interval in seconds.")] = 3600.0,
    subnet_limit: Annotated[
        int,
        typer.Option(
            help="Contacts per /24 (IPv4) or /48 (IPv6) in one bucket; raise it for a "
            "mesh of many nodes on one LAN."
        ),
    ] = 2,
    sync_interval: Annotated[
        float, typer.Option(help="Seconds between anti-entropy rounds per followed mesh.")
    ] = 5.0,
    puzzle_bits: PuzzleOpt = 0,
    json_logs: Annotated[bool, typer.Option(help="Machine-readable JSON log lines.")] = False,
    bootstrap_timeout: Annotated[
        float,
        typer.Option(
            help="Seconds the join may take: a bootstrap node answering, then the lookups "
            "that fill the routing table (a dead bootstrap node costs ~3 s of it)."
        ),
    ] = 10.0,
) -> None:
    """Run a node in the foreground until Ctrl-C or SIGTERM (a restart rejoins by itself).

    Example: chorusdht join --listen 127.0.0.1:4001 --bootstrap 127.0.0.1:4000
    """
    d = data_dir_from(data_dir)
    if not 1 <= k <= MAX_K:
        raise fail(f"--k must be from 1 to {MAX_K}, got {k}", 2)
    if subnet_limit < 1:
        raise fail(f"--subnet-limit must be at least 1, got {subnet_limit}", 2)
    positive_seconds(republish, "--republish")
    positive_seconds(sync_interval, "--sync-interval")
    positive_seconds(bootstrap_timeout, "--bootstrap-timeout")
    with one_line_errors(2):  # a bad argument is a usage error
        listen_addr = parse_addr(listen)
        seeds = [parse_addr(b) for b in bootstrap or []]
        follow = [parse_hex_id(m) for m in mesh or []]
        pins = [parse_hex_id(m) for m in pin or []]
    try:
        config = NodeConfig(
            k=k,
            republish_interval=republish,
            require_membership=True,
            subnet_limit=subnet_limit,
            id_puzzle_bits=puzzle_bits,
        )
    except ConfigError as e:
        raise fail(str(e), 2) from None
    with one_line_errors():
        live = not json_logs and sys.stdout.isatty()
        log = _EventLog(json_logs)
        run = partial(
            run_daemon,
            d,
            listen_addr,
            seeds,
            config,
            follow=follow,
            pin=pins,
            bootstrap_timeout=bootstrap_timeout,
            sync_interval=sync_interval,
            log=log,
        )
        trio.run(_run_node, run, live, log)


class _EventLog:
    """Prints daemon events: `event k=v ...` lines, or one JSON object per line."""

    def __init__(self, json_logs: bool) -> None:
        self.json_logs = json_logs

    def __call__(self, event: str, **fields: object) -> None:
        if self.json_logs:
            print(json.dumps({"event": event, **fields}, sort_keys=True), flush=True)
        else:
            detail = " ".join(f"{k}={v}" for k, v in fields.items())
            print(f"{event} {detail}".rstrip(), flush=True)


async def _run_node(run: Any, live: bool, log: _EventLog) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals, plain_errors():
        async with trio.open_nursery() as nursery:

            async def stop_on_signal() -> None:
                async for signum in signals:
                    log("stopping", signal=signal.Signals(signum).name)
                    nursery.cancel_scope.cancel()
                    return

            nursery.start_soon(stop_on_signal)
            daemon: Daemon = await nursery.start(run)
            if live:
                nursery.start_soon(_live_status, daemon)
    log("stopped")


async def _live_status(daemon: Daemon) -> None:
    with Live(console=out, auto_refresh=False, transient=True) as view:
        while True:
            view.update(status_table(daemon.status()), refresh=True)
            await trio.sleep(1.0)


def status_table(s: dict[str, Any]) -> Table:
    """A running node's status as a rich table: node, overlay, store, backlog, meshes."""
    table = Table(title=f"chorusdht node {s['node_id'][:16]}… at {s['address']}", show_header=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    backlog = s["backlog"]
    table.add_row("contacts", f"{s['contacts']} ({backlog['stale_contacts']} stale)")
    table.add_row("stored records", str(s["stored_records"]))
    table.add_row("pending replication", str(backlog["pending_replication"]))
    table.add_row("dangling entries", str(backlog["dangling"]))
    table.add_row("uptime", f"{s['uptime']:.0f} s")
    for m in s["meshes"]:
        role = "member" if m["member"] else ("pinned" if m["pinned"] else "follower")
        table.add_row(
            f"mesh {m['id'][:12]}…",
            f"{escape(m['name'])} · {role} · {m['entries']} entries · root {m['root'][:12]}…",
        )
    stats = s["stats"]
    table.add_row(
        "traffic",
        f"{stats.get('datagrams_in', 0)} datagrams in, {stats.get('timeouts', 0)} timeouts",
    )
    return table


def status(data_dir: DataDirOpt = None, as_json: JsonOpt = False) -> None:
    """Ask the running node: id, address, contacts, records, pinned meshes, backlog.

    Example: chorusdht status --data-dir ./node1 --json
    """
    d = data_dir_from(data_dir)
    with one_line_errors():
        reply = call(d, "status")
    reply.pop("ok", None)
    if as_json:
        print(json.dumps(reply, indent=2, sort_keys=True))
    else:
        out.print(status_table(reply))
        out.print(f"public key: {reply['public_key']}")
