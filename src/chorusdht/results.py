"""What the core's operations return, and the events that carry them to the driver."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import ChorusError
from .messages import NodeInfo
from .records import Record

__all__ = [
    "BootstrapResult",
    "Event",
    "GetResult",
    "ListResult",
    "LookupResult",
    "NodesResult",
    "OpDone",
    "PingResult",
    "PutResult",
    "RecordsResult",
]


@dataclass(frozen=True, slots=True)
class LookupResult:
    target: bytes
    nodes: tuple[NodeInfo, ...]  # the k closest live nodes found, closest first
    hops: int
    queries: int


@dataclass(frozen=True, slots=True)
class PutResult:
    key: bytes
    acks: int  # replicas that hold the record, counting this node if it is among the k closest
    replicas: tuple[bytes, ...]  # ids of the remote nodes that acknowledged
    queries: int  # RPCs this put sent, lookup included


@dataclass(frozen=True, slots=True)
class GetResult:
    key: bytes
    record: Record
    local: bool  # answered from this node's own store
    hops: int
    queries: int


@dataclass(frozen=True, slots=True)
class BootstrapResult:
    contacts: int  # routing-table size after the join lookup


@dataclass(frozen=True, slots=True)
class PingResult:
    node_id: bytes
    rtt: float


@dataclass(frozen=True, slots=True)
class ListResult:
    keys: tuple[bytes, ...]
    cursor: bytes | None  # None: the last page


@dataclass(frozen=True, slots=True)
class RecordsResult:
    records: tuple[bytes, ...]  # raw records, not yet validated by the caller


@dataclass(frozen=True, slots=True)
class NodesResult:
    """One peer's answer to one FIND_NODE: the contacts it knows nearest the target."""

    node_id: bytes
    nodes: tuple[NodeInfo, ...]


Result = (
    LookupResult
    | PutResult
    | GetResult
    | BootstrapResult
    | PingResult
    | ListResult
    | RecordsResult
    | NodesResult
)


@dataclass(frozen=True, slots=True)
class OpDone:
    """Operation `op_id` finished: `outcome` is its result, or the error it failed with."""

    op_id: int
    outcome: Result | ChorusError


Event = OpDone
