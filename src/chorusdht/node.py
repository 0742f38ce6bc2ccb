"""The trio driver: a thin shell that moves datagrams, timers and events for NodeCore.

    async with open_node(listen=("127.0.0.1", 0), data_dir=path) as node:
        await node.bootstrap([("127.0.0.1", 4000)])
        result = await node.put(chunk.raw, chunk.key)     # PutResult(acks=...)
        record = (await node.get(chunk.key)).record

Everything the node decides lives in `NodeCore`; this module only calls it with
`trio.current_time()` and carries out what it returns. Under
`trio.testing.MockClock` the same code runs in virtual time.
"""

from __future__ import annotations

import fcntl
import logging
import os
import random
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import trio

from .config import NodeConfig
from .core import NodeCore
from .errors import ChorusError, ConfigError, LocalError, StoreError
from .identity import Identity, Signer, load_or_create_identity
from .ids import puzzle_ok, require_id
from .messages import SinceEntry
from .records import Record
from .results import (
    BootstrapResult,
    GetResult,
    ListResult,
    LookupResult,
    NodesResult,
    PingResult,
    PutResult,
    RecordsResult,
    Result,
)
from .store import MemoryStore, RecordStore, SqliteStore
from .transport import Address, Transport, UdpTransport, resolve_addr

__all__ = ["KEY_FILE", "LOCK_FILE", "STORE_FILE", "Node", "open_node"]

KEY_FILE = "node.key"
STORE_FILE = "store.sqlite3"
LOCK_FILE = "node.lock"

R = TypeVar("R")
log = logging.getLogger("chorusdht.node")


@dataclass(slots=True)
class _Waiter:
    event: trio.Event
    outcome: Result | ChorusError | None = None


