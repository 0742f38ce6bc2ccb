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
from netsim.engine import Simulator
from netsim.network import DEFAULT_CLASSES, LinkModel
from netsim.recoversim import is_recover_scenario, load_spec
from netsim.scenario import SCENARIO_DIR, ScenarioError

from chorusdht import NodeConfig, NodeCore

SHIPPED = (
    "churn-36h",
    "hetero",
    "lookup-10k",
    "nuke-overlay",
    "nuke-overlay-recover",
    "nuke99-chorus",
    "partition",
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


# A file's bad value, and the words its one-line error must hold. Each of these once
# ran anyway: a typo'd field silently took its default, or a bad value raised a
# traceback mid-run (or, for think = 0, never ended).
BAD_SCENARIOS = [
    ("nodes = 10", "missing 'duration'"),
    ("nodes = 10\nduration = -5", "duration must be > 0 and <= 31,622,400, got -5"),
    ("nodes = 10\nduration = 1e300", "duration must be > 0 and <= 31,622,400, got 1e+300"),
    ("nodes = 0\nduration = 50", "nodes must be >= 1, got 0"),
    ("nodes = 10\nduraton = 100", "unknown key 'duraton'"),
    ("duration = 100\n[[events]]\nat = 5", "event 1: needs a kind"),
    ('duration = 100\n[[events]]\nkind = "zap"', "event 1: unknown kind 'zap'"),
    ('duration = 100\n[[events]]\nkind = "join"\ncount = "x"', "count must be a number"),
    ('duration = 100\n[[events]]\nkind = "join"\ncont = 5', "unknown field 'cont'"),
    ('duration = 100\n[[events]]\nkind = "join"\nat = 500', "at must be >= 0 and <= 100"),
    ('duration = 100\n[[events]]\nkind = "nuke"\nfraction = 3', "fraction must be >= 0"),
    ('duration = 100\n[[events]]\nkind = "nuke"\nclass = "gpu"', "'gpu' is not a node class"),
    ('duration = 100\n[[events]]\nkind = "puts"\npayload = 20000', "payload must be <="),
    ('duration = 100\n[[events]]\nkind = "puts"\nwriters = 1.5', "must be a whole number"),
    ('duration = 100\n[[events]]\nkind = "crash"\nkeep_disk = 1', "must be true or false"),
    ('duration = 100\n[[events]]\nkind = "churn"\ndowntime = 0', "downtime must be > 0"),
    ('duration = 100\n[[events]]\nkind = "partition"\nsizes = [0.7, 0.7]', "add up to at"),
    ("duration = 100\nclasses = { datacenter = -1 }", "datacenter must be >= 0"),
    ("duration = 100\n[network]\nlost = 0.1", "network: unknown field 'lost'"),
    ('duration = 100\n[network]\nloss = "x"', "network: loss must be a number"),
    ("duration = 100\n[classdef.pizero]\nrtt_mn = 0.1", "unknown field 'rtt_mn'"),
    ('duration = 100\n[config]\nk = "x"', "config: k must be a number"),
    ("duration = 100\n[config]\nrepublish_interval = 0", "republish_interval must be a positive"),
    ("duration = 100\n[config]\nk = 5000", "k must be a whole number from 1 to 1024, got 5000"),
    ("duration = 100\nevents = 5", "events must be [[events]] tables"),
    ("duration = 100\nnetwork = 3", "network must be a [network] table"),
    ("duration = 100\n[classdef]\npizero = 3", "classdef.pizero must be a [classdef.pizero]"),
    ("duration = 100\n[config]\nrto = { floor = 1 }", "rto cannot be set"),
    (
        'duration = 100\n[sweep]\nevent = "nuke"\nfield = "fraction"\nvalues = [0.5]',
        "sweep: the scenario has no 'nuke' event",
    ),
    (
        'duration = 100\n[[events]]\nkind = "nuke"\n'
        '[sweep]\nevent = "nuke"\nfield = "fraction"\nvalues = [0.5, 2]',
        "a value must be >= 0 and <= 1, got 2",
    ),
    (
        'duration = 100\n[[events]]\nkind = "nuke"\n'
        '[sweep]\nevent = "nuke"\nfield = "fraction"\nvalues = 0.5',
        "sweep: values must be a list",
    ),
    ('engine = "recover"\nkill = 1', "kill must be >= 0 and < 1, got 1"),
    ('engine = "recover"\nthink = 0', "think must be > 0, got 0"),
    ('engine = "recover"\nnodes = "x"', "nodes must be a number"),
    ('engine = "recover"\nseeds = []', "seeds must be a list"),
]


@pytest.mark.timeout(10)
@pytest.mark.parametrize(("text", "words"), BAD_SCENARIOS)
def test_a_bad_scenario_file_is_refused_before_it_runs(
    tmp_path: Path, text: str, words: str
) -> None:
    path = _write(tmp_path, "bad", text + "\n")
    with pytest.raises((ScenarioError, ValueError)) as err:
        if is_recover_scenario(path):
            load_spec(path)
        else:
            load_scenario(path)
    message = str(err.value)
    assert words in message, message
    assert "\n" not in message


@pytest.mark.timeout(30)
def test_run_scenario_refuses_bad_arguments_before_it_runs(tmp_path: Path) -> None:
    """nodes=0 once ran (and returned metrics for -5 nodes), out="dir" failed after
    the run, and a recover scenario said only "unknown key 'engine'"."""
    for kwargs, words in [
        ({"nodes": 0}, "nodes must be a whole number of at least 1, got 0"),
        ({"seed": "x"}, "seed must be a whole number, got 'x'"),
        ({"out": "/proc/no-such-dir/out"}, "cannot write to /proc/no-such-dir/out"),
    ]:
        with pytest.raises(ScenarioError, match=words):
            run_scenario("hetero", **{"seed": 1, **kwargs})  # type: ignore[arg-type]
    with pytest.raises(ScenarioError, match="is a survivor-recovery scenario"):
        run_scenario("nuke99-chorus", seed=1)
    run_scenario("hetero", seed=1, nodes=6, out=str(tmp_path / "o"))  # a str path is fine
    assert (tmp_path / "o" / "metrics.json").is_file()
    assert load_scenario(str(SCENARIO_DIR / "hetero.toml")).name == "hetero"


@pytest.mark.timeout(10)
def test_a_scenario_that_sets_every_event_field_loads(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "full",
        """
duration = 600
classes = { datacenter = 2, pizero = 1 }
[config]
k = 8
refresh_interval = 60.0
handoff = false
[[events]]
kind = "join"
count = 10
over = 5
[[events]]
kind = "puts"
at = 10
count = 5
writers = 2
payload = 100
class = "pizero"
[[events]]
kind = "partition"
at = 20
sizes = [0.5, 0.5]
[[events]]
kind = "crash"
at = 30
fraction = 0.2
keep_disk = false
restart_after = 10
[[events]]
kind = "churn"
at = 40
until = 500
mean_lifetime = 100
shape = 0.7
downtime = 30
keep_disk = 0.5
[[events]]
kind = "waves"
at = 50
every = 20
fraction = 0.1
until = 0.5
""",
    )
    sc = load_scenario(path)
    assert [e.kind for e in sc.events] == ["join", "puts", "partition", "crash", "churn", "waves"]
    assert sc.config.k == 8 and not sc.config.handoff


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
def test_a_99_percent_nuke_of_a_small_mesh_leaves_a_survivor() -> None:
    """round(0.99 * 50) is 50: the 99% column of `sim nuke-overlay --nodes 50` once
    killed every node. The bound is then that of the fraction actually killed."""
    run = run_scenario("nuke-overlay", seed=1, nodes=30)["runs"]["fraction=0.99"]
    (nuke,) = run["nukes"]
    assert nuke["killed"] == 29 and run["live_at_end"] == 1
    assert nuke["bound"] == pytest.approx(1 - (29 / 30) ** 20, abs=1e-6)


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


@pytest.mark.timeout(60)
def test_partition_small_every_chunk_is_readable_after_the_heal() -> None:
    run = run_scenario("partition", seed=1, nodes=200)["run"]
    assert run["puts"]["acked"] == run["puts"]["count"] == 120
    heal = run["gets"]["after_heal"]
    assert heal["ok"] == heal["count"] == 120 and heal["wrong_value"] == 0
    phases = run["lookups"]["by_tag"]
    assert phases["after_heal"]["closest_found_ratio"] >= 0.99
    # In the split a side reads what it holds: all written before, about half since.
    split = run["gets"]["split"]
    assert 60 + 20 <= split["ok"] < split["count"] and split["wrong_value"] == 0
    assert phases["split"]["closest_found_ratio"] < 0.9  # the other side is out of reach
    # Each side stored what it wrote on its own k closest; republish and hand-off then
    # bring every chunk to its true k closest (2 h 20 min after the heal at this size).
    assert run["heals"][0]["placed_seconds"] is not None
    end = run["replicas"][-1]
    assert end["placed"] == end["keys"] == 120


def test_the_joined_list_stays_in_index_order_through_joins_crashes_and_restarts() -> None:
    """Joins pick their bootstrap node from `Simulator.joined` by index: it must list
    exactly the joined live nodes, in index order, whatever order they joined in."""
    sim = Simulator(seed=1, config=NodeConfig(), link=LinkModel(), fast_crypto=True)
    nodes = [sim.spawn(DEFAULT_CLASSES["datacenter"]) for _ in range(6)]
    for n in nodes:
        sim.power_on(n)
    for i in (4, 1, 5, 0, 3):
        sim.set_joined(nodes[i], True)
    sim.set_joined(nodes[4], True)  # twice: still listed once
    assert [n.index for n in sim.joined] == [0, 1, 3, 4, 5]
    sim.crash(nodes[3], keep_disk=True)
    sim.power_on(nodes[1])  # a restart joins again from scratch
    assert [n.index for n in sim.joined] == [0, 4, 5]
    assert all(n.joined == (n in sim.joined) for n in nodes)
