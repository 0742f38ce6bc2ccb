"""Adaptive per-contact request timeouts, as TCP computes its RTO (RFC 6298).

DESIGN §3: a slow contact is not a dead contact. A Pi Zero on a home link that
answers in 2 s must not be timed out by the 200 ms that suits a datacenter peer,
so each contact gets its own estimate: SRTT + 4·RTTVAR, clamped to a floor and
a ceiling, doubled on every timeout (exponential backoff) until a fresh sample
arrives.

Karn's algorithm is the caller's job: take an RTT sample only from a request
that was sent exactly once. The reply to a retransmitted request is ambiguous
(it may answer the first send), so its RTT must be ignored; only `backoff` is
applied for the timeouts. The backed-off RTO then stays until a valid sample
arrives (RFC 6298 §5.7).

Sans-IO: nothing here reads a clock. The driver measures `rtt` from the `now`
values it already passes around.
"""

from __future__ import annotations

import math
from array import array
from dataclasses import dataclass

from .errors import ConfigError, LocalError

__all__ = ["CLOCK_GRANULARITY", "DEFAULT_RTO", "RtoConfig", "RttEstimator", "RttTable"]

CLOCK_GRANULARITY = 0.001  # G in RFC 6298 §2: trio's clock resolves far below 1 ms
DEFAULT_MAX_ENTRIES = 4096  # a few times a full table (~k·log2(N/k) contacts) plus lookup peers


@dataclass(frozen=True, slots=True)
class RtoConfig:
    """The constants of RFC 6298, with a floor and a ceiling suited to a DHT."""

    initial: float = 1.0  # RFC 6298 §2.1: 1 s before any sample
    floor: float = 0.2  # loopback RTTs are sub-ms, but a busy Python event loop adds jitter
    ceiling: float = 10.0  # a Pi Zero on a bad link answers in ~2 s; 10 s bounds a dead one
    alpha: float = 0.125  # RFC 6298 §2.3: SRTT gain (1/8)
    beta: float = 0.25  # RFC 6298 §2.3: RTTVAR gain (1/4)
    k: float = 4.0  # RFC 6298 §2.2: RTO = SRTT + K·RTTVAR

    def __post_init__(self) -> None:
        if not 0.0 < self.floor <= self.initial <= self.ceiling < math.inf:
            raise ConfigError(
                "RTO needs 0 < floor <= initial <= ceiling < inf, got "
                f"{self.floor}, {self.initial}, {self.ceiling}"
            )
        if not (0.0 < self.alpha <= 1.0 and 0.0 < self.beta <= 1.0 and self.k >= 0.0):
            raise ConfigError(
                f"RTO needs 0 < alpha, beta <= 1 and k >= 0, got {self.alpha}, {self.beta}, "
                f"{self.k}"
            )

    def clamp(self, rto: float) -> float:
        """`rto` bounded to [floor, ceiling]."""
        return min(max(rto, self.floor), self.ceiling)


DEFAULT_RTO = RtoConfig()


def _fold(
    srtt: float | None, rttvar: float, rtt: float, cfg: RtoConfig
) -> tuple[float, float, float]:
    """(SRTT, RTTVAR, RTO) after one RTT sample; `srtt` is None before the first one.

    First sample (§2.2): SRTT = R, RTTVAR = R/2. Later ones (§2.3):
    RTTVAR = (1-β)·RTTVAR + β·|SRTT - R|, then SRTT = (1-α)·SRTT + α·R.
    Either way RTO = SRTT + max(G, K·RTTVAR), clamped to [floor, ceiling].
    """
    if not (rtt >= 0.0 and math.isfinite(rtt)):
        raise LocalError(f"an RTT sample must be finite and >= 0, got {rtt}")
    if srtt is None:
        srtt, rttvar = rtt, rtt / 2.0
    else:
        rttvar = (1.0 - cfg.beta) * rttvar + cfg.beta * abs(srtt - rtt)
        srtt = (1.0 - cfg.alpha) * srtt + cfg.alpha * rtt
    return srtt, rttvar, cfg.clamp(srtt + max(CLOCK_GRANULARITY, cfg.k * rttvar))


class RttEstimator:
    """SRTT, RTTVAR and RTO of one contact (RFC 6298 §2 and §5)."""

    __slots__ = ("config", "rto", "rttvar", "srtt")

    def __init__(self, config: RtoConfig = DEFAULT_RTO) -> None:
        self.config = config
        self.srtt: float | None = None  # None until the first sample
        self.rttvar = 0.0
        self.rto = config.initial

    def sample(self, rtt: float) -> None:
        """Fold in one RTT measurement (seconds) from a request sent exactly once
        (`_fold`); this also ends any backoff."""
        self.srtt, self.rttvar, self.rto = _fold(self.srtt, self.rttvar, rtt, self.config)

    def backoff(self) -> None:
        """A request timed out (§5.5): RTO = min(2·RTO, ceiling)."""
        self.rto = min(2.0 * self.rto, self.config.ceiling)

    def timeout(self) -> float:
        """The current RTO in seconds: how long to wait for this contact's reply."""
        return self.rto