class Node:
    """One running node: a NodeCore plus a transport, driven by trio."""

    def __init__(self, core: NodeCore, transport: Transport) -> None:
        self.core = core
        self.transport = transport
        self._waiters: dict[int, _Waiter] = {}
        self._timer_scope: trio.CancelScope | None = None
        self._nursery: trio.Nursery | None = None
        self.meshes: dict[bytes, Any] = {}  # mesh id -> chorusdht.mesh.Mesh followed here
        core.on_record = self._on_record

    @property
    def node_id(self) -> bytes:
        return self.core.node_id

    @property
    def address(self) -> Address:
        return self.transport.local_addr

    async def serve(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Run until cancelled. Use `await nursery.start(node.serve)`."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._receive_loop)
            await nursery.start(self._timer_loop)
            task_status.started()

    def spawn(self, fn: Any, *args: Any) -> None:
        """Run a background task for as long as this node serves (meshes use this)."""
        if self._nursery is None:
            raise RuntimeError("the node is not serving")
        self._nursery.start_soon(fn, *args)

    async def start(self, fn: Any, *args: Any) -> Any:
        """Start a background task that reports readiness (`task_status`)."""
        if self._nursery is None:
            raise RuntimeError("the node is not serving")
        return await self._nursery.start(fn, *args)

    def _on_record(self, record: Record, now: float) -> None:
        mesh = self.meshes.get(record.mesh)
        if mesh is not None:
            mesh.on_record(record)

    async def _receive_loop(self) -> None:
        while True:
            data, addr = await self.transport.receive()
            try:
                self.core.receive_datagram(data, addr, trio.current_time())
            except Exception:  # a bug, but one datagram must never stop the node
                self.core.stats["internal_errors"] += 1
                log.exception("datagram from %s:%s raised; dropped", *addr)
            self.pump()

    async def _timer_loop(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            deadline = self.core.get_timer()
            with trio.CancelScope(deadline=deadline if deadline is not None else float("inf")) as s:
                self._timer_scope = s
                await trio.sleep_forever()
            self._timer_scope = None
            self.core.handle_timer(trio.current_time())
            self.pump()

    def pump(self) -> None:
        """Carry out what the core asked for: send datagrams, wake waiters, reset the timer."""
        core = self.core
        for data, addr in core.datagrams_to_send():
            self.transport.send(data, addr)
        while (event := core.next_event()) is not None:
            waiter = self._waiters.pop(event.op_id, None)
            if waiter is not None:
                waiter.outcome = event.outcome
                waiter.event.set()
        if self._timer_scope is not None:
            deadline = core.get_timer()
            self._timer_scope.deadline = deadline if deadline is not None else float("inf")

    async def _wait(self, op_id: int, kind: type[R]) -> R:
        waiter = _Waiter(trio.Event())
        self._waiters[op_id] = waiter
        self.pump()
        try:
            await waiter.event.wait()
        finally:
            self._waiters.pop(op_id, None)
        outcome = waiter.outcome
        if isinstance(outcome, ChorusError):
            raise outcome
        assert isinstance(outcome, kind), outcome
        return outcome

    # ---- public operations --------------------------------------------------

    async def bootstrap(
        self, addrs: Sequence[tuple[str, int] | str] | None = None
    ) -> BootstrapResult:
        """Join through `addrs` ((host, port) or "HOST:PORT", resolved here), or through
        stored contacts if none."""
        resolved = [resolve_addr(a) for a in addrs or []]
        op = self.core.bootstrap(resolved, trio.current_time())
        return await self._wait(op, BootstrapResult)

    async def put(
        self, raw: bytes, key: bytes, *, quorum: int | None = None, early: bool = False
    ) -> PutResult:
        """Store on the k closest nodes; with `early`, return once the quorum has it."""
        if not isinstance(raw, bytes):
            raise LocalError(f"a record is bytes, got {type(raw).__name__}")
        key = require_id(key, "key")
        op = self.core.put(raw, key, trio.current_time(), quorum=quorum, early=early)
        return await self._wait(op, PutResult)

    async def get(self, key: bytes) -> GetResult:
        key = require_id(key, "key")
        return await self._wait(self.core.get(key, trio.current_time()), GetResult)

    async def find_node(self, target: bytes) -> LookupResult:
        target = require_id(target, "target")
        return await self._wait(self.core.find_node(target, trio.current_time()), LookupResult)

    async def ping(self, addr: tuple[str, int] | str) -> PingResult:
        op = self.core.ping(resolve_addr(addr), trio.current_time())
        return await self._wait(op, PingResult)

    async def list_keys(
        self,
        addr: Address,
        mesh: bytes,
        cursor: bytes | None = None,
        limit: int = 256,
        since: tuple[SinceEntry, ...] | None = None,
        node_id: bytes | None = None,
    ) -> ListResult:
        now = trio.current_time()
        op = self.core.list_keys(addr, mesh, cursor, now, limit, since, node_id)
        return await self._wait(op, ListResult)

    async def get_many(
        self, addr: Address, keys: list[bytes], node_id: bytes | None = None
    ) -> RecordsResult:
        op = self.core.get_many(addr, keys, trio.current_time(), node_id)
        return await self._wait(op, RecordsResult)

    async def ask_nodes(self, addr: Address, node_id: bytes | None, target: bytes) -> NodesResult:
        """One FIND_NODE to one peer (a crawler's table dump), not an iterative lookup."""
        op = self.core.ask_nodes(addr, node_id, target, trio.current_time())
        return await self._wait(op, NodesResult)


class DataDirLock:
    """An exclusive lock on a data directory, so two nodes never share one store."""

    def __init__(self, data_dir: Path) -> None:
        self._path = data_dir / LOCK_FILE
        try:
            data_dir.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as e:
            raise ConfigError(f"cannot use data dir {data_dir}: {e.strerror}") from None
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.read(self._fd, 32).decode(errors="replace").strip() or "?"
            os.close(self._fd)
            raise StoreError(
                f"data dir {data_dir} is locked by another running node (pid {other})"
            ) from None
        os.ftruncate(self._fd, 0)
        os.write(self._fd, str(os.getpid()).encode())

    def release(self) -> None:
        os.close(self._fd)


@asynccontextmanager
async def open_node(
    *,
    listen: tuple[str, int] | str = ("127.0.0.1", 0),
    data_dir: Path | str | None = None,
    identity: Signer | None = None,
    store: RecordStore | None = None,
    config: NodeConfig | None = None,
    rng: random.Random | None = None,
    transport: Transport | None = None,
) -> AsyncIterator[Node]:
    """Start a node and stop it cleanly (contacts saved, store closed) on exit.

    With `data_dir`, the identity, the SQLite store and the lock live there;
    without it, the node is ephemeral (fresh key, in-memory store). `listen` is
    (host, port) or "HOST:PORT".
    """
    data_dir = Path(data_dir) if data_dir is not None else None
    lock = DataDirLock(data_dir) if data_dir is not None else None
    own_store = store is None
    try:
        bits = config.id_puzzle_bits if config is not None else 0
        if identity is None:
            identity = (
                load_or_create_identity(data_dir / KEY_FILE, bits)
                if data_dir
                else Identity.generate(bits)
            )
        if not puzzle_ok(identity.node_id, bits):
            raise ConfigError(
                f"this node's id does not meet the id puzzle of {bits} bits: make a new key "
                f"with `chorusdht init --puzzle-bits {bits}` in a fresh data dir"
            )
        if store is None:
            store = SqliteStore(data_dir / STORE_FILE) if data_dir else MemoryStore()
        if transport is None:
            transport = UdpTransport.bind(listen)
        core = NodeCore(
            identity,
            store,
            rng=rng or random.Random(),
            now=trio.current_time(),
            config=config,
        )
        node = Node(core, transport)
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(node.serve)
                try:
                    yield node
                finally:
                    nursery.cancel_scope.cancel()
        finally:
            core.close()
            transport.close()
            if own_store:
                store.close()
    finally:
        if lock is not None:
            lock.release()
