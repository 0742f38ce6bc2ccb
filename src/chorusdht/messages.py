"""Wire messages: frozen dataclasses and their canonical-CBOR form (DESIGN §3).

Every datagram is one CBOR map. The envelope fields are the same for all types:

    v   protocol version          t   message type (a short string)
    x   8-byte transaction id     i   sender node id (32 bytes)
    k   sender public key         c   optional challenge nonce (requests)
    cs  optional signature over the challenge (responses)
    ro  optional true: the sender is a read-only client (BEP 43 style)

A request that carries `c` asks the responder to prove it holds the key behind
its id: the response's `cs` signs `CHALLENGE_CONTEXT ‖ c ‖ requester id`. PING is
the request whose only content is that challenge; PONG its answer. Other requests
to a contact we have not verified yet carry a challenge too, so a lookup admits
new contacts without extra round trips.
"""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass
from typing import Any

from .codec import MAX_DATAGRAM, decode, encode
from .errors import ConfigError, DecodeError, ErrorCode

__all__ = [
    "CHALLENGE_CONTEXT",
    "PROTOCOL_VERSION",
    "Body",
    "ErrorReply",
    "FindNode",
    "FindValue",
    "GetMany",
    "Header",
    "List",
    "Listed",
    "Message",
    "NodeInfo",
    "Nodes",
    "Ping",
    "Pong",
    "Records",
    "SinceEntry",
    "Store",
    "Stored",
    "Value",
    "VersionMismatch",
    "challenge_payload",
    "decode_message",
    "encode_message",
    "share_node_infos",
    "shared_node_info",
]

PROTOCOL_VERSION = 1
TXID_BYTES = 8  # DESIGN §3: a random 8-byte transaction id
NONCE_BYTES = 16  # 128 bits: a challenge is never reused by chance
CHALLENGE_CONTEXT = b"chorusdht/challenge/v1"  # domain separation for challenge signatures
MAX_CONTACTS_PER_REPLY = 32  # k is 20 by default; a reply never needs more than k
MAX_KEYS_PER_REQUEST = 256  # LIST pages and GET_MANY batches; keeps a request under ~9 KiB
MAX_RECORDS_PER_REPLY = 64  # a VALUE/RECORDS reply is also bounded by the datagram size
MAX_PROOF_RECORDS = 8  # genesis + a chain of 7 admissions; longer chains are not carried
HOST_CACHE = 4096  # parsed addresses remembered; ipaddress parsing dominated reply decoding


def challenge_payload(nonce: bytes, requester_id: bytes) -> bytes:
    """The bytes a responder signs to answer a challenge from `requester_id`."""
    return CHALLENGE_CONTEXT + nonce + requester_id


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """A contact as sent in replies: id and address, no key (PING proves the key)."""

    node_id: bytes
    host: str
    port: int


# One NodeInfo per (id, host, port) in the process, however many tables hold that
# contact: netsim runs thousands of nodes in one process, and each table made its
# own copy for its replies (~56 bytes per contact). Frozen, so sharing is safe.
# 16,384 entries (~400 bytes each with the cache's own links) caps what a
# long-running real node spends on it at ~6 MB; netsim raises it for its node count
# (`share_node_infos`). Too small a cache does not fail, it only stops sharing: a
# 100,000-node run peaked 264 MiB lower once it was sized for the run.
SHARED_NODE_INFOS_DEFAULT = 1 << 14
_node_infos = functools.lru_cache(maxsize=SHARED_NODE_INFOS_DEFAULT)(NodeInfo)


def shared_node_info(node_id: bytes, host: str, port: int) -> NodeInfo:
    """The process-wide NodeInfo for (node_id, host, port), made on first use."""
    return _node_infos(node_id, host, port)


def share_node_infos(capacity: int) -> None:
    """Keep up to `capacity` NodeInfos shared process-wide (starts empty)."""
    global _node_infos
    if capacity < 1:
        raise ConfigError(f"share_node_infos needs a capacity of at least 1, got {capacity}")
    _node_infos = functools.lru_cache(maxsize=capacity)(NodeInfo)


