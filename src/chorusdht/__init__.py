"""chorusdht: a Kademlia peer-to-peer memory mesh.

This module's `__all__` is the only import surface for `cli/` and `netsim/`.

Names are imported on first use (PEP 562), so `import chorusdht.records` loads the
record code alone: a recovery's verifying worker needs no trio, sockets or SQLite,
and starts in ~26-30 MiB instead of ~40-50.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Imported now: `seal` is also a submodule's name, and importing that submodule later
# would set the package attribute to the module, hiding the function from __getattr__.
from .seal import seal

if TYPE_CHECKING:
    from .config import MAX_K, MAX_PUZZLE_BITS, NodeConfig
    from .core import NodeCore
    from .daemon import (
        CONTROL_SOCKET,
        MAX_CONTROL_LINE,
        MESHES_FILE,
        Daemon,
        ImportFailed,
        chunk_row,
        control_path,
        error_code,
        parse_hex_id,
        parse_memory_line,
        plain_errors,
        run_daemon,
        unwritable_dir,
    )
    from .errors import (
        ChorusError,
        ConfigError,
        DecodeError,
        ErrorCode,
        LocalError,
        LookupFailed,
        NetworkError,
        NotFound,
        QuorumError,
        RemoteProtocolError,
        SealError,
        StoreError,
        ValidationError,
    )
    from .identity import ED25519, Crypto, Identity, load_or_create_identity
    from .ids import distance, id_to_int, int_to_id, puzzle_ok, sha256
    from .mesh import AppendResult, Mesh, Phase, SyncReport
    from .messages import Message, NodeInfo, decode_message, encode_message
    from .node import KEY_FILE, STORE_FILE, Node, open_node
    from .records import Chunk, Head, Record, head_key, make_chunk, make_head, select, validate
    from .recovery import (
        RecoveryProgress,
        RecoveryReport,
        Stage,
        exit_code,
        recover,
        write_outputs,
    )
    from .results import (
        BootstrapResult,
        GetResult,
        ListResult,
        LookupResult,
        NodesResult,
        OpDone,
        PingResult,
        PutResult,
        RecordsResult,
    )
    from .rto import RtoConfig
    from .seal import (
        MESH_KEY_BYTES,
        is_sealed,
        new_mesh_key,
        parse_mesh_key,
        read_key_file,
        unseal,
        write_key_file,
    )
    from .store import MemoryStore, RecordStore, SqliteStore
    from .transport import Address, Transport, UdpTransport, parse_addr, resolve_addr

_LAZY: dict[str, str] = {
    "MAX_K": "config",
    "MAX_PUZZLE_BITS": "config",
    "NodeConfig": "config",
    "NodeCore": "core",
    "CONTROL_SOCKET": "daemon",
    "MAX_CONTROL_LINE": "daemon",
    "MESHES_FILE": "daemon",
    "Daemon": "daemon",
    "ImportFailed": "daemon",
    "chunk_row": "daemon",
    "control_path": "daemon",
    "error_code": "daemon",
    "parse_hex_id": "daemon",
    "unwritable_dir": "daemon",
    "parse_memory_line": "daemon",
    "plain_errors": "daemon",
    "run_daemon": "daemon",
    "ChorusError": "errors",
    "ConfigError": "errors",
    "DecodeError": "errors",
    "ErrorCode": "errors",
    "LocalError": "errors",
    "LookupFailed": "errors",
    "NetworkError": "errors",
    "NotFound": "errors",
    "QuorumError": "errors",
    "RemoteProtocolError": "errors",
    "SealError": "errors",
    "StoreError": "errors",
    "ValidationError": "errors",
    "ED25519": "identity",
    "Crypto": "identity",
    "Identity": "identity",
    "load_or_create_identity": "identity",
    "distance": "ids",
    "id_to_int": "ids",
    "int_to_id": "ids",
    "puzzle_ok": "ids",
    "sha256": "ids",
    "AppendResult": "mesh",
    "Mesh": "mesh",
    "Phase": "mesh",
    "SyncReport": "mesh",
    "Message": "messages",
    "NodeInfo": "messages",
    "decode_message": "messages",
    "encode_message": "messages",
    "KEY_FILE": "node",
    "STORE_FILE": "node",
    "Node": "node",
    "open_node": "node",
    "Chunk": "records",
    "Head": "records",
    "Record": "records",
    "head_key": "records",
    "make_chunk": "records",
    "make_head": "records",
    "select": "records",
    "validate": "records",
    "RecoveryProgress": "recovery",
    "RecoveryReport": "recovery",
    "Stage": "recovery",
    "exit_code": "recovery",
    "recover": "recovery",
    "write_outputs": "recovery",
    "BootstrapResult": "results",
    "GetResult": "results",
    "ListResult": "results",
    "LookupResult": "results",
    "NodesResult": "results",
    "OpDone": "results",
    "PingResult": "results",
    "PutResult": "results",
    "RecordsResult": "results",
    "RtoConfig": "rto",
    "MESH_KEY_BYTES": "seal",
    "is_sealed": "seal",
    "new_mesh_key": "seal",
    "parse_mesh_key": "seal",
    "read_key_file": "seal",
    "unseal": "seal",
    "write_key_file": "seal",
    "MemoryStore": "store",
    "RecordStore": "store",
    "SqliteStore": "store",
    "Address": "transport",
    "Transport": "transport",
    "UdpTransport": "transport",
    "parse_addr": "transport",
    "resolve_addr": "transport",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'chorusdht' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__version__ = "0.1.0"

__all__ = [
    "CONTROL_SOCKET",
    "ED25519",
    "KEY_FILE",
    "MAX_CONTROL_LINE",
    "MAX_K",
    "MAX_PUZZLE_BITS",
    "MESHES_FILE",
    "MESH_KEY_BYTES",
    "STORE_FILE",
    "Address",
    "AppendResult",
    "BootstrapResult",
    "ChorusError",
    "Chunk",
    "ConfigError",
    "Crypto",
    "Daemon",
    "DecodeError",
    "ErrorCode",
    "GetResult",
    "Head",
    "Identity",
    "ImportFailed",
    "ListResult",
    "LocalError",
    "LookupFailed",
    "LookupResult",
    "MemoryStore",
    "Mesh",
    "Message",
    "NetworkError",
    "Node",
    "NodeConfig",
    "NodeCore",
    "NodeInfo",
    "NodesResult",
    "NotFound",
    "OpDone",
    "Phase",
    "PingResult",
    "PutResult",
    "QuorumError",
    "Record",
    "RecordStore",
    "RecordsResult",
    "RecoveryProgress",
    "RecoveryReport",
    "RemoteProtocolError",
    "RtoConfig",
    "SealError",
    "SqliteStore",
    "Stage",
    "StoreError",
    "SyncReport",
    "Transport",
    "UdpTransport",
    "ValidationError",
    "__version__",
    "chunk_row",
    "control_path",
    "decode_message",
    "distance",
    "encode_message",
    "error_code",
    "exit_code",
    "head_key",
    "id_to_int",
    "int_to_id",
    "is_sealed",
    "load_or_create_identity",
    "make_chunk",
    "make_head",
    "new_mesh_key",
    "open_node",
    "parse_addr",
    "parse_hex_id",
    "parse_memory_line",
    "parse_mesh_key",
    "plain_errors",
    "puzzle_ok",
    "read_key_file",
    "recover",
    "resolve_addr",
    "run_daemon",
    "seal",
    "select",
    "sha256",
    "unseal",
    "unwritable_dir",
    "validate",
    "write_key_file",
    "write_outputs",
]
