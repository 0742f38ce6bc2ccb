"""Tier 3: a memory mesh on 10 real UDP nodes: 3 authors, 100 entries each, one root."""

from __future__ import annotations

import pytest
import trio

from chorusdht import (
    ConfigError,
    ErrorCode,
    Identity,
    LocalError,
    NodeConfig,
    StoreError,
    ValidationError,
    open_node,
)
from chorusdht.mesh import Mesh
from chorusdht.store import MemoryStore

from .conftest import udp_swarm

pytestmark = pytest.mark.integration


async def test_three_authors_ten_nodes_one_root() -> None:
    config = NodeConfig(k=6, require_membership=True)
    with trio.fail_after(120):
        async with udp_swarm(10, config, seed=3) as swarm:
            nodes = [r.node for r in swarm]
            founder = await Mesh.create(nodes[0], "team")
            for n in nodes[1:3]:
                await founder.admit(n.core.identity.public_key)
            meshes = [founder] + [await Mesh.join(n, founder.id) for n in nodes[1:]]
            authors = meshes[:3]
            for i in range(100):
                for a in authors:
                    await a.append(f"entry {i} from {a.author.public_key.hex()[:8]}".encode())
            for m in meshes:  # replication of wait="local" appends runs in the background
                while m.pending_replication:
                    await trio.sleep(0.05)
            for _ in range(4):  # anti-entropy rounds, each with one random member's node
                for m in meshes:
                    await m.sync()
            phases = [m.phase() for m in meshes]
            assert all(p.entries == 300 for p in phases), [p.entries for p in phases]
            assert len({p.root for p in phases}) == 1
            want = {a.author.public_key: 100 for a in authors}
            assert all(p.vector == want for p in phases)


async def test_a_non_member_cannot_append_and_its_chunks_are_refused() -> None:
    config = NodeConfig(k=4, require_membership=True)
    with trio.fail_after(60):
        async with udp_swarm(5, config, seed=4) as swarm:
            founder = await Mesh.create(swarm[0].node, "closed")
            outsider = await Mesh.join(swarm[1].node, founder.id)
            with pytest.raises(ValidationError) as e:
                await outsider.append(b"let me in")
            assert e.value.code is ErrorCode.NOT_MEMBER
            # A chunk forged by a non-member key is refused at STORE by every node.
            stranger = Identity.generate()
            forged = outsider.log.next_append(stranger.public_key)
            from chorusdht import make_chunk

            chunk = make_chunk(
                stranger,
                mesh=founder.id,
                seq=forged.seq,
                prev=None,
                lamport=1,
                time=0,
                payload=b"forged",
            )
            for r in swarm:
                with pytest.raises(ValidationError) as e2:
                    r.node.core.validate(chunk.key, chunk.raw)
                assert e2.value.code is ErrorCode.NOT_MEMBER


async def test_sync_does_not_challenge_a_member_node_it_already_knows() -> None:
    """Each challenge costs the peer a signature and us a verify: a sync round with a
    member whose node is proven (here: our bootstrap contact) asks for none."""
    config = NodeConfig(k=3, require_membership=True)
    with trio.fail_after(60):
        async with udp_swarm(3, config, seed=5) as swarm:
            founder = await Mesh.create(swarm[0].node, "quiet")
            reader = await Mesh.join(swarm[1].node, founder.id)
            for i in range(5):
                await founder.append(f"entry {i}".encode())
            peers = await reader.peers()
            assert peers == [swarm[0].node.address]
            core = swarm[1].node.core
            before = core.stats["challenges_out"]
            for _ in range(2):
                await reader.sync(peers[0])
            assert reader.phase().entries == 5
            assert core.stats["challenges_out"] == before


async def test_refounding_a_mesh_or_syncing_with_no_pause_is_refused() -> None:
    """Founding the same mesh twice once started a second sync task for it; an interval
    of 0 would sync back to back for ever."""
    config = NodeConfig(k=4, require_membership=True)
    with trio.fail_after(60):
        async with udp_swarm(2, config, seed=6) as swarm:
            mesh = await Mesh.create(swarm[0].node, "once")
            with pytest.raises(LocalError, match="mesh 'once' already exists"):
                await Mesh.create(swarm[0].node, "once")
            for bad in (0.0, -1.0, float("nan")):
                with pytest.raises(ConfigError, match="sync interval must be a positive"):
                    await mesh.sync_forever(bad)


