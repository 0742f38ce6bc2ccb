"""Survivor-recovery scenarios: write a mesh, nuke most of the nodes, `recover` from a survivor.

The recover stage runs the library's `chorusdht.recover`, the function
`chorusdht recover` calls, on a fresh read-only node that joins the simulated
network through one survivor. Everything else is `netsim.meshsim`'s machinery:
real trio `Node`s and `Mesh`es on `netsim.trionet.SimNet`, real Ed25519,
`require_membership=True`, under `MockClock(autojump_threshold=0)`.

One scenario function, `nuke_recover`, two shipped shapes (TOML files in
`netsim/scenarios/` with `engine = "recover"`):

- `nuke99-chorus`: every node pins the mesh, 20 authors append for an hour,
  99% of the nodes die at once, and recovery runs from each of the survivors.
- `nuke-overlay-recover`: 2,000 nodes, 20 pinners, k = 20, 90% die; recovery must
  find everything that survived anywhere.

**What must hold** (`must_hold` in the result, per recovery):

- `covers_acked`: every entry acknowledged (its `append(wait="replicated")`
  returned with a write quorum) at least `cutoff` = 2 sync intervals before the
  kill is in the recovered timeline.
- `exact_acked`: let C be the causal closure (prev and parents, transitively) of
  those entries, taken from the ground truth (every chunk the authors made).
  C is a per-author prefix, so it has a phase vector φ_C. The recovered chunks
  with seq ≤ φ_C[author] must have exactly φ_C as their phase and the root a
  complete member computes over C. (The timeline order is by lamport first and
  lamport grows along every edge, so a causally closed subset's order, and so
  its root, does not depend on what else is held.)
- `exact_prefix`: the recovered root and phase equal those of the ground truth
  cut at the recovered phase vector: nothing was added, altered or reordered.
- `finds_survivors`: every chunk of the mesh held by any surviving node's store
  (replicas, caches, pinned copies; counted just before recovery) is among the
  recovered chunks: "recovery finds everything that survived anywhere". A chunk
  counts as survived when its author's membership is still provable from the
  surviving records (genesis, roster, certs in the same stores). A holder keeps
  the genesis and certificates a STORE's membership proof carries, so this
  should always be so; `survived_unprovable` counts the chunks for which it is
  not (the recovery reports them as NOT_MEMBER).

A scenario's `must` lists the checks that decide `ok`; the others are reported
under `checks`. Where no pinner need survive (`nuke-overlay-recover`), entries
may be lost outright, so only `finds_survivors` and `exact_prefix` must hold.

With `reseed`, the first recovery republishes what it found; then the survivors'
full (pinned) copies are killed too, every recovered chunk's live holders are
counted, and a fresh reader must `get` each one through the DHT.

    python -m netsim.recoversim nuke99-chorus --seed 1 2 3 4 5 --out out/
    python -m netsim.recoversim nuke-overlay-recover --nodes 400 --seed 7
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import resource
import sys
import time
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import trio
import trio.testing

from chorusdht import Identity, MemoryStore, NodeConfig, open_node, recover
from chorusdht.errors import ChorusError
from chorusdht.membership import MembershipView
from chorusdht.memlog import MeshLog
from chorusdht.mesh import Mesh
from chorusdht.records import Cert, Chunk, Genesis, Roster, load_trusted
from chorusdht.recovery import RecoveryReport

from .engine import derive_seed
from .meshsim import MeshSwarm, SimMember, _virtual_ms
from .runner import writable_out
from .scenario import ScenarioError, check_field, flag_rule, load_scenario, number_rule
from .trionet import SimNet, deterministic_trio

__all__ = [
    "ENGINE",
    "STAGES",
    "Progress",
    "RecoverSpec",
    "is_recover_scenario",
    "load_sized_spec",
    "load_spec",
    "main",
    "nuke_recover",
    "overall",
    "run_spec",
    "stage_text",
]

ENGINE = "recover"  # the `engine` value that routes a scenario file here, not to the heapq engine
HOUR = 3600.0
TICK = 60.0  # virtual seconds between progress reports while writing

MUST_HOLD = ("covers_acked", "exact_acked", "exact_prefix", "finds_survivors")

Progress = Callable[[str, float, float], None]
"""progress(stage, done, total); stages: "nodes", "mesh", "write", "settle", "recover"."""


STAGES = ("nodes", "mesh", "write", "settle", "recover")  # in the order a run reports them


def _no_progress(stage: str, done: float, total: float) -> None:
    pass


def overall(stage: str, done: float, total: float) -> float:
    """A run's progress from 0 to 1, each stage an equal share. It reaches 1 only at
    the end of the last stage: a progress bar stops its elapsed clock at 1."""
    part = min(max(done / total, 0.0), 1.0) if total else 1.0  # write starts before t0
    return (STAGES.index(stage) + part) / len(STAGES)


def stage_text(stage: str, done: float, total: float) -> str:
    """What a progress bar shows beside itself: "write 12/60 min", "recover 2/3"."""
    done = max(done, 0.0)
    if stage == "write":
        return f"{stage} {done / 60:.0f}/{total / 60:.0f} min"
    return f"{stage} {done:.0f}/{total:.0f}"


@dataclass(frozen=True, slots=True)
class RecoverSpec:
    """One scenario's shape; a TOML file's top-level keys (see the shipped files)."""

    name: str = "nuke-recover"
    question: str = ""
    nodes: int = 100
    pinners: int = 0  # 0: every node pins the mesh
    authors: int = 4  # the first `authors` pinners are admitted members and write
    hours: float = 0.1  # virtual hours of writing
    think: float = 60.0  # seconds between one author's appends
    interval: float = 30.0  # anti-entropy interval
    kill: float = 0.99  # fraction of the nodes killed at once, at random
    quiet: float = 0.0  # writers stop this long before the kill
    settle: float = 30.0  # virtual seconds between the kill and the first recovery
    patience: float = 0.0  # `recover(patience=...)`: crawl again while most nodes are silent
    recover_from: int = 0  # survivors to recover from, one recovery each (0: every one)
    k: int = 20
    spare_pinners: int = 0  # pinners guaranteed to survive (for the reseed check)
    reseed: bool = False
    seeds: tuple[int, ...] = (1,)
    must: tuple[str, ...] = MUST_HOLD  # which checks decide `ok` (see the module docstring)

    def scaled(self, nodes: int) -> RecoverSpec:
        """The same shape with `nodes` nodes: an all-pinning mesh stays all-pinning."""
        return replace(self, nodes=nodes)

    def check(self) -> None:
        """ValueError if the counts do not fit together (each value is checked on load;
        `patience` again here, as a command line may override it)."""
        if not 1 <= self.authors <= (self.pinners or self.nodes) <= self.nodes:
            raise ValueError("need 1 <= authors <= pinners <= nodes")
        check_field("", "patience", self.patience, _SPEC_RULES["patience"], {})


def is_recover_scenario(path: Path) -> bool:
    try:
        return tomllib.loads(path.read_text()).get("engine") == ENGINE
    except (OSError, ValueError):  # unreadable, not UTF-8 or not TOML: load_scenario says so
        return False


_SEED = number_rule(0, whole=True)
_SPEC_RULES = {
    "nodes": number_rule(1, whole=True),
    "pinners": number_rule(0, whole=True),
    "authors": number_rule(1, whole=True),
    "hours": number_rule(0.0, above=True),
    "think": number_rule(0.0, above=True),
    "interval": number_rule(0.0, above=True),
    "kill": number_rule(0.0, 1.0, below=True),  # a survivor must be left to recover from
    "quiet": number_rule(0.0),
    "settle": number_rule(0.0),
    "patience": number_rule(0.0),
    "recover_from": number_rule(0, whole=True),
    "k": number_rule(1, whole=True),
    "spare_pinners": number_rule(0, whole=True),
    "reseed": flag_rule,
}


def load_spec(path: Path) -> RecoverSpec:
    """Parse a recover scenario file; ValueError names a bad key."""
    text = path.read_text()
    data = tomllib.loads(text)
    data.pop("engine", None)
    known = {f.name for f in fields(RecoverSpec)} - {"name", "question"}
    for key in data:
        if key not in known:
            raise ValueError(f"scenario {path}: unknown key {key!r}")
    for key, value in data.items():
        if key in _SPEC_RULES:
            check_field(f"scenario {path}", key, value, _SPEC_RULES[key], {})
    if "seeds" in data:
        seeds = data["seeds"]
        if not isinstance(seeds, list) or not seeds or any(_SEED(x) for x in seeds):
            raise ValueError(f"scenario {path}: seeds must be a list of whole numbers >= 0")
        data["seeds"] = tuple(seeds)
    if "must" in data:
        data["must"] = tuple(str(s) for s in data["must"])
        for name in data["must"]:
            if name not in MUST_HOLD:
                raise ValueError(f"scenario {path}: unknown check {name!r} in must")
    question = " ".join(
        line.lstrip("# ").rstrip()
        for line in text.splitlines()[: _comment_lines(text)]
        if line.lstrip("# ").strip()
    )
    return RecoverSpec(name=path.stem, question=question, **data)


def load_sized_spec(path: Path, nodes: int | None = None) -> RecoverSpec:
    """`load_spec`, scaled to `nodes` when given, with its counts checked; ValueError."""
    spec = load_spec(path)
    if nodes is not None:
        spec = spec.scaled(nodes)
    spec.check()
    return spec


def _comment_lines(text: str) -> int:
    n = 0
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        n += 1
    return n


# ---- the scenario -------------------------------------------------------------------


@dataclass(slots=True)
class _Author:
    mesh: Mesh
    acks: list[tuple[float, int, int]] = field(default_factory=list)  # (acked at, seq, replicas)
    appended: int = 0


async def _write(a: _Author, start: float, think: float) -> None:
    """Append every `think` s until cancelled; note each append the write quorum acknowledged."""
    await trio.sleep_until(start)
    while True:
        res = await a.mesh.append(f"entry at {trio.current_time():.3f}".encode(), wait="replicated")
        a.appended += 1
        if res.replicas > 0:  # 0: the put missed its write quorum (Mesh._publish)
            a.acks.append((trio.current_time(), res.seq, res.replicas))
        await trio.sleep(think)


async def _ticker(progress: Progress, stage: str, start: float, end: float) -> None:
    while (now := trio.current_time()) < end:
        progress(stage, now - start, end - start)
        await trio.sleep(min(TICK, end - now))
    progress(stage, end - start, end - start)


@dataclass(slots=True)
class _Census:
    """What the survivors' stores hold of the mesh, judged without any recovery code."""

    chunks: set[bytes] = field(default_factory=set)
    genesis: Genesis | None = None
    certs: list[Cert] = field(default_factory=list)

    def take(self, member: SimMember, mesh: bytes, truth: dict[bytes, Chunk]) -> None:
        store, cursor = member.node.core.store, None
        while True:
            keys = store.list_mesh(mesh, cursor, 4096)
            for key in keys:
                if key in truth:
                    self.chunks.add(key)
                    continue
                raw = store.get(key)
                if raw is None:
                    continue
                rec = load_trusted(key, raw)  # our own simulated honest nodes' stores
                if isinstance(rec, Genesis):
                    self.genesis = rec
                elif isinstance(rec, Cert):
                    self.certs.append(rec)
                elif isinstance(rec, Roster):
                    self.certs.extend(rec.certs)
            if len(keys) < 4096:
                return
            cursor = keys[-1]

    def provable(self, truth: dict[bytes, Chunk]) -> set[bytes]:
        """Surviving chunks whose author's membership the surviving records still prove."""
        if self.genesis is None:
            return set()
        view = MembershipView(self.genesis)
        view.add_certs(self.certs)
        members = view.members()
        return {k for k in self.chunks if truth[k].author in members}


