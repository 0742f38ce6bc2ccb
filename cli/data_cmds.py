"""`chorusdht append|log|phase|get|import`: write and read a mesh through the running node."""

from __future__ import annotations

import base64
import json
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from chorusdht import ChorusError, ErrorCode, parse_hex_id, parse_memory_line

from .client import NodeReplyError, call, connect
from .common import DataDirOpt, JsonOpt, MeshOpt, data_dir_from, err, fail, one_line_errors, out

__all__ = ["append", "get", "import_", "log", "phase"]

IMPORT_BATCH = 64  # lines per control request: the bar moves, a request stays small
FOLLOW_POLL = 1.0  # s between timeline polls of `log --follow`
# Input to append over this many bytes is measured against the mesh's payload limit
# (asked of the node) before it is read: no mesh of default config takes even 16 KiB,
# and a 200 MB file should not be read, base64-encoded and sent only to be refused.
LARGE_INPUT = 1024 * 1024


class Wait(StrEnum):
    local = "local"
    replicated = "replicated"


def append(
    text: Annotated[
        str | None,
        typer.Argument(help="The entry text; omit it to read --file or stdin.", show_default=False),
    ] = None,
    mesh: MeshOpt = None,
    file: Annotated[
        Path | None, typer.Option("--file", "-f", help="Append this file's bytes, as they are.")
    ] = None,
    wait: Annotated[
        Wait, typer.Option(help="local: durable here; replicated: wait for the write quorum.")
    ] = Wait.local,
    data_dir: DataDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Append an entry to a mesh (durable on this node first, then replicated).

    Text read from stdin loses one trailing newline (the one `echo` adds); --file
    appends the file's bytes unchanged.

    Example: chorusdht append "the deploy key rotated" --wait replicated
    """
    d = data_dir_from(data_dir)
    if text is not None and file is not None:
        raise fail("give TEXT or --file, not both", 2)
    if file is not None:
        try:
            if (size := file.stat().st_size) > LARGE_INPUT:
                _refuse_over_limit(d, mesh, size, str(size))
            payload = file.read_bytes()
        except OSError as e:
            raise fail(f"cannot read {file}: {e.strerror}") from None
    elif text is not None and text != "-":
        payload = text.encode("utf-8", "surrogateescape")  # bytes not UTF-8 stay as given
    elif text == "-" or not sys.stdin.isatty():
        payload = sys.stdin.buffer.read(LARGE_INPUT + 1)
        if len(payload) > LARGE_INPUT:
            _refuse_over_limit(d, mesh, len(payload), f"over {LARGE_INPUT}")
            payload += sys.stdin.buffer.read()
        payload = payload.removesuffix(b"\n")
    else:
        raise fail("nothing to append: give TEXT, --file F, or pipe it on stdin", 2)
    with one_line_errors():
        try:
            reply = call(
                d,
                "append",
                mesh=mesh,
                b64=base64.b64encode(payload).decode(),
                wait=wait.value,
            )
        except KeyboardInterrupt:
            # The node answers once, after the replicas: it may have stored the entry (and
            # goes on replicating it), but no reply has told its hash.
            but = ", but its replication was not confirmed" if wait is Wait.replicated else ""
            raise fail(
                f"interrupted: the entry may already be stored on the node{but} "
                "(`chorusdht log` shows whether it is there)",
                130,
            ) from None
    if as_json:
        reply.pop("ok", None)
        print(json.dumps(reply, sort_keys=True))
        return
    out.print(f"appended seq {reply['seq']} {reply['hash']}", highlight=False)
    if wait is Wait.replicated:
        n = reply["replicas"]
        if n:
            out.print(f"replicas: {n} nodes acknowledged it")
        else:
            out.print(
                "[yellow]replicas: the write quorum was not reached;[/] the entry is durable "
                "here and members copy it when they sync"
            )


def _refuse_over_limit(data_dir: Path, mesh: str | None, size: int, told: str) -> None:
    """Fail as the node would for a payload of `size` bytes (`told` as the size said)
    over the mesh's payload limit, without sending it."""
    with one_line_errors():
        limit = int(call(data_dir, "mesh_show", mesh=mesh)["payload_limit"])
    if size > limit:
        raise fail(f"{ErrorCode.TOO_LARGE.value}: payload is {told} bytes, the limit is {limit}")


# Control characters as escapes in `log`'s text view: an entry is one line (a newline in a
# payload cannot pass for another author's entry) and no escape sequence reaches a terminal.
_ESCAPES = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0))} | {
    ord("\n"): "\\n",
    ord("\r"): "\\r",
    ord("\t"): "\\t",
}
_TERMINAL_ESCAPES = {c: e for c, e in _ESCAPES.items() if chr(c) not in "\n\t"}  # for `get`


def _row_text(row: dict[str, Any]) -> str:
    payload = row["payload"]
    if row.get("sealed"):
        payload = "<sealed>"
    elif row.get("payload_encoding") == "base64":
        payload = f"<{len(base64.b64decode(payload))} bytes>"
    else:
        payload = payload.translate(_ESCAPES)
    return (
        f"{row['author'][:8]} #{row['seq']:<4} L{row['lamport']:<5} {row['hash'][:12]}  {payload}"
    )