@dataclass(frozen=True, slots=True)
class Header:
    txid: bytes
    sender_id: bytes
    sender_key: bytes
    challenge: bytes | None = None
    proof: bytes | None = None
    version: int = PROTOCOL_VERSION
    read_only: bool = False  # a client (BEP 43): answer it, never add it to a table


# ---- requests ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ping:
    TYPE = "ping"


@dataclass(frozen=True, slots=True)
class FindNode:
    target: bytes
    TYPE = "find_node"


@dataclass(frozen=True, slots=True)
class FindValue:
    key: bytes
    TYPE = "find_value"


@dataclass(frozen=True, slots=True)
class Store:
    """STORE(key, record). `proof` optionally carries the records that prove the
    signer's membership (genesis, then certs: membership.membership_proof), so a
    node that has never seen the mesh can still refuse non-members."""

    key: bytes
    record: bytes
    proof: tuple[bytes, ...] = ()
    TYPE = "store"


@dataclass(frozen=True, slots=True)
class List:
    """LIST(mesh, cursor): a page of the keys held for `mesh`, in key order.

    With `since` (a phase vector: per author, the seq it holds up to, and the hash
    of that chunk), a pinning node answers with the chunks the asker lacks instead,
    in causal order: the anti-entropy exchange of DESIGN §6, costing what is new.
    """

    mesh: bytes
    cursor: bytes | None
    limit: int
    since: tuple[SinceEntry, ...] | None = None
    TYPE = "list"


@dataclass(frozen=True, slots=True)
class SinceEntry:
    author: bytes
    seq: int
    tip: bytes  # hash of the author's chunk at `seq` (32 zero bytes: none)


@dataclass(frozen=True, slots=True)
class GetMany:
    keys: tuple[bytes, ...]
    TYPE = "get_many"


# ---- responses --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Pong:
    TYPE = "pong"


@dataclass(frozen=True, slots=True)
class Nodes:
    nodes: tuple[NodeInfo, ...]
    TYPE = "nodes"


@dataclass(frozen=True, slots=True)
class Value:
    """FIND_VALUE hit: the record(s) held for the key, plus closer contacts."""

    records: tuple[bytes, ...]
    nodes: tuple[NodeInfo, ...]
    TYPE = "value"


@dataclass(frozen=True, slots=True)
class Stored:
    TYPE = "stored"


@dataclass(frozen=True, slots=True)
class ErrorReply:
    code: ErrorCode
    detail: str
    TYPE = "error"


@dataclass(frozen=True, slots=True)
class Listed:
    keys: tuple[bytes, ...]
    cursor: bytes | None  # None: this was the last page
    TYPE = "listed"


@dataclass(frozen=True, slots=True)
class Records:
    records: tuple[bytes, ...]
    TYPE = "records"


Body = (
    Ping
    | FindNode
    | FindValue
    | Store
    | List
    | GetMany
    | Pong
    | Nodes
    | Value
    | Stored
    | ErrorReply
    | Listed
    | Records
)
REQUEST_TYPES = (Ping, FindNode, FindValue, Store, List, GetMany)
_REQUEST_NAMES = frozenset(t.TYPE for t in REQUEST_TYPES)


@dataclass(frozen=True, slots=True)
class Message:
    header: Header
    body: Body

    @property
    def is_request(self) -> bool:
        return isinstance(self.body, REQUEST_TYPES)


# ---- encoding ---------------------------------------------------------------


@functools.lru_cache(maxsize=HOST_CACHE)
def _pack_host(host: str) -> bytes:
    return ipaddress.ip_address(host).packed


@functools.lru_cache(maxsize=HOST_CACHE)
def _host_text(raw: bytes) -> str:
    return str(ipaddress.ip_address(raw))


def _unpack_host(raw: object) -> str:
    if not isinstance(raw, bytes) or len(raw) not in (4, 16):
        raise DecodeError("bad address")
    return _host_text(raw)


