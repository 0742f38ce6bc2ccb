"""The simulated datagram network: node classes, link latency, loss, duplication, partitions.

A node class describes a kind of machine and its access link:

    class        RTT (per node, drawn once)   loss    think (append interval)
    datacenter   0.5–1.5 ms                    0.1%    2 s   (a GPU server)
    home         20–80 ms                      0.5%    10 s  (a laptop on DSL/cable)
    pizero       200–2,000 ms                  1%      45 s  (a Raspberry Pi Zero on Wi-Fi)

Each node draws its own access RTT from its class once, when it is created, so a
given Pi Zero is consistently slow, as a real one is. The RTT of the link a→b is
the mean of the two access RTTs, and one datagram takes half of that, times a
per-datagram jitter. So datacenter↔datacenter is ~1 ms, pizero↔datacenter is
~0.5 s: the slow end dominates, as it does in reality.

Loss: a datagram from a to b is lost with probability 1 − (1 − la)(1 − lb)(1 − L),
where la, lb are the classes' loss rates and L the scenario's network-wide loss.

Reordering comes from jitter (two datagrams on one link overtake each other when
their jitters differ by more than their spacing) plus an optional `reorder`
probability of an extra delay of up to twice the latency. Duplication sends a
second copy, slightly later, with probability `duplicate`.

Partitions: every node has a group number (0 when whole). A datagram between
different groups is dropped when sent and again when it would arrive, so a
partition also cuts datagrams already in flight. A heal puts everyone back in
group 0.

Addresses are loopback-style labels ("127.x.y.z", 4000): nothing touches a
socket, and the routing table exempts loopback from its per-/24 limit, so the
limit does not distort a simulated swarm.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = [
    "DEFAULT_CLASSES",
    "SIM_PORT",
    "LinkModel",
    "NodeClass",
    "address_for",
]

SIM_PORT = 4000  # every simulated node listens on the same port; the host label differs
JITTER = 0.1  # ±10% per datagram: enough to reorder bursts, small next to class spreads
DUPLICATE_LAG = 0.5  # a duplicate arrives up to half a latency after the original


@dataclass(frozen=True, slots=True)
class NodeClass:
    """A kind of machine: access RTT range (seconds), loss rate and append think time."""

    name: str
    rtt_min: float
    rtt_max: float
    loss: float
    think: float

    def __post_init__(self) -> None:
        if not 0.0 < self.rtt_min <= self.rtt_max:
            raise ValueError(f"class {self.name}: need 0 < rtt_min <= rtt_max")
        if not 0.0 <= self.loss < 1.0 or self.think <= 0.0:
            raise ValueError(f"class {self.name}: need 0 <= loss < 1 and think > 0")

    def draw_rtt(self, rng: random.Random) -> float:
        """This node's access RTT: log-uniform, so a 10x range is not dominated by its top."""
        if self.rtt_min == self.rtt_max:
            return self.rtt_min
        return float(self.rtt_min * (self.rtt_max / self.rtt_min) ** rng.random())


DEFAULT_CLASSES: dict[str, NodeClass] = {
    # ~1 ms RTT inside a datacenter; think 2 s: a GPU server writing a memory entry
    "datacenter": NodeClass("datacenter", 0.0005, 0.0015, 0.001, 2.0),
    # 20–80 ms: typical residential broadband RTT to a nearby peer
    "home": NodeClass("home", 0.020, 0.080, 0.005, 10.0),
    # 200–2,000 ms: a Pi Zero's CPU (CBOR + Ed25519) and Wi-Fi; think 45 s (DESIGN intro)
    "pizero": NodeClass("pizero", 0.200, 2.000, 0.01, 45.0),
}


def address_for(index: int) -> tuple[str, int]:
    """A loopback-style label for node `index` (127.0.0.1 upward; 16M nodes fit)."""
    n = index + 1
    return (f"127.{(n >> 16) & 0xFF}.{(n >> 8) & 0xFF}.{n & 0xFF}", SIM_PORT)


@dataclass(frozen=True, slots=True)
class LinkModel:
    """Network-wide impairments on top of the classes' own loss rates."""

    loss: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0

    def __post_init__(self) -> None:
        for name in ("loss", "duplicate", "reorder"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"network.{name} must be in [0, 1)")

    def drop_probability(self, loss_a: float, loss_b: float) -> float:
        return 1.0 - (1.0 - loss_a) * (1.0 - loss_b) * (1.0 - self.loss)

    def delays(self, rtt_a: float, rtt_b: float, rng: random.Random) -> tuple[float, float | None]:
        """(delay of the datagram, delay of a duplicate or None), in seconds."""
        base = (rtt_a + rtt_b) * 0.25  # one way = half the link RTT = half the mean of the two
        delay = base * (1.0 + JITTER * (2.0 * rng.random() - 1.0))
        if self.reorder and rng.random() < self.reorder:
            delay += 2.0 * base * rng.random()
        dup = None
        if self.duplicate and rng.random() < self.duplicate:
            dup = delay + DUPLICATE_LAG * base * rng.random()
        return delay, dup
