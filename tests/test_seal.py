"""Encrypted meshes: payloads sealed with a mesh key (seal.py).

Tier 1: the envelope (round trip, tampering, wrong AAD, wrong key, key files).
Tier 3: an encrypted mesh on real UDP nodes: non-member replicas hold no
plaintext byte, a member reads plaintext, recovery with the key writes plaintext
and without it proves the same root; then the same through the `chorusdht`
executable.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import time
from pathlib import Path

import pytest
import trio

from chorusdht import (
    STORE_FILE,
    ConfigError,
    LocalError,
    NodeConfig,
    SealError,
    is_sealed,
    new_mesh_key,
    open_node,
    parse_mesh_key,
    read_key_file,
    recover,
    seal,
    unseal,
    write_key_file,
    write_outputs,
)
from chorusdht.mesh import Mesh
from chorusdht.seal import MAGIC, SEAL_OVERHEAD

from .conftest import udp_swarm
from .test_cli_process import NodeProc, cli, fails, free_port, ok

pytestmark = pytest.mark.timeout(120)

MESH, AUTHOR = b"\x11" * 32, b"\x22" * 32


# ---- tier 1: the envelope ------------------------------------------------------------------


def test_seal_and_unseal_round_trip() -> None:
    key = new_mesh_key()
    for text in (b"", b"x", b"the deploy key rotated" * 100):
        sealed = seal(key, MESH, AUTHOR, 7, text)
        assert is_sealed(sealed) and sealed.startswith(MAGIC)
        assert len(sealed) == len(text) + SEAL_OVERHEAD
        assert len(text) < 8 or text not in sealed  # a long plaintext never shows through
        assert unseal(key, MESH, AUTHOR, 7, sealed) == text
    # a fresh nonce each time: the same entry never seals to the same bytes
    assert seal(key, MESH, AUTHOR, 1, b"same") != seal(key, MESH, AUTHOR, 1, b"same")


def test_tampered_ciphertext_wrong_aad_and_wrong_key_are_rejected() -> None:
    key = new_mesh_key()
    sealed = seal(key, MESH, AUTHOR, 3, b"secret")
    for i in (len(MAGIC), len(MAGIC) + 12, len(sealed) - 1):  # nonce, ciphertext, tag
        bent = bytearray(sealed)
        bent[i] ^= 1
        with pytest.raises(SealError):
            unseal(key, MESH, AUTHOR, 3, bytes(bent))
    with pytest.raises(SealError):
        unseal(key, MESH, AUTHOR, 3, sealed[:-1])  # truncated
    # The AAD binds mesh, author and seq: replayed into another chunk it does not open.
    for mesh, author, seq in (
        (b"\x12" * 32, AUTHOR, 3),
        (MESH, b"\x23" * 32, 3),
        (MESH, AUTHOR, 4),
    ):
        with pytest.raises(SealError):
            unseal(key, mesh, author, seq, sealed)
    with pytest.raises(SealError):
        unseal(new_mesh_key(), MESH, AUTHOR, 3, sealed)
    with pytest.raises(SealError, match="not a sealed payload"):
        unseal(key, MESH, AUTHOR, 3, b"plain text")
    with pytest.raises(ConfigError, match="32 bytes"):
        seal(key[:16], MESH, AUTHOR, 3, b"x")


def test_mesh_keys_parse_and_key_files_are_private(tmp_path: Path) -> None:
    key = new_mesh_key()
    assert parse_mesh_key(key.hex()) == key and parse_mesh_key(f"  {key.hex()}\n") == key
    for bad in ("zz" * 32, "ab" * 31, "ab" * 33, ""):
        with pytest.raises(ConfigError, match="bad mesh key"):
            parse_mesh_key(bad)
    path = tmp_path / "team.key"
    write_key_file(path, key)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_key_file(path) == key
    path.write_text("not a key\n")
    with pytest.raises(ConfigError, match=r"team\.key: bad mesh key"):
        read_key_file(path)
    with pytest.raises(ConfigError, match="no mesh key file"):
        read_key_file(tmp_path / "missing.key")


# ---- tier 3: an encrypted mesh on real UDP nodes ----------------------------------------------


def _held_bytes(node_store: object) -> bytes:
    store = node_store
    return b"".join(store.get(k) or b"" for k in store.keys())  # type: ignore[attr-defined]


@pytest.mark.integration
async def test_non_members_hold_ciphertext_members_read_plaintext_recovery_decrypts(
    tmp_path: Path,
) -> None:
    config = NodeConfig(k=4, require_membership=True)
    texts = [f"secret plan number {i:03d}".encode() for i in range(6)]
    with trio.fail_after(90):
        async with udp_swarm(6, config, seed=7) as swarm:
            nodes = [r.node for r in swarm]
            founder = await Mesh.create(nodes[0], "vault", encrypt=True)
            key = founder.key
            assert key is not None and founder.encrypted
            await founder.admit(nodes[1].core.identity.public_key)
            member = await Mesh.join(nodes[1], founder.id, key=key)
            outsider = await Mesh.join(nodes[2], founder.id)  # pins, without the key
            for i, text in enumerate(texts):
                author = founder if i % 2 == 0 else member
                await author.append(text, wait="replicated")
            for m in (founder, member, outsider):
                while m.pending_replication:
                    await trio.sleep(0.05)
            for _ in range(3):
                for m in (founder, member, outsider):
                    await m.sync()

            # Every node stores ciphertext only; non-members hold the chunks all the same.
            for node in nodes:
                held = _held_bytes(node.core.store)
                assert not any(t in held for t in texts), node.node_id.hex()[:8]
                assert b"secret plan" not in held
            assert len(outsider.timeline()) == len(texts)

            # Members read plaintext, in the same order on both; the outsider cannot.
            want = sorted(texts)
            assert sorted(founder.payload(c) or b"" for c in founder.timeline()) == want
            assert [member.payload(c) for c in member.timeline()] == [
                founder.payload(c) for c in founder.timeline()
            ]
            assert all(outsider.payload(c) is None for c in outsider.timeline())
            assert outsider.sealed_count() == len(texts) and member.sealed_count() == 0
            # The root is over chunk hashes, hence over ciphertext: the same for everyone.
            assert founder.phase().root == member.phase().root == outsider.phase().root

            # Appending without the key is refused; a wrong key is refused too.
            cert = await founder.admit(nodes[2].core.identity.public_key)
            outsider.view.add_cert(cert)  # a member now, as its next roster fetch would say
            with pytest.raises(LocalError, match="encrypted and this node has no key"):
                await outsider.append(b"in the clear")
            with pytest.raises(ConfigError, match="wrong mesh key"):
                outsider.set_key(new_mesh_key())
            with pytest.raises(ConfigError, match="32 bytes"):
                outsider.set_key(b"short")
            assert outsider.key is None
            outsider.set_key(key)  # the right key opens what it already holds
            assert outsider.sealed_count() == 0

            # Recovery from the survivors: with the key plaintext, without it the same root.
            client = NodeConfig(k=4, read_only=True)
            seeds = [nodes[3].address]
            async with open_node(config=client) as rec:
                with_key = await recover(rec, founder.id, bootstrap=seeds, mesh_key=key, workers=0)
            async with open_node(config=client) as rec:
                without = await recover(rec, founder.id, bootstrap=seeds, workers=0)
            root = founder.phase().root
            assert with_key.root == without.root == root
            assert with_key.complete and without.complete
            assert with_key.sealed == 0 and without.sealed == len(texts)
            memory, phase = write_outputs(with_key, tmp_path / "with")
            rows = [json.loads(line) for line in memory.read_text().splitlines()]
            assert sorted(r["payload"].encode() for r in rows) == want
            assert not any(r.get("sealed") for r in rows)
            assert json.loads(phase.read_text())["sealed"] == 0
            memory, phase = write_outputs(without, tmp_path / "without")
            rows = [json.loads(line) for line in memory.read_text().splitlines()]
            assert all(r["sealed"] and r["payload_encoding"] == "base64" for r in rows)
            assert b"secret plan" not in memory.read_bytes()
            assert json.loads(phase.read_text())["sealed"] == len(texts)


@pytest.mark.integration
async def test_a_plain_mesh_takes_no_key() -> None:
    with trio.fail_after(30):
        async with udp_swarm(2, NodeConfig(k=2), seed=8) as swarm:
            plain = await Mesh.create(swarm[0].node, "open")
            await plain.append(b"hello")
            assert not plain.encrypted and plain.payload(plain.timeline()[0]) == b"hello"
            with pytest.raises(ConfigError, match="not encrypted"):
                plain.set_key(new_mesh_key())


# ---- tier 3: the `chorusdht` executable ----------------------------------------------------


def _wait_rows(data_dir: Path, n: int, timeout: float = 30.0) -> list[dict[str, object]]:
    """The node's timeline as `log --json` rows, once it holds `n` entries."""
    deadline = time.monotonic() + timeout
    while True:
        rows = [json.loads(x) for x in ok("log", "--json", "-d", str(data_dir)).splitlines()]
        if len(rows) >= n or time.monotonic() > deadline:
            assert len(rows) == n, (data_dir, rows)
            return rows
        time.sleep(0.2)


