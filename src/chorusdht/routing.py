"""Kademlia k-buckets with splitting (DESIGN §2, §6), sans-IO.

The table never pings, never reads a clock and never draws random numbers.
`offer()` returns a decision and the driver acts on it:

    Added(contact)      the contact is new and now in the table
    Updated(contact)    it was already there: moved to the tail (most recently seen)
    Rejected(reason)    own id, subnet limit or table cap; nothing changed
    BucketFull(oldest)  the bucket is full and cannot split: the newcomer waits in the
                        bucket's replacement cache; the driver PINGs `oldest` and then
                        calls `ping_succeeded` or `ping_failed`

Layout. The id space [0, 2**256) is partitioned into buckets, each a contiguous,
power-of-two aligned range [low, high). The table starts with one bucket covering
everything. A full bucket splits in half only while its range contains our own id
(standard Kademlia, no relaxed splitting), so the table holds about
k·log2(N/k) contacts in a network of N nodes. A bucket keeps its contacts least
recently seen (LRS) first, which is the order Kademlia evicts in: old contacts
that still answer are the most likely to stay up.

Subnet limit. At most `subnet_limit` contacts of one /24 (IPv4) or /48 (IPv6)
per bucket, so one operator with one address block cannot fill a bucket and
eclipse a region of the id space. Loopback is exempt so that a swarm of nodes on
one machine works. The limit is per bucket, not per table: a /24 may still hold
contacts spread over many buckets, which is what a small site behind one NAT
legitimately looks like.

`Contact` objects are owned by the table and updated in place (address,
last_seen, failures). Callers may keep references but must not mutate them.
"""

from __future__ import annotations

import functools
import ipaddress
from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TypeAlias

from .errors import ConfigError, LocalError
from .ids import ID_BITS, ID_BYTES, id_to_int

__all__ = [
    "DEFAULT_K",
    "DEFAULT_SUBNET_LIMIT",
    "REJECT_OWN_ID",
    "REJECT_SUBNET_LIMIT",
    "REJECT_TABLE_CAP",
    "Added",
    "BucketFull",
    "Contact",
    "Offer",
    "Rejected",
    "RoutingTable",
    "Updated",
    "share_ids",
    "subnet_group",
]

ID_SPACE = 1 << ID_BITS  # ids are 256-bit integers: the table covers [0, ID_SPACE)
DEFAULT_K = 20  # DESIGN §6: bucket size and replication factor
DEFAULT_SUBNET_LIMIT = 2  # two per /24 per bucket: room for a NAT'd pair, not for a Sybil farm
IPV4_PREFIX = 24  # a /24 is the smallest block routed on the internet: one operator
IPV6_PREFIX = 48  # a /48 is the usual per-site IPv6 allocation: one operator
_GROUP_CACHE_SIZE = 1 << 16  # distinct hosts remembered by subnet_group(); ~10 MB at most

REJECT_OWN_ID = "own id"
REJECT_SUBNET_LIMIT = "subnet limit"
REJECT_TABLE_CAP = "table cap"

# A subnet group: (4, /24 prefix), (6, /48 prefix), or (0, host) for a non-IP host.
_Group: TypeAlias = tuple[int, int | str]


@functools.lru_cache(maxsize=_GROUP_CACHE_SIZE)
def subnet_group(host: str) -> _Group | None:
    """The subnet a host counts against, or None if it is exempt (loopback).

    IPv4-mapped IPv6 addresses count as their IPv4 address, so one host cannot
    double its quota by switching notation. A host that is not an IP literal
    (the codec should never let one through) is its own group. Parsing is cached
    process-wide: the function is pure, and `offer` is a hot path in netsim.
    """
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return (0, host)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback:
        return None
    if ip.version == 4:
        return (4, int(ip) >> (32 - IPV4_PREFIX))
    return (6, int(ip) >> (128 - IPV6_PREFIX))


