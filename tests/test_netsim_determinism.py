"""netsim determinism: the same scenario and seed give a byte-identical metrics.json,
in this process, in a rerun, and under a different PYTHONHASHSEED."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from cli.sim import sim
from netsim import run_scenario
from typer.testing import CliRunner

SCENARIO = "hetero"  # three classes, puts, gets, lookups and real Ed25519: most code paths
NODES = 30


@pytest.mark.timeout(60)
def test_same_seed_same_metrics_bytes(tmp_path: Path) -> None:
    run_scenario(SCENARIO, seed=7, nodes=NODES, out=tmp_path / "a")
    run_scenario(SCENARIO, seed=7, nodes=NODES, out=tmp_path / "b")
    a = (tmp_path / "a" / "metrics.json").read_bytes()
    assert a == (tmp_path / "b" / "metrics.json").read_bytes()
    for png in ("replicas.png", "lookup_latency_cdf.png", "recovered.png"):
        assert (tmp_path / "a" / png).stat().st_size > 0
    run_scenario(SCENARIO, seed=8, nodes=NODES, out=tmp_path / "c")
    assert a != (tmp_path / "c" / "metrics.json").read_bytes()


@pytest.mark.timeout(60)
def test_hash_seed_does_not_leak_into_behaviour(tmp_path: Path) -> None:
    code = (
        "import sys; from pathlib import Path; from netsim import run_scenario; "
        f"run_scenario({SCENARIO!r}, seed=3, nodes={NODES}, out=Path(sys.argv[1]))"
    )
    outputs = []
    for hash_seed in ("1", "12345"):
        out = tmp_path / hash_seed
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        subprocess.run([sys.executable, "-c", code, str(out)], env=env, check=True, timeout=50)
        outputs.append((out / "metrics.json").read_bytes())
    assert outputs[0] == outputs[1]


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command()(sim)

    @app.command()
    def version() -> None:  # a second command, so `sim` is a subcommand as in cli/main.py
        pass

    return app


@pytest.mark.timeout(60)
def test_cli_bad_scenario_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(_app(), ["sim", "no-such-scenario"])
    assert result.exit_code == 2
    assert "unknown scenario 'no-such-scenario'" in result.output
    assert "Traceback" not in result.output
    result = CliRunner().invoke(_app(), ["sim", "/nonexistent/x.toml"])
    assert result.exit_code == 2
    typo = tmp_path / "typo.toml"  # `fracton`: once silently the default fraction
    typo.write_text(
        'duration = 60\n[[events]]\nkind = "join"\n[[events]]\nkind = "nuke"\nfracton = 0.9\n'
    )
    result = CliRunner().invoke(_app(), ["sim", str(typo)])
    assert result.exit_code == 2, result.output
    assert result.output == (
        f"error: scenario {typo}: event 2 (nuke): unknown field 'fracton'"
        " (known: at, fraction, class)\n"
    )
    crowded = tmp_path / "crowded.toml"  # a recover scenario: checked before its bar too
    crowded.write_text('engine = "recover"\nnodes = 50\nauthors = 9\n')
    result = CliRunner().invoke(_app(), ["sim", str(crowded), "--nodes", "5"])
    assert result.exit_code == 2, result.output
    assert result.output == "error: need 1 <= authors <= pinners <= nodes\n"
    binary = tmp_path / "binary.toml"  # not UTF-8: once a UnicodeDecodeError traceback
    binary.write_bytes(bytes(range(128, 256)) * 4)
    result = CliRunner().invoke(_app(), ["sim", str(binary)])
    assert result.exit_code == 2, result.output
    assert result.output == f"error: scenario {binary} is not a text file (TOML is UTF-8)\n"
    result = CliRunner().invoke(_app(), ["sim", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert result.output == f"error: {tmp_path} is a directory, not a scenario file\n"
    tables = tmp_path / "tables.toml"  # the message's [[events]] is text, not rich markup
    tables.write_text("duration = 60\nevents = 5\n")
    result = CliRunner().invoke(_app(), ["sim", str(tables)])
    assert result.exit_code == 2, result.output
    assert "events must be [[events]] tables" in result.output


@pytest.mark.timeout(60)
def test_cli_unwritable_out_is_one_line_and_exit_2_before_the_run(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    for out in (blocker, blocker / "sub"):
        result = CliRunner().invoke(_app(), ["sim", SCENARIO, "--nodes", "20", "--out", str(out)])
        assert result.exit_code == 2, result.output
        assert result.output.startswith(f"error: cannot write to {out}: "), result.output
        assert "Traceback" not in result.output
        assert "lookup success" not in result.output  # refused before simulating


@pytest.mark.timeout(60)
def test_cli_runs_a_scenario_and_writes_outputs(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        _app(), ["sim", SCENARIO, "--nodes", "20", "--seed", "2", "--out", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    assert "lookup success" in result.output
    assert (tmp_path / "metrics.json").is_file()


@pytest.mark.timeout(60)
def test_cli_summary_of_a_one_node_network(tmp_path: Path) -> None:
    # Alone, a node's lookups all fail: no hop or latency percentiles to show.
    result = CliRunner().invoke(
        _app(), ["sim", "lookup-10k", "--nodes", "1", "--out", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    assert "datacenter lookups failed" in result.output and "100.00%" in result.output
    assert "— / —" in result.output
    assert (tmp_path / "lookup_latency_cdf.png").is_file()
