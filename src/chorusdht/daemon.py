"""The long-running node behind `chorusdht join`, and its local control socket.

    async with trio.open_nursery() as nursery:
        daemon = await nursery.start(
            partial(run_daemon, data_dir, ("0.0.0.0", 4000), [("seed.example", 4000)])
        )
        daemon.status()                                  # the same dict `chorusdht status` shows

`run_daemon` opens the node on its data dir, rejoins the overlay (through the
given bootstrap nodes, else through the contacts stored by the last run), loads
the meshes it follows (`meshes.json` in the data dir: from the local store after
a restart, from the DHT for a new one), keeps each in sync, and serves the
control socket.

The control socket is `control.sock` in the data dir, mode 0600: only the user
who runs the node can drive it. The protocol is one JSON object per line each
way. A request is `{"cmd": NAME, ...arguments}`; a reply is `{"ok": true, ...}`
or `{"error": "one line", "code": CODE}` where CODE is a wire error code
(NOT_MEMBER, TOO_LARGE, ...) or the name of the `ChorusError` class. Commands:

    status                             id, address, contacts, records, meshes, backlog, stats
    mesh_create  name, encrypt         found a mesh with this node's key (encrypt: a new mesh key)
    mesh_admit   mesh?, member (hex)   admit a public key
    mesh_show    mesh?, key            name, founder, members, entries, root (key: the mesh key)
    follow       mesh, pin, key?       follow (and pin) an existing mesh; key: its mesh key (hex)
    append       mesh?, text | b64, wait ("local" | "replicated")
    log          mesh?                 the timeline as rows (see `chunk_row`)
    phase        mesh?                 the phase vector and the root
    get          hash                  one verified record (local first, then the DHT)
    import       mesh?, lines, first   memory.jsonl lines, `first` is the first line's number

`mesh?` is a mesh id or a unique prefix of one; it may be left out when the node
follows exactly one mesh. The flags (encrypt, key of mesh_show, pin) are JSON true
or false: any other value is a bad request, not a guess.

The mesh key of an encrypted mesh (seal.py) is kept in meshes.json next to the
follow state, and that file is written with mode 0600. Rows of `log` and `get`
carry the plaintext when the node holds the key, and `"sealed": true` with the
ciphertext (base64) when it does not.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import trio

from .config import NodeConfig
from .errors import (
    ChorusError,
    ConfigError,
    DecodeError,
    ErrorCode,
    LocalError,
    LookupFailed,
    NotFound,
    StoreError,
    ValidationError,
)
from .mesh import AppendResult, Mesh
from .node import KEY_FILE, Node, open_node
from .records import Cert, Chunk, Genesis, Head, Record, Roster
from .recovery import entry_json
from .seal import parse_mesh_key

__all__ = [
    "CONTROL_SOCKET",
    "MAX_CONTROL_LINE",
    "MESHES_FILE",
    "Daemon",
    "ImportFailed",
    "chunk_row",
    "control_path",
    "error_code",
    "parse_hex_id",
    "parse_memory_line",
    "plain_errors",
    "run_daemon",
    "unwritable_dir",
]

CONTROL_SOCKET = "control.sock"
MESHES_FILE = "meshes.json"
MAX_CONTROL_LINE = 16 * 1024 * 1024  # one request line: an import batch of large entries fits
UNIX_PATH_MAX = 107  # sun_path is 108 bytes on Linux, one of them the terminating NUL
DEFAULT_SYNC_INTERVAL = 5.0  # s between anti-entropy rounds; a round costs only what is new

EventLog = Callable[..., None]  # log(event, **fields)
Wait = Literal["local", "replicated"]
Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


class ImportFailed(LocalError):
    """An import stopped at `line`; the `imported` entries before it are kept."""

    def __init__(self, line: int, imported: int, cause: ChorusError) -> None:
        super().__init__(f"line {line}: {cause}")
        self.line = line
        self.imported = imported
        self.code = error_code(cause)


def error_code(e: ChorusError) -> str:
    """The code an error crosses the control socket with: a wire code or the class name."""
    code = getattr(e, "code", None)
    if isinstance(e, ValidationError | DecodeError | ImportFailed) and code is not None:
        return str(code)
    return type(e).__name__


@contextlib.contextmanager
def plain_errors() -> Iterator[None]:
    """Turn a nursery's ExceptionGroup holding a ChorusError back into that one error."""
    try:
        yield
    except BaseExceptionGroup as group:
        matched = group.subgroup(lambda e: isinstance(e, ChorusError))
        while isinstance(matched, BaseExceptionGroup):
            matched = matched.exceptions[0] if matched.exceptions else None
        if isinstance(matched, ChorusError):
            raise matched from None
        raise


