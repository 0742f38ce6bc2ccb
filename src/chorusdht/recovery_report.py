"""Survivor recovery's report, its progress hooks and its outputs (DESIGN §7, step 6).

`RecoveryReport` is what `recovery.recover` returns; `write_outputs` turns it into
`memory.jsonl` and `phase.json`, and `exit_code` into the CLI's exit status.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Protocol

from .memlog import MeshLog
from .records import Chunk, Genesis
from .seal import open_entry
from .transport import Address

__all__ = [
    "EXIT_COMPLETE",
    "EXIT_PARTIAL",
    "AuthorReport",
    "MissingChunk",
    "NullProgress",
    "PeerReport",
    "RecoveryProgress",
    "RecoveryReport",
    "Stage",
    "Timings",
    "entry_json",
    "exit_code",
    "write_outputs",
]

EXIT_COMPLETE = 0  # the contract for `chorusdht recover`
EXIT_PARTIAL = 3  # ... and 2 stays the usage-error code, set by the CLI


# ---- progress -----------------------------------------------------------------


class Stage(StrEnum):
    CRAWL = "crawl"  # units: nodes found
    FETCH = "fetch"  # units: records received (total grows as LIST pages arrive)
    VERIFY = "verify"  # units: records verified
    RESEED = "reseed"  # units: records republished


class RecoveryProgress(Protocol):
    """What the CLI's progress bars (or netsim's log) implement. Calls come from the trio thread."""

    def start(self, stage: Stage, total: int | None) -> None: ...

    def advance(self, stage: Stage, amount: int = 1, *, total: int | None = None) -> None: ...

    def finish(self, stage: Stage) -> None: ...


class NullProgress:
    """Progress that goes nowhere: the default."""

    def start(self, stage: Stage, total: int | None) -> None:
        pass

    def advance(self, stage: Stage, amount: int = 1, *, total: int | None = None) -> None:
        pass

    def finish(self, stage: Stage) -> None:
        pass


# ---- the report ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AuthorReport:
    author: bytes  # public key
    chunks: int  # valid chunks held (in the timeline or dangling)
    first_seq: int
    last_seq: int  # highest seq held
    phase: int  # highest seq up to which the chain is complete (DESIGN §5)
    head_seq: int | None  # seq of the best valid head found; None: no valid head survived
    gaps: tuple[tuple[int, int], ...]  # inclusive seq ranges in 1..max(last, head) not held
    forked_at: int | None  # lowest seq with two signed chunks (equivocation)


@dataclass(frozen=True, slots=True)
class MissingChunk:
    """A hash that held records name but that no reachable node gave."""

    hash: bytes
    author: bytes | None  # known when a `prev` or a head names it
    seq: int | None
    needed_by: bytes  # the earliest (lowest lamport) record naming it
    blocks: int  # held chunks kept out of the timeline by it


@dataclass(frozen=True, slots=True)
class PeerReport:
    node_id: bytes | None  # None: this node's own store
    addr: Address | None
    reached: bool  # answered its LIST
    listed: int  # keys it listed for the mesh
    given: int  # records it sent
    new: int  # records first obtained from it


@dataclass(frozen=True, slots=True)
class Timings:
    """Wall-clock seconds (time.perf_counter), for the benchmark and the CLI summary."""

    crawl: float
    fetch: float
    verify: float
    merge: float
    walk: float
    reseed: float


@dataclass(frozen=True, slots=True)
class RecoveryReport:
    mesh: bytes
    genesis: Genesis
    members: frozenset[bytes]
    authors: tuple[AuthorReport, ...]
    entries: int  # chunks in the timeline
    phase: dict[bytes, int]
    root: bytes
    expect_root: bytes | None
    missing: tuple[MissingChunk, ...]  # earliest first: missing[0] broke completeness
    dangling: int  # held chunks outside the timeline
    broken_links: int  # chunks whose `prev` is not their author's seq - 1 (MeshLog.invalid)
    dropped: dict[str, int]  # invalid records by reason (ErrorCode values, WRONG_MESH)
    peers: tuple[PeerReport, ...]
    nodes_found: int  # nodes the crawl found (reached or not)
    reseeded: int  # records republished with a write quorum (0 without `reseed`)
    reseed_failed: int
    timings: Timings
    log: MeshLog = field(repr=False, compare=False)
    sealed: int = 0  # timeline entries of an encrypted mesh that the key given (if any) cannot open
    mesh_key: bytes | None = field(default=None, repr=False, compare=False)

    @property
    def encrypted(self) -> bool:
        return self.genesis.policy.encrypted

    @property
    def exact(self) -> bool | None:
        """Whether the root is the expected one; None when none was given."""
        return None if self.expect_root is None else self.root == self.expect_root

    @property
    def complete(self) -> bool:
        """Nothing named is missing, nothing dangles, and the root is as expected (if given)."""
        return (
            not self.missing
            and not self.dangling
            and not self.broken_links
            and self.exact is not False
        )

    @property
    def broken_by(self) -> MissingChunk | None:
        """The missing chunk that broke completeness: the earliest one needed."""
        return self.missing[0] if self.missing else None

    @property
    def nodes_reached(self) -> int:
        return sum(p.reached for p in self.peers if p.node_id is not None)


def exit_code(report: RecoveryReport) -> int:
    """The CLI's exit status: 0 for a complete (and, if asked, exact) memory, else 3."""
    return EXIT_COMPLETE if report.complete else EXIT_PARTIAL


