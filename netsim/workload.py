"""Scenario events acted out on a `Simulator`, and the samples they record.

Every event is scheduled at its `at` time (virtual seconds). Fields:

    join       count (default: the rest of `nodes`), over (s): nodes boot spread over
               `over` and bootstrap through one random node that has already joined.
    lookups    count, over, tag (optional): FIND_NODE from a random joined node to a random
               target; the result is checked against the true k closest live nodes (all of
               them, reachable or not). A tag reports the event's lookups on their own too.
    puts       count, writers, payload (bytes), class (optional): `writers` joined nodes
               append chunks at their class's think time until `count` chunks are put.
    gets       over, tag: every acknowledged chunk is read from a random joined node.
    partition  sizes (fractions of live nodes, e.g. [0.5, 0.5]) or by = "class".
    heal       —
    crash      fraction, keep_disk (bool), restart_after (s, optional).
    churn      until, mean_lifetime, shape (Weibull), downtime (mean, exponential),
               keep_disk (probability): every live node dies after a Weibull lifetime,
               comes back after the downtime, and lives again.
    nuke       fraction, class (optional): kill that fraction of live nodes for good.
    waves      every, fraction, until: kill `fraction` of the live nodes every `every`
               seconds until at most `until` of the population is left.

Random picks draw from the simulator's seeded RNG over lists in node-index order.
"""

from __future__ import annotations

import bisect
import hashlib
import math
from collections.abc import Callable
from functools import partial
from typing import Any

from chorusdht import (
    BootstrapResult,
    GetResult,
    LookupResult,
    PutResult,
    make_chunk,
)

from .engine import Outcome, SimNode, Simulator
from .metrics import Census, GetSample, LookupSample, PutSample, Recorder, rnd
from .scenario import Event, Scenario

__all__ = ["Workload"]

JOIN_RETRY_DELAY = 30.0  # a failed bootstrap retries through another seed after this long
JOIN_RETRIES = 3  # then the node gives up and counts as a failed join
DEFAULT_PAYLOAD = 256  # bytes per chunk payload: a short memory entry


