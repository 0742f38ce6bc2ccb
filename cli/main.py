"""The `chorusdht` command (typer + rich). Each command builds a config and calls the library."""

from __future__ import annotations

import typer

import chorusdht

app = typer.Typer(help="chorusdht: a Kademlia peer-to-peer memory mesh.", no_args_is_help=True)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"chorusdht {chorusdht.__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """chorusdht: signed, content-addressed memory on a Kademlia mesh."""