def log(
    mesh: MeshOpt = None,
    follow: Annotated[bool, typer.Option("--follow", help="Keep printing new entries.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per entry.")] = False,
    data_dir: DataDirOpt = None,
) -> None:
    """Print the merged timeline (the same order on every node holding the same entries).

    Example: chorusdht log --json > memory.jsonl
    """
    printed: set[str] = set()
    with one_line_errors(), connect(data_dir_from(data_dir)) as node:
        try:
            while True:
                reply = node.call("log", mesh=mesh)
                for row in reply["rows"]:
                    if row["hash"] in printed:
                        continue
                    printed.add(row["hash"])
                    if as_json:
                        print(json.dumps(row, ensure_ascii=False), flush=follow)
                    else:
                        print(_row_text(row), flush=follow)
                if not follow:
                    break
                time.sleep(FOLLOW_POLL)
        except KeyboardInterrupt:
            return
    if reply["dangling"] and not as_json:
        err.print(f"{reply['dangling']} entries wait for missing ancestors (not shown)")
    if reply.get("sealed") and not as_json:
        err.print(
            f"{reply['sealed']} entries are sealed: this node has no key that opens them "
            "(`chorusdht mesh follow ID --key-file F`)"
        )


def phase(mesh: MeshOpt = None, data_dir: DataDirOpt = None, as_json: JsonOpt = False) -> None:
    """Print the phase vector (each author's complete prefix) and the state root.

    Example: chorusdht phase --mesh 9c4e
    """
    with one_line_errors():
        reply = call(data_dir_from(data_dir), "phase", mesh=mesh)
    reply.pop("ok", None)
    if as_json:
        print(json.dumps(reply, indent=2, sort_keys=True))
        return
    table = Table("author", "complete up to seq")
    for author, seq in reply["vector"].items():
        table.add_row(author, str(seq))
    out.print(table)
    out.print(f"entries {reply['entries']}, dangling {reply['dangling']}")
    print(f"root {reply['root']}")


def get(
    hash_: Annotated[str, typer.Argument(metavar="HASH", help="The chunk hash (64 hex digits).")],
    data_dir: DataDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Print one verified chunk: from this node's store, else fetched from the DHT.

    Example: chorusdht get 5b1d…9a
    """
    with one_line_errors(2):  # a bad argument is a usage error
        parse_hex_id(hash_, "hash")
    with one_line_errors():
        reply = call(data_dir_from(data_dir), "get", hash=hash_)
    reply.pop("ok", None)
    if as_json or reply["kind"] != "chunk":
        print(json.dumps(reply, indent=2, sort_keys=True, ensure_ascii=False))
        return
    err.print(
        f"chunk {reply['hash']}\nauthor {reply['author']} seq {reply['seq']} "
        f"lamport {reply['lamport']} mesh {reply['mesh'][:16]}…",
        highlight=False,
    )
    if reply.get("sealed"):
        err.print("the payload is sealed: this node has no key that opens it")
    elif reply.get("payload_encoding") == "base64":  # not UTF-8 text
        payload = base64.b64decode(reply["payload"])
        if sys.stdout.isatty():  # as `log` shows it, never raw bytes on a terminal
            print(f"<{len(payload)} bytes>")
            err.print("binary payload: redirect stdout to a file to save it")
        else:
            sys.stdout.buffer.write(payload)
    elif sys.stdout.isatty():  # no escape sequence of the payload reaches a terminal
        print(reply["payload"].translate(_TERMINAL_ESCAPES))
    else:
        print(reply["payload"])


def import_(
    path: Annotated[Path, typer.Argument(metavar="FILE", help="A memory.jsonl file.")],
    mesh: MeshOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Import a file of memories, one JSON per line, appended in file order.

    A line with a string "payload" (as `log --json` and `recover` write) appends
    that payload; any other JSON line is appended as it is.

    Example: chorusdht import memory.jsonl --mesh 9c4e
    """
    try:
        raw_lines = path.read_bytes().split(b"\n")
    except OSError as e:
        raise fail(f"cannot read {path}: {e.strerror}") from None
    try:
        entries = sum(parse_memory_line(b, i) is not None for i, b in enumerate(raw_lines, 1))
    except ChorusError as e:
        raise fail(f"{path}: {e}; nothing was imported") from None
    imported = 0
    columns = (TextColumn("importing"), BarColumn(), MofNCompleteColumn())
    with (
        one_line_errors(),
        connect(data_dir_from(data_dir)) as node,
        Progress(*columns, console=err, transient=True, disable=not err.is_terminal) as bar,
        _ctrl_c_between_batches() as interrupted,
    ):
        task = bar.add_task("import", total=entries)
        for first in range(0, len(raw_lines), IMPORT_BATCH):
            if interrupted:
                raise fail(
                    f"{path}: interrupted; {imported} of {entries} entries were imported, "
                    f"the file up to line {first}",
                    130,
                )
            batch = [b.decode() for b in raw_lines[first : first + IMPORT_BATCH]]
            try:
                reply = node.call("import", mesh=mesh, lines=batch, first=first + 1)
            except NodeReplyError as e:
                done = imported + int(e.reply.get("imported", 0))
                raise fail(f"{path}: {e}; {done} of {entries} entries were imported") from None
            imported += reply["imported"]
            bar.update(task, completed=imported)
    out.print(f"imported {imported} entries into mesh {reply['mesh'][:16]}…")


@contextmanager
def _ctrl_c_between_batches() -> Iterator[list[int]]:
    """Ctrl-C lets the batch in flight finish, so an import can say exactly how much of
    the file is in (the list it yields becomes non-empty); a second Ctrl-C stops at once."""
    interrupted: list[int] = []

    def handler(signum: int, frame: object) -> None:
        if interrupted:
            raise KeyboardInterrupt
        interrupted.append(signum)

    old = signal.signal(signal.SIGINT, handler)
    try:
        yield interrupted
    finally:
        signal.signal(signal.SIGINT, old)
