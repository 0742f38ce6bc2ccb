"""The optional S/Kademlia static puzzle: SHA-256(node id) must have d leading zero bits.

Tier 1 (pure and simnet in virtual time) plus the CLI through CliRunner. d stays
at 8 or less so that grinding a key takes milliseconds.
"""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import pytest
import trio
from cli.main import app
from typer.testing import CliRunner

from chorusdht import ConfigError, Identity, NodeConfig, open_node, puzzle_ok, sha256
from chorusdht.core import NodeCore
from chorusdht.lookup import Lookup
from chorusdht.results import PingResult
from chorusdht.store import MemoryStore

from .simnet import Net

pytestmark = pytest.mark.timeout(60)

BITS = 8


def ground(seed: int, bits: int, *, meets: bool = True) -> Identity:
    """A deterministic identity whose id meets (or, with meets=False, fails) the puzzle."""
    for i in itertools.count():
        ident = Identity.from_seed(sha256(b"puzzle", seed.to_bytes(8, "big"), i.to_bytes(8, "big")))
        if puzzle_ok(ident.node_id, bits) == meets:
            return ident
    raise AssertionError("unreachable")


def place(net: Net, ident: Identity, config: NodeConfig) -> NodeCore:
    addr = ("127.0.0.1", 20000 + len(net.cores))
    core = NodeCore(
        ident, MemoryStore(), rng=random.Random(len(net.cores)), now=net.now, config=config
    )
    return net.place(addr, core)


# ---- the puzzle itself -------------------------------------------------------------------


def test_the_puzzle_counts_leading_zero_bits_of_the_ids_hash() -> None:
    ident = ground(1, BITS)
    digest = sha256(ident.node_id)
    assert digest[0] == 0  # 8 leading zero bits
    assert puzzle_ok(ident.node_id, BITS) and puzzle_ok(ident.node_id, 0)
    zeros = 256 - int.from_bytes(digest, "big").bit_length()
    assert puzzle_ok(ident.node_id, zeros) and not puzzle_ok(ident.node_id, zeros + 1)
    assert not puzzle_ok(ground(2, BITS, meets=False).node_id, BITS)


@pytest.mark.parametrize("bits", [0, 1, 4, 8])
def test_grinding_yields_conforming_ids(bits: int) -> None:
    for _ in range(3):
        ident = Identity.generate(puzzle_bits=bits)
        assert puzzle_ok(ident.node_id, bits)
        assert ident.node_id == sha256(ident.public_key)  # still an ordinary identity


def test_the_config_bounds_the_difficulty() -> None:
    assert NodeConfig().id_puzzle_bits == 0
    with pytest.raises(ConfigError, match="id_puzzle_bits"):
        NodeConfig(id_puzzle_bits=-1)
    with pytest.raises(ConfigError, match="id_puzzle_bits"):
        NodeConfig(id_puzzle_bits=33)


# ---- admission (virtual time) ------------------------------------------------------------


def _ping(net: Net, core: NodeCore, other: NodeCore) -> None:
    res = net.wait(core, core.ping(net.addr(other), net.now))
    assert isinstance(res, PingResult), res


def test_with_d8_a_non_conforming_node_is_not_admitted_but_a_conforming_one_is() -> None:
    net = Net()
    strict = NodeConfig(id_puzzle_bits=BITS)
    a = place(net, ground(10, BITS), strict)
    good = place(net, ground(11, BITS), strict)
    bad = place(net, ground(12, BITS, meets=False), NodeConfig())  # it cannot run strict
    _ping(net, a, good)
    _ping(net, a, bad)  # it answers the challenge with a valid proof...
    assert good.node_id in a.table
    assert bad.node_id not in a.table  # ...but its id fails the puzzle
    assert a.stats["puzzle_rejected"] == 1
    # Requests from the bad node are answered, but never lead to a challenge or a slot.
    _ping(net, bad, a)
    net.run_for(5.0)
    assert bad.node_id not in a.table and a.node_id in bad.table
    # Two conforming nodes join each other through the ordinary bootstrap.
    c = place(net, ground(13, BITS), strict)
    net.wait(c, c.bootstrap([net.addr(a)], net.now))
    net.run_for(5.0)
    assert a.node_id in c.table and c.node_id in a.table
    assert bad.node_id not in c.table


def test_the_default_d0_admits_any_proven_id() -> None:
    net = Net()
    a = place(net, ground(20, BITS), NodeConfig())
    bad = place(net, ground(21, BITS, meets=False), NodeConfig())
    _ping(net, a, bad)
    assert bad.node_id in a.table
    assert a.stats["puzzle_rejected"] == 0


def test_lookups_never_query_an_id_that_fails_the_puzzle() -> None:
    good, bad = ground(30, BITS), ground(31, BITS, meets=False)
    seeds = [(bad.node_id, ("10.0.0.1", 1)), (good.node_id, ("10.0.0.2", 1))]
    strict = Lookup(b"\x00" * 32, seeds, own_id=b"\xff" * 32, k=4, alpha=3, settle=1, puzzle_bits=8)
    assert [c.node_id for c in strict.next_queries()] == [good.node_id]
    strict.on_reply(good.node_id, [(ground(32, BITS, meets=False).node_id, ("10.0.0.3", 1))], False)
    assert strict.next_queries() == []  # the reply's non-conforming contact is ignored
    loose = Lookup(b"\x00" * 32, seeds, own_id=b"\xff" * 32, k=4, alpha=3, settle=1)
    assert len(loose.next_queries()) == 2


# ---- the node's own identity ----------------------------------------------------------------


async def test_a_node_whose_own_id_fails_the_puzzle_does_not_start() -> None:
    with trio.fail_after(10):
        strict = NodeConfig(id_puzzle_bits=BITS)
        with pytest.raises(ConfigError, match="id puzzle of 8 bits"):
            async with open_node(identity=ground(40, BITS, meets=False), config=strict):
                pass
        async with open_node(config=strict) as node:  # a fresh key is ground to fit
            assert puzzle_ok(node.node_id, BITS)


runner = CliRunner()


def test_cli_init_grinds_and_join_refuses_a_key_that_does_not_fit(tmp_path: Path) -> None:
    d = tmp_path / "n1"
    res = runner.invoke(app, ["init", "-d", str(d), "--puzzle-bits", str(BITS)])
    assert res.exit_code == 0, res.output
    ident = Identity.load(d / "node.key")
    assert puzzle_ok(ident.node_id, BITS)
    assert ident.node_id.hex() in res.stdout

    plain = tmp_path / "n2"
    ground(50, 16, meets=False).save(plain / "node.key")
    res = runner.invoke(app, ["init", "-d", str(plain), "--puzzle-bits", "16"])
    assert res.exit_code == 1 and "does not meet a 16-bit id puzzle" in res.stderr
    res = runner.invoke(
        app, ["join", "-d", str(plain), "--listen", "127.0.0.1:0", "--puzzle-bits", "16"]
    )
    assert res.exit_code == 1, res.output
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    assert "does not meet the id puzzle of 16 bits" in lines[0]
    res = runner.invoke(app, ["join", "-d", str(plain), "--puzzle-bits", "40"])
    assert res.exit_code == 2 and "Traceback" not in res.stderr


@pytest.mark.parametrize("content", [b"", b"\x9e\xff\x00" * 30, b"chorusdht-ed25519-v1\nzz\n"])
def test_a_corrupt_key_file_is_one_config_error(tmp_path: Path, content: bytes) -> None:
    """Binary garbage once escaped as a UnicodeDecodeError traceback from `init`/`join`."""
    path = tmp_path / "node.key"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match="corrupt key file"):
        Identity.load(path)
