"""Node configuration: every tunable of the core, each with its reason."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .errors import ConfigError
from .records import DEFAULT_MAX_RECORD
from .rto import RtoConfig

__all__ = ["MAX_K", "MAX_PUZZLE_BITS", "NodeConfig"]

MAX_PUZZLE_BITS = 32  # 2^32 key generations is days of grinding: beyond any sane setting


@dataclass(frozen=True, slots=True)
class NodeConfig:
    k: int = 20
    """Replication factor and bucket size (DESIGN §6)."""

    alpha: int = 3
    """Lookup queries in flight at once (DESIGN §6)."""

    lookup_settle: int = 3
    """A lookup ends once this many of the closest live candidates answered.

    Any closer node they knew would have been reported; querying all k costs
    ~k RPCs per lookup for no better result (see lookup.py)."""

    write_quorum: int = 3
    """A put fails with QuorumError when fewer replicas acknowledged it.

    Capped by the number of other nodes a put can find, so a three-node mesh
    still accepts writes; a node that reaches no one always fails."""

    retries: int = 1
    """Retransmissions of a request after its adaptive timeout (1% loss → 0.01% failures)."""

    address_book: int = 1024
    """Nodes heard of in lookup replies, beyond the routing table, remembered (oldest
    dropped first). After a mass failure that leaves few contacts alive, the sweep PINGs
    them: a survivor whose table held only the dead can still find the other survivors.
    After 99% died, 256 left one survivor in 20 alone in nuke-overlay (seed 5: none of
    its 256 was alive, 0.99^256 = 8%); 1024 leaves 0.003%, for at most ~200 KB.
    0: off (a large simulation where nobody dies spares the memory)."""

    evict_after_failures: int = 3
    """Consecutive failed requests before a contact is dropped (never after one, DESIGN §3)."""

    read_only: bool = False
    """A client node (BEP 43): its requests say so, and peers never add it to their
    routing tables or hand keys to it. For recovery and other short-lived clients."""

    require_membership: bool = False
    """Refuse chunks, heads and certs of meshes we cannot judge (no roster, no proof).

    `chorusdht join` turns this on: a node of a memory mesh stores nothing from
    non-members. The library default keeps a bare overlay usable for tests and
    benchmarks that store chunks of no real mesh."""

    rate_limit_per_ip: int | None = 1024
    """Requests per second accepted from one IP address (OpenDHT's default); None: off."""

    rate_limit_global: int | None = 8192
    """Requests per second accepted in all (OpenDHT's default); None: off."""

    max_store_bytes: int | None = 1 << 30
    """Record bytes this node accepts from others before answering QUOTA (1 GiB).
    Pinned meshes are exempt: they are never refused or evicted."""

    max_bytes_per_origin: int | None = 64 << 20
    """Record bytes accepted from one source address (64 MiB), so one peer cannot fill us."""

    max_record: int = DEFAULT_MAX_RECORD
    """Largest record accepted by STORE; larger ones get TOO_LARGE."""

    rto: RtoConfig = field(default_factory=RtoConfig)
    """Adaptive per-contact timeouts (RFC 6298)."""

    subnet_limit: int = 2
    """Contacts per /24 (IPv4) or /48 (IPv6) in one bucket; loopback is exempt."""

    max_contacts: int | None = None
    """Cap on the whole routing table (None: only the bucket structure bounds it)."""

    refresh_interval: float = 3600.0
    """A bucket with no lookup in this long is refreshed (Kademlia: 1 hour)."""

    republish_interval: float = 3600.0
    """Each holder re-pushes a key this often unless it was re-stored meanwhile."""

    republish_jitter: float = 0.5
    """Fraction of the interval added at random, so holders do not republish in step."""

    republish_batch: int = 8
    """Keys re-pushed in one go; more due keys follow after a short pause (no bursts)."""

    repair_delay: float = 30.0
    """After a close contact is found dead, its keys are republished within this long."""

    handoff: bool = True
    """Push held keys to a newly met node that is closer to them (DESIGN §6 hand-off)."""

    cache_on_get: bool = True
    """A successful get leaves copies: on the reader and on the closest node that lacked it."""

    stale_probe_interval: float = 30.0
    """How often contacts that stopped answering are pinged again (a few per tick)."""

    liveness_interval: float = 3600.0
    """A bucket whose least recently seen contact has been silent this long has it
    PINGed, at most once per bucket per interval: a node nobody asks for anything
    still learns of deaths near the keys it holds, and repairs them (see core)."""

    contacts_save_interval: float = 60.0
    """How often known contacts are written to the store for a restart."""

    admit_below: int | None = 10
    """A node that contacts us is challenged into a bucket only while the bucket holds
    fewer than this many contacts, or while it would be among our k closest known
    nodes (`RoutingTable.would_accept(below=)`). Each challenge costs a PING
    and a PONG, and in a growing network nearly every request comes from a stranger:
    without the bound, admission was half of all traffic (74 PINGs per join at 2,000
    nodes). Far buckets still fill to k from our own lookups, whose answers prove
    the nodes for free. None: challenge whenever the bucket has room."""

    verify_queue: int = 64
    """Unknown senders being challenged at once; more are ignored until a slot frees."""

    id_puzzle_bits: int = 0
    """S/Kademlia static puzzle: admit (and look up through) only contacts whose
    SHA-256(node id) has this many leading zero bits; 0 is off. An id then costs
    ~2^bits key generations instead of one, which prices Sybils; every node of the
    overlay must meet it, its own id included (`Identity.generate(puzzle_bits=...)`)."""

    def __post_init__(self) -> None:
        """Refuse values that would misbehave later: a zero interval spins a timer
        forever, a NaN compares false with every deadline. One line naming the field."""
        for name, low, high in _INT_RANGES:
            value = getattr(self, name)
            if value is None and name in _MAY_BE_NONE:
                continue
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                span = f"at least {low}" if high == _BIG else f"from {low} to {high}"
                raise ConfigError(f"{name} must be a whole number {span}, got {value!r}")
        for name in _INTERVALS:
            value = getattr(self, name)
            if not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
                raise ConfigError(f"{name} must be a positive number of seconds, got {value!r}")
        for name in _FLAGS:
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be True or False, got {getattr(self, name)!r}")
        jitter = self.republish_jitter
        if not 0 <= jitter <= 1:  # also false for NaN
            raise ConfigError(f"republish_jitter must be from 0 to 1, got {jitter!r}")


MAX_K = 1024  # replies carry at most MAX_CONTACTS_PER_REPLY anyway; beyond this is a typo
_BIG = 1 << 62  # "no practical limit" for counts and byte sizes
# (field, lowest, highest) for every whole-number setting.
_INT_RANGES: tuple[tuple[str, int, int], ...] = (
    ("k", 1, MAX_K),
    ("alpha", 1, MAX_K),
    ("lookup_settle", 1, MAX_K),
    ("write_quorum", 1, MAX_K),
    ("retries", 0, 100),
    ("address_book", 0, _BIG),
    ("evict_after_failures", 1, 1000),
    ("rate_limit_per_ip", 1, _BIG),
    ("rate_limit_global", 1, _BIG),
    ("max_store_bytes", 0, _BIG),
    ("max_bytes_per_origin", 0, _BIG),
    ("max_record", 1, _BIG),
    ("subnet_limit", 1, _BIG),
    ("max_contacts", 1, _BIG),
    ("republish_batch", 1, _BIG),
    ("admit_below", 1, _BIG),
    ("verify_queue", 1, _BIG),
    ("id_puzzle_bits", 0, MAX_PUZZLE_BITS),
)
_MAY_BE_NONE = frozenset(
    {
        "rate_limit_per_ip",
        "rate_limit_global",
        "max_store_bytes",
        "max_bytes_per_origin",
        "max_contacts",
        "admit_below",
    }
)
_FLAGS = ("read_only", "require_membership", "handoff", "cache_on_get")
_INTERVALS = (
    "refresh_interval",
    "republish_interval",
    "repair_delay",
    "stale_probe_interval",
    "liveness_interval",
    "contacts_save_interval",
)
