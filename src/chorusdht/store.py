"""The record store: SQLite on disk, or a dict in memory for simulation.

Both backends implement `RecordStore`. `put` returns only after the record is
committed, so the core acknowledges a STORE only for what would survive a
`kill -9` (SQLite WAL with synchronous=NORMAL survives a process crash; pass
`synchronous="FULL"` to survive power loss too, at one fsync per record).

Records are kept by key with the mesh they belong to, so LIST can page through
one mesh's keys in key order. Known contacts are kept too, so a restarted node
rejoins without a bootstrap address.
"""

from __future__ import annotations

import bisect
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from .errors import StoreError

__all__ = ["MemoryStore", "RecordStore", "SqliteStore", "StoredContact"]

_NO_MESH = b"\x00" * 32  # records that belong to no mesh are listed under the zero id


@dataclass(frozen=True, slots=True)
class StoredContact:
    node_id: bytes
    host: str
    port: int
    last_seen: float


class RecordStore(Protocol):
    def get(self, key: bytes) -> bytes | None: ...

    def put(self, key: bytes, raw: bytes, *, mesh: bytes | None, kind: str) -> None: ...

    def delete(self, key: bytes) -> None: ...

    def __contains__(self, key: object) -> bool: ...

    def __len__(self) -> int: ...

    def keys(self) -> Iterator[bytes]: ...

    def list_mesh(self, mesh: bytes, after: bytes | None, limit: int) -> list[bytes]: ...

    def meshes(self) -> list[bytes]:
        """The mesh ids this store lists records under (the zero id for no mesh)."""
        ...

    def mesh_of(self, keys: list[bytes]) -> dict[bytes, bytes]:
        """The mesh id each of `keys` is listed under; keys not held are left out."""
        ...

    def total_bytes(self) -> int: ...

    def load_contacts(self) -> list[StoredContact]: ...

    def save_contacts(self, contacts: list[StoredContact]) -> None: ...

    def close(self) -> None: ...


class MemoryStore:
    """A dict-backed store for netsim and tests; `crash(keep_disk=True)` keeps it."""

    def __init__(self) -> None:
        self._records: dict[bytes, bytes] = {}
        self._mesh_keys: dict[bytes, list[bytes]] = {}
        self._mesh_of: dict[bytes, bytes] = {}
        self._contacts: list[StoredContact] = []
        self._bytes = 0

    def get(self, key: bytes) -> bytes | None:
        return self._records.get(key)

    def put(self, key: bytes, raw: bytes, *, mesh: bytes | None, kind: str) -> None:
        old = self._records.get(key)
        if old is not None:
            self._bytes -= len(old)
        else:
            m = mesh or _NO_MESH
            self._mesh_of[key] = m
            bisect.insort(self._mesh_keys.setdefault(m, []), key)
        self._records[key] = raw
        self._bytes += len(raw)

    def delete(self, key: bytes) -> None:
        raw = self._records.pop(key, None)
        if raw is None:
            return
        self._bytes -= len(raw)
        keys = self._mesh_keys[self._mesh_of.pop(key)]
        del keys[bisect.bisect_left(keys, key)]

    def __contains__(self, key: object) -> bool:
        return key in self._records

    def __len__(self) -> int:
        return len(self._records)

    def keys(self) -> Iterator[bytes]:
        return iter(list(self._records))

    def list_mesh(self, mesh: bytes, after: bytes | None, limit: int) -> list[bytes]:
        keys = self._mesh_keys.get(mesh, [])
        start = 0 if after is None else bisect.bisect_right(keys, after)
        return keys[start : start + limit]

    def meshes(self) -> list[bytes]:
        return sorted(m for m, keys in self._mesh_keys.items() if keys)

    def mesh_of(self, keys: list[bytes]) -> dict[bytes, bytes]:
        return {k: self._mesh_of[k] for k in keys if k in self._mesh_of}

    def total_bytes(self) -> int:
        return self._bytes

    def load_contacts(self) -> list[StoredContact]:
        return list(self._contacts)

    def save_contacts(self, contacts: list[StoredContact]) -> None:
        self._contacts = list(contacts)

    def close(self) -> None:
        pass


_KEYS_PER_QUERY = 500  # keys bound in one IN (...) query: under SQLite's oldest limit (999)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    key BLOB PRIMARY KEY,
    mesh BLOB NOT NULL,
    kind TEXT NOT NULL,
    raw BLOB NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS records_by_mesh ON records (mesh, key);
