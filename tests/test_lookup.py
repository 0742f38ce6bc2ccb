"""The iterative-lookup state machine (pure: no I/O, no clock, no sleeping).

Ids are small integers put in the 256-bit space, and the target is usually 0,
so a candidate's XOR distance is simply its integer id. That keeps every
expectation readable: "the three closest" are the three smallest numbers.
"""

from __future__ import annotations

import random
from collections.abc import Iterable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chorusdht.ids import ID_BITS, id_to_int, int_to_id
from chorusdht.lookup import MAX_CANDIDATES_FACTOR, Candidate, CandidateState, Lookup

Addr = tuple[str, int]
Contact = tuple[bytes, Addr]

TARGET = int_to_id(0)
OWN = int_to_id(1 << 200)  # far from every small id used below


def nid(n: int) -> bytes:
    return int_to_id(n)


def contact(n: int) -> Contact:
    return nid(n), ("127.0.0.1", 1 + n % 65534)


def contacts(ns: Iterable[int]) -> list[Contact]:
    return [contact(n) for n in ns]


def make(
    seeds: Iterable[int],
    *,
    k: int = 20,
    alpha: int = 3,
    settle: int = 3,
    target: bytes = TARGET,
    own: bytes = OWN,
) -> Lookup:
    return Lookup(target, contacts(seeds), own_id=own, k=k, alpha=alpha, settle=settle)


def ids_of(cands: Iterable[Candidate]) -> list[int]:
    return [id_to_int(c.node_id) for c in cands]


def waiting(lk: Lookup) -> list[int]:
    return [id_to_int(c.node_id) for c in lk.in_flight() if c.state is CandidateState.WAITING]


def state(lk: Lookup, n: int) -> CandidateState:
    c = lk.get(nid(n))
    assert c is not None
    return c.state


# ---- the α window and the sliding refill --------------------------------------------------


def test_first_queries_are_the_alpha_closest_and_marked_waiting() -> None:
    lk = make([9, 3, 7, 1, 5, 8, 2])
    out = lk.next_queries()
    assert ids_of(out) == [1, 2, 3]
    assert all(c.state is CandidateState.WAITING for c in out)
    assert lk.queries_sent == 3
    assert lk.next_queries() == []  # the window is full
    assert state(lk, 5) is CandidateState.NEW


@pytest.mark.parametrize("alpha", [1, 2, 3, 5])
def test_never_more_than_alpha_waiting(alpha: int) -> None:
    lk = make(range(1, 30), alpha=alpha)
    assert len(lk.next_queries()) == alpha
    assert len(waiting(lk)) == alpha
    for _ in range(5):
        assert lk.next_queries() == []
    assert len(waiting(lk)) == alpha


def test_a_reply_frees_its_slot_at_once_no_lockstep() -> None:
    lk = make(range(1, 11))
    assert ids_of(lk.next_queries()) == [1, 2, 3]
    lk.on_reply(nid(2), [], False)  # 1 and 3 still outstanding: no waiting for the round
    assert ids_of(lk.next_queries()) == [4]
    assert sorted(waiting(lk)) == [1, 3, 4]
    lk.on_reply(nid(4), [], False)
    assert ids_of(lk.next_queries()) == [5]
    assert lk.queries_sent == 5


def test_a_reply_with_closer_contacts_sends_the_next_query_to_them() -> None:
    lk = make(range(10, 20))
    assert ids_of(lk.next_queries()) == [10, 11, 12]
    lk.on_reply(nid(11), contacts([4, 6]), False)
    assert ids_of(lk.next_queries()) == [4]
    lk.on_reply(nid(10), [], False)
    assert ids_of(lk.next_queries()) == [6]


def test_slow_frees_a_slot_but_a_late_reply_still_counts() -> None:
    lk = make(range(1, 11))
    lk.next_queries()
    lk.on_slow(nid(1))
    assert state(lk, 1) is CandidateState.SLOW
    assert ids_of(lk.next_queries()) == [4]  # the slot of the slow query is free
    assert sorted(waiting(lk)) == [2, 3, 4]
    assert sorted(ids_of(lk.in_flight())) == [1, 2, 3, 4]
    lk.on_reply(nid(1), contacts([0x100]), False)
    assert state(lk, 1) is CandidateState.ANSWERED
    assert lk.replies == 1
    assert lk.get(nid(0x100)) is not None  # the late reply's contacts were learnt
    assert lk.next_queries() == []  # a late reply frees no WAITING slot: still three waiting


