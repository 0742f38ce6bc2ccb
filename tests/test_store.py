"""The record stores: MemoryStore and SqliteStore must behave the same."""

from __future__ import annotations

import sqlite3
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chorusdht.errors import StoreError
from chorusdht.ids import sha256
from chorusdht.store import MemoryStore, RecordStore, SqliteStore, StoredContact

MESH_A = sha256(b"mesh a")
MESH_B = sha256(b"mesh b")
NO_MESH = b"\x00" * 32  # records put with mesh=None are listed under the zero id


def key(i: int) -> bytes:
    return sha256(b"key", i.to_bytes(4, "big"))


def raw(i: int, size: int = 10) -> bytes:
    return bytes([i % 256]) * size


Factory = Callable[[Path], RecordStore]
FACTORIES: dict[str, Factory] = {
    "memory": lambda path: MemoryStore(),
    "sqlite": lambda path: SqliteStore(path / "store.sqlite3"),
}


@pytest.fixture(params=sorted(FACTORIES))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RecordStore]:
    s = FACTORIES[request.param](tmp_path)
    yield s
    s.close()


def page_through(s: RecordStore, mesh: bytes, limit: int) -> list[bytes]:
    out: list[bytes] = []
    after: bytes | None = None
    while True:
        page = s.list_mesh(mesh, after, limit)
        assert len(page) <= limit
        out += page
        if len(page) < limit:
            return out
        after = page[-1]


# ---- one backend at a time (both, parametrized) ---------------------------------------------


def test_empty(store: RecordStore) -> None:
    assert len(store) == 0
    assert store.get(key(1)) is None
    assert key(1) not in store
    assert list(store.keys()) == []
    assert store.total_bytes() == 0
    assert store.list_mesh(MESH_A, None, 10) == []
    assert store.load_contacts() == []


def test_put_get_contains_len_total_bytes(store: RecordStore) -> None:
    store.put(key(1), raw(1, 10), mesh=MESH_A, kind="chunk")
    store.put(key(2), raw(2, 25), mesh=MESH_B, kind="head")
    store.put(key(3), raw(3, 5), mesh=None, kind="chunk")
    assert store.get(key(1)) == raw(1, 10)
    assert store.get(key(2)) == raw(2, 25)
    assert key(3) in store and key(4) not in store
    assert "not bytes" not in store and 7 not in store
    assert len(store) == 3
    assert store.total_bytes() == 40
    assert sorted(store.keys()) == sorted([key(1), key(2), key(3)])


def test_put_replaces_in_place(store: RecordStore) -> None:
    store.put(key(1), raw(1, 10), mesh=MESH_A, kind="head")
    store.put(key(1), raw(2, 30), mesh=MESH_A, kind="head")
    assert store.get(key(1)) == raw(2, 30)
    assert len(store) == 1
    assert store.total_bytes() == 30
    assert store.list_mesh(MESH_A, None, 10) == [key(1)]


def test_delete(store: RecordStore) -> None:
    for i in range(5):
        store.put(key(i), raw(i, 10 + i), mesh=MESH_A, kind="chunk")
    store.delete(key(2))
    store.delete(key(2))  # twice: no-op
    store.delete(key(99))  # never there: no-op
    assert store.get(key(2)) is None and key(2) not in store
    assert len(store) == 4
    assert store.total_bytes() == sum(10 + i for i in (0, 1, 3, 4))
    assert key(2) not in store.list_mesh(MESH_A, None, 10)
    store.put(key(2), raw(2), mesh=MESH_A, kind="chunk")  # and back
    assert len(store) == 5 and key(2) in store.list_mesh(MESH_A, None, 10)


@pytest.mark.parametrize("limit", [1, 3, 7, 40, 100])
def test_list_mesh_pages_in_key_order(store: RecordStore, limit: int) -> None:
    a_keys: list[bytes] = []
    b_keys: list[bytes] = []
    for i in range(60):
        mesh = MESH_A if i % 3 else MESH_B
        store.put(key(i), raw(i), mesh=mesh, kind="chunk")
        (a_keys if mesh == MESH_A else b_keys).append(key(i))
    assert page_through(store, MESH_A, limit) == sorted(a_keys)
    assert page_through(store, MESH_B, limit) == sorted(b_keys)
    assert store.list_mesh(sha256(b"other"), None, limit) == []


def test_mesh_of_names_each_held_keys_mesh_in_batches_past_the_query_limit(
    store: RecordStore,
) -> None:
    for i in range(1200):  # more than two SQLite IN (...) batches
        store.put(key(i), raw(i), mesh=MESH_A if i % 2 else MESH_B, kind="chunk")
    asked = [key(i) for i in range(1300)]  # the last 100 are not held
    got = store.mesh_of(asked)
    assert len(got) == 1200
    assert all(got[key(i)] == (MESH_A if i % 2 else MESH_B) for i in range(1200))
    assert store.mesh_of([]) == {}


def test_list_mesh_after_a_key_that_is_not_stored(store: RecordStore) -> None:
    keys = sorted(key(i) for i in range(10))
    for k in keys:
        store.put(k, b"r", mesh=MESH_A, kind="chunk")
    middle = bytes(a ^ b for a, b in zip(keys[4], b"\x00" * 31 + b"\x01", strict=True))
    expected = [k for k in keys if k > middle]
    assert store.list_mesh(MESH_A, middle, 100) == expected
    assert store.list_mesh(MESH_A, keys[-1], 100) == []
    assert store.list_mesh(MESH_A, b"\x00" * 32, 3) == keys[:3]


def test_records_without_a_mesh_are_listed_under_the_zero_id(store: RecordStore) -> None:
    store.put(key(1), b"r", mesh=None, kind="chunk")
    assert store.list_mesh(NO_MESH, None, 10) == [key(1)]