def _nodes_out(nodes: tuple[NodeInfo, ...]) -> list[Any]:
    """Each contact is one byte string: id (32) ‖ port (2, big-endian) ‖ IPv4 (4) or IPv6 (16).

    One CBOR item per contact instead of an array of three keeps a 20-contact reply
    near 900 bytes and makes it cheap to scan and decode.
    """
    return [n.node_id + n.port.to_bytes(2, "big") + _pack_host(n.host) for n in nodes]


def _body_fields(body: Body) -> dict[str, Any]:
    match body:
        case FindNode(target):
            return {"target": target}
        case FindValue(key):
            return {"key": key}
        case Store(key, record, proof):
            out: dict[str, Any] = {"key": key, "rec": record}
            if proof:
                out["proof"] = list(proof)
            return out
        case List(mesh, cursor, limit, since):
            out = {"mesh": mesh, "cursor": cursor, "limit": limit}
            if since is not None:
                out["since"] = [e.author + e.seq.to_bytes(8, "big") + e.tip for e in since]
            return out
        case GetMany(keys):
            return {"keys": list(keys)}
        case Nodes(nodes):
            return {"nodes": _nodes_out(nodes)}
        case Value(records, nodes):
            return {"recs": list(records), "nodes": _nodes_out(nodes)}
        case ErrorReply(code, detail):
            return {"code": code.value, "detail": detail}
        case Listed(keys, cursor):
            return {"keys": list(keys), "cursor": cursor}
        case Records(records):
            return {"recs": list(records)}
        case _:
            return {}


def encode_message(msg: Message) -> bytes:
    h = msg.header
    out: dict[str, Any] = {
        "v": h.version,
        "t": msg.body.TYPE,
        "x": h.txid,
        "i": h.sender_id,
        "k": h.sender_key,
    }
    if h.challenge is not None:
        out["c"] = h.challenge
    if h.proof is not None:
        out["cs"] = h.proof
    if h.read_only:
        out["ro"] = True
    out.update(_body_fields(msg.body))
    return encode(out, check=False)  # built here from checked parts; see codec.encode


class _Fields:
    """Typed access to a decoded map; every mismatch is a DecodeError."""

    __slots__ = ("m",)

    def __init__(self, m: dict[Any, Any]) -> None:
        self.m = m

    def raw(self, name: str, size: int | None = None, *, optional: bool = False) -> bytes | None:
        v = self.m.get(name)
        if v is None and optional:
            return None
        if not isinstance(v, bytes) or (size is not None and len(v) != size):
            raise DecodeError(f"field {name!r} must be {size or 'some'} bytes")
        return v

    def bytes_(self, name: str, size: int | None = None) -> bytes:
        v = self.raw(name, size)
        assert v is not None
        return v

    def int_(self, name: str, lo: int, hi: int) -> int:
        v = self.m.get(name)
        if type(v) is not int or not lo <= v <= hi:
            raise DecodeError(f"field {name!r} must be an int in [{lo}, {hi}]")
        return v

    def str_(self, name: str, limit: int) -> str:
        v = self.m.get(name)
        if not isinstance(v, str) or len(v) > limit:
            raise DecodeError(f"field {name!r} must be a short string")
        return v

    def bytes_list(self, name: str, limit: int, size: int | None = None) -> tuple[bytes, ...]:
        v = self.m.get(name)
        if not isinstance(v, list) or len(v) > limit:
            raise DecodeError(f"field {name!r} must be a list of at most {limit}")
        for item in v:
            if not isinstance(item, bytes) or (size is not None and len(item) != size):
                raise DecodeError(f"field {name!r} holds a bad item")
        return tuple(v)

    def nodes(self, name: str) -> tuple[NodeInfo, ...]:
        v = self.m.get(name)
        if not isinstance(v, list) or len(v) > MAX_CONTACTS_PER_REPLY:
            raise DecodeError("bad contact list")
        out = []
        for item in v:
            if not isinstance(item, bytes) or len(item) not in (38, 50):
                raise DecodeError("bad contact")
            port = int.from_bytes(item[32:34], "big")
            if port == 0:
                raise DecodeError("bad contact port")
            out.append(NodeInfo(item[:32], _unpack_host(item[34:]), port))
        return tuple(out)


