"""CliRunner tests: parsing, help, the data-dir rule and one-line errors (no node needed),
plus the control protocol of an in-process daemon."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
import trio
import typer
from cli import main as cli_main
from cli.client import NodeReplyError, call
from cli.main import app
from typer.testing import CliRunner

import chorusdht
from chorusdht import LocalError, NodeConfig, control_path, open_node, parse_memory_line, run_daemon
from chorusdht.daemon import Daemon, save_followed

from .test_mesh_udp import FillingStore

pytestmark = pytest.mark.timeout(30)

runner = CliRunner()

COMMANDS = [
    ["init"],
    ["join"],
    ["status"],
    ["mesh"],
    ["mesh", "create"],
    ["mesh", "admit"],
    ["mesh", "show"],
    ["mesh", "follow"],
    ["append"],
    ["log"],
    ["phase"],
    ["get"],
    ["import"],
    ["recover"],
    ["sim"],
]


def one_error_line(result: object) -> str:
    """The single stderr line a failed command printed (never a traceback)."""
    stderr: str = result.stderr  # type: ignore[attr-defined]
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"chorusdht {chorusdht.__version__}"


@pytest.mark.parametrize("cmd", COMMANDS, ids=" ".join)
def test_every_command_has_help_with_an_example(cmd: list[str]) -> None:
    result = runner.invoke(app, [*cmd, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "Example: chorusdht" in result.stdout or "Commands" in result.stdout


def test_init_creates_a_private_key_and_is_idempotent(tmp_path: Path) -> None:
    result = runner.invoke(app, ["init", "--data-dir", str(tmp_path / "n")])
    assert result.exit_code == 0
    key = tmp_path / "n" / chorusdht.KEY_FILE
    assert key.stat().st_mode & 0o777 == 0o600
    again = runner.invoke(app, ["init", "--data-dir", str(tmp_path / "n")])
    assert "already initialised" in again.stdout
    assert result.stdout.splitlines()[-1] == again.stdout.splitlines()[-1]  # same public key


def test_data_dir_comes_from_chorusdht_home(tmp_path: Path) -> None:
    result = runner.invoke(app, ["status"], env={"CHORUSDHT_HOME": str(tmp_path / "home")})
    assert result.exit_code == 1
    assert f"no node running in {tmp_path / 'home'}" in one_error_line(result)


@pytest.mark.parametrize(
    "args, message",
    [
        (["join", "--listen", "localhost:port"], "bad address 'localhost:port'"),
        (["join", "--bootstrap", "1.2.3.4:99999"], "port must be 0-65535"),
        (["join", "--mesh", "xyz"], "bad mesh id 'xyz'"),
        (["mesh", "admit", "abcd"], "bad public key 'abcd'"),
        (["get", "nothex"], "bad hash 'nothex'"),
        (["recover", "--mesh", "12", "--bootstrap", "127.0.0.1:1"], "bad mesh id '12'"),
        (
            ["recover", "--mesh", "ab" * 32, "--bootstrap", "127.0.0.1:1", "--patience", "-1"],
            "--patience must be at least 0",
        ),
    ],
)
def test_bad_input_is_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    result = runner.invoke(
        app, [*args, "--data-dir", str(tmp_path)] if args[0] != "recover" else args
    )
    assert result.exit_code == 2  # a bad argument is a usage error
    assert message in one_error_line(result)


def test_recover_refuses_an_unwritable_out_before_crawling(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    args = ["recover", "--mesh", "ab" * 32, "--bootstrap", "127.0.0.1:1", "--out", str(blocker)]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert f"cannot write to {blocker}: " in one_error_line(result)


def test_join_without_a_key(tmp_path: Path) -> None:
    result = runner.invoke(app, ["join", "--data-dir", str(tmp_path / "empty")])
    assert result.exit_code == 1
    assert "no key in" in one_error_line(result)


def test_join_with_a_corrupt_key(tmp_path: Path) -> None:
    (tmp_path / chorusdht.KEY_FILE).write_text("not a key\n")
    result = runner.invoke(app, ["join", "--data-dir", str(tmp_path), "--listen", "127.0.0.1:0"])
    assert result.exit_code == 1
    assert "corrupt key file" in one_error_line(result)


def test_commands_need_a_running_node(tmp_path: Path) -> None:
    for args in (["append", "x"], ["log"], ["phase"], ["mesh", "show"], ["get", "00" * 32]):
        result = runner.invoke(app, [*args, "--data-dir", str(tmp_path)])
        assert result.exit_code == 1
        line = one_error_line(result)
        assert "no node running in" in line and "chorusdht join" in line


def test_import_names_the_bad_line_before_importing_anything(tmp_path: Path) -> None:
    f = tmp_path / "memory.jsonl"
    f.write_text('{"payload": "a"}\n\n{"payload": "b"}\n{broken\n')
    result = runner.invoke(app, ["import", str(f), "--data-dir", str(tmp_path)])
    assert result.exit_code == 1
    line = one_error_line(result)
    assert "line 4: not JSON" in line and "nothing was imported" in line


def test_import_rejects_binary_garbage(tmp_path: Path) -> None:
    f = tmp_path / "memory.jsonl"
    f.write_bytes(b'{"payload": "a"}\n\xff\xfe\x00\n')
    result = runner.invoke(app, ["import", str(f), "--data-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "line 2: not UTF-8" in one_error_line(result)


def test_parse_memory_line() -> None:
    assert parse_memory_line(b'{"payload": "hi"}', 1) == b"hi"
    assert parse_memory_line(b'{"payload": "aGk=", "payload_encoding": "base64"}', 1) == b"hi"
    assert parse_memory_line(b'{"note": 1}', 1) == b'{"note": 1}'
    assert parse_memory_line(b"   ", 1) is None
    with pytest.raises(LocalError, match="line 7: `payload` is not a string"):
        parse_memory_line(b'{"payload": 3}', 7)


def test_save_followed_writes_only_a_change_and_keeps_the_file_private(tmp_path: Path) -> None:
    """An unchanged meshes.json is not rewritten (a node restarts on a full disk), unless
    others may read it (an older version wrote it 0644)."""
    mesh, key = b"\x01" * 32, b"\x02" * 32
    save_followed(tmp_path, {mesh: True}, {mesh: key})
    path = tmp_path / chorusdht.MESHES_FILE
    assert path.stat().st_mode & 0o777 == 0o600
    written = path.stat().st_mtime_ns, path.stat().st_ino
    save_followed(tmp_path, {mesh: True}, {mesh: key})
    assert (path.stat().st_mtime_ns, path.stat().st_ino) == written
    path.chmod(0o644)
    save_followed(tmp_path, {mesh: True}, {mesh: key})
    assert path.stat().st_mode & 0o777 == 0o600
    assert json.loads(path.read_text())["meshes"] == [
        {"id": mesh.hex(), "pin": True, "key": key.hex()}
    ]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_control_protocol_in_process(tmp_path: Path) -> None:
    """The daemon's control socket, driven by the CLI's client from a worker thread."""
    d = tmp_path / "n"
    assert runner.invoke(app, ["init", "--data-dir", str(d)]).exit_code == 0

    async def ask(cmd: str, **args: object) -> dict[str, object]:
        return await trio.to_thread.run_sync(lambda: call(d, cmd, **args))

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            await nursery.start(run_daemon, d, ("127.0.0.1", _free_port()), [])
            assert (d / chorusdht.CONTROL_SOCKET).stat().st_mode & 0o777 == 0o600
            with pytest.raises(NodeReplyError, match="follows no mesh"):
                await ask("append", text="x")
            created = await ask("mesh_create", name="t")
            first = await ask("append", text="one")
            await ask("append", text="two", wait="replicated")
            log = await ask("log")
            rows = log["rows"]
            assert isinstance(rows, list) and [r["payload"] for r in rows] == ["one", "two"]
            got = await ask("get", hash=first["hash"])
            assert got["payload"] == "one" and got["kind"] == "chunk"
            with pytest.raises(NodeReplyError) as too_large:
                await ask("append", text="x" * 20_000)
            assert too_large.value.code == "TOO_LARGE"
            with pytest.raises(NodeReplyError) as bad_import:
                await ask("import", lines=['{"payload": "ok"}', "x" * 20_000], first=10)
            assert bad_import.value.reply["line"] == 11 and bad_import.value.reply["imported"] == 1
            # A prefix of no followed mesh (ids are random: "ff" matched 1 run in 256).
            other = "0" if str(created["id"]).startswith("f") else "f"
            with pytest.raises(NodeReplyError, match=f"unknown mesh {other}f"):
                await ask("phase", mesh=other + "f")
            with pytest.raises(NodeReplyError, match="unknown control command"):
                await ask("reboot")
            status = await ask("status")
            assert status["pinned"] == [created["id"]]
            followed = json.loads((d / chorusdht.MESHES_FILE).read_text())
            assert followed["meshes"][0]["id"] == created["id"]
            nursery.cancel_scope.cancel()
    assert not (d / chorusdht.CONTROL_SOCKET).exists()


async def test_control_flags_must_be_json_booleans(tmp_path: Path) -> None:
    """The node read any value as a flag: `"encrypt": "no"` founded an encrypted mesh."""
    d = tmp_path / "n"
    assert runner.invoke(app, ["init", "--data-dir", str(d)]).exit_code == 0

    async def refused(cmd: str, **args: object) -> str:
        with pytest.raises(NodeReplyError) as e:
            await trio.to_thread.run_sync(lambda: call(d, cmd, **args))
        assert e.value.code == "LocalError"
        return str(e.value)

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            await nursery.start(run_daemon, d, ("127.0.0.1", _free_port()), [])
            for value in ("no", 0, 1, None, []):
                line = await refused("mesh_create", name="t", encrypt=value)
                assert line == "bad request: `encrypt` must be true or false"
            assert not (d / chorusdht.MESHES_FILE).exists()  # no mesh was founded
            created = await trio.to_thread.run_sync(lambda: call(d, "mesh_create", name="t"))
            assert created["encrypted"] is False
            line = await refused("mesh_show", key="no")
            assert line == "bad request: `key` must be true or false"
            line = await refused("follow", mesh=created["id"], pin="no")
            assert line == "bad request: `pin` must be true or false"
            line = await refused("import", lines=['{"payload": "x"}'], first=True)
            assert line.startswith("bad request: ")
            nursery.cancel_scope.cancel()


async def test_mesh_admit_on_a_full_disk_is_one_line_and_admits_no_one(tmp_path: Path) -> None:
    """`mesh admit` counted the member before the store refused its certificate."""
    store = FillingStore()
    newcomer = "ab" * 32
    with trio.fail_after(20):
        async with open_node(store=store, config=NodeConfig(require_membership=True)) as node:
            daemon = Daemon(node, tmp_path, sync_interval=5.0)
            await node.start(daemon.serve_control, control_path(tmp_path))
            await daemon.answer(b'{"cmd": "mesh_create", "name": "t"}')
            store.room = 0
            args = ["mesh", "admit", newcomer, "--data-dir", str(tmp_path)]
            result = await trio.to_thread.run_sync(lambda: runner.invoke(app, args))
            assert result.exit_code == 1
            assert one_error_line(result) == "error: store write failed: database or disk is full"
            shown = await daemon.answer(b'{"cmd": "mesh_show"}')
            assert shown["members"] == [node.core.identity.public_key.hex()]
            store.room = None
            result = await trio.to_thread.run_sync(lambda: runner.invoke(app, args))
            assert result.exit_code == 0, result.output
            assert newcomer in (await daemon.answer(b'{"cmd": "mesh_show"}'))["members"]


def test_abort_outside_typer_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """typer.Abort (EOF at a prompt) reaches `run` in non-standalone mode: one line, exit 1,
    not a typer.Exit raised where nothing catches it."""

    def abort(**_: object) -> None:
        raise typer.Abort()

    monkeypatch.setattr(cli_main, "app", abort)
    with pytest.raises(SystemExit) as exit_:
        cli_main.run()
    assert exit_.value.code == 1
    assert capsys.readouterr().err.strip() == "error: aborted"
