"""The iterative lookup as a state machine (no I/O, no clock).

The driver asks `next_queries()` for contacts to query, reports each answer with
`on_reply`, a soft timeout with `on_slow` and a final failure with `on_failure`,
and stops when `done` is true. There are no lockstep rounds: a slot frees the
moment one query returns (or turns slow), and `next_queries()` refills it.

Termination. Querying all k closest nodes costs k RPCs per lookup. Instead the
lookup is *settled* once the `settle` closest live candidates have all answered:
any closer node they knew of would have been reported and would now stand ahead
of them. The k closest candidates seen (answered or not) are the result; a put
stores on them and falls back to the next ones if some do not answer.

Candidate states:

    NEW ──query──▶ WAITING ──reply──▶ ANSWERED
                     │  └──soft timeout──▶ SLOW ──reply──▶ ANSWERED
                     └──────final failure──────┴─────────▶ FAILED

A SLOW query no longer holds one of the α slots, but a late reply still counts.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from enum import Enum

from .ids import id_to_int, puzzle_ok
from .routing import subnet_group

__all__ = ["Candidate", "CandidateState", "Lookup"]

MAX_CANDIDATES_FACTOR = 4  # keep at most 4·k candidates; farther ones can never matter


class CandidateState(Enum):
    NEW = 0
    WAITING = 1
    SLOW = 2
    ANSWERED = 3
    FAILED = 4


@dataclass(slots=True)
class Candidate:
    node_id: bytes
    addr: tuple[str, int]
    distance: int
    hops: int
    state: CandidateState = CandidateState.NEW
    has_value: bool = False


class Lookup:
    """One iterative FIND_NODE or FIND_VALUE toward `target`."""

    def __init__(
        self,
        target: bytes,
        seeds: list[tuple[bytes, tuple[str, int]]],
        *,
        own_id: bytes,
        k: int,
        alpha: int,
        settle: int,
        subnet_limit: int | None = None,
        puzzle_bits: int = 0,
    ) -> None:
        self.target = target
        self.k = k
        self.alpha = alpha
        self._settle = min(settle, k)
        self._waiting = 0  # candidates in WAITING: the α slots in use
        self._done: bool | None = None  # `done`, cached until the next change
        self._t = id_to_int(target)
        self._own = own_id
        self._by_id: dict[bytes, Candidate] = {}
        # The routing table's per-/24 rule, applied to candidates too: a block of
        # Sybil ids all "closest" to the target cannot fill a lookup's result.
        self._subnet_limit = subnet_limit
        self._per_group: dict[object, int] = {}
        # The static id puzzle (ids.puzzle_ok), as the routing table applies it: an id
        # that fails it is never queried, nor counted among the closest.
        self._puzzle_bits = puzzle_bits
        self._sorted: list[Candidate] = []  # by distance to the target
        self._dists: list[int] = []  # their distances, for bisect
        self.queries_sent = 0
        self.replies = 0
        for node_id, addr in seeds:
            self._add(node_id, addr, 0)

    # ---- candidates ---------------------------------------------------------

    def _add(self, node_id: bytes, addr: tuple[str, int], hops: int) -> None:
        if node_id == self._own or node_id in self._by_id:
            return
        distance = id_to_int(node_id) ^ self._t
        dists = self._dists
        if len(dists) >= MAX_CANDIDATES_FACTOR * self.k and distance > dists[-1]:
            return  # farther than all we keep: it can never matter (the common case)
        self._insert(node_id, addr, hops, distance)

    def _insert(self, node_id: bytes, addr: tuple[str, int], hops: int, distance: int) -> None:
        """Keep a new candidate at `distance` from the target: neither us nor known, and
        nearer than the farthest kept while the list is full (`_add` checked)."""
        dists = self._dists
        limit = MAX_CANDIDATES_FACTOR * self.k
        if self._puzzle_bits and not puzzle_ok(node_id, self._puzzle_bits):
            return
        if self._subnet_limit is not None:
            group = subnet_group(addr[0])
            if group is not None:
                if self._per_group.get(group, 0) >= self._subnet_limit:
                    return
                self._per_group[group] = self._per_group.get(group, 0) + 1
        # `_dists` mirrors `_sorted`: bisecting plain ints is far cheaper than
        # comparing Candidate objects, and this runs for every contact of every reply.
        i = bisect.bisect_right(dists, distance)
        cand = Candidate(node_id, addr, distance, hops)
        self._done = None
        dists.insert(i, distance)
        self._sorted.insert(i, cand)
        self._by_id[node_id] = cand
        if len(dists) > limit and self._sorted[-1].state is CandidateState.NEW:
            dropped = self._sorted.pop()  # in flight or answered ones keep their record
            dists.pop()
            del self._by_id[dropped.node_id]

    def get(self, node_id: bytes) -> Candidate | None:
        return self._by_id.get(node_id)

    @property
    def settle(self) -> int:
        """How many of the closest live candidates must answer before the lookup ends."""
        return self._settle

    @settle.setter
    def settle(self, value: int) -> None:
        self._settle = min(value, self.k)
        self._done = None

    # ---- the machine --------------------------------------------------------

    def next_queries(self) -> list[Candidate]:
        """Candidates to query now, already marked WAITING."""
        in_flight = self._waiting
        if in_flight >= self.alpha or self.done:
            return []
        out: list[Candidate] = []
        live = 0
        for c in self._sorted:
            if in_flight >= self.alpha or live >= self.k:
                break
            if c.state is CandidateState.FAILED:
                continue
            live += 1
            if c.state is CandidateState.NEW:
                c.state = CandidateState.WAITING
                in_flight += 1
                out.append(c)
        if out:
            self._waiting = in_flight
            self._done = None
            self.queries_sent += len(out)
        return out

    def on_reply(
        self, node_id: bytes, contacts: list[tuple[bytes, tuple[str, int]]], has_value: bool
    ) -> None:
        c = self._by_id.get(node_id)
        if c is None or c.state in (CandidateState.ANSWERED, CandidateState.FAILED):
            return
        if c.state is CandidateState.WAITING:
            self._waiting -= 1
        c.state = CandidateState.ANSWERED
        c.has_value = has_value
        self.replies += 1
        self._done = None
        # `_add`'s cheap refusals inline: most contacts of a reply are known already or
        # farther than every candidate kept, and this loop runs 20 times per reply.
        by_id, dists, t, own = self._by_id, self._dists, self._t, self._own
        limit = MAX_CANDIDATES_FACTOR * self.k
        hops = c.hops + 1
        for cid, addr in contacts:
            if cid in by_id or cid == own:
                continue
            distance = int.from_bytes(cid, "big") ^ t
            if len(dists) >= limit and distance > dists[-1]:
                continue
            self._insert(cid, addr, hops, distance)

    def on_slow(self, node_id: bytes) -> None:
        c = self._by_id.get(node_id)
        if c is not None and c.state is CandidateState.WAITING:
            c.state = CandidateState.SLOW
            self._waiting -= 1
            self._done = None

    def on_failure(self, node_id: bytes) -> None:
        c = self._by_id.get(node_id)
        if c is not None and c.state in (CandidateState.WAITING, CandidateState.SLOW):
            if c.state is CandidateState.WAITING:
                self._waiting -= 1
            c.state = CandidateState.FAILED
            self._done = None

    @property
    def done(self) -> bool:
        if self._done is None:
            self._done = self._is_done()
        return self._done

    def _is_done(self) -> bool:
        answered = 0
        live = 0
        unqueried = False
        settled = False
        for c in self._sorted:
            s = c.state
            if s is CandidateState.FAILED:
                continue
            live += 1
            if settled:
                unqueried = unqueried or s is CandidateState.NEW
                continue
            if s is not CandidateState.ANSWERED:
                return False  # a closer candidate is unqueried or still owes an answer
            answered += 1
            settled = answered >= self._settle
        # Settled, but fewer than k live candidates known: ask further out while we can,
        # so a put still finds k replicas in a sparse or freshly joined network.
        return live >= self.k or not unqueried

    def among_closest(self, node_id: bytes) -> bool:
        """Whether `node_id` is one of the `settle` closest candidates not known to have failed."""
        live = 0
        for c in self._sorted:
            if c.state is CandidateState.FAILED:
                continue
            if c.node_id == node_id:
                return True
            live += 1
            if live >= self.settle:
                return False
        return False

    def in_flight(self) -> list[Candidate]:
        return [c for c in self._sorted if c.state in (CandidateState.WAITING, CandidateState.SLOW)]

    # ---- results ------------------------------------------------------------

    def closest(self, n: int | None = None) -> list[Candidate]:
        """The `n` (default k) closest candidates not known to have failed."""
        n = self.k if n is None else n
        out = []
        for c in self._sorted:
            if c.state is not CandidateState.FAILED:
                out.append(c)
                if len(out) >= n:
                    break
        return out

    def answered(self) -> list[Candidate]:
        return [c for c in self._sorted if c.state is CandidateState.ANSWERED]

    def beyond(self, n: int) -> list[Candidate]:
        """Live candidates after the first `n` live ones: fallbacks for a put."""
        live = [c for c in self._sorted if c.state is not CandidateState.FAILED]
        return live[n:]

    @property
    def hops(self) -> int:
        """Hops to the closest answering node (seeds are hop 1)."""
        for c in self._sorted:
            if c.state is CandidateState.ANSWERED:
                return c.hops + 1
        return 0
