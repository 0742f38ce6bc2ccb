"""Unit and property tests of the k-bucket routing table (pure, no I/O)."""

from __future__ import annotations

from bisect import bisect_right
from collections import Counter
from itertools import pairwise

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from chorusdht import routing
from chorusdht.errors import ConfigError, LocalError
from chorusdht.ids import ID_BITS, id_to_int, int_to_id
from chorusdht.routing import (
    REJECT_OWN_ID,
    REJECT_SUBNET_LIMIT,
    REJECT_TABLE_CAP,
    SHARED_IDS_DEFAULT,
    Added,
    BucketFull,
    Contact,
    Rejected,
    RoutingTable,
    Updated,
    share_ids,
    subnet_group,
)

TOP = 1 << ID_BITS
LOOP = ("127.0.0.1", 4000)


def nid(value: int) -> bytes:
    return int_to_id(value % TOP)


def public(i: int) -> tuple[str, int]:
    """A distinct non-loopback address in its own /24 (never hits the subnet limit)."""
    return (f"10.{(i >> 8) & 255}.{i & 255}.1", 4000 + (i & 1023))


def snapshot(table: RoutingTable) -> list[tuple[bytes, tuple[str, int], float, int]]:
    return [(c.node_id, c.addr, c.last_seen, c.failures) for c in table]


def bucket_of(table: RoutingTable, int_id: int) -> tuple[int, int, float]:
    ranges = table.bucket_ranges()
    return ranges[bisect_right([r[0] for r in ranges], int_id) - 1]


def check_invariants(table: RoutingTable) -> None:
    ranges = table.bucket_ranges()
    # Buckets partition [0, 2**256) in order, without gaps or overlaps, aligned.
    assert ranges[0][0] == 0
    assert ranges[-1][1] == TOP
    for (_, high, _), (low, _, _) in pairwise(ranges):
        assert high == low
    for low, high, _ in ranges:
        size = high - low
        assert size > 0 and size & (size - 1) == 0 and low % size == 0
    contacts = list(table)
    assert len(contacts) == len(table)
    ids = [c.node_id for c in contacts]
    assert len(set(ids)) == len(ids)
    assert table.own_id not in table
    if table.max_contacts is not None:
        assert len(table) <= table.max_contacts
    per_bucket: dict[int, list[Contact]] = {}
    last_bucket = -1
    for c in contacts:
        assert c.int_id == id_to_int(c.node_id)
        assert c.node_id in table and table.get(c.node_id) is c
        low, high, _ = bucket_of(table, c.int_id)
        assert low <= c.int_id < high
        assert low >= last_bucket  # iteration goes in bucket order
        last_bucket = low
        per_bucket.setdefault(low, []).append(c)
    for low, members in per_bucket.items():
        assert len(members) <= table.k
        # LRS -> MRS within a bucket.
        seen = [c.last_seen for c in members]
        assert seen == sorted(seen), (low, seen)
        groups = Counter(subnet_group(c.addr[0]) for c in members)
        groups.pop(None, None)
        assert all(n <= table.subnet_limit for n in groups.values())
    # The empty dicts that buckets share until their first write were never written.
    assert routing._NO_REPLACEMENTS == {} and routing._NO_GROUPS == {}
    for low, high, _ in ranges:
        waiting = table.replacements(int_to_id(low))
        assert len(waiting) <= table.replacement_size
        for c in waiting:
            assert low <= c.int_id < high
            assert c.node_id not in table
            assert c.node_id != table.own_id


def check_closest(table: RoutingTable, target: bytes, n: int, exclude: bytes | None) -> None:
    t = id_to_int(target)
    pool = [c for c in table if c.node_id != exclude]
    expected = sorted(pool, key=lambda c: c.int_id ^ t)[: max(n, 0)]
    got = table.closest(target, n, exclude)
    assert [c.node_id for c in got] == [c.node_id for c in expected]
    assert len(got) == min(max(n, 0), len(pool))


def check_promotion(
    table: RoutingTable,
    removed: bytes,
    waiting: list[Contact],
    before: list[tuple[bytes, tuple[str, int], float, int]],
    was_in: bool,
    promoted: Contact | None,
) -> None:
    """After removing a live contact, the newest replacement with subnet room moved in."""
    after = {c.node_id for c in table}
    old = {entry[0] for entry in before}
    if not was_in:
        assert promoted is None and after == old
        return
    new = after - old
    assert old - after == {removed}
    low, high, _ = bucket_of(table, id_to_int(removed))
    members = [c for c in table if low <= c.int_id < high and c.node_id not in new]
    counts = Counter(subnet_group(c.addr[0]) for c in members)
    eligible = [
        c
        for c in reversed(waiting)
        if c.node_id != removed
        and (
            subnet_group(c.addr[0]) is None or counts[subnet_group(c.addr[0])] < table.subnet_limit
        )
    ]
    expected = eligible[0].node_id if eligible else None
    assert new == ({expected} if expected else set())
    if promoted is not None:
        assert promoted.node_id == expected