def _log_of(mesh: bytes, chunks: Sequence[Chunk]) -> MeshLog:
    log = MeshLog(mesh)
    for c in sorted(chunks, key=lambda c: (c.lamport, c.key)):  # causal: lamport grows on edges
        log.add(c)
    return log


def _closure(truth: dict[bytes, Chunk], want: dict[bytes, int]) -> list[Chunk]:
    """Chunks with seq <= want[author], plus their ancestors, transitively."""
    todo = [c.key for c in truth.values() if c.seq <= want.get(c.author, 0)]
    seen: set[bytes] = set()
    while todo:
        key = todo.pop()
        if key in seen or key not in truth:
            continue
        seen.add(key)
        c = truth[key]
        todo.extend(d for d in (c.prev, *c.parents) if d is not None)
    return [truth[k] for k in sorted(seen)]


async def _recover_once(
    net: SimNet,
    mesh: bytes,
    via: SimMember,
    index: int,
    k: int,
    reseed: bool,
    patience: float = 0.0,
) -> RecoveryReport:
    """A fresh read-only node joins through `via` and runs `chorusdht.recover`, as the CLI does."""
    ident = Identity.from_seed(derive_seed(net.seed, "recoverer", index).to_bytes(8, "big") * 4)
    rng = random.Random(derive_seed(net.seed, "recoverer-rng", index))
    config = NodeConfig(k=k, read_only=True)  # what `chorusdht recover` runs, with the sim's k
    async with open_node(
        transport=net.transport("datacenter"),
        identity=ident,
        store=MemoryStore(),
        config=config,
        rng=rng,
    ) as node:
        return await recover(
            node, mesh, bootstrap=[via.node.address], reseed=reseed, workers=0, patience=patience
        )