def test_on_slow_only_applies_to_waiting_candidates() -> None:
    lk = make(range(1, 11))
    lk.next_queries()
    lk.on_slow(nid(7))  # NEW: nothing happens
    assert state(lk, 7) is CandidateState.NEW
    lk.on_reply(nid(1), [], False)
    lk.on_slow(nid(1))  # ANSWERED stays ANSWERED
    assert state(lk, 1) is CandidateState.ANSWERED
    lk.on_slow(nid(999))  # unknown: ignored


def test_failed_candidates_are_skipped_and_not_reported() -> None:
    lk = make(range(1, 11), k=5)
    lk.next_queries()
    lk.on_failure(nid(1))
    assert state(lk, 1) is CandidateState.FAILED
    assert ids_of(lk.next_queries()) == [4]
    lk.on_slow(nid(2))
    lk.on_failure(nid(2))  # a slow query can fail too
    assert state(lk, 2) is CandidateState.FAILED
    assert ids_of(lk.next_queries()) == [5]
    assert ids_of(lk.closest()) == [3, 4, 5, 6, 7]
    assert ids_of(lk.beyond(3)) == [6, 7, 8, 9, 10]
    lk.on_reply(nid(1), contacts([0x50]), False)  # a reply after the failure is ignored
    assert state(lk, 1) is CandidateState.FAILED
    assert lk.get(nid(0x50)) is None
    assert lk.replies == 0


def test_failure_does_not_touch_new_or_answered_candidates() -> None:
    lk = make(range(1, 11))
    lk.next_queries()
    lk.on_failure(nid(9))
    assert state(lk, 9) is CandidateState.NEW
    lk.on_reply(nid(1), [], False)
    lk.on_failure(nid(1))
    assert state(lk, 1) is CandidateState.ANSWERED


def test_duplicate_reply_counts_once() -> None:
    lk = make(range(1, 5))
    lk.next_queries()
    lk.on_reply(nid(1), [], True)
    lk.on_reply(nid(1), contacts([0x70]), False)
    assert lk.replies == 1
    c = lk.get(nid(1))
    assert c is not None and c.has_value
    assert lk.get(nid(0x70)) is None


def test_reply_from_a_node_never_queried_is_ignored() -> None:
    lk = make(range(1, 5))
    lk.next_queries()
    lk.on_reply(nid(42), contacts([0]), False)
    assert lk.replies == 0 and lk.get(nid(42)) is None


def test_the_window_skips_failed_and_stops_at_k_live() -> None:
    lk = make(range(1, 10), k=4, alpha=10)
    out = lk.next_queries()
    assert ids_of(out) == [1, 2, 3, 4]  # only the k closest live ones are ever queried
    lk.on_failure(nid(2))
    assert ids_of(lk.next_queries()) == [5]


# ---- termination ---------------------------------------------------------------------------


def test_done_once_the_settle_closest_answered() -> None:
    lk = make(range(1, 31), k=20, settle=3)
    lk.next_queries()
    lk.on_reply(nid(1), [], False)
    lk.on_reply(nid(2), [], False)
    assert not lk.done
    lk.on_reply(nid(3), [], False)
    assert lk.done  # 30 live candidates ≥ k: the 3 closest answered is enough
    assert lk.next_queries() == []
    assert lk.queries_sent == 3


def test_not_done_while_a_closer_candidate_owes_an_answer() -> None:
    lk = make(range(1, 31), settle=2)
    lk.next_queries()
    lk.on_slow(nid(1))
    lk.on_reply(nid(2), [], False)
    lk.on_reply(nid(3), [], False)
    assert not lk.done  # 1 is slow, not failed: it may still answer with closer nodes
    lk.on_failure(nid(1))
    assert lk.done


def test_a_reply_with_closer_nodes_unsettles_the_lookup() -> None:
    lk = make(range(10, 40), settle=2)
    lk.next_queries()
    lk.on_reply(nid(10), [], False)
    lk.on_reply(nid(11), contacts([3]), False)
    assert not lk.done  # 3 now stands ahead of the answered ones
    assert ids_of(lk.next_queries()) == [3, 13]  # two replies freed two slots
    lk.on_reply(nid(3), [], False)
    assert lk.done  # 3 and 10 are the two closest live candidates, both answered


def test_settle_is_capped_by_k() -> None:
    lk = make(range(1, 10), k=2, settle=5)
    assert lk.settle == 2
    lk.next_queries()
    lk.on_reply(nid(1), [], False)
    lk.on_reply(nid(2), [], False)
    assert lk.done


