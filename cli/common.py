"""What every command shares: consoles, the data-dir rule, common options, one-line errors."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from chorusdht import ChorusError, ConfigError, parse_mesh_key, read_key_file, unwritable_dir

__all__ = [
    "DataDirOpt",
    "JsonOpt",
    "KeyFileOpt",
    "MeshKeyOpt",
    "MeshOpt",
    "data_dir_from",
    "err",
    "fail",
    "mesh_key_from",
    "one_line_errors",
    "out",
    "positive_seconds",
    "unwritable_dir",
]

err = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)

DataDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        "-d",
        help="Node data directory (default: $CHORUSDHT_HOME, then ~/.local/share/chorusdht).",
        show_default=False,
    ),
]
MeshOpt = Annotated[
    str | None,
    typer.Option(
        "--mesh",
        "-m",
        help="Mesh id (or a unique prefix); default: the node's only followed mesh.",
        show_default=False,
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
KeyFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--key-file",
        help="File holding the mesh key of an encrypted mesh (64 hex digits).",
        show_default=False,
    ),
]
MeshKeyOpt = Annotated[
    str | None,
    typer.Option(
        "--mesh-key",
        help="The mesh key of an encrypted mesh, as 64 hex digits (prefer --key-file: "
        "a command line is visible to other local users).",
        show_default=False,
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
    """Print one red line on stderr; return the Exit to raise."""
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    return typer.Exit(code)


def mesh_key_from(key_file: Path | None, mesh_key: str | None) -> bytes | None:
    """The mesh key given by --key-file or --mesh-key (not both), or None."""
    if key_file is not None and mesh_key is not None:
        raise ConfigError("give --key-file or --mesh-key, not both")
    if key_file is not None:
        return read_key_file(key_file)
    if mesh_key is not None:
        return parse_mesh_key(mesh_key)
    return None


def positive_seconds(value: float, option: str) -> None:
    """Refuse (exit 2) a duration option that is not a finite number of seconds above 0."""
    if not (math.isfinite(value) and value > 0):
        raise fail(f"{option} must be a positive number of seconds, got {value:g}", 2)


@contextmanager
def one_line_errors(code: int = 1) -> Iterator[None]:
    """A ChorusError inside becomes one line on stderr and exit status `code`
    (1; 2 around the checks of a command's arguments: a usage error)."""
    try:
        yield
    except ChorusError as e:
        raise fail(str(e), code) from None