async def _dht_reads(net: SimNet, via: SimMember, keys: Sequence[bytes], k: int) -> int:
    """A fresh read-only reader `get`s every key through the DHT; how many it found."""
    ident = Identity.from_seed(derive_seed(net.seed, "reader").to_bytes(8, "big") * 4)
    config = NodeConfig(k=k, read_only=True, cache_on_get=False)  # reading must not repair
    ok = 0
    async with open_node(
        transport=net.transport("datacenter"),
        identity=ident,
        store=MemoryStore(),
        config=config,
        rng=random.Random(derive_seed(net.seed, "reader-rng")),
    ) as node:
        await node.bootstrap([via.node.address])
        for key in keys:
            try:
                got = await node.get(key)
            except ChorusError:
                continue
            ok += got.record.raw is not None and hashlib.sha256(got.record.raw).digest() == key
    return ok


def _recovery_row(
    r: RecoveryReport,
    via: int,
    truth: dict[bytes, Chunk],
    acked_phase: dict[bytes, int],
    closure_log: MeshLog,
    survived: set[bytes],
    virtual: float,
) -> dict[str, Any]:
    mesh = r.mesh
    timeline = r.log.timeline()
    held = {c.key for c in r.log.chunks()}
    phase = r.phase
    missing_acked = sum(max(0, s - phase.get(a, 0)) for a, s in acked_phase.items())
    want = closure_log.phase()
    sub = _log_of(mesh, [c for c in timeline if c.seq <= want.get(c.author, 0)])
    prefix = _log_of(mesh, [c for c in truth.values() if c.seq <= phase.get(c.author, 0)])
    missed = survived - held
    return {
        "via": via,
        "entries": r.entries,
        "chunks": len(held),
        "root": r.root.hex(),
        "missing_acked": missing_acked,
        "missed_survivors": len(missed),
        "exact_acked": sub.root() == closure_log.root() and sub.phase() == want,
        "exact_prefix": prefix.root() == r.root and prefix.phase() == phase,
        "dangling": r.dangling,
        "missing": len(r.missing),
        "dropped": r.dropped,
        "nodes_found": r.nodes_found,
        "nodes_reached": r.nodes_reached,
        "reseeded": r.reseeded,
        "reseed_failed": r.reseed_failed,
        "virtual_seconds": round(virtual, 3),
    }


