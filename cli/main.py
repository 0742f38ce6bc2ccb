"""The `chorusdht` command (typer + rich): a thin shell over the library.

A command builds a config and calls `chorusdht`; a `ChorusError` becomes one
red line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Annotated

import trio
import typer
from rich.console import Console

import chorusdht
from chorusdht import ChorusError, ConfigError, Identity, NodeConfig, open_node, parse_addr

app = typer.Typer(
    help="chorusdht: signed, content-addressed memory on a Kademlia mesh.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
err = Console(stderr=True)
out = Console()

DataDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        "-d",
        help="Node data directory (default: $CHORUSDHT_HOME, then ~/.local/share/chorusdht).",
    ),
]


def data_dir_from(option: Path | None) -> Path:
    """--data-dir, then CHORUSDHT_HOME, then the per-user default."""
    if option is not None:
        return option
    if env := os.environ.get("CHORUSDHT_HOME"):
        return Path(env)
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "chorusdht"


def fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(code)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"chorusdht {chorusdht.__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """chorusdht: signed, content-addressed memory on a Kademlia mesh."""


@app.command()
def init(data_dir: DataDirOpt = None) -> None:
    """Create the node's key (mode 0600) and data directory.

    Example: chorusdht init --data-dir ./node1
    """
    d = data_dir_from(data_dir)
    key = d / chorusdht.KEY_FILE
    try:
        if key.exists():
            ident = Identity.load(key)
            out.print(f"already initialised: {d}")
        else:
            d.mkdir(parents=True, exist_ok=True)
            ident = Identity.generate()
            ident.save(key)
            out.print(f"initialised {d}")
    except ChorusError as e:
        raise fail(str(e)) from None
    except OSError as e:
        raise fail(f"cannot create {d}: {e.strerror}") from None
    out.print(f"node id:    {ident.node_id.hex()}")
    out.print(f"public key: {ident.public_key.hex()}")


@app.command()
def join(
    data_dir: DataDirOpt = None,
    listen: Annotated[
        str, typer.Option(help="UDP address to listen on, HOST:PORT.")
    ] = "127.0.0.1:4000",
    bootstrap: Annotated[
        list[str] | None,
        typer.Option(help="A node to join through, HOST:PORT (repeatable)."),
    ] = None,
    k: Annotated[int, typer.Option(help="Replication factor and bucket size.")] = 20,
    republish: Annotated[
        float, typer.Option(help="Republish interval in seconds.")
    ] = 3600.0,
    json_logs: Annotated[bool, typer.Option(help="Machine-readable JSON log lines.")] = False,
    bootstrap_timeout: Annotated[
        float, typer.Option(help="Seconds to wait for a bootstrap node to answer.")
    ] = 10.0,
) -> None:
    """Run a node in the foreground until Ctrl-C or SIGTERM.

    Example: chorusdht join --listen 127.0.0.1:4001 --bootstrap 127.0.0.1:4000
    """
    d = data_dir_from(data_dir)
    try:
        listen_addr = parse_addr(listen)
        seeds = [parse_addr(b) for b in bootstrap or []]
        if not (d / chorusdht.KEY_FILE).exists():
            raise ConfigError(f"no key in {d} (run `chorusdht init --data-dir {d}` first)")
        config = NodeConfig(k=k, republish_interval=republish)
        trio.run(_run_node, d, listen_addr, seeds, config, json_logs, bootstrap_timeout)
    except ChorusError as e:
        raise fail(str(e)) from None
    except ValueError as e:
        raise fail(str(e)) from None


def _log(json_logs: bool, event: str, **fields: object) -> None:
    if json_logs:
        print(json.dumps({"event": event, **fields}, sort_keys=True), flush=True)
    else:
        detail = " ".join(f"{k}={v}" for k, v in fields.items())
        print(f"{event} {detail}", flush=True)


async def _run_node(
    data_dir: Path,
    listen: tuple[str, int],
    seeds: list[tuple[str, int]],
    config: NodeConfig,
    json_logs: bool,
    bootstrap_timeout: float,
) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with open_node(listen=listen, data_dir=data_dir, config=config) as node:
            host, port = node.address
            _log(json_logs, "listening", addr=f"{host}:{port}", node_id=node.node_id.hex())
            stored = node.core.store.load_contacts()
            if seeds or stored:
                with trio.move_on_after(bootstrap_timeout) as scope:
                    try:
                        res = await node.bootstrap(seeds)
                        _log(json_logs, "joined", contacts=res.contacts)
                    except chorusdht.LookupFailed:
                        if seeds:
                            where = ", ".join(f"{h}:{p}" for h, p in seeds)
                            raise ConfigError(f"no bootstrap node answered ({where})") from None
                        _log(json_logs, "alone", reason="no stored contact answered")
                if scope.cancelled_caught:
                    raise ConfigError(f"bootstrap timed out after {bootstrap_timeout:g}s")
            else:
                _log(json_logs, "alone", reason="first node: no bootstrap given")
            async for signum in signals:
                _log(json_logs, "stopping", signal=signal.Signals(signum).name)
                break
    _log(json_logs, "stopped")


def run() -> None:
    """Entry point that also turns a stray Ctrl-C into a quiet exit."""
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