def test_contacts_round_trip(store: RecordStore) -> None:
    contacts = [
        StoredContact(sha256(b"n1"), "127.0.0.1", 4000, 10.5),
        StoredContact(sha256(b"n2"), "2001:db8::1", 65535, 3.25),
        StoredContact(sha256(b"n3"), "192.0.2.1", 1, 99.0),
    ]
    store.save_contacts(contacts)
    loaded = store.load_contacts()
    assert sorted(loaded, key=lambda c: c.node_id) == sorted(contacts, key=lambda c: c.node_id)
    assert all(isinstance(c.port, int) and isinstance(c.last_seen, float) for c in loaded)
    store.save_contacts(contacts[:1])  # a save replaces the previous list
    assert store.load_contacts() == contacts[:1]
    store.save_contacts([])
    assert store.load_contacts() == []


def test_contacts_do_not_touch_records(store: RecordStore) -> None:
    store.put(key(1), b"r", mesh=MESH_A, kind="chunk")
    store.save_contacts([StoredContact(sha256(b"n"), "127.0.0.1", 1, 0.0)])
    assert len(store) == 1 and store.total_bytes() == 1


# ---- the two backends side by side ----------------------------------------------------------

OPS = st.lists(
    st.tuples(
        st.sampled_from(["put", "delete"]),
        st.integers(min_value=0, max_value=15),
        st.integers(min_value=0, max_value=64),
    ),
    max_size=30,
)


def _observe(s: RecordStore) -> tuple[object, ...]:
    return (
        len(s),
        s.total_bytes(),
        sorted(s.keys()),
        {k: s.get(k) for k in map(key, range(16))},
        {k: k in s for k in map(key, range(16))},
        page_through(s, MESH_A, 3),
        page_through(s, MESH_B, 4),
        page_through(s, NO_MESH, 5),
    )


@settings(deadline=None, max_examples=40)
@given(ops=OPS)
def test_memory_and_sqlite_agree(ops: list[tuple[str, int, int]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        mem = MemoryStore()
        sql = SqliteStore(Path(tmp) / "store.sqlite3")
        try:
            for op, i, size in ops:
                # A key always belongs to the same mesh, as it does for real records
                # (a chunk's key hashes its mesh; a head's key is derived from it).
                mesh = (MESH_A, MESH_B, None)[i % 3]
                for s in (mem, sql):
                    if op == "put":
                        s.put(key(i), raw(i + size, size), mesh=mesh, kind="chunk")
                    else:
                        s.delete(key(i))
                assert _observe(mem) == _observe(sql)
            assert sql.integrity_ok()
        finally:
            sql.close()


# ---- SqliteStore on disk --------------------------------------------------------------------


def test_sqlite_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "data" / "store.sqlite3"  # the parent directory is created
    s = SqliteStore(path)
    for i in range(20):
        s.put(key(i), raw(i, 100 + i), mesh=MESH_A if i % 2 else MESH_B, kind="chunk")
    s.delete(key(3))
    s.put(key(4), raw(44, 7), mesh=MESH_B, kind="head")
    contacts = [StoredContact(sha256(b"n"), "127.0.0.1", 4321, 1.5)]
    s.save_contacts(contacts)
    before = (len(s), s.total_bytes(), sorted(s.keys()), page_through(s, MESH_A, 6))
    records = {k: s.get(k) for k in s.keys()}
    s.close()

    again = SqliteStore(path)
    try:
        assert (len(again), again.total_bytes(), sorted(again.keys())) == before[:3]
        assert page_through(again, MESH_A, 6) == before[3]
        assert {k: again.get(k) for k in again.keys()} == records
        assert again.get(key(3)) is None and again.get(key(4)) == raw(44, 7)
        assert again.load_contacts() == contacts
        assert again.integrity_ok()
    finally:
        again.close()


def test_sqlite_put_is_committed_before_it_returns(tmp_path: Path) -> None:
    """A second connection sees the record at once: nothing waits in an open transaction."""
    path = tmp_path / "store.sqlite3"
    writer = SqliteStore(path)
    reader = SqliteStore(path)
    try:
        writer.put(key(1), b"durable", mesh=MESH_A, kind="chunk")
        assert reader.get(key(1)) == b"durable"
        writer.save_contacts([StoredContact(sha256(b"n"), "127.0.0.1", 1, 2.0)])
        assert len(reader.load_contacts()) == 1
    finally:
        writer.close()
        reader.close()


def test_sqlite_uses_wal(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite3"
    SqliteStore(path).close()
    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        db.close()


def test_sqlite_integrity_ok(tmp_path: Path) -> None:
    s = SqliteStore(tmp_path / "store.sqlite3")
    try:
        assert s.integrity_ok()
        for i in range(200):
            s.put(key(i), raw(i, 500), mesh=MESH_A, kind="chunk")
        for i in range(0, 200, 3):
            s.delete(key(i))
        assert s.integrity_ok()
    finally:
        s.close()


def test_sqlite_full_synchronous_mode(tmp_path: Path) -> None:
    s = SqliteStore(tmp_path / "store.sqlite3", synchronous="FULL")
    try:
        s.put(key(1), b"r", mesh=MESH_A, kind="chunk")
        assert s.get(key(1)) == b"r" and s.integrity_ok()
    finally:
        s.close()


def test_sqlite_refuses_a_bad_synchronous_mode(tmp_path: Path) -> None:
    with pytest.raises(StoreError):
        SqliteStore(tmp_path / "store.sqlite3", synchronous="OFF")


def test_sqlite_refuses_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite3"
    path.write_bytes(b"this is not an SQLite database, just some text " * 100)
    with pytest.raises(StoreError):
        SqliteStore(path)