def test_fewer_than_k_live_candidates_keeps_asking_while_new_ones_remain() -> None:
    lk = make(range(1, 8), k=20, settle=3, alpha=3)  # 7 candidates < k
    lk.next_queries()
    for n in (1, 2, 3):
        lk.on_reply(nid(n), [], False)
    assert not lk.done  # settled, but a put still wants k replicas: ask further out
    assert ids_of(lk.next_queries()) == [4, 5, 6]
    for n in (4, 5):
        lk.on_reply(nid(n), [], False)
    assert not lk.done
    assert ids_of(lk.next_queries()) == [7]
    # No candidate is NEW any more: the lookup ends without waiting for the stragglers.
    assert lk.done
    assert state(lk, 6) is CandidateState.WAITING
    assert state(lk, 7) is CandidateState.WAITING
    assert ids_of(lk.closest()) == [1, 2, 3, 4, 5, 6, 7]
    lk.on_failure(nid(6))
    assert lk.done
    assert ids_of(lk.closest()) == [1, 2, 3, 4, 5, 7]


def test_fewer_than_k_live_a_late_reply_with_new_contacts_reopens_the_search() -> None:
    lk = make(range(1, 6), k=20, settle=2, alpha=5)
    lk.next_queries()
    for n in (1, 2, 3, 4):
        lk.on_reply(nid(n), [], False)
    assert lk.done  # 5 is still in flight, nothing is NEW
    lk.on_reply(nid(5), contacts([30, 31]), False)
    assert not lk.done  # fewer than k live and two NEW candidates: keep asking
    assert ids_of(lk.next_queries()) == [30, 31]


def test_with_k_live_candidates_known_the_far_ones_are_not_queried() -> None:
    lk = make(range(1, 21), k=20, settle=3)
    lk.next_queries()
    for n in (1, 2, 3):
        lk.on_reply(nid(n), [], False)
    assert lk.done
    assert lk.queries_sent == 3


def test_failures_shrink_the_live_count_and_reopen_the_search() -> None:
    lk = make(range(1, 22), k=20, settle=2, alpha=3)  # 21 candidates: one more than k
    assert ids_of(lk.next_queries()) == [1, 2, 3]
    lk.on_failure(nid(3))
    assert ids_of(lk.next_queries()) == [4]
    lk.on_failure(nid(4))
    assert ids_of(lk.next_queries()) == [5]
    lk.on_reply(nid(1), [], False)
    lk.on_reply(nid(2), [], False)
    assert not lk.done  # settled, but only 19 live candidates remain, and NEW ones exist
    assert ids_of(lk.next_queries()) == [6, 7]


def test_settled_with_k_live_candidates_is_done_even_with_queries_in_flight() -> None:
    lk = make(range(1, 21), k=20, settle=2, alpha=20)
    assert len(lk.next_queries()) == 20
    lk.on_reply(nid(1), [], False)
    lk.on_reply(nid(2), [], False)
    assert lk.done  # 3..20 still owe answers, but they cannot change the settled result


def test_no_seeds_is_done_at_once() -> None:
    lk = make([])
    assert lk.done
    assert lk.next_queries() == []
    assert lk.closest() == [] and lk.hops == 0


def test_all_seeds_failing_ends_the_lookup() -> None:
    lk = make([1, 2])
    lk.next_queries()
    lk.on_failure(nid(1))
    assert not lk.done
    lk.on_failure(nid(2))
    assert lk.done
    assert lk.closest() == [] and lk.answered() == []


# ---- results and candidates ----------------------------------------------------------------


def test_own_id_is_never_a_candidate() -> None:
    own = nid(2)
    lk = make([1, 2, 3], own=own)
    assert lk.get(own) is None
    out = lk.next_queries()
    assert own not in [c.node_id for c in out]
    lk.on_reply(nid(1), [(own, ("127.0.0.1", 9))], False)
    assert lk.get(own) is None
    assert own not in [c.node_id for c in lk.closest()]


def test_duplicates_keep_their_first_address_and_hop() -> None:
    lk = make([5])
    lk.next_queries()
    lk.on_reply(nid(5), [(nid(7), ("10.0.0.1", 1)), (nid(7), ("10.0.0.2", 2))], False)
    c = lk.get(nid(7))
    assert c is not None and c.addr == ("10.0.0.1", 1) and c.hops == 1
    lk.on_reply(nid(5), [(nid(5), ("10.0.0.9", 9))], False)
    c5 = lk.get(nid(5))
    assert c5 is not None and c5.hops == 0


