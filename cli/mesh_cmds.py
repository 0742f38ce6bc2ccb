"""`chorusdht mesh create|admit|show|follow`: found a mesh, admit members, inspect it."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.table import Table

from chorusdht import parse_hex_id

from .client import call
from .common import DataDirOpt, JsonOpt, MeshOpt, data_dir_from, one_line_errors, out

__all__ = ["mesh_app"]

mesh_app = typer.Typer(
    help="Create a mesh, admit members, show it, follow it.",
    no_args_is_help=True,
)


def _print_mesh(m: dict[str, Any], as_json: bool) -> None:
    m.pop("ok", None)
    if as_json:
        print(json.dumps(m, indent=2, sort_keys=True))
        return
    table = Table(title=f"mesh {m['name']!r}", show_header=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    table.add_row("id", m["id"])
    table.add_row("founder", m["founder"])
    table.add_row("this node", "member" if m["member"] else "not a member")
    table.add_row("pinned here", "yes" if m["pinned"] else "no")
    table.add_row("entries", f"{m['entries']} from {m['authors']} author(s)")
    table.add_row("root", m["root"])
    table.add_row("dangling", str(m["dangling"]))
    for i, key in enumerate(m.get("members", [])):
        table.add_row("members" if i == 0 else "", key)
    out.print(table)


@mesh_app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="A label for the mesh (up to 128 characters).")],
    data_dir: DataDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Found a mesh with this node's key; the node follows and pins it.

    Example: chorusdht mesh create team-memory --data-dir ./node1
    """
    with one_line_errors():
        reply = call(data_dir_from(data_dir), "mesh_create", name=name)
    if as_json:
        _print_mesh(reply, True)
    else:
        out.print(f"created mesh {reply['name']!r}")
        print(reply["id"])


@mesh_app.command("admit")
def admit(
    pubkey: Annotated[str, typer.Argument(help="The new member's public key (64 hex digits).")],
    mesh: MeshOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Admit a member: sign a certificate for its public key and publish the roster.

    Example: chorusdht mesh admit 3f9a…e1 --data-dir ./node1
    """
    with one_line_errors():
        parse_hex_id(pubkey, "public key")
        reply = call(data_dir_from(data_dir), "mesh_admit", mesh=mesh, member=pubkey)
    out.print(f"admitted {reply['member']} to mesh {reply['mesh'][:16]}…")


@mesh_app.command("show")
def show(mesh: MeshOpt = None, data_dir: DataDirOpt = None, as_json: JsonOpt = False) -> None:
    """Show a followed mesh: name, founder, members, entries, root.

    Example: chorusdht mesh show --data-dir ./node1
    """
    with one_line_errors():
        reply = call(data_dir_from(data_dir), "mesh_show", mesh=mesh)
    _print_mesh(reply, as_json)


@mesh_app.command("follow")
def follow(
    mesh_id: Annotated[str, typer.Argument(help="The mesh id (64 hex digits).")],
    pin: Annotated[
        bool, typer.Option(help="Keep a full copy even when this node is not a member.")
    ] = True,
    data_dir: DataDirOpt = None,
) -> None:
    """Follow an existing mesh on the running node (remembered across restarts).

    Example: chorusdht mesh follow 9c4e…07 --data-dir ./node2
    """
    with one_line_errors():
        parse_hex_id(mesh_id)
        reply = call(data_dir_from(data_dir), "follow", mesh=mesh_id, pin=pin)
    out.print(f"following mesh {reply['name']!r} ({reply['entries']} entries so far)")
