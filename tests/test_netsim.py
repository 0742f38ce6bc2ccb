"""netsim: small versions of every shipped scenario, asserting the issue's "must hold" column.

Each runs the real NodeCore in virtual time in a few seconds. Sizes are tens to
hundreds of nodes; the full sizes run through `chorusdht sim` and
scripts/bench_netsim.py. Scenarios that need a shorter timeline than the shipped
file are written here as TOML, with the same events and must-hold checks.
"""

from __future__ import annotations

import weakref
from pathlib import Path
from typing import Any

import pytest
from netsim import list_scenarios, load_scenario, run_scenario
from netsim.recoversim import is_recover_scenario, load_spec
from netsim.scenario import SCENARIO_DIR

from chorusdht import NodeCore

SHIPPED = (
    "churn-36h",
    "hetero",
    "lookup-10k",
    "nuke-overlay",
    "nuke-overlay-recover",
    "nuke99-chorus",
    "waves",
)


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return path


@pytest.mark.timeout(10)
def test_every_shipped_scenario_loads_and_says_what_it_answers() -> None:
    assert tuple(list_scenarios()) == SHIPPED
    for name in SHIPPED:
        path = SCENARIO_DIR / f"{name}.toml"
        if is_recover_scenario(path):  # recoversim's own format (trio nodes, a mesh)
            spec = load_spec(path)
            assert "?" in spec.question, name
            continue
        sc = load_scenario(path)
        assert sc.question.endswith((".", ")")) and "?" in sc.question, name
        assert sc.events, name


@pytest.mark.timeout(60)
def test_lookup_small_finds_the_true_closest() -> None:
    run = run_scenario("lookup-10k", seed=1, nodes=300)["run"]
    lk = run["lookups"]
    assert run["joins"]["failed"] == 0
    assert lk["count"] == 1000
    assert lk["success_ratio"] == 1.0
    assert lk["closest_found_ratio"] >= 0.999
    assert lk["true_k_overlap_mean"] >= 19
    assert lk["hops"]["p50"] <= 4
    assert run["network"]["dropped"]["loss"] > 0  # the 1% loss really applied


NUKE_SMALL = """
# nuke-overlay, small: 150 nodes, 1,000 chunks, kill 50% and 90% (99% of 150 leaves 2).
nodes = 150
duration = 2400
fast_crypto = true
count_bytes = false
sample_every = 600
[sweep]
event = "nuke"
field = "fraction"
values = [0.5, 0.9]
[[events]]
kind = "join"
over = 300
[[events]]
kind = "puts"
at = 400
count = 1000
writers = 100
[[events]]
kind = "nuke"
at = 900
[[events]]
kind = "gets"
at = 1800
over = 600
tag = "after_nuke"
"""


@pytest.mark.timeout(60)
def test_nuke_small_keeps_the_analytic_bound(tmp_path: Path) -> None:
    runs = run_scenario(_write(tmp_path, "nuke", NUKE_SMALL), seed=1)["runs"]
    assert set(runs) == {"fraction=0.5", "fraction=0.9"}
    for label, run in runs.items():
        rec = run["recovered"]
        assert run["puts"]["acked"] == 1000, label
        assert rec["retrievable"] >= rec["bound"] - 0.01, (label, rec)
        # Every chunk that still had a copy anywhere is read an hour later: the sweep,
        # the refresh and repair_all brought the copies to the survivors' closest.
        assert rec["retrievable"] == rec["held_at_nuke"], (label, rec)
        assert run["gets"]["after_nuke"]["wrong_value"] == 0


@pytest.mark.timeout(60)
def test_waves_small_every_chunk_survives_in_the_last_one_percent() -> None:
    run = run_scenario("waves", seed=1, nodes=100)["run"]
    assert run["live_at_end"] == 1
    gets = run["gets"]["last_1pct"]
    assert run["puts"]["acked"] == gets["count"] > 0
    assert gets["success_ratio"] == 1.0
    assert gets["wrong_value"] == 0


CHURN_SMALL = """
# churn, small: 40 nodes, 4 virtual hours of Weibull churn (mean lifetime 1 h), republish on.
nodes = 40
duration = 18000
fast_crypto = true
count_bytes = false
sample_every = 1800
classes = { datacenter = 0.2, home = 0.8 }
[[events]]
kind = "join"
over = 300
[[events]]
kind = "puts"
at = 600
count = 40
writers = 10
[[events]]
kind = "churn"
at = 1800
until = 16200
mean_lifetime = 3600
shape = 0.7
downtime = 600
keep_disk = 0.8
[[events]]
kind = "gets"
at = 16200
over = 1200
tag = "after_churn"
"""


@pytest.mark.timeout(60)
def test_churn_small_loses_no_chunk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cores: weakref.WeakSet[NodeCore] = weakref.WeakSet()
    build = NodeCore.__init__

    def tracked(self: NodeCore, *args: Any, **kwargs: Any) -> None:
        build(self, *args, **kwargs)
        cores.add(self)

    monkeypatch.setattr(NodeCore, "__init__", tracked)
    cores_seen: list[int] = []

    def count_cores(now: float, end: float) -> None:  # after each step's gc.freeze()
        cores_seen.append(len(cores))

    run = run_scenario(_write(tmp_path, "churn", CHURN_SMALL), seed=1, progress=count_cores)
    run = run["run"]
    gets = run["gets"]["after_churn"]
    assert run["puts"]["acked"] == gets["count"] > 0
    assert gets["success_ratio"] == 1.0
    assert all(c["zero"] == 0 for c in run["replicas"])
    # The cores of crashed lives are freed (frozen, their cycles once were not): at most
    # the 40 live ones plus fewer than a tenth of the nodes' worth of dead ones.
    assert run["core"]["handoffs"] < run["core"]["requests_out"] // 4
    assert max(cores_seen) < 40 + 4 + 1


@pytest.mark.timeout(60)
def test_hetero_small_no_class_times_out_and_no_pizero_is_evicted() -> None:
    run = run_scenario("hetero", seed=1, nodes=90)["run"]
    by_class = run["lookups"]["by_class"]
    assert set(by_class) == {"datacenter", "home", "pizero"}
    for cls, stats in by_class.items():
        assert stats["timeout_ratio"] <= 0.01, cls
    assert run["live_evictions_by_class"].get("pizero", 0) == 0
    assert run["gets"]["hetero"]["success_ratio"] == 1.0
    assert all(t["bytes"] > 0 for t in run["traffic"].values())