def _failed_row(
    via: int, e: ChorusError, acked_phase: dict[bytes, int], survived: set[bytes]
) -> dict[str, Any]:
    """A recovery that raised: it recovered nothing, and says why."""
    return {
        "via": via,
        "error": f"{type(e).__name__}: {e}",
        "entries": 0,
        "chunks": 0,
        "root": "",
        "missing_acked": sum(acked_phase.values()),
        "missed_survivors": len(survived),
        "exact_acked": not acked_phase,
        "exact_prefix": False,
        "dangling": 0,
        "missing": 0,
        "dropped": {},
        "nodes_found": 0,
        "nodes_reached": 0,
        "reseeded": 0,
        "reseed_failed": 0,
        "virtual_seconds": 0.0,
    }


async def nuke_recover(
    spec: RecoverSpec, seed: int, progress: Progress = _no_progress
) -> dict[str, Any]:
    """Run one seed of `spec`; return plain-data metrics (no wall-clock figures)."""
    net = SimNet(seed)
    rng = random.Random(derive_seed(seed, "nuke-recover"))
    config = NodeConfig(k=spec.k, require_membership=True)
    n_pin = spec.pinners or spec.nodes
    spec.check()
    async with trio.open_nursery() as nursery:
        await nursery.start(net.run)
        swarm = MeshSwarm(net, nursery, config)
        for i in range(spec.nodes):
            await swarm.add("datacenter")
            progress("nodes", i + 1, 2 * spec.nodes)
        seed_addr = swarm.members[0].node.address
        for i, m in enumerate(swarm.members[1:], start=1):
            await m.node.bootstrap([seed_addr])
            progress("nodes", spec.nodes + i, 2 * spec.nodes)
        order = sorted(rng.sample(range(spec.nodes), n_pin))
        rng.shuffle(order)
        pin_idx, author_idx = order, order[: spec.authors]

        # The founder admits the authors (the roster holds them all); every other pinner
        # follows the mesh as a member's node would once it holds the genesis and roster.
        founder = swarm.members[author_idx[0]]
        fmesh = await Mesh.create(founder.node, "sim", clock=_virtual_ms)
        for i in author_idx[1:]:
            await fmesh.admit(swarm.members[i].node.core.identity.public_key)
        roster = fmesh.view.roster()
        meshes: dict[int, Mesh] = {author_idx[0]: fmesh}
        for n, i in enumerate(pin_idx):
            if i not in meshes:
                node = swarm.members[i].node
                mesh = Mesh(node, fmesh.genesis, node.core.identity, clock=_virtual_ms)
                mesh._keep(fmesh.genesis)
                mesh._keep(roster)
                await mesh.start()
                meshes[i] = mesh
            progress("mesh", n + 1, len(pin_idx))
        for mesh in meshes.values():
            mesh.node.spawn(mesh.sync_forever, spec.interval)
        authors = [_Author(meshes[i]) for i in author_idx]

        # Write, then kill.
        t0 = trio.current_time() + spec.interval
        kill_at = t0 + spec.hours * HOUR
        nursery.start_soon(_ticker, progress, "write", t0, kill_at)
        with trio.move_on_at(kill_at - spec.quiet):
            async with trio.open_nursery() as wn:
                for a in authors:
                    wn.start_soon(_write, a, t0 + rng.uniform(0, spec.think), spec.think)
        await trio.sleep_until(kill_at)
        truth: dict[bytes, Chunk] = {}
        for a in authors:
            truth.update((c.key, c) for c in a.mesh.log.chunks())
        roots = [m.log.root() for m in meshes.values()]
        complete_root = _log_of(fmesh.id, list(truth.values())).root()
        n_live = max(1, round(spec.nodes * (1 - spec.kill)))
        spare = pin_idx[: spec.spare_pinners]  # kept pinners come first: recovery starts there
        rest = sorted(set(range(spec.nodes)) - set(spare))
        survivors = spare + sorted(rng.sample(rest, max(0, n_live - len(spare))))
        alive = set(survivors)
        for i, m in enumerate(swarm.members):
            if i not in alive:
                net.kill(m.node.address)
                m.scope.cancel()

        # What must be recovered, and what survived anywhere.
        cutoff = kill_at - 2 * spec.interval
        acked_phase: dict[bytes, int] = {}
        for a in authors:
            seqs = [s for t, s, _ in a.acks if t <= cutoff]
            if seqs:
                acked_phase[a.mesh.author.public_key] = max(seqs)
        closure_log = _log_of(fmesh.id, _closure(truth, acked_phase))
        await trio.sleep(spec.settle)
        progress("settle", 1, 1)
        census = _Census()
        for i in survivors:
            census.take(swarm.members[i], fmesh.id, truth)
        survived = census.provable(truth)
        dht_before = None
        if spec.reseed:
            dht_before = await _dht_reads(
                net, swarm.members[survivors[-1]], sorted(survived), spec.k
            )

        vias = survivors if spec.recover_from == 0 else survivors[: spec.recover_from]
        rows = []
        first_keys: list[bytes] = []
        for n, i in enumerate(vias):
            started = trio.current_time()
            try:
                report = await _recover_once(
                    net,
                    fmesh.id,
                    swarm.members[i],
                    n,
                    spec.k,
                    spec.reseed and n == 0,
                    spec.patience,
                )
            except ChorusError as e:  # no survivor reachable, or no genesis left anywhere
                rows.append(_failed_row(i, e, acked_phase, survived))
                continue
            if n == 0:
                first_keys = sorted(c.key for c in report.log.chunks())
            virtual = trio.current_time() - started
            rows.append(
                _recovery_row(report, i, truth, acked_phase, closure_log, survived, virtual)
            )
            progress("recover", n + 1, len(vias))
        reseed_out: dict[str, Any] | None = None
        if spec.reseed:
            reseed_out = await _reseed_check(
                net, swarm, survivors, set(pin_idx), rows, first_keys, spec
            )
            reseed_out["dht_reads_before"] = dht_before
        nursery.cancel_scope.cancel()

    acked = sum(len(a.acks) for a in authors)
    checks = {
        "covers_acked": all(r["missing_acked"] == 0 for r in rows),
        "exact_acked": all(r["exact_acked"] for r in rows),
        "exact_prefix": all(r["exact_prefix"] for r in rows),
        "finds_survivors": all(r["missed_survivors"] == 0 for r in rows),
    }
    must = {name: checks[name] for name in spec.must}
    if reseed_out is not None:
        must["reseed_readable"] = reseed_out["dht_reads_after"] == reseed_out["chunks"]
    entries = [r["entries"] for r in rows]
    return {
        "scenario": spec.name,
        "question": spec.question,
        "seed": seed,
        "spec": {k: v for k, v in asdict(spec).items() if k not in ("name", "question", "seeds")},
        "appended": sum(a.appended for a in authors),
        "acked": acked,
        "acked_before_cutoff": sum(acked_phase.values()),
        "cutoff_before_kill": 2 * spec.interval,
        "closure_entries": len(closure_log.timeline()),
        "closure_root": closure_log.root().hex(),
        "all_entries": len(truth),
        "all_root": complete_root.hex(),
        "members_complete_at_kill": sum(r == complete_root for r in roots),
        "pinners": n_pin,
        "survivors": len(survivors),
        "surviving_pinners": len(alive & set(pin_idx)),
        "survived_anywhere": len(survived),
        "survived_fraction": round(len(survived) / len(truth), 6) if truth else 1.0,
        "survived_unprovable": len(census.chunks) - len(survived),
        "recovered_entries_min": min(entries),
        "recovered_fraction_min": round(min(entries) / len(truth), 6) if truth else 1.0,
        "distinct_recovered_roots": len({r["root"] for r in rows}),
        "recoveries": rows,
        "reseed": reseed_out,
        "must_hold": must,
        "checks": checks,
        "ok": all(must.values()),
        "net": net.totals(),
        "fingerprint": net.fingerprint(),
    }


