"""`chorusdht mesh create|admit|show|follow`: found a mesh, admit members, inspect it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from chorusdht import ConfigError, parse_hex_id, write_key_file

from .client import NodeReplyError, call
from .common import (
    DataDirOpt,
    JsonOpt,
    KeyFileOpt,
    MeshKeyOpt,
    MeshOpt,
    data_dir_from,
    err,
    fail,
    mesh_key_from,
    one_line_errors,
    out,
    unwritable_dir,
)

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
    table = Table(title=f"mesh {escape(repr(m['name']))}", show_header=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    table.add_row("id", m["id"])
    table.add_row("founder", m["founder"])
    table.add_row("this node", "member" if m["member"] else "not a member")
    table.add_row("pinned here", "yes" if m["pinned"] else "no")
    table.add_row("entries", f"{m['entries']} from {m['authors']} author(s)")
    table.add_row("root", m["root"])
    table.add_row("dangling", str(m["dangling"]))
    if m.get("encrypted"):
        held = "held here" if m.get("has_key") else "[red]not held here[/]: entries stay sealed"
        table.add_row("encrypted", f"yes, mesh key {held}")
        if m.get("sealed"):
            table.add_row("sealed", f"{m['sealed']} entries this node cannot open")
    if "key" in m:
        table.add_row("mesh key", m["key"])
    for i, key in enumerate(m.get("members", [])):
        table.add_row("members" if i == 0 else "", key)
    out.print(table)


@mesh_app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="A label for the mesh (up to 128 characters).")],
    encrypt: Annotated[
        bool,
        typer.Option(
            "--encrypt",
            help="Seal every payload with a new mesh key, so that nodes that are not "
            "members store ciphertext only. Members need the key (out of band).",
        ),
    ] = False,
    key_file: Annotated[
        Path | None,
        typer.Option(
            "--key-file",
            help="With --encrypt: also write the mesh key to this file (mode 0600).",
            show_default=False,
        ),
    ] = None,
    data_dir: DataDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Found a mesh with this node's key; the node follows and pins it.

    Example: chorusdht mesh create team-memory --encrypt --key-file team.key -d ./node1
    """
    with one_line_errors():
        if key_file is not None and not encrypt:
            raise ConfigError("--key-file goes with --encrypt")
        if key_file is not None:  # checked before the mesh exists, not after
            if key_file.exists():
                raise ConfigError(f"{key_file} exists: will not overwrite a key file")
            if (problem := unwritable_dir(key_file.parent)) is not None:
                raise ConfigError(f"cannot write {key_file}: {problem}")
        reply = call(data_dir_from(data_dir), "mesh_create", name=name, encrypt=encrypt)
        if key_file is not None:
            try:
                write_key_file(key_file, bytes.fromhex(reply["key"]))
            except OSError as e:
                raise ConfigError(
                    f"cannot write {key_file}: {e.strerror} (`mesh show --key` prints it)"
                ) from None
    if as_json:
        _print_mesh(reply, True)
        return
    out.print(f"created mesh {escape(repr(reply['name']))}")
    if "key" in reply:
        where = f"; written to {key_file}" if key_file is not None else ""
        err.print(f"the mesh is encrypted: give its key to members only{where}")
        print(f"mesh key: {reply['key']}")
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
    with one_line_errors(2):  # a bad argument is a usage error
        parse_hex_id(pubkey, "public key")
    with one_line_errors():
        reply = call(data_dir_from(data_dir), "mesh_admit", mesh=mesh, member=pubkey)
    out.print(f"admitted {reply['member']} to mesh {reply['mesh'][:16]}…")


@mesh_app.command("show")
def show(
    mesh: MeshOpt = None,
    key: Annotated[
        bool, typer.Option("--key", help="Also print the mesh key of an encrypted mesh.")
    ] = False,
    data_dir: DataDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show a followed mesh: name, founder, members, entries, root.

    Example: chorusdht mesh show --data-dir ./node1
    """
    with one_line_errors():
        reply = call(data_dir_from(data_dir), "mesh_show", mesh=mesh, key=key)
    _print_mesh(reply, as_json)


@mesh_app.command("follow")
def follow(
    mesh_id: Annotated[str, typer.Argument(help="The mesh id (64 hex digits).")],
    pin: Annotated[
        bool, typer.Option(help="Keep a full copy even when this node is not a member.")
    ] = True,
    key_file: KeyFileOpt = None,
    mesh_key: MeshKeyOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Follow an existing mesh on the running node (remembered across restarts).

    An encrypted mesh's entries are read as plaintext only with its mesh key
    (--key-file or --mesh-key; given again later, it is added to a followed mesh).

    Example: chorusdht mesh follow 9c4e…07 --key-file team.key --data-dir ./node2
    """
    with one_line_errors(2):  # a bad argument is a usage error
        parse_hex_id(mesh_id)
        key = mesh_key_from(key_file, mesh_key)
    with one_line_errors():
        args: dict[str, Any] = {"mesh": mesh_id, "pin": pin}
        if key is not None:
            args["key"] = key.hex()
        try:
            reply = call(data_dir_from(data_dir), "follow", **args)
        except NodeReplyError as e:
            if e.code == "ConfigError":  # the node found the key wrong: bad input, as in recover
                raise fail(str(e), 2) from None
            raise
    name = escape(repr(reply["name"]))  # the founder's text, not markup
    out.print(f"following mesh {name} ({reply['entries']} entries so far)")
    if reply.get("encrypted") and not reply.get("has_key"):
        err.print("the mesh is encrypted and this node has no key: its entries stay sealed here")
    elif key is not None and reply["entries"] == 0:
        err.print("no entry yet to check the mesh key against: `chorusdht log` shows if it opens")
