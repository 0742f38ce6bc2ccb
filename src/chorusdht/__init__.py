"""chorusdht: a Kademlia peer-to-peer memory mesh.

This module's `__all__` is the only import surface for `cli/` and `netsim/`.
"""

from .config import NodeConfig
from .core import NodeCore
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
from .messages import Message, NodeInfo, decode_message, encode_message
from .node import KEY_FILE, STORE_FILE, Node, open_node
from .records import Chunk, Head, Record, head_key, make_chunk, make_head, select, validate
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
    "ED25519",
    "KEY_FILE",
    "STORE_FILE",
    "Address",
    "BootstrapResult",
    "ChorusError",
    "Chunk",
    "ConfigError",
    "Crypto",
    "DecodeError",
    "ErrorCode",
    "GetResult",
    "Head",
    "Identity",
    "ListResult",
    "LocalError",
    "LookupFailed",
    "LookupResult",
    "MemoryStore",
    "Message",
    "NetworkError",
    "Node",
    "NodeConfig",
    "NodeCore",
    "NodeInfo",
    "NotFound",
    "OpDone",
    "PingResult",
    "PutResult",
    "QuorumError",
    "Record",
    "RecordStore",
    "RecordsResult",
    "RemoteProtocolError",
    "RtoConfig",
    "SqliteStore",
    "StoreError",
    "Transport",
    "UdpTransport",
    "ValidationError",
    "__version__",
    "decode_message",
    "distance",
    "encode_message",
    "head_key",
    "id_to_int",
    "int_to_id",
    "load_or_create_identity",
    "make_chunk",
    "make_head",
    "open_node",
    "parse_addr",
    "resolve_addr",
    "select",
    "sha256",
    "validate",
]