class RttTable:
    """Per-contact RFC 6298 state by node id, bounded with least-recently-used eviction.

    The bound keeps memory flat when lookups touch many strangers; forgetting a
    contact only costs it the initial timeout on its next request.

    The same arithmetic as `RttEstimator`, stored flat: each id owns a slot in three
    arrays of doubles (SRTT is NaN before the first sample). A node keeps one entry
    per peer that ever answered it, and a simulation holds millions: an estimator
    object and its three float objects took ~130 bytes each, a slot takes 24.

    A caller that keeps its own record of a peer can `pin` the peer's slot: the slot
    leaves the LRU (and its ~35-byte dict entry), is never evicted, and is used by
    number (`timeout_at`, `sample_at`) until `unpin` gives it back. The core pins
    the slots of its routing table's contacts, nearly all of the entries.
    """

    __slots__ = ("_free", "_rto", "_rttvar", "_slots", "_srtt", "config", "max_entries")

    def __init__(
        self, config: RtoConfig = DEFAULT_RTO, max_entries: int = DEFAULT_MAX_ENTRIES
    ) -> None:
        if max_entries < 1:
            raise ConfigError(f"max_entries must be >= 1, got {max_entries}")
        self.config = config
        self.max_entries = max_entries
        # A plain dict in LRU order (re-inserted on use): an OrderedDict's links would
        # double its size.
        self._slots: dict[bytes, int] = {}
        self._srtt = array("d")
        self._rttvar = array("d")
        self._rto = array("d")
        self._free: list[int] = []  # slots of discarded ids

    def _touch(self, node_id: bytes) -> int | None:
        """The slot of `node_id`, marked recently used; None if it has none."""
        slots = self._slots
        i = slots.pop(node_id, None)
        if i is not None:
            slots[node_id] = i
        return i

    def _slot(self, node_id: bytes) -> int:
        """The slot of `node_id`, a fresh one if missing; marks it recently used."""
        i = self._touch(node_id)
        if i is not None:
            return i
        slots = self._slots
        if len(slots) >= self.max_entries:
            i = slots.pop(next(iter(slots)))  # the least recently used gives up its slot
            self._reset(i)
        else:
            i = self._new_slot()
        slots[node_id] = i
        return i

    def _new_slot(self) -> int:
        """A free slot in the initial state (before any sample)."""
        if self._free:
            i = self._free.pop()
        else:
            i = len(self._srtt)
            self._srtt.append(0.0)
            self._rttvar.append(0.0)
            self._rto.append(0.0)
        self._reset(i)
        return i

    def _reset(self, i: int) -> None:
        self._srtt[i] = math.nan
        self._rttvar[i] = 0.0
        self._rto[i] = self.config.initial

    def pin(self, node_id: bytes) -> int:
        """Take `node_id`'s slot (a fresh one if it has none) out of the LRU for the caller.

        The caller keeps the number and uses `timeout_at` and `sample_at`; by id the
        table no longer knows the peer, until `unpin`.
        """
        i = self._slots.pop(node_id, None)
        return self._new_slot() if i is None else i

    def unpin(self, node_id: bytes, slot: int) -> None:
        """Give back a pinned slot: `node_id` is an ordinary, most recently used entry again."""
        old = self._slots.pop(node_id, None)
        if old is not None:  # learnt by id while pinned: the pinned state is the newer
            self._free.append(old)
        slots = self._slots
        if len(slots) >= self.max_entries:
            self._free.append(slots.pop(next(iter(slots))))
        slots[node_id] = slot

    def timeout_at(self, slot: int) -> float:
        """The RTO of a pinned slot."""
        return self._rto[slot]

    def sample_at(self, slot: int, rtt: float) -> None:
        """`sample` for a pinned slot."""
        srtt = self._srtt[slot]
        self._srtt[slot], self._rttvar[slot], self._rto[slot] = _fold(
            None if math.isnan(srtt) else srtt, self._rttvar[slot], rtt, self.config
        )

    def timeout_for(self, node_id: bytes | None) -> float:
        """How long to wait for a reply from `node_id`.

        None (the id is not known yet, e.g. a bootstrap address) or an id with
        no entry gets `config.initial`; no entry is created for it.
        """
        i = None if node_id is None else self._touch(node_id)
        return self.config.initial if i is None else self._rto[i]

    def sample(self, node_id: bytes, rtt: float) -> None:
        """Fold in an RTT sample for `node_id` (Karn: never from a retransmission)."""
        self.sample_at(self._slot(node_id), rtt)

    def backoff(self, node_id: bytes) -> None:
        """A request to `node_id` timed out: double its RTO up to the ceiling."""
        i = self._slot(node_id)
        self._rto[i] = min(2.0 * self._rto[i], self.config.ceiling)

    def discard(self, node_id: bytes) -> None:
        """Forget `node_id` (e.g. after it left the routing table)."""
        i = self._slots.pop(node_id, None)
        if i is not None:
            self._free.append(i)

    def __len__(self) -> int:
        return len(self._slots)

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._slots