async def test_library_misuse_is_a_local_error_that_says_what_to_pass() -> None:
    """Each of these once escaped as a TypeError, AttributeError or ValueError from
    deep inside (an audit of what a Python user plausibly gets wrong)."""
    config = NodeConfig(k=4, require_membership=True)
    with trio.fail_after(60):
        async with udp_swarm(2, config, seed=7) as swarm:
            a, b = swarm[0].node, swarm[1].node
            mesh = await Mesh.create(a, "misuse")
            for payload, words in [
                ("text", "got str .encode text first"),
                (None, "got NoneType"),
            ]:
                with pytest.raises(LocalError, match=words):
                    await mesh.append(payload)  # type: ignore[arg-type]
            assert (await mesh.append(bytearray(b"ok"))).seq == 1  # bytes-like is fine
            with pytest.raises(LocalError, match="wait is 'local' or 'replicated'"):
                await mesh.append(b"x", wait="bogus")  # type: ignore[arg-type]
            with pytest.raises(LocalError, match="a mesh id is 32 bytes, got a str"):
                await Mesh.join(b, mesh.id.hex())  # type: ignore[arg-type]
            with pytest.raises(LocalError, match="a key is 32 bytes, got 3 bytes"):
                await a.get(b"abc")
            host, port = a.address
            assert (await b.bootstrap([f"{host}:{port}"])).contacts >= 1  # "HOST:PORT" works
            for addr, words in [
                ((host, 70000), "port must be 0-65535"),
                ((host, "abc"), "expected .host, port. or 'HOST:PORT'"),
                ("nonsense", "expected HOST:PORT"),
            ]:
                with pytest.raises(ConfigError, match=words):
                    await b.ping(addr)  # type: ignore[arg-type]


class FillingStore(MemoryStore):
    """A store on a disk that fills up: once `room` is set, that many more records fit."""

    room: int | None = None

    def put(self, key: bytes, raw: bytes, *, mesh: bytes | None, kind: str) -> None:
        if self.room is not None:
            if self.room == 0:
                raise StoreError("store write failed: database or disk is full")
            self.room -= 1
        super().put(key, raw, mesh=mesh, kind=kind)


async def test_an_append_the_store_refused_is_not_in_the_log() -> None:
    """On a full disk the refused chunk once stayed in the log: `log` showed it, the
    next append chained onto it, and after a restart that acknowledged entry dangled
    for ever. A chunk that is stored but whose head is not is a done append."""
    config = NodeConfig(require_membership=True)
    store = FillingStore()
    with trio.fail_after(30):
        async with open_node(store=store, config=config) as node:
            mesh = await Mesh.create(node, "small disk")
            await mesh.append(b"kept")
            store.room = 0
            with pytest.raises(StoreError, match="disk is full"):
                await mesh.append(b"refused")
            store.room = 1  # the chunk fits, its head does not
            assert (await mesh.append(b"kept too")).seq == 2
            store.room = None
            await mesh.append(b"after")
            want = [b"kept", b"kept too", b"after"]
            assert [c.payload for c in mesh.timeline()] == want
        async with open_node(store=store, config=config) as again:  # a restart
            reloaded = Mesh.load(again, mesh.id)
            assert [c.payload for c in reloaded.timeline()] == want
            assert reloaded.dangling() == {} and reloaded.phase().entries == 3


async def test_a_mesh_the_store_refused_can_be_founded_again() -> None:
    """Founding on a full disk once left the mesh registered but never stored: a
    retry said it already existed."""
    store = FillingStore()
    with trio.fail_after(30):
        async with open_node(store=store, config=NodeConfig(require_membership=True)) as node:
            store.room = 0
            with pytest.raises(StoreError):
                await Mesh.create(node, "later")
            assert node.meshes == {}
            store.room = None
            mesh = await Mesh.create(node, "later")
            assert (await mesh.append(b"ok")).seq == 1


async def test_an_admission_the_store_refused_admits_no_one() -> None:
    """`admit` added the member to the view before the store took its cert: on a full disk
    the node counted a member that a restart would not have."""
    store = FillingStore()
    newcomer = Identity.generate().public_key
    with trio.fail_after(30):
        async with open_node(store=store, config=NodeConfig(require_membership=True)) as node:
            mesh = await Mesh.create(node, "small disk")
            store.room = 0
            with pytest.raises(StoreError, match="disk is full"):
                await mesh.admit(newcomer)
            assert mesh.view.members() == {mesh.author.public_key}
            store.room = 1  # the cert fits, the roster does not: the admission holds
            await mesh.admit(newcomer)
            assert node.core.stats["rosters_not_stored"] == 1
            assert mesh.view.is_member(mesh.id, newcomer)
        async with open_node(store=store, config=NodeConfig(require_membership=True)) as again:
            assert Mesh.load(again, mesh.id).view.is_member(mesh.id, newcomer)  # a restart