def control_path(data_dir: Path) -> Path:
    """Where a node's control socket lives; a ConfigError when the path is too long."""
    path = data_dir.absolute() / CONTROL_SOCKET
    if len(os.fsencode(path)) > UNIX_PATH_MAX:
        raise ConfigError(f"data dir path too long for a Unix socket (max ~90 chars): {data_dir}")
    return path


def parse_hex_id(text: str, what: str = "mesh id") -> bytes:
    """A 32-byte id from 64 hex digits, or one clear ConfigError."""
    try:
        raw = bytes.fromhex(text.strip())
    except ValueError:
        raise ConfigError(f"bad {what} {text!r}: expected 64 hex digits") from None
    if len(raw) != 32:
        raise ConfigError(f"bad {what} {text!r}: expected 64 hex digits, got {2 * len(raw)}")
    return raw


def unwritable_dir(path: Path) -> str | None:
    """Why files could not be written into directory `path` (made if missing), or None.

    Whatever writes its results at the end (`chorusdht recover`, `sim`, netsim's
    `run_scenario`, the scripts) checks this first, so a bad output directory is
    refused at once rather than after a long run."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".chorusdht-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        return e.strerror or str(e)
    return None


def parse_memory_line(raw: bytes, lineno: int) -> bytes | None:
    """One line of a memory.jsonl file → the payload to append; None for a blank line.

    A line is one JSON value. An object with a string `payload` (base64 when
    `payload_encoding` is "base64"), as `chorusdht log --json` and recovery write,
    appends that payload; any other JSON value appends the line itself. Raises
    LocalError naming the line.
    """
    try:
        text = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise LocalError(f"line {lineno}: not UTF-8 text") from None
    if not text:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise LocalError(f"line {lineno}: not JSON ({e.msg}, column {e.colno})") from None
    if isinstance(value, dict) and "payload" in value:
        if value.get("sealed") is True:
            raise LocalError(
                f"line {lineno}: a sealed entry that was never opened (recover with the mesh key)"
            )
        payload = value["payload"]
        if not isinstance(payload, str):
            raise LocalError(f"line {lineno}: `payload` is not a string")
        if value.get("payload_encoding") == "base64":
            try:
                return base64.b64decode(payload, validate=True)
            except binascii.Error:
                raise LocalError(f"line {lineno}: `payload` is not base64") from None
        try:
            return payload.encode()
        except UnicodeEncodeError:  # JSON escaped a lone surrogate ("\udcff")
            raise LocalError(f"line {lineno}: `payload` is not Unicode text") from None
    return text.encode()


def chunk_row(c: Chunk, *, encrypted: bool = False, key: bytes | None = None) -> dict[str, Any]:
    """A chunk as one JSON row, the memory.jsonl shape recovery writes, plus `time`."""
    return {**entry_json(c, encrypted=encrypted, key=key), "time": c.time}


def record_json(record: Record, mesh: Mesh | None = None) -> dict[str, Any]:
    """Any record as JSON (a chunk as its row, opened with `mesh`'s key if it has one)."""
    out: dict[str, Any] = {"kind": record.kind, "hash": record.key.hex(), "size": len(record.raw)}
    if isinstance(record, Chunk):
        encrypted, key = (mesh.encrypted, mesh.key) if mesh is not None else (False, None)
        out |= chunk_row(record, encrypted=encrypted, key=key) | {"mesh": record.mesh.hex()}
    elif isinstance(record, Head):
        out |= {"mesh": record.mesh.hex(), "author": record.author.hex(), "seq": record.seq}
        out |= {"chunk": record.hash.hex()}
    elif isinstance(record, Genesis):
        out |= {"mesh": record.key.hex(), "name": record.name, "founder": record.founder.hex()}
    elif isinstance(record, Cert):
        out |= {"mesh": record.mesh.hex(), "member": record.member.hex()}
        out |= {"admitter": record.admitter.hex()}
    elif isinstance(record, Roster):
        out |= {"mesh": record.mesh.hex(), "members": sorted(m.hex() for m in record.members())}
    return out


def _str(req: dict[str, Any], name: str) -> str:
    value = req.get(name)
    if not isinstance(value, str):
        raise LocalError(f"bad request: `{name}` must be a string")
    return value


def _opt_str(req: dict[str, Any], name: str) -> str | None:
    return None if req.get(name) is None else _str(req, name)


def _bool(req: dict[str, Any], name: str, default: bool) -> bool:
    """A JSON true or false (`default` when left out): "no" is not false."""
    value = req.get(name, default)
    if not isinstance(value, bool):
        raise LocalError(f"bad request: `{name}` must be true or false")
    return value


def load_followed(data_dir: Path) -> dict[bytes, bool]:
    """The meshes this node follows (mesh id → pinned), from meshes.json."""
    path = data_dir / MESHES_FILE
    try:
        doc = json.loads(path.read_text())
        return {bytes.fromhex(m["id"]): bool(m.get("pin", True)) for m in doc["meshes"]}
    except FileNotFoundError:
        return {}
    except (ValueError, KeyError, TypeError):
        raise ConfigError(f"corrupt {path}: fix or delete it") from None


def load_mesh_keys(data_dir: Path) -> dict[bytes, bytes]:
    """The mesh keys this node holds (mesh id → key), from meshes.json."""
    path = data_dir / MESHES_FILE
    try:
        doc = json.loads(path.read_text())
        return {
            bytes.fromhex(m["id"]): parse_mesh_key(m["key"])
            for m in doc["meshes"]
            if m.get("key") is not None
        }
    except FileNotFoundError:
        return {}
    except (ValueError, KeyError, TypeError, ConfigError):
        raise ConfigError(f"corrupt {path}: fix or delete it") from None


def save_followed(
    data_dir: Path, followed: dict[bytes, bool], keys: dict[bytes, bytes] | None = None
) -> None:
    """Write meshes.json atomically, mode 0600: it holds the mesh keys. A StoreError when
    it cannot be written (a full disk, say); the file is then left as it was."""
    keys = keys or {}
    doc = {
        "meshes": [
            {"id": k.hex(), "pin": v} | ({"key": keys[k].hex()} if k in keys else {})
            for k, v in sorted(followed.items())
        ]
    }
    path, tmp = data_dir / MESHES_FILE, data_dir / (MESHES_FILE + ".tmp")
    text = json.dumps(doc, indent=1) + "\n"
    with contextlib.suppress(OSError, UnicodeDecodeError):
        if path.read_text() == text and path.stat().st_mode & 0o077 == 0:
            return  # unchanged and private: nothing to write (a node restarting on a full disk)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            os.fchmod(f.fileno(), 0o600)  # a .tmp left by an older version may be 0644
            f.write(text)
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise StoreError(f"cannot write {path}: {e.strerror or e}") from None


class Daemon:
    """A serving node, the meshes it follows, and the control commands over them."""

    def __init__(self, node: Node, data_dir: Path, *, sync_interval: float) -> None:
        self.node = node
        self.data_dir = data_dir
        self.sync_interval = sync_interval
        self.meshes: dict[bytes, Mesh] = {}
        self.pinned: dict[bytes, bool] = {}
        self.keys: dict[bytes, bytes] = {}  # mesh keys of encrypted meshes (meshes.json)
        self.started = time.monotonic()
        self.handlers: dict[str, Handler] = {
            "status": self._status,
            "mesh_create": self._mesh_create,
            "mesh_admit": self._mesh_admit,
            "mesh_show": self._mesh_show,
            "follow": self._follow,
            "append": self._append,
            "log": self._log,
            "phase": self._phase,
            "get": self._get,
            "import": self._import,
        }

    # ---- meshes -------------------------------------------------------------

    async def follow(self, mesh_id: bytes, *, pin: bool, key: bytes | None = None) -> Mesh:
        """Follow a mesh: from the local store if it holds the genesis, else from the DHT.

        `key` is the mesh key of an encrypted mesh (also accepted for a mesh already
        followed); a wrong one is a ConfigError and is not kept."""
        mesh = self.meshes.get(mesh_id)
        if mesh is None:
            if self.node.core.store.get(mesh_id) is not None:
                mesh = Mesh.load(self.node, mesh_id)
                await mesh.start()
            else:
                try:
                    mesh = await Mesh.join(self.node, mesh_id, pin=pin)
                except LookupFailed:
                    raise LocalError(
                        f"unknown mesh {mesh_id.hex()}: no reachable node to fetch it from"
                    ) from None
            if key is not None:
                try:
                    mesh.set_key(key)
                except ConfigError:
                    mesh.forget()
                    raise
            self._adopt(mesh, pin)
            return mesh
        if key is not None and key != mesh.key:
            mesh.set_key(key)
            self.keys[mesh_id] = key
        if pin:
            self.pinned[mesh_id] = True
        # Written only if it changed; after a write that failed, a retry writes it.
        save_followed(self.data_dir, self.pinned, self.keys)
        return mesh

    def _adopt(self, mesh: Mesh, pin: bool) -> None:
        """Follow `mesh` from now on and remember it in meshes.json. When that file cannot
        be written (StoreError), the mesh is let go: nothing is followed half-way."""
        pinned = self.pinned | {mesh.id: pin}
        keys = self.keys | ({mesh.id: mesh.key} if mesh.key is not None else {})
        try:
            save_followed(self.data_dir, pinned, keys)
        except StoreError:
            mesh.forget()
            raise
        self.meshes[mesh.id] = mesh
        self.pinned, self.keys = pinned, keys
        self.node.spawn(mesh.sync_forever, self.sync_interval)

    def mesh(self, ref: str | None) -> Mesh:
        """The followed mesh `ref` names (an id or unique prefix), or the only one."""
        if ref is None:
            if len(self.meshes) == 1:
                return next(iter(self.meshes.values()))
            if not self.meshes:
                raise LocalError(
                    "this node follows no mesh: `chorusdht mesh create NAME` "
                    "or `chorusdht mesh follow ID`"
                )
            raise LocalError(f"this node follows {len(self.meshes)} meshes: pass --mesh ID")
        ref = ref.strip().lower()
        hits = [m for k, m in self.meshes.items() if k.hex().startswith(ref)] if ref else []
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            raise LocalError(f"mesh prefix {ref!r} is ambiguous: give more digits")
        raise LocalError(
            f"unknown mesh {ref}: this node does not follow it (`chorusdht mesh follow ID`)"
        )

    def mesh_json(self, mesh: Mesh, *, members: bool = False) -> dict[str, Any]:
        phase = mesh.phase()
        me = self.node.core.identity.public_key
        out: dict[str, Any] = {
            "id": mesh.id.hex(),
            "name": mesh.genesis.name,
            "founder": mesh.genesis.founder.hex(),
            "member": mesh.view.is_member(mesh.id, me),
            "pinned": self.pinned.get(mesh.id, False) or mesh.view.is_member(mesh.id, me),
            "entries": phase.entries,
            "root": phase.root.hex(),
            "authors": len(phase.vector),
            "dangling": len(mesh.dangling()),
            "rejected": mesh.rejected,
            "pending_replication": mesh.pending_replication,
            "encrypted": mesh.encrypted,
            "has_key": mesh.key is not None,
            "payload_limit": mesh.payload_limit,
        }
        if members:  # the detailed view: worth a pass over the timeline
            out["members"] = sorted(m.hex() for m in mesh.view.members())
            out["sealed"] = mesh.sealed_count()
        return out

    # ---- status -------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """What `chorusdht status` prints: identity, overlay, store, meshes, backlog."""
        core = self.node.core
        threshold = core.config.evict_after_failures
        contacts = list(core.table)
        meshes = [self.mesh_json(m) for m in self.meshes.values()]
        host, port = self.node.address
        return {
            "node_id": core.node_id.hex(),
            "public_key": core.identity.public_key.hex(),
            "address": f"{host}:{port}",
            "pid": os.getpid(),
            "data_dir": str(self.data_dir),
            "uptime": round(time.monotonic() - self.started, 1),
            "contacts": len(contacts),
            "stored_records": len(core.store),
            "meshes": meshes,
            "pinned": [m["id"] for m in meshes if m["pinned"]],
            "backlog": {
                "pending_replication": sum(m.pending_replication for m in self.meshes.values()),
                "stale_contacts": sum(1 for c in contacts if c.failures >= threshold),
                "dangling": sum(m["dangling"] for m in meshes),
            },
            "stats": dict(sorted(core.stats.items())),
        }

    # ---- control commands ---------------------------------------------------

    async def answer(self, line: bytes) -> dict[str, Any]:
        """One request line → one reply object. Never raises for bad input."""
        try:
            try:
                req = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):  # nested too deep
                raise LocalError("bad request: not a JSON line") from None
            if not isinstance(req, dict):
                raise LocalError("bad request: not a JSON object")
            try:  # JSON may escape a lone surrogate, which no UTF-8 encoder below takes
                json.dumps(req, ensure_ascii=False).encode()
            except UnicodeEncodeError:
                raise LocalError(
                    "bad request: a string is not Unicode text (a lone surrogate: bytes "
                    "that are not UTF-8?)"
                ) from None
            cmd = _str(req, "cmd")
            handler = self.handlers.get(cmd)
            if handler is None:
                raise LocalError(f"unknown control command {cmd!r}")
            return {"ok": True} | await handler(req)
        except ImportFailed as e:
            return {"error": str(e), "code": e.code, "line": e.line, "imported": e.imported}
        except ChorusError as e:
            return {"error": str(e), "code": error_code(e)}

    async def _status(self, req: dict[str, Any]) -> dict[str, Any]:
        return self.status()

    async def _mesh_create(self, req: dict[str, Any]) -> dict[str, Any]:
        name, encrypt = _str(req, "name"), _bool(req, "encrypt", False)
        mesh = await Mesh.create(self.node, name, encrypt=encrypt)
        self._adopt(mesh, True)
        out = self.mesh_json(mesh, members=True)
        if mesh.key is not None:
            out["key"] = mesh.key.hex()  # the one time it is told unasked: members need it
        return out

    async def _mesh_admit(self, req: dict[str, Any]) -> dict[str, Any]:
        mesh = self.mesh(_opt_str(req, "mesh"))
        member = parse_hex_id(_str(req, "member"), "public key")
        cert = await mesh.admit(member)
        return {"mesh": mesh.id.hex(), "member": member.hex(), "cert": cert.key.hex()}

    async def _mesh_show(self, req: dict[str, Any]) -> dict[str, Any]:
        mesh = self.mesh(_opt_str(req, "mesh"))
        out = self.mesh_json(mesh, members=True)
        if _bool(req, "key", False):
            if mesh.key is None:
                why = "it is not encrypted" if not mesh.encrypted else "this node has none"
                raise LocalError(f"no mesh key to show: {why}")
            out["key"] = mesh.key.hex()
        return out

    async def _follow(self, req: dict[str, Any]) -> dict[str, Any]:
        key = parse_mesh_key(_str(req, "key")) if req.get("key") is not None else None
        mesh_id = parse_hex_id(_str(req, "mesh"))
        mesh = await self.follow(mesh_id, pin=_bool(req, "pin", True), key=key)
        return self.mesh_json(mesh, members=True)

    async def _append(self, req: dict[str, Any]) -> dict[str, Any]:
        mesh = self.mesh(_opt_str(req, "mesh"))
        if "b64" in req:
            try:
                payload = base64.b64decode(_str(req, "b64"), validate=True)
            except binascii.Error:
                raise LocalError("bad request: `b64` is not base64") from None
        else:
            payload = _str(req, "text").encode()
        wait: Wait = "replicated" if req.get("wait") == "replicated" else "local"
        if req.get("wait", "local") not in ("local", "replicated"):
            raise LocalError("bad request: `wait` is local or replicated")
        res = await self._append_one(mesh, payload, wait)
        quorum = self.node.core.config.write_quorum
        return {
            "mesh": mesh.id.hex(),
            "hash": res.key.hex(),
            "seq": res.seq,
            "replicas": res.replicas,
            "wait": wait,
            "quorum": quorum,
        }

    async def _append_one(self, mesh: Mesh, payload: bytes, wait: Wait) -> AppendResult:
        try:
            return await mesh.append(payload, wait=wait)
        except ValidationError as e:
            if e.code is not ErrorCode.NOT_MEMBER:
                raise
            await mesh.refresh_roster()  # admitted since we followed? the roster says
            return await mesh.append(payload, wait=wait)

    async def _log(self, req: dict[str, Any]) -> dict[str, Any]:
        mesh = self.mesh(_opt_str(req, "mesh"))
        rows = [chunk_row(c, encrypted=mesh.encrypted, key=mesh.key) for c in mesh.timeline()]
        sealed = sum(1 for r in rows if r.get("sealed"))
        return {"mesh": mesh.id.hex(), "rows": rows, "dangling": len(mesh.dangling())} | {
            "sealed": sealed
        }

    async def _phase(self, req: dict[str, Any]) -> dict[str, Any]:
        mesh = self.mesh(_opt_str(req, "mesh"))
        phase = mesh.phase()
        vector = {a.hex(): s for a, s in sorted(phase.vector.items())}
        return {"mesh": mesh.id.hex(), "root": phase.root.hex(), "entries": phase.entries} | {
            "vector": vector,
            "dangling": len(mesh.dangling()),
        }

    async def _get(self, req: dict[str, Any]) -> dict[str, Any]:
        key = parse_hex_id(_str(req, "hash"), "hash")
        record = self.node.core.local_record(key)
        if record is None:
            try:
                record = (await self.node.get(key)).record
            except (NotFound, LookupFailed):
                raise NotFound(f"no reachable node holds {key.hex()}") from None
        mesh = self.meshes.get(record.mesh) if isinstance(record, Chunk) else None
        return record_json(record, mesh)

    async def _import(self, req: dict[str, Any]) -> dict[str, Any]:
        mesh = self.mesh(_opt_str(req, "mesh"))
        lines = req.get("lines")
        first = req.get("first", 1)
        if not isinstance(lines, list) or not isinstance(first, int) or isinstance(first, bool):
            raise LocalError("bad request: `lines` is a list of strings, `first` an int")
        imported = 0
        for i, line in enumerate(lines):
            try:
                if not isinstance(line, str):
                    raise LocalError("bad request: a line is not a string")
                payload = parse_memory_line(line.encode(), first + i)
                if payload is not None:
                    await self._append_one(mesh, payload, "local")
                    imported += 1
            except ChorusError as e:
                raise ImportFailed(first + i, imported, e) from None
        return {"mesh": mesh.id.hex(), "imported": imported}

    # ---- the socket ---------------------------------------------------------

    async def serve_control(
        self, path: Path, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Serve the control socket at `path` (mode 0600) until cancelled."""
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # left by a killed node: we hold the data-dir lock, so it is stale
        sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
        old = os.umask(0o177)  # the socket is created 0600: never reachable by others
        try:
            await sock.bind(str(path))
        except OSError as e:
            sock.close()
            raise ConfigError(f"cannot create the control socket {path}: {e.strerror}") from None
        finally:
            os.umask(old)
        os.chmod(path, 0o600)
        sock.listen(16)
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(trio.serve_listeners, self._client, [trio.SocketListener(sock)])
                task_status.started()
        finally:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    async def _client(self, stream: trio.SocketStream) -> None:
        buf = bytearray()
        try:
            async with stream:
                while data := await stream.receive_some(65536):
                    buf += data
                    while (end := buf.find(b"\n")) >= 0:
                        line = bytes(buf[:end])
                        del buf[: end + 1]
                        reply = await self.answer(line)
                        await stream.send_all(json.dumps(reply).encode() + b"\n")
                    if len(buf) > MAX_CONTROL_LINE:
                        reply = {"error": "request too large", "code": "TOO_LARGE"}
                        await stream.send_all(json.dumps(reply).encode() + b"\n")
                        return
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return  # the client went away mid-reply


def _quiet(event: str, **fields: object) -> None:
    """The default event log: say nothing."""


async def _rejoin(
    node: Node, seeds: Sequence[tuple[str, int]], timeout: float, log: EventLog
) -> None:
    """Join through `seeds`, else through the contacts the last run stored."""
    if not seeds and not node.core.store.load_contacts():
        log("alone", reason="first node: no bootstrap given")
        return
    with trio.move_on_after(timeout) as scope:
        try:
            res = await node.bootstrap(list(seeds))
        except LookupFailed:
            if seeds:
                where = ", ".join(f"{h}:{p}" for h, p in seeds)
                raise ConfigError(f"no bootstrap node answered ({where})") from None
            log("alone", reason="no stored contact answered")
            return
        log("joined", contacts=res.contacts)
    if scope.cancelled_caught:
        answered = len(node.core.table)  # it starts empty: a contact in it has answered
        if seeds and answered:
            raise ConfigError(
                f"the join did not finish within {timeout:g}s: a bootstrap node answered, but "
                "filling the routing table took longer (a dead bootstrap node costs ~3 s)"
            )
        if seeds:
            where = ", ".join(f"{h}:{p}" for h, p in seeds)
            raise ConfigError(f"no bootstrap node answered within {timeout:g}s ({where})")
        if answered:
            log("joined", contacts=answered)  # the join's lookups go on in the background
        else:
            log("alone", reason=f"no stored contact answered within {timeout:g}s")


async def run_daemon(
    data_dir: Path,
    listen: tuple[str, int],
    bootstrap: Sequence[tuple[str, int]],
    config: NodeConfig | None = None,
    *,
    follow: Sequence[bytes] = (),
    pin: Sequence[bytes] = (),
    bootstrap_timeout: float = 10.0,
    sync_interval: float = DEFAULT_SYNC_INTERVAL,
    log: EventLog = _quiet,
    task_status: trio.TaskStatus[Daemon] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run a node on `data_dir` until cancelled; `task_status.started(daemon)` once ready.

    `follow` meshes are followed (and pinned when this node's key is a member);
    `pin` meshes are followed and pinned regardless. Both are remembered in
    meshes.json, so a restart follows them again. Raises a plain ChorusError
    (never a group) for a bad key, a busy port, a locked data dir, an unreachable
    bootstrap or an unknown mesh.
    """
    config = config or NodeConfig(require_membership=True)
    sock_path = control_path(data_dir)
    if not (data_dir / KEY_FILE).exists():
        raise ConfigError(f"no key in {data_dir} (run `chorusdht init --data-dir {data_dir}`)")
    with plain_errors():
        async with open_node(listen=listen, data_dir=data_dir, config=config) as node:
            host, port = node.address
            log("listening", addr=f"{host}:{port}", node_id=node.node_id.hex())
            await _rejoin(node, bootstrap, bootstrap_timeout, log)
            daemon = Daemon(node, data_dir, sync_interval=sync_interval)
            wanted = load_followed(data_dir)
            keys = load_mesh_keys(data_dir)
            # meshes.json keeps what it remembers while the meshes load: a start that fails
            # on one of them must not drop the others (and their mesh keys) from the file.
            daemon.pinned, daemon.keys = dict(wanted), dict(keys)
            wanted |= {m: wanted.get(m, False) for m in follow} | {m: True for m in pin}
            for mesh_id, pinned in wanted.items():
                mesh = await daemon.follow(mesh_id, pin=pinned, key=keys.get(mesh_id))
                log("following", mesh=mesh_id.hex(), entries=mesh.phase().entries)
            await node.start(daemon.serve_control, sock_path)
            log("ready", control=str(sock_path))
            task_status.started(daemon)
            await trio.sleep_forever()