def test_hops_count_from_the_seeds() -> None:
    lk = make([40, 41, 42], settle=1)
    lk.next_queries()
    lk.on_reply(nid(40), contacts([20]), False)
    assert lk.hops == 1
    lk.next_queries()
    lk.on_reply(nid(20), contacts([10]), False)
    lk.next_queries()
    lk.on_reply(nid(10), [], False)
    assert lk.hops == 3
    assert lk.done


@settings(deadline=None, max_examples=60)
@given(
    target=st.integers(min_value=0, max_value=(1 << ID_BITS) - 1),
    ids=st.lists(st.integers(min_value=0, max_value=(1 << ID_BITS) - 1), max_size=40, unique=True),
    fail=st.sets(st.integers(min_value=0, max_value=39)),
    k=st.integers(min_value=1, max_value=20),
)
def test_results_are_ordered_by_xor_distance(
    target: int, ids: list[int], fail: set[int], k: int
) -> None:
    t = int_to_id(target)
    own = int_to_id(target ^ 1)
    everyone = len(ids) + 1  # k and alpha large enough that every candidate is queried
    lk = Lookup(t, contacts(ids), own_id=own, k=everyone, alpha=everyone, settle=1)
    live_ids = [i for i in ids if int_to_id(i) != own]
    assert len(lk.next_queries()) == len(live_ids)
    failed = {live_ids[i] for i in fail if i < len(live_ids)}
    for i in failed:
        lk.on_failure(int_to_id(i))
    expected = sorted((i for i in live_ids if i not in failed), key=lambda i: i ^ target)
    assert ids_of(lk.closest()) == expected
    assert ids_of(lk.closest(k)) == expected[:k]
    assert ids_of(lk.beyond(k)) == expected[k:]
    for i in expected[: len(expected) // 2]:
        lk.on_reply(int_to_id(i), [], False)
    assert ids_of(lk.answered()) == expected[: len(expected) // 2]
    assert all(c.distance == id_to_int(c.node_id) ^ target for c in lk.closest())


def test_candidate_list_is_bounded() -> None:
    k = 5
    lk = make([1000], k=k)
    lk.next_queries()
    lk.on_reply(nid(1000), contacts(range(2000, 2000 + 10 * k)), False)
    live = lk.closest(10**6)
    assert len(live) == MAX_CANDIDATES_FACTOR * k  # the 4·k closest; farther ones never matter
    assert ids_of(live) == [1000, *range(2000, 2000 + MAX_CANDIDATES_FACTOR * k - 1)]
    lk.on_reply(nid(1000), contacts(range(1, 4)), False)  # ignored: already answered
    assert lk.get(nid(1)) is None


def test_bounded_list_still_admits_closer_candidates_and_keeps_in_flight_ones() -> None:
    k = 2
    lk = make(range(100, 100 + 4 * k), k=k, alpha=8)
    first = ids_of(lk.next_queries())
    assert first == [100, 101]
    lk.on_reply(nid(100), contacts([1, 2, 3]), False)
    assert lk.get(nid(1)) is not None
    assert lk.get(nid(101)) is not None  # still in flight: never forgotten
    lk.on_reply(nid(101), [], False)
    assert lk.replies == 2


# ---- properties over random drives ----------------------------------------------------------


@settings(deadline=None, max_examples=80)
@given(
    seed=st.integers(min_value=0, max_value=2**32),
    n_seeds=st.integers(min_value=0, max_value=30),
    k=st.integers(min_value=1, max_value=12),
    alpha=st.integers(min_value=1, max_value=5),
    settle=st.integers(min_value=1, max_value=6),
)
def test_random_drive_keeps_the_invariants(
    seed: int, n_seeds: int, k: int, alpha: int, settle: int
) -> None:
    """Any order of replies, slow marks and failures: ≤ α waiting, never stuck, terminates."""
    rng = random.Random(seed)
    universe = rng.sample(range(1, 1 << 16), 200)
    lk = Lookup(TARGET, contacts(universe[:n_seeds]), own_id=OWN, k=k, alpha=alpha, settle=settle)
    inflight: list[bytes] = []
    for _ in range(2000):
        if lk.done:
            break
        for c in lk.next_queries():
            assert c.node_id not in inflight
            inflight.append(c.node_id)
        assert len(waiting(lk)) <= alpha
        assert inflight, "not done, nothing in flight and nothing to ask: the lookup is stuck"
        node = inflight[rng.randrange(len(inflight))]
        cand = lk.get(node)
        assert cand is not None
        roll = rng.random()
        if roll < 0.15 and cand.state is CandidateState.WAITING:
            lk.on_slow(node)
        elif roll < 0.3:
            lk.on_failure(node)
            inflight.remove(node)
        else:
            lk.on_reply(node, contacts(rng.sample(universe, rng.randrange(0, k + 1))), False)
            inflight.remove(node)
    assert lk.done
    assert lk.next_queries() == []
    closest = lk.closest()
    assert all(c.state is not CandidateState.FAILED for c in closest)
    for c in closest[: lk.settle]:
        assert c.state is CandidateState.ANSWERED


def _bucket(a: int, b: int) -> int:
    return (a ^ b).bit_length()


class _Network:
    """Random ids; every live node keeps Kademlia k-buckets of live nodes only.

    Each node knows min(k, size) nodes of every bucket, so it knows the true
    closest set around itself. FIND_NODE returns the k closest it knows.
    """

    def __init__(self, ids: list[int], dead: set[int], k: int, rng: random.Random) -> None:
        self.ids = ids
        self.dead = dead
        self.k = k
        live = [i for i in ids if i not in dead]
        self.known: dict[int, list[int]] = {}
        for me in live:
            buckets: dict[int, list[int]] = {}
            for other in live:
                if other != me:
                    buckets.setdefault(_bucket(me, other), []).append(other)
            known: list[int] = []
            for members in buckets.values():
                rng.shuffle(members)
                known.extend(members[:k])
            self.known[me] = known

    def find_node(self, me: int, target: int) -> list[int]:
        return sorted(self.known[me], key=lambda i: i ^ target)[: self.k]


@settings(deadline=None, max_examples=60)
@given(
    seed=st.integers(min_value=0, max_value=2**32),
    n=st.integers(min_value=2, max_value=150),
    k=st.integers(min_value=2, max_value=8),
    alpha=st.integers(min_value=1, max_value=4),
    settle=st.integers(min_value=1, max_value=4),
    dead_fraction=st.sampled_from([0.0, 0.2, 0.5]),
    slow_fraction=st.sampled_from([0.0, 0.3]),
)
def test_lookup_finds_the_true_closest_node_in_a_random_network(
    seed: int,
    n: int,
    k: int,
    alpha: int,
    settle: int,
    dead_fraction: float,
    slow_fraction: float,
) -> None:
    rng = random.Random(seed)
    ids = [rng.getrandbits(ID_BITS) for _ in range(n)]
    me = ids[0]
    # The initiator's own table is stale: its seeds may include dead nodes. The others'
    # tables are clean, which is the setting in which Kademlia guarantees an exact answer.
    dead = {i for i in ids[1:] if rng.random() < dead_fraction}
    net = _Network(ids, dead, k, rng)
    target = rng.getrandbits(ID_BITS)
    others = [i for i in ids if i != me]
    seeds = rng.sample(others, min(len(others), k))
    slow = {i for i in others if rng.random() < slow_fraction}
    lk = Lookup(
        int_to_id(target),
        contacts(seeds),
        own_id=int_to_id(me),
        k=k,
        alpha=alpha,
        settle=settle,
    )
    inflight: list[int] = []
    while not lk.done:
        inflight += ids_of(lk.next_queries())
        assert len(waiting(lk)) <= alpha
        assert inflight
        node = inflight[rng.randrange(len(inflight))]
        if state(lk, node) is CandidateState.WAITING and (node in dead or node in slow):
            # The soft timeout fires first; the node keeps its place in the in-flight list.
            lk.on_slow(int_to_id(node))
            continue
        inflight.remove(node)
        if node in dead:
            lk.on_failure(node_id := int_to_id(node))
            assert state(lk, node) is CandidateState.FAILED, node_id
        else:
            lk.on_reply(int_to_id(node), contacts(net.find_node(node, target)), False)

    live_others = sorted((i for i in others if i not in dead), key=lambda i: i ^ target)
    answered = ids_of(lk.answered())
    if not any(s not in dead for s in seeds):
        assert answered == []  # nobody to ask: nothing can be found
        return
    best = lk.closest(1)
    assert ids_of(best) == [live_others[0]]
    assert best[0].state is CandidateState.ANSWERED
    assert int_to_id(me) not in [c.node_id for c in lk.closest(n)]
    # Every settled candidate answered, so it is live (the exact k closest set is not
    # guaranteed: a node knows only k random members of each far bucket).
    assert all(c.state is CandidateState.ANSWERED for c in lk.closest(lk.settle))
    dists = [c.distance for c in lk.closest(n)]
    assert dists == sorted(dists)