@dataclass(slots=True, eq=False)
class Contact:
    """A node we can talk to. Mutable: the table updates it in place.

    Compared by identity (a table holds one object per id): a bucket is a list, and
    finding a contact in it must not compare field by field.
    """

    node_id: bytes  # 32 bytes
    addr: tuple[str, int]  # (host, port); host is an IPv4/IPv6 literal
    int_id: int  # id_to_int(node_id), precomputed for distance arithmetic
    last_seen: float = 0.0
    failures: int = 0  # consecutive failed requests; reset by record_success
    # The driver's cached wire form of (id, addr); the table only clears it when
    # the address changes.
    wire: object = field(default=None, compare=False, repr=False)
    # The driver's RTT slot while the contact is in the table (`rto.RttTable.pin`),
    # else -1. The table never reads it.
    rtt: int = field(default=-1, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Added:
    """The contact was new and is now in the table."""

    contact: Contact


@dataclass(frozen=True, slots=True)
class Updated:
    """The contact was already present: moved to the tail, address updated."""

    contact: Contact


@dataclass(frozen=True, slots=True)
class Rejected:
    """The node was not added; `reason` is one of the REJECT_* constants.

    No contact changed. The bucket may have split on the way (a split is only
    structure, and the next offer would have made it anyway).
    """

    reason: str


@dataclass(frozen=True, slots=True)
class BucketFull:
    """The driver should PING `oldest`; the newcomer waits in the replacement cache."""

    oldest: Contact


Offer: TypeAlias = Added | Updated | Rejected | BucketFull


# The empty replacement cache and subnet counts every bucket starts with, shared
# until a bucket writes its first entry (`_Bucket.waiting`, `_Bucket._count`): two
# dicts per bucket were ~1.7 KB per node, most of them never written. Never mutated.
_NO_REPLACEMENTS: dict[bytes, Contact] = {}
_NO_GROUPS: dict[_Group, int] = {}


class _Bucket:
    """One range [low, high) of the id space: live contacts and replacements."""

    __slots__ = (
        "contacts",
        "groups",
        "high",
        "ids",
        "last_changed",
        "low",
        "mask",
        "replacements",
    )

    def __init__(self, low: int, high: int, last_changed: float) -> None:
        self.low = low
        self.high = high
        # Ranges are aligned, so (x ^ low) & mask is the nearest distance from x any
        # id in the range can have; distinct buckets give disjoint distance ranges.
        self.mask = ~(high - low - 1)
        self.last_changed = last_changed
        # A list, LRS first, and beside it the ids in the same order: k entries at
        # most, searched in C (`find`). This is the table's only index: a dict by id
        # (per bucket or per table) cost ~40 bytes per contact, the ids list ~10,
        # and netsim holds millions of contacts.
        self.contacts: list[Contact] = []
        self.ids: list[bytes] = []
        # A plain dict kept in order by re-inserting: an OrderedDict's links double
        # its size. Rarely more than a few entries; most buckets never have one, so
        # they share the empty `_NO_REPLACEMENTS` until their first (`waiting`).
        self.replacements: dict[bytes, Contact] = _NO_REPLACEMENTS  # oldest first
        # Live contacts per subnet group; loopback contacts count in none, so a
        # simulated or local swarm never needs a dict of its own here (`_count`).
        self.groups: dict[_Group, int] = _NO_GROUPS

    def find(self, node_id: bytes) -> Contact | None:
        ids = self.ids
        if node_id in ids:
            return self.contacts[ids.index(node_id)]
        return None

    def waiting(self) -> dict[bytes, Contact]:
        """The replacement cache, made this bucket's own before a write."""
        if self.replacements is _NO_REPLACEMENTS:
            self.replacements = {}
        return self.replacements

    def group_full(self, host: str, limit: int) -> bool:
        group = subnet_group(host)
        return group is not None and self.groups.get(group, 0) >= limit

    def add(self, contact: Contact) -> None:
        self.contacts.append(contact)
        self.ids.append(contact.node_id)
        self._count(contact.addr[0], 1)

    def pop(self, contact: Contact) -> None:
        i = self.contacts.index(contact)  # by identity (Contact has eq=False)
        del self.contacts[i]
        del self.ids[i]
        self._count(contact.addr[0], -1)

    def to_end(self, contact: Contact) -> None:
        """Move a contact of this bucket to the MRS end."""
        contacts = self.contacts
        if contacts[-1] is not contact:
            i = contacts.index(contact)
            del contacts[i]
            contacts.append(contact)
            ids = self.ids
            del ids[i]
            ids.append(contact.node_id)

    def readdress(self, contact: Contact, addr: tuple[str, int]) -> None:
        self._count(contact.addr[0], -1)
        contact.addr = addr
        contact.wire = None  # made for the old address
        self._count(addr[0], 1)

    def _count(self, host: str, delta: int) -> None:
        group = subnet_group(host)
        if group is None:
            return
        if self.groups is _NO_GROUPS:
            self.groups = {}
        count = self.groups.get(group, 0) + delta
        if count:
            self.groups[group] = count
        else:
            del self.groups[group]


class RoutingTable:
    """The k-bucket routing table of one node. See the module docstring."""

    def __init__(
        self,
        own_id: bytes,
        k: int = DEFAULT_K,
        *,
        subnet_limit: int = DEFAULT_SUBNET_LIMIT,
        max_contacts: int | None = None,
        replacement_size: int | None = None,
    ) -> None:
        _check_id(own_id)
        if k < 1 or subnet_limit < 1:
            raise ConfigError(f"k and subnet_limit must be >= 1, got {k} and {subnet_limit}")
        if max_contacts is not None and max_contacts < 0:
            raise ConfigError(f"max_contacts must be >= 0, got {max_contacts}")
        if replacement_size is not None and replacement_size < 0:
            raise ConfigError(f"replacement_size must be >= 0, got {replacement_size}")
        self.own_id = own_id
        self.k = k
        self.subnet_limit = subnet_limit
        self.max_contacts = max_contacts
        self.replacement_size = k if replacement_size is None else replacement_size
        self._own_int = id_to_int(own_id)
        # Buckets in id order; _lows mirrors their `low` bounds for bisection.
        self._buckets: list[_Bucket] = [_Bucket(0, ID_SPACE, 0.0)]
        self._lows: list[int] = [0]
        self._size = 0  # live contacts (found by id through their bucket: `get`)

    # -- offers ------------------------------------------------------------------

    def offer(self, node_id: bytes, addr: tuple[str, int], now: float) -> Offer:
        """Offer a node we heard from (verified per DESIGN §2); returns the decision.

        A known contact is moved to the tail with `last_seen = now` and its new
        address, unless the new address would break the subnet limit: then it is
        Rejected and keeps its old address. Its failure count is left alone:
        hearing a request from a node does not prove it answers ours.
        A node waiting in a replacement cache is offered like a new one: it moves
        into the bucket if there is room now, else it is refreshed in the cache.
        """
        bucket = self._bucket_for(_shared_int(node_id))
        contact = bucket.find(node_id)
        if contact is not None:
            if addr != contact.addr:
                if subnet_group(addr[0]) != subnet_group(contact.addr[0]) and bucket.group_full(
                    addr[0], self.subnet_limit
                ):
                    return Rejected(REJECT_SUBNET_LIMIT)
                bucket.readdress(contact, addr)
            contact.last_seen = now
            bucket.to_end(contact)
            bucket.last_changed = now
            return Updated(contact)

        if node_id == self.own_id:
            return Rejected(REJECT_OWN_ID)
        _check_id(node_id)
        int_id = _shared_int(node_id)
        bucket = self._bucket_for(int_id)
        while True:
            full = len(bucket.contacts) >= self.k
            splittable = full and self._splittable(bucket)
            if self._at_cap() and (not full or splittable):
                return Rejected(REJECT_TABLE_CAP)
            if splittable:
                self._split(bucket)
                bucket = self._bucket_for(int_id)
                continue
            if bucket.group_full(addr[0], self.subnet_limit):
                return Rejected(REJECT_SUBNET_LIMIT)
            break

        waiting = bucket.replacements.get(node_id)
        if waiting is None:
            waiting = Contact(node_id, addr, int_id, now)
        else:
            waiting.addr = addr
            waiting.wire = None
            waiting.last_seen = now
        if not full:
            bucket.replacements.pop(node_id, None)
            bucket.add(waiting)
            self._size += 1
            bucket.last_changed = now
            return Added(waiting)
        self._remember(bucket, waiting)
        return BucketFull(bucket.contacts[0])

    def would_accept(
        self,
        node_id: bytes,
        addr: tuple[str, int],
        *,
        room_only: bool = False,
        below: int | None = None,
    ) -> bool:
        """Whether `offer(node_id, addr, now)` would not be Rejected; changes nothing.

        Lets the driver skip the identity challenge (DESIGN §2) for a node the
        table would refuse anyway. A full bucket that cannot split still counts
        as accepting: the node would enter its replacement cache (BucketFull),
        unless `room_only` asks whether it would enter the bucket itself.
        `below` asks more: the bucket must hold fewer than `below` contacts, unless
        it is part of our neighbourhood (`_neighbourhood`), which always has a place.
        Splits that `offer` would make are simulated on the bucket's contacts.
        """
        int_id = _shared_int(node_id)
        bucket = self._bucket_for(int_id)
        contact = bucket.find(node_id)
        if contact is not None:
            if addr == contact.addr or subnet_group(addr[0]) == subnet_group(contact.addr[0]):
                return True
            return not bucket.group_full(addr[0], self.subnet_limit)
        if node_id == self.own_id:
            return False
        _check_id(node_id)
        low, high = bucket.low, bucket.high
        members: list[Contact] | None = None  # copied only if a split is simulated
        size = len(bucket.contacts)
        while True:
            full = size >= self.k
            splittable = full and high - low > 1 and low <= self._own_int < high
            if self._at_cap() and (not full or splittable):
                return False
            if not splittable:
                break
            mid = (low + high) // 2
            low, high = (low, mid) if int_id < mid else (mid, high)
            source = bucket.contacts if members is None else members
            members = [c for c in source if low <= c.int_id < high]
            size = len(members)
        if room_only and size >= self.k:
            return False  # it would only wait in the replacement cache
        if below is not None and size >= below and not self._neighbourhood(low, high):
            return False  # a far bucket with enough contacts already
        if members is None:
            return not bucket.group_full(addr[0], self.subnet_limit)
        group = subnet_group(addr[0])
        if group is None:
            return True
        same = sum(1 for c in members if subnet_group(c.addr[0]) == group)
        return same < self.subnet_limit

    def _neighbourhood(self, low: int, high: int) -> bool:
        """Whether fewer than k live contacts are nearer our own id than [low, high) is.

        Such a range holds some of our k closest known nodes, so a newcomer there
        is someone whose keys we may share: always worth a challenge.
        """
        own = self._own_int
        start = (own ^ low) & ~(high - low - 1)  # nearest distance the range can have
        nearer = 0
        for b in self._buckets:
            b_start = (own ^ b.low) & b.mask
            if b_start + (b.high - b.low) <= start:
                nearer += len(b.contacts)
            elif b_start < start:  # a bucket a split would cut: count its nearer half
                nearer += sum(1 for c in b.contacts if c.int_id ^ own < start)
            if nearer >= self.k:
                return False
        return True

    # -- outcomes reported by the driver -----------------------------------------

    def remove(self, node_id: bytes) -> bool:
        """Remove a live contact and promote a replacement into its slot.

        Returns True if `node_id` was a live contact. The id is also dropped
        from its bucket's replacement cache (that alone does not count as a
        removal). The driver decides when to remove: DESIGN §3 asks for several
        consecutive failures at the contact's own timeout, never one.
        """
        contact = self._pop(node_id)
        bucket = self._bucket_for(id_to_int(node_id))
        bucket.replacements.pop(node_id, None)
        if contact is None:
            return False
        self._promote(bucket)
        return True

    def ping_failed(self, oldest_id: bytes) -> Contact | None:
        """The LRS contact failed its eviction ping: evict it, promote a replacement.

        The promoted contact is the most recently seen replacement whose subnet
        still has room in the bucket; returns it, or None if nothing was promoted
        (no eligible replacement, or `oldest_id` was no longer in the table).
        """
        contact = self._pop(oldest_id)
        if contact is None:
            return None
        return self._promote(self._bucket_for(contact.int_id))

    def ping_succeeded(self, oldest_id: bytes, now: float) -> None:
        """The LRS contact answered: it stays (moved to the tail).

        The newcomer stays in the replacement cache, ready for the next vacancy.
        """
        self.record_success(oldest_id, now)

    def record_failure(self, node_id: bytes) -> int:
        """Count one more consecutive failed request; returns the count (0 if unknown)."""
        contact = self.get(node_id)
        if contact is None:
            return 0
        contact.failures += 1
        return contact.failures

    def record_success(self, node_id: bytes, now: float) -> None:
        """The contact answered a request: failures = 0, last_seen = now, move to tail."""
        bucket = self._bucket_for(_shared_int(node_id))
        contact = bucket.find(node_id)
        if contact is None:
            return
        contact.failures = 0
        contact.last_seen = now
        bucket.to_end(contact)
        bucket.last_changed = now

    # -- queries -----------------------------------------------------------------

    def get(self, node_id: bytes) -> Contact | None:
        """The live contact with this id, if any (replacements are not live)."""
        # `find` inlined, and the id's int form from the shared cache: the hottest
        # call of a simulation (a few per message).
        bucket = self._buckets[bisect_right(self._lows, _shared_int(node_id)) - 1]
        ids = bucket.ids
        if node_id in ids:
            return bucket.contacts[ids.index(node_id)]
        return None

    def closest(self, target: bytes, n: int, exclude: bytes | None = None) -> list[Contact]:
        """Up to `n` live contacts closest to `target` by XOR distance, closest first.

        Buckets are aligned ranges, so the distances from `target` to the ids of
        one bucket form one aligned range too, and distinct buckets give disjoint
        distance ranges. Sorting buckets by the start of that range and then the
        contacts within each bucket visits contacts in exact distance order; we
        stop after the bucket that brings the count to `n`. With ~15 buckets and
        n = k this sorts a couple of buckets instead of the whole table.
        """
        if n <= 0:
            return []
        t = id_to_int(target)
        # Bucket ranges are disjoint and ids distinct, so neither sort meets a tie.
        order = sorted([b for b in self._buckets if b.contacts], key=lambda b: (t ^ b.low) & b.mask)
        skip = None if exclude is None else self.get(exclude)
        found: list[Contact] = []
        for bucket in order:
            members = sorted(bucket.contacts, key=lambda c: c.int_id ^ t)
            if skip is not None and bucket.low <= skip.int_id < bucket.high:
                members.remove(skip)
            found.extend(members)
            if len(found) >= n:
                break
        return found[:n]

    def quiet_buckets(self, cutoff: float) -> list[tuple[int, Contact]]:
        """(bucket low, contact) for every bucket whose LRS contact among those that
        have not failed lately was last seen at or before `cutoff`."""
        found = []
        for b in self._buckets:
            for c in b.contacts:  # LRS first
                if not c.failures:
                    if c.last_seen <= cutoff:
                        found.append((b.low, c))
                    break
        return found

    def bucket_ranges(self) -> list[tuple[int, int, float]]:
        """(low, high_exclusive, last_changed) of every bucket, in id order."""
        return [(b.low, b.high, b.last_changed) for b in self._buckets]

    def touch_bucket(self, target: bytes, now: float) -> None:
        """Mark the bucket covering `target` refreshed (a lookup was done there)."""
        self._bucket_for(id_to_int(target)).last_changed = now

    def stale_buckets(self, now: float, interval: float) -> list[tuple[int, int]]:
        """Ranges not changed or refreshed within `interval`; the driver looks them up.

        A bucket changes when a contact is added, re-seen, answers, or is
        promoted. New buckets from a split inherit their parent's time; the
        first bucket starts at 0.0, i.e. stale at the first check.
        """
        cutoff = now - interval
        return [(b.low, b.high) for b in self._buckets if b.last_changed < cutoff]

    def replacements(self, target: bytes) -> list[Contact]:
        """The replacement cache of the bucket covering `target`, oldest first."""
        return list(self._bucket_for(id_to_int(target)).replacements.values())

    def __len__(self) -> int:
        return self._size

    def __iter__(self) -> Iterator[Contact]:
        """Bucket order, then LRS to MRS. A snapshot: safe to mutate while iterating."""
        snapshot = [c for b in self._buckets for c in b.contacts]
        return iter(snapshot)

    def __contains__(self, node_id: object) -> bool:
        return isinstance(node_id, bytes) and self.get(node_id) is not None

    # -- internals ---------------------------------------------------------------

    def _bucket_for(self, int_id: int) -> _Bucket:
        return self._buckets[bisect_right(self._lows, int_id) - 1]

    def _at_cap(self) -> bool:
        return self.max_contacts is not None and self._size >= self.max_contacts

    def _splittable(self, bucket: _Bucket) -> bool:
        return bucket.high - bucket.low > 1 and bucket.low <= self._own_int < bucket.high

    def _split(self, bucket: _Bucket) -> None:
        """Replace `bucket` by its two halves; contacts keep their relative order."""
        mid = (bucket.low + bucket.high) // 2
        lower = _Bucket(bucket.low, mid, bucket.last_changed)
        upper = _Bucket(mid, bucket.high, bucket.last_changed)
        for contact in bucket.contacts:
            (lower if contact.int_id < mid else upper).add(contact)
        for contact in bucket.replacements.values():
            half = lower if contact.int_id < mid else upper
            half.waiting()[contact.node_id] = contact
        i = self._buckets.index(bucket)
        self._buckets[i : i + 1] = [lower, upper]
        self._lows[i : i + 1] = [lower.low, upper.low]

    def _remember(self, bucket: _Bucket, contact: Contact) -> None:
        """Put `contact` at the tail of the replacement cache, dropping the oldest."""
        if self.replacement_size == 0:
            return
        waiting = bucket.waiting()
        waiting.pop(contact.node_id, None)
        waiting[contact.node_id] = contact  # at the tail
        while len(waiting) > self.replacement_size:
            del waiting[next(iter(waiting))]

    def _pop(self, node_id: bytes) -> Contact | None:
        """Take a live contact out of the table; None if it was not there."""
        bucket = self._bucket_for(_shared_int(node_id))
        contact = bucket.find(node_id)
        if contact is not None:
            bucket.pop(contact)
            self._size -= 1
        return contact

    def _promote(self, bucket: _Bucket) -> Contact | None:
        """Move the newest replacement whose subnet has room into the bucket.

        It is placed by its last_seen, so the bucket stays ordered LRS first.

        Only called right after a removal, so the bucket has a free slot and the
        table is below any cap. Promotion counts as a change of the bucket, dated
        by the promoted contact's last_seen (the driver passes no `now` here).
        """
        for candidate in reversed(bucket.replacements.values()):
            if not bucket.group_full(candidate.addr[0], self.subnet_limit):
                del bucket.replacements[candidate.node_id]
                bucket.add(candidate)
                # Keep LRS order: a replacement may have been seen before the tail.
                for contact in list(bucket.contacts):
                    if contact.last_seen > candidate.last_seen:
                        bucket.to_end(contact)
                self._size += 1
                bucket.last_changed = max(bucket.last_changed, candidate.last_seen)
                return candidate
        return None


# The int form of a contact's id, one object per id process-wide: in a simulation a
# node sits in ~100 tables, and each 256-bit int is 60 bytes. A real node has one
# table and gains little, so the default is small (~1 MB); netsim raises it with
# `share_ids` for its node count. Pure, so sharing is safe.
SHARED_IDS_DEFAULT = 4096
_shared_int = functools.lru_cache(maxsize=SHARED_IDS_DEFAULT)(id_to_int)


def share_ids(capacity: int) -> None:
    """Keep up to `capacity` contact ids' int forms shared process-wide (starts empty)."""
    global _shared_int
    if capacity < 1:
        raise ConfigError(f"share_ids needs a capacity of at least 1, got {capacity}")
    _shared_int = functools.lru_cache(maxsize=capacity)(id_to_int)


def _check_id(node_id: bytes) -> None:
    if len(node_id) != ID_BYTES:
        raise LocalError(f"a node id is {ID_BYTES} bytes, got {len(node_id)}")
