"""chorusdht: a Kademlia peer-to-peer memory mesh.

This module's `__all__` is the only import surface for `cli/` and `netsim/`.
"""

from .config import NodeConfig
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
    StoreError,
    ValidationError,
)
from .identity import ED25519, Crypto, Identity, load_or_create_identity
from .ids import distance, id_to_int, int_to_id, sha256
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
    OpDone,
    PingResult,
    PutResult,
    RecordsResult,
)
from .rto import RtoConfig
from .store import MemoryStore, RecordStore, SqliteStore
from .transport import Address, Transport, UdpTransport, parse_addr, resolve_addr

__version__ = "0.1.0"

__all__ = [
    "CONTROL_SOCKET",
    "ED25519",
    "KEY_FILE",
    "MAX_CONTROL_LINE",
    "MESHES_FILE",
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
    "load_or_create_identity",
    "make_chunk",
    "make_head",
    "open_node",
    "parse_addr",
    "parse_hex_id",
    "parse_memory_line",
    "plain_errors",
    "recover",
    "resolve_addr",
    "run_daemon",
    "select",
    "sha256",
    "validate",
    "write_outputs",
]