# --- Hypothesis: random operation sequences ---------------------------------------

HOSTS = [
    "10.0.0.1",
    "10.0.0.2",
    "10.0.0.3",
    "10.0.1.1",
    "::ffff:10.0.0.9",  # IPv4-mapped: same /24 as 10.0.0.x
    "2001:db8:1::1",
    "2001:db8:1:ff::2",  # same /48 as the previous one
    "2001:db8:2::1",
    "127.0.0.1",
    "127.9.9.9",
    "::1",
    "not-an-ip",
]


@st.composite
def own_ids(draw: st.DrawFn) -> int:
    return draw(
        st.one_of(
            st.sampled_from([0, 1, TOP - 1, TOP // 2, TOP // 2 - 1]),
            st.integers(0, TOP - 1),
        )
    )


id_specs = st.one_of(
    st.tuples(st.just("random"), st.integers(0, TOP - 1)),
    st.tuples(st.just("flip"), st.integers(0, ID_BITS - 1)),  # own ^ (1 << i)
    st.tuples(st.just("near"), st.integers(0, 7)),  # own ^ small: differs in the last bits
    st.tuples(st.just("low"), st.integers(0, 300)),  # low bound of a current bucket
    st.tuples(st.just("high"), st.integers(0, 300)),  # high - 1 of a current bucket
    st.tuples(st.just("known"), st.integers(0, 300)),  # an id already offered
    st.tuples(st.just("far"), st.integers(0, 31)),  # a few ids in the half without own id
    st.tuples(st.just("far"), st.integers(0, 31)),
    st.tuples(st.just("oldest"), st.integers(0, 300)),  # LRS of a bucket with replacements
)

ops = st.lists(
    st.tuples(
        st.sampled_from(
            ["offer", "offer", "offer", "remove", "ping_failed", "ping_ok", "fail", "ok", "closest"]
        ),
        id_specs,
        st.sampled_from(HOSTS),
        st.integers(0, 40),
    ),
    min_size=10,
    max_size=150,
)


def resolve(spec: tuple[str, int], own: int, table: RoutingTable, offered: list[bytes]) -> bytes:
    kind, value = spec
    ranges = table.bucket_ranges()
    if kind == "random":
        return nid(value)
    if kind == "flip":
        return nid(own ^ (1 << value))
    if kind == "near":
        return nid(own ^ value)
    if kind == "low":
        return nid(ranges[value % len(ranges)][0])
    if kind == "high":
        return nid(ranges[value % len(ranges)][1] - 1)
    if kind == "far":
        return nid(own ^ (1 << 255) ^ (value << 250))
    if kind == "oldest":
        waiting = [r for r in ranges if table.replacements(nid(r[0]))]
        if waiting:
            low, high, _ = waiting[value % len(waiting)]
            lrs = [c for c in table if low <= c.int_id < high]
            if lrs:
                return lrs[0].node_id
    return offered[value % len(offered)] if offered else nid(own ^ 1)


def test_admission_below_spares_far_buckets_but_never_the_neighbourhood() -> None:
    table = RoutingTable(nid(0), 4)
    for i in range(4):
        assert isinstance(table.offer(nid(1 + i), public(i), 0.0), Added)  # the near end
    for i in range(2):
        assert isinstance(table.offer(nid((TOP >> 1) + i), public(10 + i), 0.0), Added)
    far, near = nid((TOP >> 1) + 7), nid(9)
    assert table.would_accept(far, public(20), room_only=True)  # the far bucket has room
    assert not table.would_accept(far, public(20), room_only=True, below=2)  # but 2 is enough
    assert table.would_accept(far, public(20), room_only=True, below=3)
    assert table.would_accept(near, public(21), room_only=True, below=1)  # one of our k closest


@settings(deadline=None, max_examples=300)
@given(
    own=own_ids(),
    k=st.integers(1, 4),
    subnet_limit=st.integers(1, 3),
    max_contacts=st.one_of(st.none(), st.integers(0, 12)),
    replacement_size=st.one_of(st.none(), st.integers(0, 3)),
    steps=ops,
)
def test_invariants_under_random_operations(
    own: int,
    k: int,
    subnet_limit: int,
    max_contacts: int | None,
    replacement_size: int | None,
    steps: list[tuple[str, tuple[str, int], str, int]],
) -> None:
    table = RoutingTable(
        nid(own),
        k,
        subnet_limit=subnet_limit,
        max_contacts=max_contacts,
        replacement_size=replacement_size,
    )
    offered: list[bytes] = []
    now = 0.0
    for op, spec, host, extra in steps:
        now += 1.0
        node_id = resolve(spec, own, table, offered)
        before = snapshot(table)
        if op == "offer":
            was_in = node_id in table
            ranges = table.bucket_ranges()
            accepts = table.would_accept(node_id, (host, 4000 + extra))
            roomy = table.would_accept(node_id, (host, 4000 + extra), room_only=True)
            for below in (1, 2):
                picky = table.would_accept(
                    node_id, (host, 4000 + extra), room_only=True, below=below
                )
                assert roomy or not picky
                if roomy and not picky:  # refused only for a far bucket with enough in it
                    mine = id_to_int(node_id) ^ own
                    assert sum(1 for c in table if c.int_id ^ own < mine) >= k
            assert snapshot(table) == before and table.bucket_ranges() == ranges
            result = table.offer(node_id, (host, 4000 + extra), now)
            assert accepts is not isinstance(result, Rejected), result
            offered.append(node_id)
            event(f"offer -> {result}" if isinstance(result, Rejected) else type(result).__name__)
            if node_id == table.own_id:
                assert result == Rejected(REJECT_OWN_ID)
            elif isinstance(result, Added):
                assert not was_in and len(table) == len(before) + 1
                assert table.get(node_id) is result.contact
            elif isinstance(result, Updated):
                assert was_in and result.contact.last_seen == now
                assert result.contact.addr == (host, 4000 + extra)
            elif isinstance(result, BucketFull):
                assert not was_in and node_id not in table
                assert snapshot(table) == before
                low, high, _ = bucket_of(table, id_to_int(node_id))
                in_bucket = [c for c in table if low <= c.int_id < high]
                assert len(in_bucket) == k and result.oldest is in_bucket[0]
                cache = [c.node_id for c in table.replacements(node_id)]
                assert cache[-1:] == [node_id] or table.replacement_size == 0
            else:
                # A split may reorder iteration across the new halves, nothing else.
                assert sorted(snapshot(table)) == sorted(before)
                assert isinstance(result, Rejected) and (node_id in table) is was_in
        elif op == "remove":
            was_in = node_id in table
            waiting = table.replacements(node_id)
            assert table.remove(node_id) is was_in
            assert node_id not in table
            assert node_id not in [c.node_id for c in table.replacements(node_id)]
            check_promotion(table, node_id, waiting, before, was_in, None)
        elif op == "ping_failed":
            was_in = node_id in table
            waiting = table.replacements(node_id)
            promoted = table.ping_failed(node_id)
            event("ping_failed promoted" if promoted else "ping_failed, none promoted")
            assert node_id not in table
            check_promotion(table, node_id, waiting, before, was_in, promoted)
        elif op == "ping_ok":
            table.ping_succeeded(node_id, now)
            if node_id in table:
                low, high, _ = bucket_of(table, id_to_int(node_id))
                assert [c for c in table if low <= c.int_id < high][-1].node_id == node_id
        elif op == "fail":
            known = table.get(node_id)
            count = table.record_failure(node_id)
            assert count == (known.failures if known else 0)
            assert known is None or count >= 1
        elif op == "ok":
            table.record_success(node_id, now)
            contact = table.get(node_id)
            assert contact is None or (contact.failures == 0 and contact.last_seen == now)
        else:
            exclude = offered[extra % len(offered)] if offered and extra % 2 else None
            check_closest(table, node_id, extra % (len(table) + 3), exclude)
        check_invariants(table)
    event(f"buckets >= {min(len(table.bucket_ranges()), 10)}")
    for target in [*offered[:10], table.own_id, nid(0), nid(TOP - 1)]:
        check_closest(table, target, k, None)
        check_closest(table, target, len(table) + 1, target)


@settings(deadline=None, max_examples=150)
@given(
    own=own_ids(),
    k=st.integers(1, 3),
    subnet_limit=st.integers(1, 2),
    steps=st.lists(
        st.tuples(id_specs, st.sampled_from(HOSTS), st.booleans()), min_size=10, max_size=150
    ),
)
def test_driver_eviction_cycle(
    own: int, k: int, subnet_limit: int, steps: list[tuple[tuple[str, int], str, bool]]
) -> None:
    """Act on every BucketFull as the driver would: ping the oldest, report the outcome."""
    table = RoutingTable(nid(own), k, subnet_limit=subnet_limit)
    offered: list[bytes] = []
    for step, (spec, host, alive) in enumerate(steps):
        now = float(step + 1)
        node_id = resolve(spec, own, table, offered)
        offered.append(node_id)
        result = table.offer(node_id, (host, 4000), now)
        if not isinstance(result, BucketFull):
            check_invariants(table)
            continue
        oldest = result.oldest.node_id
        before = snapshot(table)
        waiting = table.replacements(node_id)
        assert waiting[-1].node_id == node_id
        if alive:
            table.ping_succeeded(oldest, now)
            assert table.get(oldest) is result.oldest and result.oldest.last_seen == now
            assert node_id not in table
            assert table.replacements(node_id)[-1].node_id == node_id
            event("ping succeeded")
        else:
            promoted = table.ping_failed(oldest)
            assert oldest not in table
            check_promotion(table, oldest, waiting, before, True, promoted)
            # The newcomer shares the evicted contact's bucket; it had room in its subnet
            # when it was offered, and eviction only frees room.
            assert promoted is not None and promoted.node_id == node_id
            event("ping failed, newcomer promoted")
        check_invariants(table)


@settings(deadline=None, max_examples=60)
@given(own=own_ids(), ids=st.lists(st.integers(0, TOP - 1), max_size=400), k=st.integers(1, 20))
def test_large_table_closest_matches_brute_force(own: int, ids: list[int], k: int) -> None:
    table = RoutingTable(nid(own), k)
    for i, value in enumerate(ids):
        table.offer(nid(value), public(i), float(i))
    for i in range(1, 64):
        table.offer(nid(own ^ i), public(1000 + i), 500.0 + i)
    check_invariants(table)
    for target in [table.own_id, nid(own ^ (1 << 255)), *map(nid, ids[:5]), nid(0)]:
        for n in (0, 1, k, 3 * k, len(table) + 5):
            check_closest(table, target, n, None)


# --- Unit tests ------------------------------------------------------------------


def test_own_id_rejected_and_bad_ids_raise() -> None:
    table = RoutingTable(nid(5), 2)
    assert table.offer(nid(5), LOOP, 1.0) == Rejected(REJECT_OWN_ID)
    assert len(table) == 0
    with pytest.raises(LocalError):
        table.offer(b"short", LOOP, 1.0)
    with pytest.raises(LocalError):
        RoutingTable(b"short")
    with pytest.raises(LocalError):
        RoutingTable(nid(1), 0)


def test_split_on_own_side_and_boundaries() -> None:
    own = 0
    table = RoutingTable(nid(own), 2)
    # Ids at the extremes of the first split: 2**255 - 1 and 2**255.
    assert isinstance(table.offer(nid(TOP // 2), public(1), 1.0), Added)
    assert isinstance(table.offer(nid(TOP // 2 - 1), public(2), 2.0), Added)
    assert isinstance(table.offer(nid(TOP - 1), public(3), 3.0), Added)  # splits
    ranges = [(lo, hi) for lo, hi, _ in table.bucket_ranges()]
    assert (TOP // 2, TOP) in ranges
    check_invariants(table)
    # The far half does not contain own id: it never splits, it fills.
    result = table.offer(nid(TOP // 2 + 7), public(4), 4.0)
    assert isinstance(result, BucketFull) and result.oldest.node_id == nid(TOP // 2)
    # Own id's neighbours split the table down to the last bit.
    for i in (1, 2, 3):
        assert isinstance(table.offer(nid(own ^ i), public(10 + i), 10.0 + i), Added)
    check_invariants(table)
    assert table.bucket_ranges()[0][:2] == (0, 2)
    assert table.closest(nid(own), 3) == [table.get(nid(i)) for i in (1, 2, 3)]


def test_bucket_full_then_ping_outcomes() -> None:
    table = RoutingTable(nid(0), 2)
    far = TOP // 2
    table.offer(nid(0x10), public(0), 0.5)  # forces the root split on the third offer
    for i in range(2):
        table.offer(nid(far + i), public(i + 1), float(i + 1))
    before = snapshot(table)
    result = table.offer(nid(far + 9), public(9), 5.0)
    assert isinstance(result, BucketFull) and result.oldest.node_id == nid(far)
    assert snapshot(table) == before
    assert [c.node_id for c in table.replacements(nid(far))] == [nid(far + 9)]
    # The oldest answers: it stays, moves to the tail; the newcomer stays waiting.
    table.ping_succeeded(nid(far), 6.0)
    assert nid(far + 9) not in table
    assert [c.node_id for c in table if c.int_id >= far] == [nid(far + 1), nid(far)]
    assert [c.node_id for c in table.replacements(nid(far))] == [nid(far + 9)]
    # Next time the LRS (far + 1) fails its ping: the newcomer is promoted.
    again = table.offer(nid(far + 9), public(9), 7.0)
    assert isinstance(again, BucketFull) and again.oldest.node_id == nid(far + 1)
    promoted = table.ping_failed(nid(far + 1))
    assert promoted is not None and promoted.node_id == nid(far + 9)
    assert nid(far + 1) not in table and nid(far + 9) in table
    assert table.replacements(nid(far)) == []
    assert table.ping_failed(nid(far + 1)) is None
    check_invariants(table)


def test_remove_promotes_newest_replacement() -> None:
    table = RoutingTable(nid(0), 1, replacement_size=2)
    far = TOP // 2
    table.offer(nid(1), public(0), 0.0)
    table.offer(nid(far), public(1), 1.0)
    for i in (2, 3, 4):  # the cache keeps the newest two
        assert isinstance(table.offer(nid(far + i), public(i), float(i)), BucketFull)
    assert [c.node_id for c in table.replacements(nid(far))] == [nid(far + 3), nid(far + 4)]
    assert table.remove(nid(far)) is True
    assert nid(far + 4) in table
    assert table.remove(nid(far)) is False
    assert table.remove(nid(far + 3)) is False  # only dropped from the cache
    assert table.replacements(nid(far)) == []
    check_invariants(table)


def test_updated_moves_to_tail_and_changes_address() -> None:
    table = RoutingTable(nid(0), 20)
    for i in range(1, 4):
        table.offer(nid(i), public(i), float(i))
    result = table.offer(nid(1), ("10.9.9.9", 1), 9.0)
    assert isinstance(result, Updated)
    assert result.contact.addr == ("10.9.9.9", 1) and result.contact.last_seen == 9.0
    assert [c.node_id for c in table] == [nid(2), nid(3), nid(1)]


def test_subnet_limit_per_bucket_and_exemptions() -> None:
    table = RoutingTable(nid(0), 20, subnet_limit=2)
    assert isinstance(table.offer(nid(1), ("192.0.2.1", 1), 1.0), Added)
    assert isinstance(table.offer(nid(2), ("192.0.2.200", 1), 1.0), Added)
    assert table.offer(nid(3), ("192.0.2.7", 1), 1.0) == Rejected(REJECT_SUBNET_LIMIT)
    assert table.offer(nid(3), ("::ffff:192.0.2.7", 1), 1.0) == Rejected(REJECT_SUBNET_LIMIT)
    assert isinstance(table.offer(nid(3), ("192.0.3.7", 1), 1.0), Added)
    # Moving an existing contact into a full subnet is refused; the old address stays.
    assert table.offer(nid(3), ("192.0.2.9", 2), 2.0) == Rejected(REJECT_SUBNET_LIMIT)
    moved = table.get(nid(3))
    assert moved is not None and moved.addr == ("192.0.3.7", 1)
    assert isinstance(table.offer(nid(4), ("2001:db8:aa:1::1", 1), 1.0), Added)
    assert isinstance(table.offer(nid(5), ("2001:db8:aa:2::1", 1), 1.0), Added)
    assert table.offer(nid(6), ("2001:db8:aa:3::1", 1), 1.0) == Rejected(REJECT_SUBNET_LIMIT)
    assert isinstance(table.offer(nid(6), ("2001:db8:ab:3::1", 1), 1.0), Added)
    for i in range(10, 20):  # loopback is exempt
        assert isinstance(table.offer(nid(i), ("127.0.0.1", 4000 + i), 1.0), Added)
        assert isinstance(table.offer(nid(i + 100), ("::1", 4000 + i), 1.0), Added)
    check_invariants(table)


def test_subnet_limit_is_per_bucket() -> None:
    table = RoutingTable(nid(0), 2, subnet_limit=1)
    far = TOP // 2
    assert isinstance(table.offer(nid(1), ("192.0.2.1", 1), 1.0), Added)
    assert table.offer(nid(far), ("192.0.2.2", 1), 1.0) == Rejected(REJECT_SUBNET_LIMIT)
    assert isinstance(table.offer(nid(far), ("198.51.100.1", 1), 1.0), Added)
    # The third offer splits the root: 192.0.2.0/24 then has one contact per bucket.
    assert isinstance(table.offer(nid(far + 1), ("192.0.2.2", 1), 1.0), Added)
    assert len(table.bucket_ranges()) == 2
    check_invariants(table)


def test_subnet_groups() -> None:
    assert subnet_group("127.0.0.1") is None
    assert subnet_group("127.200.0.1") is None
    assert subnet_group("::1") is None
    assert subnet_group("::ffff:127.0.0.1") is None
    assert subnet_group("10.1.2.3") == subnet_group("10.1.2.250") == subnet_group("::ffff:10.1.2.9")
    assert subnet_group("10.1.2.3") != subnet_group("10.1.3.3")
    assert subnet_group("2001:db8:1::1") == subnet_group("2001:db8:1:ffff::9")
    assert subnet_group("2001:db8:1::1") != subnet_group("2001:db8:2::1")
    assert subnet_group("example.org") != subnet_group("example.net")


def test_table_cap() -> None:
    table = RoutingTable(nid(0), 20, max_contacts=3)
    for i in range(1, 4):
        assert isinstance(table.offer(nid(i), public(i), 1.0), Added)
    assert table.offer(nid(9), public(9), 1.0) == Rejected(REJECT_TABLE_CAP)
    assert isinstance(table.offer(nid(1), public(1), 2.0), Updated)
    assert len(table) == 3


def test_failures_and_success() -> None:
    table = RoutingTable(nid(0), 20)
    assert table.record_failure(nid(1)) == 0
    table.offer(nid(1), public(1), 1.0)
    table.offer(nid(2), public(2), 2.0)
    assert table.record_failure(nid(1)) == 1
    assert table.record_failure(nid(1)) == 2
    table.offer(nid(1), public(1), 3.0)  # hearing from it does not prove it answers
    assert table.record_failure(nid(1)) == 3
    table.record_success(nid(1), 4.0)
    contact = table.get(nid(1))
    assert contact is not None and contact.failures == 0 and contact.last_seen == 4.0
    table.record_success(nid(7), 5.0)  # unknown: ignored
    assert nid(7) not in table


def test_stale_buckets_and_touch() -> None:
    table = RoutingTable(nid(0), 1)
    assert table.stale_buckets(100.0, 50.0) == [(0, TOP)]
    table.touch_bucket(nid(123), 80.0)
    assert table.stale_buckets(100.0, 50.0) == []
    table.offer(nid(1), public(1), 90.0)
    table.offer(nid(TOP - 1), public(2), 95.0)  # split: halves inherit 90.0, upper gets 95.0
    assert table.bucket_ranges() == [(0, TOP // 2, 90.0), (TOP // 2, TOP, 95.0)]
    assert table.stale_buckets(150.0, 57.0) == [(0, TOP // 2)]
    table.touch_bucket(nid(5), 150.0)
    assert table.stale_buckets(150.0, 57.0) == []


def test_closest_exclude_and_small_n() -> None:
    table = RoutingTable(nid(0), 20)
    for i in range(1, 9):
        table.offer(nid(i), public(i), float(i))
    assert [c.node_id for c in table.closest(nid(4), 3)] == [nid(4), nid(5), nid(6)]
    assert [c.node_id for c in table.closest(nid(4), 3, exclude=nid(4))] == [
        nid(5),
        nid(6),
        nid(7),
    ]
    assert table.closest(nid(4), 0) == []
    assert len(table.closest(nid(4), 100)) == 8


def test_share_ids_shares_int_forms_between_tables() -> None:
    """netsim raises the shared-id capacity; two tables then hold one int per id."""
    share_ids(64)
    big = nid((1 << 200) + 7)  # not one of CPython's cached small ints
    try:
        a, b = RoutingTable(nid(0), 20), RoutingTable(nid(1 << 255), 20)
        a.offer(big, public(7), 1.0)
        b.offer(big, public(7), 1.0)
        ca, cb = a.get(big), b.get(big)
        assert ca is not None and cb is not None
        assert ca.int_id is cb.int_id and ca.int_id == id_to_int(big)
        with pytest.raises(ConfigError, match="at least 1"):
            share_ids(0)
    finally:
        share_ids(SHARED_IDS_DEFAULT)
