"""The `chorusdht` command (typer + rich): a thin shell over the library.

A command builds a config and calls `chorusdht`; a `ChorusError` becomes one
red line on stderr and a non-zero exit, never a traceback. The commands live in
small modules: node_cmds (init, join, status), mesh_cmds (mesh ...), data_cmds
(append, log, phase, get, import), recover_cmd, sim; client.py talks to a
running node's control socket.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Annotated, NoReturn

import typer

import chorusdht

from .common import data_dir_from, fail
from .data_cmds import append, get, import_, log, phase
from .mesh_cmds import mesh_app
from .node_cmds import init, join, status
from .recover_cmd import recover_cmd
from .sim import sim

__all__ = ["app", "data_dir_from", "fail", "run"]

app = typer.Typer(
    help="chorusdht: signed, content-addressed memory on a Kademlia mesh.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


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
    """chorusdht: signed, content-addressed memory on a Kademlia mesh.

    Example: chorusdht init && chorusdht join --listen 127.0.0.1:4000
    """


app.command()(init)
app.command()(join)
app.command()(status)
app.add_typer(mesh_app, name="mesh")
app.command()(append)
app.command()(log)
app.command()(phase)
app.command()(get)
app.command("import")(import_)
app.command("recover")(recover_cmd)
app.command()(sim)


def run() -> None:
    """Entry point: typer's own parse errors are one line too, and a stray Ctrl-C
    or a reader that stops reading (`chorusdht log | head -1`) is a quiet exit.

    In standalone mode typer draws a usage error (a bad option value, a missing
    argument, an unknown command) as a usage line, a hint and a framed box; every
    other error of ours is one red line, so this entry point catches them instead.
    """
    try:
        code = app(standalone_mode=False)
    except KeyboardInterrupt:
        sys.exit(130)
    except SystemExit as e:  # typer's EPIPE handler: sys.exit(1) inside `except OSError`
        if isinstance(e.__context__, BrokenPipeError):
            _stdout_closed(0)
        raise
    except BaseExceptionGroup as group:  # inside trio's nurseries (recover, join)
        if group.subgroup(lambda e: isinstance(e, KeyboardInterrupt)) is not None:
            sys.exit(130)  # Ctrl-C
        if group.split(BrokenPipeError)[1] is None:  # `join`'s event lines, read by `head`
            _stdout_closed(0)
        raise
    except typer.Abort:  # EOF at a prompt
        fail("aborted")  # printed here: outside typer, a raised typer.Exit is a traceback
        sys.exit(1)
    except typer.TyperException as e:  # click's ClickException and UsageError
        sys.exit(_usage_error(e))
    status = code if isinstance(code, int) else 0
    try:
        sys.stdout.flush()  # the last lines, still buffered: their reader may be gone too
    except BrokenPipeError:
        _stdout_closed(status)
    sys.exit(status)


def _stdout_closed(status: int) -> NoReturn:
    """Exit with `status` when stdout's reader has gone: a closed pipe is no failure of
    the node or the network (exit 1), and what is still buffered for it is dropped
    rather than reported at exit."""
    with contextlib.suppress(OSError, ValueError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    sys.exit(status)


def _usage_error(e: typer.TyperException) -> int:
    """Print `e` as one line (with where to find help); return its exit status."""
    if type(e).__name__ == "NoArgsIsHelpError":  # typer printed the help already
        return e.exit_code
    ctx = getattr(e, "ctx", None)
    hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
    fail(e.format_message().rstrip(".") + hint)
    return e.exit_code