def _decode_body(t: object, f: _Fields) -> Body:
    match t:
        case "ping":
            return Ping()
        case "find_node":
            return FindNode(f.bytes_("target", 32))
        case "find_value":
            return FindValue(f.bytes_("key", 32))
        case "store":
            proof = f.bytes_list("proof", MAX_PROOF_RECORDS) if "proof" in f.m else ()
            return Store(f.bytes_("key", 32), f.bytes_("rec"), proof)
        case "list":
            since = None
            if "since" in f.m:
                since = tuple(
                    SinceEntry(e[:32], int.from_bytes(e[32:40], "big"), e[40:])
                    for e in f.bytes_list("since", MAX_KEYS_PER_REQUEST, 72)
                )
            return List(
                f.bytes_("mesh", 32),
                f.raw("cursor", 32, optional=True),
                f.int_("limit", 1, MAX_KEYS_PER_REQUEST),
                since,
            )
        case "get_many":
            return GetMany(f.bytes_list("keys", MAX_KEYS_PER_REQUEST, 32))
        case "pong":
            return Pong()
        case "nodes":
            return Nodes(f.nodes("nodes"))
        case "value":
            return Value(f.bytes_list("recs", MAX_RECORDS_PER_REPLY), f.nodes("nodes"))
        case "stored":
            return Stored()
        case "error":
            code = f.str_("code", 32)
            try:
                ecode = ErrorCode(code)
            except ValueError:
                raise DecodeError(f"unknown error code {code!r}") from None
            return ErrorReply(ecode, f.str_("detail", 200))
        case "listed":
            return Listed(
                f.bytes_list("keys", MAX_KEYS_PER_REQUEST, 32), f.raw("cursor", 32, optional=True)
            )
        case "records":
            return Records(f.bytes_list("recs", MAX_RECORDS_PER_REPLY))
    raise DecodeError(f"unknown message type {t!r}")


class VersionMismatch(DecodeError):
    """A parsable envelope with a protocol version we do not speak; `header` says whom to tell."""

    def __init__(self, header: Header, is_request: bool) -> None:
        super().__init__(f"unsupported version {header.version}", ErrorCode.UNSUPPORTED_VERSION)
        self.header = header
        self.is_request = is_request  # only requests get an answer: never answer an answer


def decode_header(m: dict[Any, Any]) -> Header:
    """The envelope of a decoded map; raises DecodeError (UNSUPPORTED_VERSION first)."""
    f = _Fields(m)
    version = m.get("v")
    if type(version) is not int:
        raise DecodeError("missing version")
    txid = f.bytes_("x", TXID_BYTES)
    header = Header(
        txid=txid,
        sender_id=f.bytes_("i", 32),
        sender_key=f.bytes_("k", 32),
        challenge=f.raw("c", NONCE_BYTES, optional=True),
        proof=f.raw("cs", 64, optional=True),
        version=version,
        read_only=m.get("ro") is True,
    )
    return header


def decode_message(data: bytes, max_size: int = MAX_DATAGRAM) -> Message:
    """Parse one datagram. Raises only DecodeError.

    A message with a version we do not speak raises VersionMismatch, which carries
    the parsed header so the caller can answer UNSUPPORTED_VERSION.
    """
    obj = decode(data, max_size=max_size)
    if not isinstance(obj, dict):
        raise DecodeError("a message is a CBOR map")
    header = decode_header(obj)
    if header.version != PROTOCOL_VERSION:
        t = obj.get("t")
        raise VersionMismatch(header, isinstance(t, str) and t in _REQUEST_NAMES)
    return Message(header, _decode_body(obj.get("t"), _Fields(obj)))
