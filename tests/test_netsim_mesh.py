"""Tier 2: the memory mesh on netsim's trio network, in virtual time.

The same `Node` and `Mesh` code as production runs over `netsim.trionet.SimNet`
under `MockClock(autojump_threshold=0)`, with real Ed25519 and
`require_membership=True`. Each test has a wall-clock deadline
(`pytest.mark.timeout`) and a virtual one (`trio.fail_after`).

The scenarios are scaled in virtual time to keep the suite fast (about 300
datagrams of wall time per ms); `python -m netsim.meshsim hetero|partition`
runs them at full length (2 hours; 200 nodes).
"""

from __future__ import annotations

import pytest
import trio
import trio.testing
from netsim import meshsim
from netsim.trionet import SimNet

# ---- the network alone ---------------------------------------------------------


async def _pair(net: SimNet, a_cls: str, b_cls: str) -> tuple[float, list[bytes]]:
    """Send 20 datagrams a→b; return the mean one-way delay and what arrived."""
    a, b = net.transport(a_cls), net.transport(b_cls)
    got: list[bytes] = []
    delays: list[float] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(net.run)

        async def recv() -> None:
            while True:
                data, src = await b.receive()
                assert src == a.local_addr
                delays.append(trio.current_time() - float(data.split(b"@")[1]))
                got.append(data)

        nursery.start_soon(recv)
        for i in range(20):
            a.send(f"{i}@{trio.current_time()!r}".encode(), b.local_addr)
            await trio.sleep(5.0)
        nursery.cancel_scope.cancel()
    return (sum(delays) / len(delays) if delays else 0.0), got


@pytest.mark.timeout(10)
async def test_class_latencies_follow_the_model(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(600):
        dc, _ = await _pair(SimNet(1), "datacenter", "datacenter")
        pi, _ = await _pair(SimNet(1), "pizero", "pizero")
    assert 0.0001 < dc < 0.002  # ~1 ms RTT: half a millisecond one way
    assert 0.09 < pi < 1.1  # 200-2,000 ms RTT


@pytest.mark.timeout(10)
async def test_partition_kill_and_heal(autojump_clock: trio.testing.MockClock) -> None:
    net = SimNet(3)
    a, b = net.transport(), net.transport()
    inbox: list[bytes] = []
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await nursery.start(net.run)

            async def recv() -> None:
                while True:
                    inbox.append((await b.receive())[0])

            nursery.start_soon(recv)
            net.partition([[a.local_addr], [b.local_addr]])
            a.send(b"cut", b.local_addr)
            await trio.sleep(1)
            net.heal()
            net.kill(b.local_addr)
            a.send(b"dead", b.local_addr)
            await trio.sleep(1)
            net.revive(b.local_addr)
            a.send(b"in flight", b.local_addr)
            net.partition([[a.local_addr]])  # b stays in group 0: cut in flight
            await trio.sleep(1)
            net.heal()
            a.send(b"ok", b.local_addr)
            await trio.sleep(1)
            nursery.cancel_scope.cancel()
    assert inbox == [b"ok"]
    assert net.dropped["partition"] == 2 and net.dropped["dead"] == 1
    assert net.messages["datacenter"] == 4 and net.delivered == 1


@pytest.mark.timeout(120)
def test_a_seed_reproduces_a_mesh_run() -> None:
    kw = {"hours": 0.01, "datacenter": 2, "pizero": 1, "pinners": 1, "alone": False}
    one = meshsim.run(meshsim.hetero_writers, seed=5, virtual_limit=3600, **kw)
    two = meshsim.run(meshsim.hetero_writers, seed=5, virtual_limit=3600, **kw)
    assert one.fingerprint == two.fingerprint
    assert one.net == two.net


# ---- hetero-writers -------------------------------------------------------------


@pytest.mark.timeout(240)
def test_hetero_writers_nobody_stalls_nobody_is_orphaned() -> None:
    """12 writers (8 datacenter at 2 s, 4 Pi Zero at 45 s) + 2 pinners; 3 virtual minutes.

    Every node is among each key's k = 20 closest here, so the DHT put itself
    reaches every member; `test_..._beyond_k` below covers the bigger swarm.
    """
    interval = 30.0
    r = meshsim.run(
        meshsim.hetero_writers, seed=1, hours=0.05, interval=interval, virtual_limit=3 * 3600
    )
    fast = [w for w in r.writers if w.cls == "datacenter"]
    assert len(fast) == 8 and len(r.writers) == 12
    for w in fast:  # appends never wait on others: the alone rate, within 5%
        assert abs(w.per_hour - w.alone_per_hour) <= 0.05 * w.alone_per_hour, w
        assert abs(w.per_hour - w.ideal_per_hour) <= 0.05 * w.ideal_per_hour, w
    assert r.pizero_entries >= 4 * 3
    assert r.missing == 0  # no orphan: every entry is in every member's timeline
    assert r.late == 0, (r.late, r.pizero_lag_max)  # ... within 2 sync intervals
    assert r.pizero_lag_max <= 2 * interval
    assert r.distinct_roots == 1
    assert r.entries == sum(w.appends for w in r.writers)


@pytest.mark.timeout(240)
def test_hetero_writers_pizero_entries_within_two_intervals_beyond_k() -> None:
    """30 nodes (14 members + 16 relays), so a put no longer reaches every member."""
    interval = 30.0
    r = meshsim.run(
        meshsim.hetero_writers,
        seed=1,
        hours=0.05,
        interval=interval,
        relays=16,
        alone=False,
        virtual_limit=3 * 3600,
    )
    assert r.missing == 0 and r.distinct_roots == 1  # converges, just too slowly
    assert r.late == 0, (r.late, r.pizero_lag_max)


# ---- partition --------------------------------------------------------------------


@pytest.mark.timeout(300)
def test_partition_heals_to_one_root_without_loss() -> None:
    """Two halves for a virtual hour, writers on both sides; 3 sync intervals to converge."""
    interval = 30.0
    r = meshsim.run(
        meshsim.partition,
        seed=2,
        nodes=60,
        members=12,
        writers=6,
        think=120.0,
        split_hours=1.0,
        interval=interval,
        virtual_limit=4 * 3600,
    )
    assert all(n > 0 for n in r.appended_per_side), r.appended_per_side
    assert r.distinct_roots_split >= 2  # the sides really diverged
    assert r.converged, "no single root 10 sync intervals after the heal"
    assert r.lost == 0
    assert r.converge_seconds <= 3 * interval, f"converged in {r.converge_seconds:.0f} s"
