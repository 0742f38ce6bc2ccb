"""Tier 2: survivor recovery on netsim's trio network, in virtual time.

Scaled-down `nuke99-chorus` and `nuke-overlay-recover` (netsim.recoversim): real
`Node`s, `Mesh`es and Ed25519 on `SimNet` under `MockClock`, most nodes killed at
once, then `chorusdht.recover` (what `chorusdht recover` runs) from survivors.
Each test has a wall-clock deadline (`pytest.mark.timeout`) and a virtual one
(`run_spec`'s `virtual_limit`, a `trio.fail_after`). The full sizes run with
`python -m netsim.recoversim nuke99-chorus` (see the scenario files).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from cli.main import app
from netsim import recoversim
from netsim.recoversim import RecoverSpec, load_spec, overall, run_spec
from netsim.scenario import SCENARIO_DIR
from typer.testing import CliRunner

HOUR = 3600.0

SMALL_CHORUS = RecoverSpec(
    name="nuke-chorus-small",
    nodes=60,
    authors=4,
    hours=0.1,  # 6 virtual minutes of writing
    think=30.0,
    interval=30.0,
    kill=0.9,  # 6 survivors: recovery through each
)


def _assert_must_hold(m: dict[str, object]) -> None:
    must = m["must_hold"]
    assert isinstance(must, dict)
    assert all(must.values()), (must, m["recoveries"])


@pytest.mark.timeout(120)
def test_nuke_all_pinning_recovers_every_early_acked_entry_exactly() -> None:
    """Writes run right up to the kill; each survivor's recovery is exact for the acked past."""
    shown: list[float] = []
    m = run_spec(
        SMALL_CHORUS,
        1,
        virtual_limit=2 * HOUR,
        progress=lambda stage, done, total: shown.append(overall(stage, done, total)),
    )
    # One bar over the whole run: it once restarted at every stage, and a bar's
    # elapsed clock stops for good the first time it reaches the end.
    assert shown == sorted(shown) and shown[-1] == 1.0 and shown.count(1.0) == 1
    _assert_must_hold(m)
    assert m["survivors"] == 6 and len(m["recoveries"]) == 6
    assert m["acked_before_cutoff"] >= 4 * 8  # ~10 entries per author, minus the last minute
    assert m["closure_entries"] >= m["acked_before_cutoff"]
    assert m["distinct_recovered_roots"] == 1  # one answer, whichever survivor we start from
    for r in m["recoveries"]:
        assert r["entries"] >= m["closure_entries"] and r["dropped"] == {}


@pytest.mark.timeout(120)
def test_nuke_after_quiet_recovers_the_complete_pre_kill_root() -> None:
    """Writers stop 3 intervals before the kill: every recovery equals a complete member."""
    spec = replace(SMALL_CHORUS, quiet=90.0, recover_from=2)
    m = run_spec(spec, 2, virtual_limit=2 * HOUR)
    _assert_must_hold(m)
    assert m["acked"] == m["appended"] == m["all_entries"]
    assert m["members_complete_at_kill"] == 60  # sync had settled: every pinner agreed
    assert [r["root"] for r in m["recoveries"]] == [m["all_root"]] * 2
    assert all(r["dangling"] == 0 and r["missing"] == 0 for r in m["recoveries"])


@pytest.mark.timeout(180)
def test_overlay_recovery_finds_everything_that_survived_anywhere() -> None:
    """120 nodes, 4 pinning writers, k = 8, 90% killed: replicas are all that may be left.

    Every holder of a chunk also keeps the certificates that proved its author (the
    STORE's proof), so no surviving chunk becomes unverifiable when the copies of its
    author's certificate die (`survived_unprovable`, 8 of 34 before holders kept them)."""
    spec = RecoverSpec(
        name="overlay-small",
        nodes=120,
        pinners=4,
        authors=4,
        hours=0.1,
        think=30.0,
        kill=0.9,
        k=8,
        recover_from=2,
        must=("finds_survivors", "exact_prefix"),  # no pinner need survive: losses allowed
    )
    m = run_spec(spec, 3, virtual_limit=2 * HOUR)
    _assert_must_hold(m)
    assert m["survivors"] == 12 and m["surviving_pinners"] == 0  # seed 3: replicas only
    assert 0 < m["survived_anywhere"] <= m["all_entries"]
    assert m["survived_unprovable"] == 0
    for r in m["recoveries"]:
        assert r["chunks"] >= m["survived_anywhere"]
        assert r["nodes_reached"] >= 10  # the crawl found (nearly) every survivor


@pytest.mark.timeout(180)
def test_reseed_restores_copies_that_a_fresh_reader_finds_through_the_dht() -> None:
    """k = 8, one pinner kept alive among 8 survivors. Recovery through it, with reseed,
    republishes; then that pinner dies too, and a fresh reader `get`s every chunk from
    the 7 nodes left, through the DHT. (With k = 4 the survivors' routing tables no
    longer connect them: the crawl reaches only the pinner, and so does the reseed.)"""
    spec = RecoverSpec(
        name="reseed-small",
        nodes=80,
        pinners=3,
        authors=3,
        hours=0.1,
        think=30.0,
        kill=0.9,
        quiet=90.0,
        k=8,
        recover_from=1,
        spare_pinners=1,
        reseed=True,
    )
    m = run_spec(spec, 4, virtual_limit=2 * HOUR)
    _assert_must_hold(m)
    rs = m["reseed"]
    assert rs["chunks"] == m["all_entries"]  # the kept pinner had the whole mesh
    assert rs["reseed_failed"] == 0 and rs["reseeded"] >= rs["chunks"]
    assert rs["holders_min"] >= 3  # of the 7 left: k = 8 copies put, one on the dead pinner
    assert rs["dht_reads_after"] == rs["chunks"]
    assert rs["dht_reads_before"] < rs["chunks"]  # without reseed, the DHT had lost some


@pytest.mark.timeout(120)
def test_a_seed_reproduces_a_recover_run() -> None:
    spec = replace(SMALL_CHORUS, nodes=24, hours=0.05, recover_from=1)
    one = run_spec(spec, 5, virtual_limit=HOUR)
    two = run_spec(spec, 5, virtual_limit=HOUR)
    one.pop("wall")
    two.pop("wall")
    assert one == two


@pytest.mark.timeout(10)
def test_shipped_recover_scenarios_parse_and_say_what_they_answer() -> None:
    for name, nodes in (("nuke99-chorus", 1000), ("nuke-overlay-recover", 2000)):
        path = SCENARIO_DIR / f"{name}.toml"
        assert recoversim.is_recover_scenario(path)
        spec = load_spec(path)
        assert spec.nodes == nodes and "?" in spec.question and spec.question.endswith(".")
    chorus = load_spec(SCENARIO_DIR / "nuke99-chorus.toml")
    assert chorus.seeds == (1, 2, 3, 4, 5) and chorus.kill == 0.99 and chorus.authors == 20


@pytest.mark.timeout(120)
def test_chorusdht_sim_runs_a_recover_scenario(tmp_path: Path) -> None:
    path = tmp_path / "tiny.toml"
    path.write_text(
        "# Does a tiny mesh survive?\n"
        'engine = "recover"\nnodes = 20\nauthors = 2\nhours = 0.05\nthink = 30.0\n'
        "kill = 0.9\nrecover_from = 1\n"
    )
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["sim", str(path), "--seed", "3", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "covers_acked" in res.output
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["ok"] is True and set(doc["seeds"]) == {"3"}
    assert (out / "recovered.png").read_bytes().startswith(b"\x89PNG")  # README: --out plots
