"""Hostile datagrams (issue 7, part 1): a bounded slice of scripts/fuzz_node.py, plus
Hypothesis-driven input straight into a sans-IO core.

The full run is `.venv/bin/python scripts/fuzz_node.py --count 1000000`; here a live
node in a child process takes 20,000 datagrams, and a `NodeCore` takes what
Hypothesis generates (structured messages with wrong types in every field).
"""

from __future__ import annotations

import importlib.util
import random
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chorusdht.config import NodeConfig
from chorusdht.core import NodeCore
from chorusdht.identity import Identity
from chorusdht.ids import sha256
from chorusdht.messages import decode_message
from chorusdht.store import MemoryStore

ROOT = Path(__file__).resolve().parents[1]
PEER = ("192.0.2.9", 4000)  # a label: these cores never touch a socket
SLICE = 20_000  # datagrams in the suite's slice of the 1,000,000 run
SLICE_DEADLINE = 40.0  # s; the slice runs at ~3,000-6,000 datagrams/s on 2 cores


def _load_fuzzer() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fuzz_node", ROOT / "scripts" / "fuzz_node.py")
    assert spec is not None and spec.loader is not None
    sys.path.insert(0, str(ROOT / "scripts"))  # its shared helpers (scripts/argcheck.py)
    module = importlib.util.module_from_spec(spec)
    sys.modules["fuzz_node"] = module
    spec.loader.exec_module(module)
    return module


fuzz = _load_fuzzer()
FUZZER = Identity.from_seed(sha256(b"test fuzzer"))


def lone_core() -> NodeCore:
    config = NodeConfig(rate_limit_per_ip=None, rate_limit_global=None, require_membership=True)
    return NodeCore(
        Identity.from_seed(sha256(b"fuzz target")),
        MemoryStore(),
        rng=random.Random(5),
        now=0.0,
        config=config,
    )


def feed(core: NodeCore, data: bytes, now: float = 1.0) -> None:
    """Deliver one datagram and check that whatever the core sends back decodes."""
    core.receive_datagram(data, PEER, now)
    for out, _addr in core.datagrams_to_send():
        decode_message(out)  # the core never emits bytes it could not parse itself


# ---- the live node ----------------------------------------------------------------------


@pytest.mark.integration
def test_a_live_node_survives_a_slice_of_the_fuzz_run() -> None:
    """20,000 mutated datagrams at a node in a child process: it lives and answers PINGs."""
    start = time.monotonic()
    report = fuzz.run_fuzz(SLICE, seed=11, check_every=256, rss_every=2000, max_seconds=30.0)
    assert time.monotonic() - start < SLICE_DEADLINE
    print("\n".join(report.lines()))
    assert report.alive, "the node process died"
    assert report.pings_failed == 0 and report.pings_ok >= SLICE // 256
    assert report.sent == SLICE
    stats = report.stats
    for counter in ("malformed", "too_large", "bad_identity", "unsolicited", "bad_version"):
        assert stats.get(counter, 0) > 0, counter
    assert stats.get("datagrams_in", 0) >= 0.95 * SLICE
    assert sum(v for k, v in stats.items() if k.startswith("store_rejected_")) > 0
    assert report.rss_peak < 1.5 * report.rss_first  # a short run: no leak worth the name


def test_every_mutation_kind_is_generated() -> None:
    rng = random.Random(3)
    m = fuzz.Mutator(rng, fuzz.valid_messages(FUZZER, rng))
    kinds = {m.next()[0] for _ in range(2000)}
    assert kinds == {name for name, _ in m.kinds}
    # every body type is among the valid messages, under its own `t`
    types = {decode_message(raw).body.TYPE for raw in m.valid}
    assert types == {
        "ping", "find_node", "find_value", "store", "list", "get_many", "pong", "nodes",
        "value", "stored", "error", "listed", "records",
    }  # fmt: skip


# ---- the core, in process ---------------------------------------------------------------


def test_a_core_survives_every_mutator_in_process() -> None:
    """The same generator straight into a NodeCore: 6,000 datagrams, no exception escapes."""
    rng = random.Random(21)
    core = lone_core()
    m = fuzz.Mutator(rng, fuzz.valid_messages(FUZZER, rng))
    deadline = time.monotonic() + 20.0
    for i in range(6000):
        feed(core, m.next()[1], now=i / 1000)
        assert time.monotonic() < deadline
    assert core.stats["datagrams_in"] == 6000
    assert core.stats["malformed"] > 0 and core.stats["too_large"] > 0


def test_an_unhashable_type_under_another_version_does_not_crash_the_core() -> None:
    """Bug: messages.decode_message does `obj.get("t") in _REQUEST_NAMES` when v != 1.

    A list or map `t` raises TypeError out of NodeCore.receive_datagram, and the
    trio driver (node.py `_receive_loop`) dies with it: one 60-byte datagram stops
    a node. This test fails until decode_message checks that `t` is a str first.
    """
    core = lone_core()
    for t in ([], [1], {}, {"a": 1}):
        msg = {"v": 2, "t": t, "x": b"\x01" * 8, "i": FUZZER.node_id, "k": FUZZER.public_key}
        feed(core, cbor2.dumps(msg))
    assert core.stats["bad_version"] == 4


_FIELD_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.binary(max_size=80),
    st.text(max_size=40),
    st.lists(st.binary(max_size=40), max_size=6),
    st.lists(st.integers(min_value=-5, max_value=5), max_size=4),
    st.dictionaries(st.text(max_size=4), st.integers(min_value=0, max_value=9), max_size=3),
)
_FIELDS = ["v", "t", "x", "i", "k", "c", "cs", "target", "key", "rec", "proof", "mesh",
           "cursor", "limit", "since", "keys", "nodes", "recs", "code", "detail"]  # fmt: skip
_TYPES = st.sampled_from(
    ["ping", "find_node", "find_value", "store", "list", "get_many", "pong", "nodes", "value",
     "stored", "error", "listed", "records", "nope"]
)  # fmt: skip


@st.composite
def hostile_messages(draw: Any) -> bytes:
    """A well-formed envelope (so decoding gets past the header) with hostile fields."""
    msg: dict[str, Any] = {
        "v": draw(st.sampled_from([1, 1, 1, 0, 2])),
        "t": draw(_TYPES),
        "x": draw(st.binary(min_size=8, max_size=8)),
        "i": FUZZER.node_id,
        "k": FUZZER.public_key,
    }
    for name in draw(st.lists(st.sampled_from(_FIELDS), max_size=6)):
        msg[name] = draw(_FIELD_VALUES)
    data: bytes = cbor2.dumps(msg)
    return data


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None
)
@given(data=hostile_messages())
def test_hypothesis_wrong_types_in_every_field(data: bytes) -> None:
    feed(lone_core(), data)


@settings(max_examples=300, deadline=None, database=None)
@given(data=st.binary(max_size=2048))
def test_hypothesis_random_bytes(data: bytes) -> None:
    core = lone_core()
    feed(core, data)
    assert core.stats["datagrams_in"] == 1