async def _reseed_check(
    net: SimNet,
    swarm: MeshSwarm,
    survivors: list[int],
    pinners: set[int],
    rows: list[dict[str, Any]],
    keys: list[bytes],
    spec: RecoverSpec,
) -> dict[str, Any]:
    """After a reseeding recovery: kill the surviving full copies, count holders of the
    recovered chunks (`keys`) on the nodes left, and read every one through the DHT."""
    first = rows[0]
    keep = [i for i in survivors if i not in pinners]
    for i in survivors:
        if i in pinners:
            net.kill(swarm.members[i].node.address)
            swarm.members[i].scope.cancel()
    if not keep:
        return {"chunks": 0, "dht_reads_after": 0, "holders_min": 0, "reseeded": first["reseeded"]}
    # The recovered chunks: what the first (reseeding) recovery held, read back from truth.
    live = [swarm.members[i] for i in keep]
    holders = [sum(k in m.node.core.store for m in live) for k in keys]
    after = await _dht_reads(net, live[0], keys, spec.k)
    return {
        "chunks": len(keys),
        "reseeded": first["reseeded"],
        "reseed_failed": first["reseed_failed"],
        "live_after_pinners_killed": len(live),
        "holders_min": min(holders, default=0),
        "holders_median": sorted(holders)[len(holders) // 2] if holders else 0,
        "dht_reads_after": after,
    }


# ---- running -----------------------------------------------------------------------


def run_spec(
    spec: RecoverSpec,
    seed: int,
    *,
    progress: Progress = _no_progress,
    virtual_limit: float = 100 * HOUR,
) -> dict[str, Any]:
    """One seed in virtual time (trio's task order seeded too); adds a `wall` entry."""
    deterministic_trio(seed)
    clock = trio.testing.MockClock(autojump_threshold=0)
    started = time.perf_counter()

    async def limited() -> dict[str, Any]:
        with trio.fail_after(virtual_limit):
            return await nuke_recover(spec, seed, progress)

    metrics = trio.run(limited, clock=clock)
    metrics["wall"] = {
        "seconds": round(time.perf_counter() - started, 3),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    return metrics


def metrics_json(runs: Sequence[dict[str, Any]]) -> str:
    """metrics.json: one entry per seed, sorted keys; wall-clock figures kept apart under
    `wall` (they differ between runs of one seed, the rest does not)."""
    doc = {
        "scenario": runs[0]["scenario"],
        "question": runs[0]["question"],
        "ok": all(r["ok"] for r in runs),
        "seeds": {str(r["seed"]): {k: v for k, v in r.items() if k != "wall"} for r in runs},
        "wall": {str(r["seed"]): r["wall"] for r in runs},
    }
    return json.dumps(doc, sort_keys=True, indent=1) + "\n"


def summary_table(runs: Sequence[dict[str, Any]]) -> Any:
    """A rich table, one column per seed."""
    from rich.table import Table

    first = runs[0]
    sp = first["spec"]
    title = (
        f"{first['scenario']} · {sp['nodes']} nodes · {first['pinners']} pinning · "
        f"{sp['authors']} authors · kill {100 * sp['kill']:g}% · k={sp['k']}"
    )
    table = Table(title=title)
    table.add_column("metric")
    for r in runs:
        table.add_column(f"seed {r['seed']}", justify="right")

    def yes(b: bool) -> str:
        return "[green]yes[/]" if b else "[red]NO[/]"

    def row(name: str, fn: Callable[[dict[str, Any]], str]) -> None:
        table.add_row(name, *(fn(r) for r in runs))

    row("appended / acked", lambda r: f"{r['appended']} / {r['acked']}")
    row("acked ≥ 2 intervals before kill", lambda r: str(r["acked_before_cutoff"]))
    row("  their causal closure", lambda r: str(r["closure_entries"]))
    row("members complete at kill", lambda r: f"{r['members_complete_at_kill']} / {r['pinners']}")
    row("survivors (pinning)", lambda r: f"{r['survivors']} ({r['surviving_pinners']})")
    row("chunks surviving anywhere", lambda r: f"{r['survived_anywhere']} / {r['all_entries']}")
    row("  surviving, author unprovable", lambda r: str(r.get("survived_unprovable", 0)))
    row("recoveries", lambda r: str(len(r["recoveries"])))
    row("recovered entries (min)", lambda r: f"{r['recovered_entries_min']} / {r['all_entries']}")
    row("distinct recovered roots", lambda r: str(r["distinct_recovered_roots"]))
    row("nodes reached (min)", lambda r: str(min(x["nodes_reached"] for x in r["recoveries"])))
    row(
        "recovery virtual s (max)",
        lambda r: f"{max(x['virtual_seconds'] for x in r['recoveries']):.1f}",
    )
    for name in first["checks"]:
        label = "must hold" if name in first["must_hold"] else "check"
        table.add_row(f"{label}: {name}", *(yes(r["checks"][name]) for r in runs))
    if first["reseed"] is not None:
        row(
            "reseed: holders min / median",
            lambda r: f"{r['reseed']['holders_min']} / {r['reseed'].get('holders_median', 0)}",
        )
        row("reseed: DHT reads before", lambda r: str(r["reseed"]["dht_reads_before"]))
        row(
            "reseed: DHT reads after",
            lambda r: f"{r['reseed']['dht_reads_after']} / {r['reseed']['chunks']}",
        )
    row(
        "wall s / peak RSS MiB",
        lambda r: f"{r['wall']['seconds']:.0f} / {r['wall']['peak_rss_mib']:.0f}",
    )
    return table


def run_file(
    path: Path,
    seeds: Sequence[int] | None = None,
    *,
    nodes: int | None = None,
    out: Path | None = None,
    progress: Callable[[int, str, float, float], None] | None = None,
    patience: float | None = None,
) -> list[dict[str, Any]]:
    """Run a recover scenario file for each seed (default: the file's `seeds`).
    ValueError for a bad file or argument (an unwritable `out` too) before any run."""
    spec = load_sized_spec(path, nodes)
    if patience is not None:
        spec = replace(spec, patience=patience)
        spec.check()
    if out is not None:
        try:
            out = writable_out(out)
        except ScenarioError as e:
            raise ValueError(str(e)) from None
    runs = []
    for seed in seeds or spec.seeds:

        def one(stage: str, done: float, total: float, seed: int = seed) -> None:
            if progress is not None:
                progress(seed, stage, done, total)

        runs.append(run_spec(spec, seed, progress=one))
        if out is not None:  # after every seed, so a long sweep keeps what it has
            from .plots import write_recover_plots  # matplotlib only when plots are asked for

            out.mkdir(parents=True, exist_ok=True)
            (out / "metrics.json").write_text(metrics_json(runs))
            write_recover_plots(runs, out)
    return runs


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m netsim.recoversim SCENARIO [--seed S ...] [--nodes N] [--out DIR]`."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

    from .scenario import SCENARIO_DIR

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("scenario", help="nuke99-chorus, nuke-overlay-recover, or a .toml path")
    p.add_argument("--seed", type=int, nargs="+", default=None, help="default: the file's seeds")
    p.add_argument("--nodes", type=int, default=None, help="override the node count")
    p.add_argument("--out", type=Path, default=None, help="write metrics.json and a plot here")
    p.add_argument(
        "--patience", type=float, default=None, help="recover(patience=...), virtual seconds"
    )
    a = p.parse_args(argv)
    path = Path(a.scenario)
    if path.suffix != ".toml":
        path = SCENARIO_DIR / f"{a.scenario}.toml"
    if not path.is_file():
        p.error(f"no scenario {a.scenario!r} (no file {path})")
    if not is_recover_scenario(path):
        try:
            load_scenario(path)  # says what is wrong with a file that is not even TOML
        except ScenarioError as e:
            p.error(str(e))
        p.error(f"{path} is not a recover scenario (engine = {ENGINE!r})")
    try:  # a bad file or option is refused before the bar appears
        spec = load_sized_spec(path, a.nodes)
        if a.patience is not None:
            replace(spec, patience=a.patience).check()
        if a.out is not None:
            writable_out(a.out)
    except (ValueError, ScenarioError) as e:
        p.error(str(e))
    console = Console(stderr=True)
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[what]}"),
        TimeElapsedColumn(),
    )
    plain = not console.is_terminal  # a log file: one line per stage and per 10% of writing
    last: dict[int, tuple[str, int]] = {}
    wall = time.perf_counter()
    with Progress(*columns, console=console, transient=True, disable=plain) as bar:
        tasks: dict[int, TaskID] = {}

        def show(seed: int, stage: str, done: float, total: float) -> None:
            if plain:
                step = (stage, int(10 * done / total) if total else 10)
                if last.get(seed) != step:
                    last[seed] = step
                    w = time.perf_counter() - wall
                    print(f"[{w:7.0f} s] seed {seed}: {stage_text(stage, done, total)}", flush=True)
                return
            if seed not in tasks:
                tasks[seed] = bar.add_task(f"seed {seed}", total=1.0, what="")
            what = stage_text(stage, done, total)
            bar.update(tasks[seed], completed=overall(stage, done, total), what=what)

        runs = run_file(path, a.seed, nodes=a.nodes, out=a.out, progress=show, patience=a.patience)
    Console().print(summary_table(runs))
    if a.out is not None:
        Console().print(f"wrote {a.out / 'metrics.json'} and {a.out / 'recovered.png'}")
    sys.exit(0 if all(r["ok"] for r in runs) else 1)


if __name__ == "__main__":
    main()
