"""Unit and property tests of the RFC 6298 timeout estimator (pure, no I/O)."""

from __future__ import annotations

import math
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chorusdht.errors import ConfigError, LocalError
from chorusdht.rto import CLOCK_GRANULARITY, DEFAULT_RTO, RtoConfig, RttEstimator, RttTable

rtts = st.floats(min_value=0.0, max_value=120.0, allow_nan=False)


def test_defaults_follow_the_brief() -> None:
    assert RtoConfig(1.0, 0.2, 10.0, 0.125, 0.25, 4.0) == DEFAULT_RTO
    est = RttEstimator()
    assert est.srtt is None and est.rttvar == 0.0 and est.timeout() == 1.0


def test_first_sample() -> None:
    est = RttEstimator()
    est.sample(0.5)
    assert est.srtt == 0.5 and est.rttvar == 0.25
    assert est.timeout() == pytest.approx(0.5 + 4 * 0.25)


def test_second_sample_updates_rttvar_with_the_old_srtt() -> None:
    est = RttEstimator()
    est.sample(1.0)
    est.sample(2.0)
    assert est.rttvar == pytest.approx(0.75 * 0.5 + 0.25 * abs(1.0 - 2.0))
    assert est.srtt == pytest.approx(0.875 * 1.0 + 0.125 * 2.0)
    assert est.srtt is not None
    assert est.timeout() == pytest.approx(est.srtt + 4 * est.rttvar)


def test_clock_granularity_term() -> None:
    cfg = RtoConfig(initial=0.5, floor=0.0005, ceiling=1.0)
    est = RttEstimator(cfg)
    for _ in range(500):
        est.sample(0.1)
    assert est.rttvar < CLOCK_GRANULARITY / 4
    assert est.timeout() == pytest.approx(0.1 + CLOCK_GRANULARITY)


@settings(deadline=None, max_examples=200)
@given(rtt=st.floats(min_value=0.0, max_value=0.15))
def test_equal_samples_converge_to_the_floor(rtt: float) -> None:
    est = RttEstimator()
    timeouts = []
    for _ in range(200):
        est.sample(rtt)
        timeouts.append(est.timeout())
    assert all(b <= a for a, b in pairwise(timeouts))
    assert est.timeout() == pytest.approx(max(DEFAULT_RTO.floor, rtt + CLOCK_GRANULARITY))


@settings(deadline=None, max_examples=300)
@given(
    events=st.lists(st.one_of(rtts, st.just("backoff")), max_size=60),
    config=st.sampled_from([DEFAULT_RTO, RtoConfig(initial=0.5, floor=0.05, ceiling=3.0)]),
)
def test_rto_stays_within_floor_and_ceiling(events: list[float | str], config: RtoConfig) -> None:
    est = RttEstimator(config)
    for item in events:
        before = est.timeout()
        if isinstance(item, str):
            est.backoff()
            assert est.timeout() == min(2 * before, config.ceiling)
        else:
            est.sample(item)
            assert est.srtt is not None and est.rttvar >= 0.0
        assert config.floor <= est.timeout() <= config.ceiling


def test_backoff_doubles_up_to_the_ceiling_and_a_sample_ends_it() -> None:
    est = RttEstimator()
    seen = []
    for _ in range(6):
        est.backoff()
        seen.append(est.timeout())
    assert seen == [2.0, 4.0, 8.0, 10.0, 10.0, 10.0]
    est.sample(0.3)
    assert est.timeout() == pytest.approx(0.3 + 4 * 0.15)


