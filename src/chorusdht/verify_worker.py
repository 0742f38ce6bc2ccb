"""A recovery's verifying worker: `python -m chorusdht.verify_worker`, fed over pipes.

`check_batch` is the pure part of recovery's verify stage, and this module imports
only what it needs (records, codec, identity): no trio, sockets or SQLite, so a
worker starts in ~0.3 s and ~26-30 MiB. A multiprocessing pool would re-import the
parent's main module in every worker (the CLI's: typer, rich, all of chorusdht),
~40-50 MiB each.

Frames, both ways: a 4-byte big-endian length, then a pickle. In: (items, max_size),
where items are (key, raw) pairs; out: the verdicts, one per item. The worker ends
at end of input. Pickle is safe here: both ends are this program, over its own
pipes; records from the network arrive as bytes inside the frames.
"""

from __future__ import annotations

import pickle
import signal
import struct
import sys
from collections.abc import Sequence
from typing import BinaryIO

from .errors import ValidationError
from .identity import ED25519
from .records import Chunk, validate

__all__ = ["FRAME", "ChunkFields", "Verdict", "check_batch", "main"]

FRAME = struct.Struct(">I")

ChunkFields = tuple[bytes, bytes, int, bytes | None, tuple[bytes, ...], int, int, int]
Verdict = str | ChunkFields | None
"""Per record: a drop reason, a chunk's fields (mesh, author, seq, prev, parents,
lamport, time, payload size), or None for a valid record of another kind."""


def check_batch(items: Sequence[tuple[bytes, bytes]], max_size: int) -> list[Verdict]:
    """`validate` each (key, raw) without membership; runs in a worker process or here.

    Chunks come back as plain tuples, which pickle several times faster than
    dataclasses; the parent rebuilds `Chunk`s around the raw bytes it already holds.
    """
    out: list[Verdict] = []
    for key, raw in items:
        try:
            rec = validate(key, raw, crypto=ED25519, max_size=max_size)
        except ValidationError as e:
            out.append(e.code.value)
            continue
        if isinstance(rec, Chunk):
            f = (rec.mesh, rec.author, rec.seq, rec.prev, rec.parents, rec.lamport, rec.time)
            out.append((*f, rec.payload_size))
        else:
            out.append(None)
    return out


def _read(stream: BinaryIO, n: int) -> bytes | None:
    data = stream.read(n)
    return data if len(data) == n else None


def main(stdin: BinaryIO | None = None, stdout: BinaryIO | None = None) -> None:
    """Answer frames until the input ends."""
    src = stdin or sys.stdin.buffer
    dst = stdout or sys.stdout.buffer
    while (head := _read(src, FRAME.size)) is not None:
        body = _read(src, FRAME.unpack(head)[0])
        if body is None:
            return
        items, max_size = pickle.loads(body)
        reply = pickle.dumps(check_batch(items, max_size), protocol=pickle.HIGHEST_PROTOCOL)
        dst.write(FRAME.pack(len(reply)) + reply)
        dst.flush()


if __name__ == "__main__":
    # Ctrl-C on a terminal reaches the whole process group: the parent handles it and
    # closes our input, which ends us; a KeyboardInterrupt here would only print a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    main()
