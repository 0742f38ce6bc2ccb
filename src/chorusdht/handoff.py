"""Hand-off (DESIGN §6): push held keys to a node that just joined among their k closest.

New contacts are batched for HANDOFF_DELAY, so one pass over the held keys
serves a whole join wave. For each key, only the closest node we know hands it
off; the others trust it to.

A node that rejoins with its disk, or ten survivors that restart together,
already hold most of what they are owed. Sending it all again would cost one
STORE (and one SQLite read on each side) per key, and 100,000 of them would
crowd out real traffic for minutes. So when a node is owed at least
HANDOFF_LIST_MIN keys of one mesh, we first LIST what it holds of that mesh over
the range of those keys (256 keys a page) and hand off only the rest. If the
LIST fails, every key goes, as before.

A contact back from stale (it answers again, or re-enters the table after being
dropped as stale) is owed its keys by every holder among their k closest, not only
the closest: those closer may have been cut off with it and lack the keys too (a
partition). It always gets a LIST first, since each holder near a key offers it.
In the partition scenario 99% of the chunks sat on all their k closest again
3,600 s after the heal, against 8,400 s with the closest-holder rule alone.

The STOREs themselves go out at most HANDOFF_BURST per HANDOFF_TICK (256/s):
a node joining next to holders of 100,000 records is fed, not flooded past its
rate limit.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from itertools import pairwise
from typing import TYPE_CHECKING

from .ids import id_to_int
from .messages import MAX_KEYS_PER_REQUEST, List, Listed, Message
from .ops import Op
from .routing import Contact

if TYPE_CHECKING:
    from .core import NodeCore, Pending

__all__ = [
    "HANDOFF_BURST",
    "HANDOFF_DELAY",
    "HANDOFF_LIST_MIN",
    "HANDOFF_TICK",
    "Handoff",
    "cell_bits",
]

HANDOFF_DELAY = 2.0  # seconds new contacts are batched before one hand-off pass
HANDOFF_BURST = 64
HANDOFF_TICK = 0.25
HANDOFF_LIST_MIN = 16  # owed this many keys of one mesh: LIST first, send only what it lacks
HANDOFF_PASS_SLICE = 2000  # held keys looked at per step of a pass (~20-50 ms)
HANDOFF_PASS_PAUSE = 0.001  # between steps: the node answers what arrived meanwhile


def cell_bits(ids: Iterable[int]) -> int:
    """How many leading bits of a 256-bit key fix its XOR order to every id in `ids`.

    The XOR distances from a key to ids a and b compare by the key's bit where a
    and b first differ. So keys alike in their first (longest common prefix of any
    two ids, + 1) bits see all the ids in one order, and a hand-off pass works out
    one answer for all of them: ten nodes holding 100,000 keys need ~2^8 answers,
    not 100,000. In a large table the cells shrink towards single keys.
    """
    s = sorted(ids)  # the longest common prefix of a set is that of two neighbours
    common = max((256 - (a ^ b).bit_length() for a, b in pairwise(s)), default=0)
    return min(common + 1, 256)


class Handoff:
    """The hand-off state of one `NodeCore`: newcomers to serve and STOREs to send."""

    def __init__(self, core: NodeCore) -> None:
        self.core = core
        self.newcomers: list[Contact] = []
        self.revived: set[bytes] = set()  # newcomers that came back from stale
        # Paced STOREs to send, made on first use: an empty deque is ~760 bytes, and
        # netsim holds a Handoff per node.
        self.out: deque[tuple[Contact, bytes]] | None = None
        self.tick_armed = False
        self.passing: _Pass | None = None

    def contact_added(self, contact: Contact, now: float, *, revived: bool = False) -> None:
        core = self.core
        if not self.newcomers and self.passing is None:
            core.schedule(now + core.rng.uniform(0.5, 1.0) * HANDOFF_DELAY, self._start_pass)
        self.newcomers.append(contact)
        if revived:
            self.revived.add(contact.node_id)

    def _start_pass(self, now: float) -> None:
        core = self.core
        new, self.newcomers = self.newcomers, []
        revived, self.revived = self.revived, set()
        new = [c for c in new if c.node_id in core.table]
        if new:
            self.passing = _Pass(new, core.held_keys(), revived)
            self._step(now)

    def _step(self, now: float) -> None:
        """One slice of the pass; the rest comes back on a timer, so a node holding
        100,000 keys keeps answering while it works out what a join wave is owed."""
        core = self.core
        p = self.passing
        assert p is not None
        end = min(p.next + HANDOFF_PASS_SLICE, len(p.keys))
        shift = 256 - self._cell_bits(p)
        owed_in: dict[int, list[Contact]] = {}  # cell -> newcomers owed its keys
        for key in p.keys[p.next : end]:
            t = id_to_int(key)
            to = owed_in.get(t >> shift)
            if to is None:
                to = owed_in[t >> shift] = self._owed_to(key, t, p)
            for c in to:
                p.owed[c.node_id].append(key)
        p.next = end
        if end < len(p.keys):
            core.schedule(now + HANDOFF_PASS_PAUSE, self._step)
            return
        self.passing = None
        # A contact back from stale likely holds most of what it is owed, and every
        # holder near the key offers it: LIST first, always.
        least = {i: 1 if i in p.revived else HANDOFF_LIST_MIN for i in p.owed}
        big = [key for i, keys in p.owed.items() if len(keys) >= least[i] for key in keys]
        # Only for keys owed in big batches, which may pay for a LIST first: one indexed
        # query for them, not a read of every key we hold.
        mesh_of = core.store.mesh_of(sorted(set(big))) if big else {}
        for c in p.new:
            if owed := p.owed[c.node_id]:
                self._owe(c, owed, mesh_of, now, least[c.node_id])
        if not self.tick_armed:
            self._send(now)
        if self.newcomers:  # met while this pass ran
            core.schedule(now + HANDOFF_PASS_PAUSE, self._start_pass)

    def _cell_bits(self, p: _Pass) -> int:
        core = self.core
        ids = {c.int_id for c in core.table} | {c.int_id for c in p.new} | {core.node_id_int}
        return cell_bits(ids)

    def _owed_to(self, key: bytes, t: int, p: _Pass) -> list[Contact]:
        """The newcomers among `key`'s k closest, if no node we know is closer than us.

        A contact back from stale is owed a key by any holder among the key's k
        closest, not only the closest: the nodes closer than us may have been cut off
        with it (a partition) and lack the key too.
        """
        core = self.core
        k = core.config.k
        mine = core.node_id_int ^ t
        # First the closest other node alone, which costs a bucket or two: for most
        # keys (a replica holds ~k) some other node is closer, and that ends it.
        closest = True
        for n in (1 + len(p.new), k + len(p.new)):
            others = [c for c in core.table.closest(key, n) if c.node_id not in p.fresh]
            if others and mine > (others[0].int_id ^ t):
                closest = False  # another known node is closer: let it hand off
                if not p.revived:
                    return []
        bound = others[k - 1].int_id ^ t if len(others) >= k else 1 << 256
        if closest:
            return [c for c in p.new if (c.int_id ^ t) < bound]
        if mine > bound:
            return []  # not one of its k closest ourselves
        return [c for c in p.new if c.node_id in p.revived and (c.int_id ^ t) < bound]

    def _owe(
        self,
        contact: Contact,
        keys: list[bytes],
        mesh_of: dict[bytes, bytes],
        now: float,
        least: int = HANDOFF_LIST_MIN,
    ) -> None:
        """Queue `keys` for `contact`, after a LIST of what it holds where that pays
        (at least `least` keys of one mesh)."""
        by_mesh: dict[bytes, list[bytes]] = {}
        for key in keys:
            by_mesh.setdefault(mesh_of.get(key, b""), []).append(key)
        for mesh, ours in sorted(by_mesh.items()):
            if mesh and len(ours) >= least:
                _ListFirst(self, contact, mesh, sorted(ours)).start(now)
            else:
                self._queue_out(contact, ours)

    def queue(self, contact: Contact, keys: list[bytes], now: float) -> None:
        self._queue_out(contact, keys)
        if not self.tick_armed:
            self._send(now)

    def _queue_out(self, contact: Contact, keys: list[bytes]) -> None:
        if self.out is None:
            self.out = deque()
        self.out.extend((contact, key) for key in keys)

    def _send(self, now: float) -> None:
        """Send the next HANDOFF_BURST queued hand-offs; come back in HANDOFF_TICK if more."""
        core = self.core
        out = self.out
        if out is None:
            return
        sent = 0
        while out and sent < HANDOFF_BURST:
            c, key = out.popleft()
            if core.table.get(c.node_id) is not c:
                continue  # gone meanwhile (or back under another address)
            record = core.local_record(key)
            if record is None:
                continue
            sent += 1
            core.stats["handoffs"] += 1
            core.send_store(c.node_id, c.addr, record, now)
        if out:
            self.tick_armed = True
            core.schedule(now + HANDOFF_TICK, self._tick)

    def _tick(self, now: float) -> None:
        self.tick_armed = False
        self._send(now)


class _Pass:
    """One hand-off pass in progress: which held keys each newcomer is owed."""

    def __init__(self, new: list[Contact], keys: list[bytes], revived: set[bytes]) -> None:
        self.new = new
        self.fresh = {c.node_id for c in new}
        self.revived = revived & self.fresh
        self.keys = keys
        self.next = 0
        self.owed: dict[bytes, list[bytes]] = {c.node_id: [] for c in new}


class _ListFirst(Op):
    """LIST what a newcomer holds of one mesh over the range of `keys`; hand off the rest."""

    def __init__(self, handoff: Handoff, contact: Contact, mesh: bytes, keys: list[bytes]) -> None:
        super().__init__(handoff.core, False)
        self.handoff = handoff
        self.contact = contact
        self.mesh = mesh
        self.keys = keys  # sorted by the caller: LIST pages go in key order
        self.held: set[bytes] = set()

    def start(self, now: float) -> _ListFirst:
        first = int.from_bytes(self.keys[0], "big")
        cursor = (first - 1).to_bytes(32, "big") if first else None  # LIST is "after cursor"
        self._page(cursor, now)
        return self

    def _page(self, cursor: bytes | None, now: float) -> None:
        body = List(self.mesh, cursor, MAX_KEYS_PER_REQUEST)
        self.request(self.contact.addr, self.contact.node_id, body, now)

    def on_response(self, p: Pending, msg: Message, now: float) -> None:
        body = msg.body
        if not isinstance(body, Listed):  # refused (rate limit, ...): send them all
            self._done(now)
            return
        self.held.update(body.keys)
        last = body.keys[-1] if body.keys else None
        if body.cursor is None or last is None or last >= self.keys[-1]:
            self._done(now)
        else:
            self._page(body.cursor, now)

    def on_timeout(self, p: Pending, now: float) -> None:
        self._done(now)

    def _done(self, now: float) -> None:
        self.finished = True
        self.core.stats["handoffs_listed_held"] += len(self.held)
        lacking = [k for k in self.keys if k not in self.held]
        if lacking:
            self.handoff.queue(self.contact, lacking, now)