@pytest.mark.integration
def test_cli_encrypted_mesh_create_follow_append_log_recover(tmp_path: Path) -> None:
    n1, n2, n3 = (tmp_path / n for n in ("n1", "n2", "n3"))
    for d in (n1, n2, n3):
        ok("init", "-d", str(d))
    port = free_port()
    procs = [NodeProc(n1, port, "--sync-interval", "1")]
    try:
        procs[0].wait_for("ready", 40)
        for d in (n2, n3):
            procs.append(
                NodeProc(d, free_port(), "--bootstrap", f"127.0.0.1:{port}", "--sync-interval", "1")
            )
            procs[-1].wait_for("ready", 40)
        key_file = tmp_path / "team.key"
        created = cli(
            "mesh", "create", "vault", "--encrypt", "--key-file", str(key_file), "-d", str(n1)
        )
        assert created.returncode == 0, created.stderr
        mesh = created.stdout.splitlines()[-1]
        key_line = next(
            line for line in created.stdout.splitlines() if line.startswith("mesh key: ")
        )
        assert read_key_file(key_file).hex() == key_line.removeprefix("mesh key: ")
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        assert stat.S_IMODE((n1 / "meshes.json").stat().st_mode) == 0o600

        pub2 = json.loads(ok("status", "-d", str(n2), "--json"))["public_key"]
        ok("mesh", "admit", pub2, "-d", str(n1))
        ok("append", "written by the founder", "-d", str(n1))
        # bad keys: one line each, no traceback
        bad = ("mesh", "follow", mesh, "--mesh-key", "abc", "-d", str(n2))
        assert "bad mesh key" in fails(*bad, code=2)  # a bad argument: a usage error
        ok("mesh", "follow", mesh, "-d", str(n2))  # first without the key: the entry is sealed
        _wait_rows(n2, 1)
        assert "wrong mesh key" in fails(  # exit 2, as `recover --mesh-key WRONG`
            "mesh", "follow", mesh, "--mesh-key", new_mesh_key().hex(), "-d", str(n2), code=2
        )
        ok("mesh", "follow", mesh, "--key-file", str(key_file), "-d", str(n2))
        ok("append", "written by the member", "-d", str(n2))
        ok("mesh", "follow", mesh, "-d", str(n3))  # no key: it pins ciphertext

        want = {"written by the founder", "written by the member"}
        for d in (n1, n2, n3):
            rows = _wait_rows(d, 2)
            if d == n3:
                assert all(r["sealed"] for r in rows)
            else:
                assert {r["payload"] for r in rows} == want
        text = cli("log", "-d", str(n3))
        assert text.stdout.count("<sealed>") == 2 and "2 entries are sealed" in text.stderr
        pub3 = json.loads(ok("status", "-d", str(n3), "--json"))["public_key"]
        ok("mesh", "admit", pub3, "-d", str(n1))  # a member, but without the key
        assert "has no key" in fails("append", "leak", "-d", str(n3))
        shown = json.loads(ok("mesh", "show", "--key", "--json", "-d", str(n2)))
        assert shown["key"] == read_key_file(key_file).hex() and shown["encrypted"]
        held = b"".join(f.read_bytes() for f in n3.glob(STORE_FILE + "*"))
        assert held and not any(w.encode() in held for w in want)

        # recovery with the key file writes plaintext
        out = tmp_path / "rec"
        res = cli(
            "recover", "--mesh", mesh, "--bootstrap", f"127.0.0.1:{port}", "--out", str(out),
            "--key-file", str(key_file), "--listen", "127.0.0.1:0", "--json", "--timeout", "60",
        )  # fmt: skip
        assert res.returncode == 0, res.stderr
        assert json.loads(res.stdout)["sealed"] == 0
        rows = [json.loads(x) for x in (out / "memory.jsonl").read_text().splitlines()]
        assert {r["payload"] for r in rows} == want
    finally:
        for p in procs:
            if p.proc.poll() is None:
                os.killpg(p.proc.pid, signal.SIGKILL)
                p.proc.wait(timeout=10)