CREATE TABLE IF NOT EXISTS contacts (
    node_id BLOB PRIMARY KEY,
    host TEXT NOT NULL,
    port INTEGER NOT NULL,
    last_seen REAL NOT NULL
) WITHOUT ROWID;
"""


class SqliteStore:
    """Records and contacts in `<data dir>/store.sqlite3`, WAL mode."""

    def __init__(self, path: Path, *, synchronous: str = "NORMAL") -> None:
        if synchronous not in ("NORMAL", "FULL"):
            raise StoreError("synchronous must be NORMAL or FULL")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={synchronous}")
            self._db.execute("PRAGMA busy_timeout=2000")
            self._db.executescript(_SCHEMA)
            (self._count,) = self._db.execute("SELECT count(*) FROM records").fetchone()
            (total,) = self._db.execute(
                "SELECT coalesce(sum(length(raw)), 0) FROM records"
            ).fetchone()
            self._bytes = int(total)
        except sqlite3.DatabaseError as e:
            raise StoreError(f"cannot open store {path}: {e}") from None
        self.path = path

    def get(self, key: bytes) -> bytes | None:
        row = self._db.execute("SELECT raw FROM records WHERE key = ?", (key,)).fetchone()
        return None if row is None else bytes(row[0])

    def put(self, key: bytes, raw: bytes, *, mesh: bytes | None, kind: str) -> None:
        old = self.get(key)
        try:
            self._db.execute(
                "INSERT OR REPLACE INTO records (key, mesh, kind, raw) VALUES (?, ?, ?, ?)",
                (key, mesh or _NO_MESH, kind, raw),
            )
        except sqlite3.DatabaseError as e:
            raise StoreError(f"store write failed: {e}") from None
        if old is None:
            self._count += 1
        else:
            self._bytes -= len(old)
        self._bytes += len(raw)

    def delete(self, key: bytes) -> None:
        old = self.get(key)
        if old is not None:
            self._db.execute("DELETE FROM records WHERE key = ?", (key,))
            self._count -= 1
            self._bytes -= len(old)

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, bytes):
            return False
        return (
            self._db.execute("SELECT 1 FROM records WHERE key = ?", (key,)).fetchone() is not None
        )

    def __len__(self) -> int:
        return int(self._count)

    def keys(self) -> Iterator[bytes]:
        return iter([bytes(r[0]) for r in self._db.execute("SELECT key FROM records")])

    def list_mesh(self, mesh: bytes, after: bytes | None, limit: int) -> list[bytes]:
        rows = self._db.execute(
            "SELECT key FROM records WHERE mesh = ? AND key > ? ORDER BY key LIMIT ?",
            (mesh, after or b"", limit),
        )
        return [bytes(r[0]) for r in rows]

    def meshes(self) -> list[bytes]:
        rows = self._db.execute("SELECT DISTINCT mesh FROM records ORDER BY mesh")
        return [bytes(r[0]) for r in rows]

    def mesh_of(self, keys: list[bytes]) -> dict[bytes, bytes]:
        out: dict[bytes, bytes] = {}
        for i in range(0, len(keys), _KEYS_PER_QUERY):  # bounded by SQLite's variable limit
            batch = keys[i : i + _KEYS_PER_QUERY]
            marks = ",".join("?" * len(batch))
            rows = self._db.execute(
                f"SELECT key, mesh FROM records WHERE key IN ({marks})",  # only ? marks
                batch,
            )
            out.update((bytes(k), bytes(m)) for k, m in rows)
        return out

    def total_bytes(self) -> int:
        return self._bytes

    def load_contacts(self) -> list[StoredContact]:
        rows = self._db.execute(
            "SELECT node_id, host, port, last_seen FROM contacts ORDER BY last_seen DESC"
        )
        return [StoredContact(bytes(r[0]), r[1], int(r[2]), float(r[3])) for r in rows]

    def save_contacts(self, contacts: list[StoredContact]) -> None:
        with self._transaction():
            self._db.execute("DELETE FROM contacts")
            self._db.executemany(
                "INSERT OR REPLACE INTO contacts (node_id, host, port, last_seen) VALUES (?,?,?,?)",
                [(c.node_id, c.host, c.port, c.last_seen) for c in contacts],
            )

    def _transaction(self) -> _Tx:
        return _Tx(self._db)

    def integrity_ok(self) -> bool:
        (result,) = self._db.execute("PRAGMA integrity_check").fetchone()
        return bool(result == "ok")

    def close(self) -> None:
        self._db.close()


class _Tx:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._db.execute("COMMIT" if exc_type is None else "ROLLBACK")