class Workload:
    """Installs a scenario's events on a simulator and records what happens."""

    def __init__(self, sim: Simulator, scenario: Scenario, recorder: Recorder) -> None:
        self.sim = sim
        self.sc = scenario
        self.rec = recorder
        self.k = scenario.config.k
        self.mesh = hashlib.sha256(f"netsim/mesh/{sim.seed}".encode()).digest()
        self.acked: dict[bytes, bytes] = {}  # key -> raw, in acknowledgement order
        self.by_id: dict[bytes, SimNode] = {}
        self._truth_ids: list[int] | None = None
        self._churn_until = -math.inf
        self._churn: dict[str, Any] = {}
        self._contacts_seen: dict[int, tuple[int, frozenset[bytes]]] = {}
        self.track_evictions = False

    # ---- installation -------------------------------------------------------

    def install(self) -> None:
        handlers: dict[str, Callable[[Event, float], None]] = {
            "join": self._join,
            "lookups": self._lookups,
            "puts": self._puts,
            "gets": self._gets,
            "partition": self._partition,
            "heal": self._heal,
            "crash": self._crash,
            "churn": self._start_churn,
            "nuke": self._nuke,
            "waves": self._waves,
        }
        for ev in self.sc.events:
            handler = handlers[ev.kind]
            self.sim.at(ev.at, partial(handler, ev))
        t = self.sc.sample_every
        while t <= self.sc.duration:
            self.sim.at(t, self._census)
            t += self.sc.sample_every

    # ---- helpers ------------------------------------------------------------

    def joined(self) -> list[SimNode]:
        """Joined live nodes in index order (the simulator's own list: do not change it)."""
        return self.sim.joined

    def _mark_changed(self) -> None:
        self._truth_ids = None

    def _boot(self, node: SimNode, now: float, tries: int = 0) -> None:
        """Power on (if off) and bootstrap through a random joined node."""
        if not node.alive:
            self.sim.power_on(node)
        self.by_id[node.identity.node_id] = node
        pool = self.joined()
        if len(pool) == int(node.joined):
            self.sim.set_joined(node, True)  # the first node: there is nobody to join
            self._mark_changed()
            return
        # A random joined node other than this one (as if drawn from the pool without it).
        i = self.sim.rng.randrange(len(pool) - int(node.joined))
        seed = pool[i + 1] if node.joined and pool[i].index >= node.index else pool[i]
        incarnation = node.incarnation

        def done(outcome: Outcome, t: float) -> None:
            if node.incarnation != incarnation:
                return
            if isinstance(outcome, BootstrapResult):
                self.sim.set_joined(node, True)
                self.rec.joins_ok += 1
                self.rec.join_latency.append(t - now)
                self._mark_changed()
            elif tries + 1 < JOIN_RETRIES:
                self.sim.at(t + JOIN_RETRY_DELAY, lambda t2: self._retry(node, incarnation, tries))
            else:
                self.rec.joins_failed += 1

        self.sim.start_op(node, lambda core, t: core.bootstrap([seed.addr], t), done)

    def _boot_at(self, node: SimNode, now: float) -> None:
        self._boot(node, now)

    def _retry(self, node: SimNode, incarnation: int, tries: int) -> None:
        if node.alive and node.incarnation == incarnation and not node.joined:
            self._boot(node, self.sim.now, tries + 1)

    def _class_plan(self, count: int) -> list[str]:
        """Exactly proportional class counts (largest remainder), shuffled by the seed."""
        total = sum(w for _, w in self.sc.mix)
        shares = [(name, count * w / total) for name, w in self.sc.mix]
        plan = {name: math.floor(s) for name, s in shares}
        rest = count - sum(plan.values())
        for name, _ in sorted(shares, key=lambda x: (x[1] - math.floor(x[1]), x[0]), reverse=True):
            if rest <= 0:
                break
            plan[name] += 1
            rest -= 1
        names = [name for name, _ in self.sc.mix for _ in range(plan[name])]
        self.sim.rng.shuffle(names)
        return names

    def _kill(self, victims: list[SimNode], *, keep_disk: bool) -> None:
        for node in victims:
            self.sim.crash(node, keep_disk=keep_disk)
        self._mark_changed()

    # ---- truth for lookups --------------------------------------------------

    def true_closest(self, target: int, n: int) -> list[int]:
        """The `n` closest joined live ids to `target` by XOR (exact).

        The ids within XOR distance 2^m of the target are one contiguous, aligned
        block of the sorted id list, so widen the block until it holds n ids and
        sort only that block.
        """
        if self._truth_ids is None:
            self._truth_ids = sorted(
                int.from_bytes(x.identity.node_id, "big") for x in self.joined()
            )
        ids = self._truth_ids
        for m in range(0, 257):
            low = (target >> m) << m
            lo = bisect.bisect_left(ids, low)
            hi = bisect.bisect_left(ids, low + (1 << m))
            if hi - lo >= n or hi - lo == len(ids):
                return sorted(ids[lo:hi], key=lambda x: x ^ target)[:n]
        return []

    # ---- events -------------------------------------------------------------

    def _join(self, ev: Event, now: float) -> None:
        count = int(ev.get("count", self.sc.nodes - len(self.sim.nodes)))
        over = float(ev.get("over", 0.0))
        plan = self._class_plan(count)
        for i, cname in enumerate(plan):
            node = self.sim.spawn(self.sc.classes[cname])
            t = now + over * i / max(1, count) + self.sim.rng.random() * 1e-3
            self.sim.at(t, partial(self._boot_at, node))

    def _lookups(self, ev: Event, now: float) -> None:
        count = int(ev.get("count", 100))
        over = float(ev.get("over", 60.0))
        tag = str(ev.get("tag", ""))
        for i in range(count):
            self.sim.at(now + over * i / count, partial(self._one_lookup, tag))

    def _one_lookup(self, tag: str, now: float) -> None:
        pool = self.joined()
        if not pool:
            return
        node = pool[self.sim.rng.randrange(len(pool))]
        target = self.sim.rng.randbytes(32)
        cls = node.cls.name

        def done(outcome: Outcome, t: float) -> None:
            if not isinstance(outcome, LookupResult):
                self.rec.lookups.append(LookupSample(cls, False, 0, t - now, False, 0, tag))
                return
            tint = int.from_bytes(target, "big")
            truth = self.true_closest(tint, self.k)
            got = {int.from_bytes(x.node_id, "big") for x in outcome.nodes}
            own = int.from_bytes(node.identity.node_id, "big")
            got.add(own)  # the asker never lists itself, but it may be among the closest
            found = bool(truth) and truth[0] in got
            overlap = sum(1 for x in truth if x in got)
            self.rec.lookups.append(
                LookupSample(cls, bool(outcome.nodes), outcome.hops, t - now, found, overlap, tag)
            )

        self.sim.start_op(node, lambda core, t: core.find_node(target, t), done)

    def _puts(self, ev: Event, now: float) -> None:
        count = int(ev.get("count", 100))
        pool = self.joined()
        if ev.get("class"):
            pool = [n for n in pool if n.cls.name == ev.get("class")]
        writers = min(int(ev.get("writers", 10)), len(pool), count)
        chosen = self.sim.rng.sample(pool, writers)
        size = int(ev.get("payload", DEFAULT_PAYLOAD))
        for j, writer in enumerate(chosen):
            quota = count // writers + (1 if j < count % writers else 0)
            state = {"seq": 0, "prev": None, "left": quota}
            first = now + writer.cls.think * self.sim.rng.random()
            self.sim.at(first, partial(self._append, writer, state, size))

    def _append(self, writer: SimNode, state: dict[str, Any], size: int, now: float) -> None:
        if state["left"] <= 0:
            return
        state["left"] -= 1
        nxt = now + writer.cls.think * self.sim.rng.uniform(0.5, 1.5)
        self.sim.at(nxt, lambda t: self._append(writer, state, size, t))
        if not writer.alive or not writer.joined:
            self.rec.writer_down += 1
            return
        state["seq"] += 1
        chunk = make_chunk(
            writer.identity,
            mesh=self.mesh,
            seq=state["seq"],
            prev=state["prev"],
            lamport=state["seq"],
            time=int(now * 1000),
            payload=self.sim.rng.randbytes(size),
        )
        state["prev"] = chunk.key
        cls = writer.cls.name

        def done(outcome: Outcome, t: float) -> None:
            if isinstance(outcome, PutResult):
                self.acked[chunk.key] = chunk.raw
                self.rec.puts.append(PutSample(cls, True, outcome.acks, t - now))
            else:
                self.rec.puts.append(PutSample(cls, False, 0, t - now))

        self.sim.start_op(writer, lambda core, t: core.put(chunk.raw, chunk.key, t), done)

    def _gets(self, ev: Event, now: float) -> None:
        tag = str(ev.get("tag", "gets"))
        over = float(ev.get("over", 60.0))
        keys = list(self.acked.items())
        for i, (key, raw) in enumerate(keys):
            t = now + over * i / max(1, len(keys))
            self.sim.at(t, partial(self._one_get, tag, key, raw))

    def _one_get(self, tag: str, key: bytes, raw: bytes, now: float) -> None:
        pool = self.joined()
        if not pool:
            self.rec.gets.append(GetSample(tag, False, False, 0.0, 0))
            return
        node = pool[self.sim.rng.randrange(len(pool))]

        def done(outcome: Outcome, t: float) -> None:
            if isinstance(outcome, GetResult):
                wrong = outcome.record.raw != raw
                self.rec.gets.append(GetSample(tag, not wrong, wrong, t - now, outcome.hops))
            else:
                self.rec.gets.append(GetSample(tag, False, False, t - now, 0))

        self.sim.start_op(node, lambda core, t: core.get(key, t), done)

    def _partition(self, ev: Event, now: float) -> None:
        live = list(self.sim.live_nodes())
        if ev.get("by") == "class":
            names = sorted({n.cls.name for n in live})
            groups = [[n for n in live if n.cls.name == c] for c in names]
        else:
            sizes = list(ev.get("sizes", [0.5, 0.5]))
            self.sim.rng.shuffle(live)
            groups, start = [], 0
            for s in sizes:
                end = start + round(s * len(live))
                groups.append(live[start:end])
                start = end
        self.sim.partition(groups)
        self.rec.losses.append((now, "partition"))

    def _heal(self, ev: Event, now: float) -> None:
        self.sim.heal()
        self.rec.heals.append(now)

    def _crash(self, ev: Event, now: float) -> None:
        live = self.sim.live_nodes()
        victims = self.sim.rng.sample(live, round(float(ev.get("fraction", 0.1)) * len(live)))
        keep = bool(ev.get("keep_disk", True))
        self._kill(victims, keep_disk=keep)
        self.rec.losses.append((now, f"crash keep_disk={keep}"))
        after = ev.get("restart_after")
        if after is not None:
            for node in victims:
                self.sim.at(now + float(after), partial(self._restart, node))

    def _restart(self, node: SimNode, now: float) -> None:
        if node.alive:
            return
        self._boot(node, now)

    def _nuke(self, ev: Event, now: float) -> None:
        fraction = float(ev.get("fraction", 0.5))
        cls = ev.get("class")
        live = self.sim.live_nodes()
        pool = [n for n in live if cls is None or n.cls.name == cls]
        count = round(fraction * len(pool))
        if fraction < 1:  # "99%" of 50 nodes leaves one survivor, not none
            count = max(0, min(count, len(pool) - 1))
        victims = self.sim.rng.sample(pool, count)
        self._kill(victims, keep_disk=False)
        held = self._holders()
        kept = sum(1 for key in self.acked if held.get(key, 0) > 0)
        # The bound of the fraction actually killed, of all live nodes: rounding at a
        # small size, or a nuke of one class, makes it differ from `fraction`.
        killed = len(victims) / len(live) if live else 0.0
        self.rec.nukes.append(
            {
                "t": rnd(now),
                "fraction": fraction,
                "class": cls,
                "killed": len(victims),
                "bound": rnd(1 - killed**self.k),
                "held_fraction": rnd(kept / len(self.acked)) if self.acked else None,
            }
        )
        self.rec.losses.append((now, f"nuke {fraction}"))

    def _waves(self, ev: Event, now: float) -> None:
        every = float(ev.get("every", 1800.0))
        fraction = float(ev.get("fraction", 0.1))
        floor = max(1, round(float(ev.get("until", 0.01)) * len(self.sim.nodes)))

        def wave(t: float) -> None:
            live = self.sim.live_nodes()
            if len(live) <= floor:
                return
            n = min(len(live) - floor, max(1, round(fraction * len(live))))
            self._kill(self.sim.rng.sample(live, n), keep_disk=False)
            self.rec.losses.append((t, "wave"))
            self.sim.at(t + every, wave)

        wave(now)

    # ---- churn --------------------------------------------------------------

    def _start_churn(self, ev: Event, now: float) -> None:
        self._churn_until = float(ev.get("until", self.sc.duration))
        mean = float(ev.get("mean_lifetime", 7200.0))
        shape = float(ev.get("shape", 0.7))
        self._churn = {
            "scale": mean / math.gamma(1 + 1 / shape),
            "shape": shape,
            "downtime": float(ev.get("downtime", 600.0)),
            "keep_disk": float(ev.get("keep_disk", 0.8)),
        }
        for node in self.sim.live_nodes():
            self._schedule_death(node, now)

    def _schedule_death(self, node: SimNode, now: float) -> None:
        life = self.sim.rng.weibullvariate(self._churn["scale"], self._churn["shape"])
        if now + life >= self._churn_until:
            return
        inc = node.incarnation
        self.sim.at(now + life, lambda t: self._churn_death(node, inc, t))

    def _churn_death(self, node: SimNode, incarnation: int, now: float) -> None:
        if not node.alive or node.incarnation != incarnation:
            return
        keep = self.sim.rng.random() < self._churn["keep_disk"]
        self._kill([node], keep_disk=keep)
        down = self.sim.rng.expovariate(1.0 / self._churn["downtime"])
        self.sim.at(now + down, lambda t: self._churn_return(node, t))

    def _churn_return(self, node: SimNode, now: float) -> None:
        if node.alive:
            return
        self._boot(node, now)
        self._schedule_death(node, now)

    # ---- census -------------------------------------------------------------

    def _holders(self) -> dict[bytes, int]:
        counts: dict[bytes, int] = {}
        acked = self.acked
        for node in self.sim.live_nodes():
            for key in node.store.keys():
                if key in acked:
                    counts[key] = counts.get(key, 0) + 1
        return counts

    def _census(self, now: float) -> None:
        if self.track_evictions:
            self._check_evictions()
        if not self.acked:
            return
        live = len(self.sim.live_nodes())
        held = self._holders()
        reps = sorted(held.get(key, 0) for key in self.acked)
        want = min(self.k, live)
        n = len(reps)
        zero = sum(1 for r in reps if r == 0)
        self.rec.census.append(
            Census(
                t=now,
                live=live,
                keys=n,
                min=reps[0],
                p10=reps[n // 10],
                median=reps[n // 2],
                mean=sum(reps) / n,
                zero=zero,
                below_k=sum(1 for r in reps if r < want),
                held_fraction=(n - zero) / n,
                placed=self._placed(),
            )
        )

    def _placed(self) -> int:
        """How many acknowledged chunks every one of their k closest joined live nodes holds."""
        placed = 0
        for key in self.acked:
            closest = self.true_closest(int.from_bytes(key, "big"), self.k)
            if all(key in self.by_id[i.to_bytes(32, "big")].store for i in closest):
                placed += 1
        return placed

    def _check_evictions(self) -> None:
        """Count live, reachable contacts that dropped out of a table since the last census.

        Only membership tests on sets: the count does not depend on iteration order.
        """
        for node in self.sim.live_nodes():
            assert node.core is not None
            now_ids = frozenset(c.node_id for c in node.core.table)
            prev = self._contacts_seen.get(node.index)
            if prev is not None and prev[0] == node.incarnation:
                for cid in sorted(prev[1] - now_ids):
                    other = self.by_id.get(cid)
                    if other is not None and other.alive and other.identity.node_id == cid:
                        self.rec.live_evictions[other.cls.name] += 1
            self._contacts_seen[node.index] = (node.incarnation, now_ids)