@pytest.mark.parametrize("bad", [-0.1, math.nan, math.inf])
def test_bad_samples_raise(bad: float) -> None:
    with pytest.raises(LocalError):
        RttEstimator().sample(bad)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"floor": 0.0},
        {"floor": 2.0},  # above initial
        {"ceiling": 0.5},  # below initial
        {"ceiling": math.inf},
        {"alpha": 0.0},
        {"beta": 1.5},
        {"k": -1.0},
        {"initial": math.nan},
    ],
)
def test_bad_configs_raise(kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        RtoConfig(**kwargs)


def test_table_unknown_ids_get_the_initial_timeout() -> None:
    table = RttTable()
    assert table.timeout_for(None) == 1.0
    assert table.timeout_for(b"\x01" * 32) == 1.0
    assert len(table) == 0  # asking does not create an entry
    table.sample(b"\x01" * 32, 0.4)
    assert table.timeout_for(b"\x01" * 32) == pytest.approx(0.4 + 4 * 0.2)
    table.backoff(b"\x02" * 32)
    assert table.timeout_for(b"\x02" * 32) == 2.0
    table.discard(b"\x02" * 32)
    assert b"\x02" * 32 not in table and table.timeout_for(b"\x02" * 32) == 1.0


def test_table_lru_bound() -> None:
    table = RttTable(max_entries=3)
    ids = [bytes([i]) * 32 for i in range(5)]
    for node_id in ids[:3]:
        table.sample(node_id, 0.5)
    table.timeout_for(ids[0])  # use ids[0]: ids[1] is now the least recently used
    table.sample(ids[3], 0.5)
    assert len(table) == 3
    assert ids[1] not in table and ids[0] in table and ids[3] in table
    table.backoff(ids[4])
    assert len(table) == 3 and ids[2] not in table
    with pytest.raises(ConfigError):
        RttTable(max_entries=0)


@settings(deadline=None, max_examples=100)
@given(
    keys=st.lists(st.integers(0, 20), max_size=200),
    bound=st.integers(1, 8),
)
def test_table_never_exceeds_its_bound(keys: list[int], bound: int) -> None:
    table = RttTable(max_entries=bound)
    recent: list[int] = []
    for key in keys:
        table.sample(key.to_bytes(32, "big"), 0.1)
        if key in recent:
            recent.remove(key)
        recent.append(key)
        assert len(table) <= bound
    # The survivors are exactly the `bound` most recently used ids.
    assert {k for k in range(21) if k.to_bytes(32, "big") in table} == set(recent[-bound:])


@settings(deadline=None, max_examples=200)
@given(
    ops=st.lists(
        st.tuples(
            st.sampled_from(["sample", "backoff", "discard", "timeout"]),
            st.integers(0, 9),
            st.floats(0.0, 5.0),
        ),
        max_size=120,
    ),
    bound=st.integers(1, 6),
)
def test_table_matches_one_estimator_per_id(ops: list[tuple[str, int, float]], bound: int) -> None:
    # The table stores its state in flat arrays with reused slots; a dict of
    # RttEstimators with the same LRU rule must give the same timeouts, always.
    table = RttTable(max_entries=bound)
    model: dict[int, RttEstimator] = {}  # in LRU order, like the table

    def use(key: int, create: bool) -> RttEstimator | None:
        est = model.pop(key, None)
        if est is None:
            if not create:
                return None
            est = RttEstimator()
            if len(model) >= bound:
                del model[next(iter(model))]
        model[key] = est
        return est

    for op, key, rtt in ops:
        node_id = key.to_bytes(32, "big")
        if op == "sample":
            table.sample(node_id, rtt)
            est = use(key, True)
            assert est is not None
            est.sample(rtt)
        elif op == "backoff":
            table.backoff(node_id)
            est = use(key, True)
            assert est is not None
            est.backoff()
        elif op == "discard":
            table.discard(node_id)
            model.pop(key, None)
        else:
            est = use(key, False)
            assert table.timeout_for(node_id) == (est.timeout() if est else DEFAULT_RTO.initial)
        assert len(table) == len(model) <= bound
        for k in model:
            assert k.to_bytes(32, "big") in table
    for k, e in model.items():  # reads last: they refresh the LRU order on both sides
        assert table.timeout_for(k.to_bytes(32, "big")) == e.timeout()


@settings(deadline=None, max_examples=200)
@given(
    ops=st.lists(
        st.tuples(
            st.sampled_from(
                ["sample", "timeout", "pin", "unpin", "pinned_sample", "pinned_timeout"]
            ),
            st.integers(0, 9),
            st.floats(0.0, 5.0),
        ),
        max_size=120,
    ),
    bound=st.integers(1, 6),
)
def test_pinned_slots_keep_their_state_outside_the_lru(
    ops: list[tuple[str, int, float]], bound: int
) -> None:
    # What the core does with its routing table's contacts: a pinned id is looked up
    # by slot, never evicted, and unknown by id until unpinned; whatever the LRU does
    # meanwhile, each slot must behave like one estimator per id.
    table = RttTable(max_entries=bound)
    model: dict[int, RttEstimator] = {}  # the LRU part, in LRU order
    pinned: dict[int, tuple[int, RttEstimator]] = {}  # key -> (slot, estimator)

    for op, key, rtt in ops:
        node_id = key.to_bytes(32, "big")
        if op in ("pinned_sample", "pinned_timeout", "unpin") and key not in pinned:
            op = "pin"
        if op == "pin" and key in pinned:
            op = "pinned_timeout"
        if op == "sample" and key not in pinned:
            table.sample(node_id, rtt)
            est = model.pop(key, None) or RttEstimator()
            if key not in model and len(model) >= bound:
                del model[next(iter(model))]
            model[key] = est
            est.sample(rtt)
        elif op == "timeout" and key not in pinned:
            est = model.pop(key, None)
            if est is not None:
                model[key] = est
            assert table.timeout_for(node_id) == (est.timeout() if est else DEFAULT_RTO.initial)
        elif op == "pin":
            slot = table.pin(node_id)
            assert slot not in [s for s, _ in pinned.values()]
            pinned[key] = (slot, model.pop(key, None) or RttEstimator())
            assert node_id not in table
        elif op == "unpin":
            slot, est = pinned.pop(key)
            table.unpin(node_id, slot)
            if len(model) >= bound:
                del model[next(iter(model))]
            model[key] = est
        elif op == "pinned_sample" or (op == "sample" and key in pinned):
            slot, est = pinned[key]
            table.sample_at(slot, rtt)
            est.sample(rtt)
        else:
            slot, est = pinned[key]
            assert table.timeout_at(slot) == est.timeout()
        assert len(table) == len(model) <= bound
        assert {k for k in range(10) if k.to_bytes(32, "big") in table} == set(model)
    for slot, est in pinned.values():
        assert table.timeout_at(slot) == est.timeout()
    for k, e in model.items():
        assert table.timeout_for(k.to_bytes(32, "big")) == e.timeout()