# ---- outputs ----------------------------------------------------------------------


def entry_json(c: Chunk, *, encrypted: bool = False, key: bytes | None = None) -> dict[str, object]:
    """One memory.jsonl line: payload as text when it is UTF-8, else base64 with a flag.

    In an encrypted mesh the payload is the plaintext `key` opens; an entry it cannot
    open keeps its ciphertext (base64) and says `"sealed": true`.
    """
    out: dict[str, object] = {
        "author": c.author.hex(),
        "seq": c.seq,
        "lamport": c.lamport,
        "hash": c.key.hex(),
    }
    payload = open_entry(c, encrypted, key)
    if payload is None:  # ciphertext is never text, even when its bytes happen to be UTF-8
        out["payload"] = base64.b64encode(c.payload).decode("ascii")
        out["payload_encoding"] = "base64"
        out["sealed"] = True
        return out
    try:
        out["payload"] = payload.decode("utf-8")
    except UnicodeDecodeError:
        out["payload"] = base64.b64encode(payload).decode("ascii")
        out["payload_encoding"] = "base64"
    return out


def write_outputs(report: RecoveryReport, out_dir: Path) -> tuple[Path, Path]:
    """Write `memory.jsonl` (timeline order) and `phase.json`; return their paths.

    Both files are written to temporary names first and renamed only then, so a crash or
    a failed write (OSError: the temporary files are removed) never leaves a half-written
    memory that looks complete, nor a new memory.jsonl beside an older phase.json.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    memory, phase = out_dir / "memory.jsonl", out_dir / "phase.json"
    memory_tmp, phase_tmp = memory.with_suffix(".jsonl.tmp"), phase.with_suffix(".json.tmp")
    try:
        _write_memory(report, memory_tmp)
        phase_tmp.write_text(json.dumps(_phase_doc(report), indent=2) + "\n", encoding="utf-8")
        memory_tmp.replace(memory)
        phase_tmp.replace(phase)
    except OSError:
        for tmp in (memory_tmp, phase_tmp):
            with contextlib.suppress(OSError):
                tmp.unlink()
        raise
    return memory, phase


def _write_memory(report: RecoveryReport, path: Path) -> None:
    digest = hashlib.sha256()
    with path.open("w", encoding="utf-8") as f:
        for c in report.log.timeline():
            digest.update(c.key)
            row = entry_json(c, encrypted=report.encrypted, key=report.mesh_key)
            f.write(json.dumps(row, ensure_ascii=False, separators=(",", ":")))
            f.write("\n")
    assert digest.digest() == report.root  # the file is exactly the proven timeline


def _phase_doc(report: RecoveryReport) -> dict[str, object]:
    return {
        "mesh": report.mesh.hex(),
        "root": report.root.hex(),
        "phase": {a.hex(): s for a, s in sorted(report.phase.items())},
        "entries": report.entries,
        "complete": report.complete,
        "encrypted": report.encrypted,
        "sealed": report.sealed,
    }
