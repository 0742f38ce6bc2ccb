"""The CLI audit's defects, one test each: a clear single `error:` line, the right
exit status (2 for a usage error), nothing half done, and terminals spared raw bytes.

The usage errors run in-process (CliRunner); the rest drive real `chorusdht`
processes on loopback, most of them against one founder node shared by the module.
"""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from cli.client import call
from cli.main import app
from typer.testing import CliRunner

from chorusdht import Identity, puzzle_ok

from .test_cli import one_error_line
from .test_cli_process import CHORUSDHT, NodeProc, cli, fails, free_port, ok

pytestmark = pytest.mark.timeout(90)

runner = CliRunner()
MESH = "ab" * 32
RECOVER = ["recover", "--mesh", MESH, "--bootstrap", "127.0.0.1:1"]
TERMINAL_ENV = os.environ | {"TERM": "xterm", "COLUMNS": "200"}


def on_terminal(args: list[str], stream: str, timeout: float = 30.0) -> tuple[bytes, bytes, int]:
    """Run `chorusdht ARGS` with `stream` ("stdout" or "stderr") on a pseudo-terminal and
    the other on a pipe; return (terminal bytes, pipe bytes, exit status)."""
    master, slave = pty.openpty()
    streams = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, stream: slave}
    proc = subprocess.Popen([CHORUSDHT, *args], env=TERMINAL_ENV, **streams)  # type: ignore[call-overload]
    os.close(slave)
    seen = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if select.select([master], [], [], 0.2)[0]:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: the child closed its end of the terminal
                    break
                if not data:
                    break
                seen += data
            elif proc.poll() is not None:
                break
        pipe = proc.stdout if stream == "stderr" else proc.stderr
        assert pipe is not None
        return bytes(seen), pipe.read(), proc.wait(timeout=timeout)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# ---- usage errors: exit 2, one line naming the option (no node needed) -------------------


@pytest.mark.parametrize(
    "args, message",
    [
        (["recover", "--mesh", "1888", "--bootstrap", "127.0.0.1:1"], "bad mesh id '1888'"),
        ([*RECOVER, "--expect-root", "zz"], "bad root 'zz'"),
        (["recover", "--mesh", MESH, "--bootstrap", "bad"], "bad address 'bad'"),
        ([*RECOVER, "--listen", "bogus"], "bad address 'bogus'"),
        ([*RECOVER, "--out", "/proc/no-such-dir"], "cannot write to /proc/no-such-dir"),
        ([*RECOVER, "--timeout", "0"], "--timeout must be a positive number of seconds, got 0"),
        ([*RECOVER, "--timeout", "-5"], "--timeout must be a positive number of seconds"),
        ([*RECOVER, "--timeout", "nan"], "--timeout must be a positive number of seconds"),
        ([*RECOVER, "--patience", "nan"], "--patience must be at least 0"),
    ],
)
def test_recover_usage_errors_exit_2(args: list[str], message: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    line = one_error_line(result)
    assert message in line
    assert "--patience" not in line or "--patience" in message  # --timeout 0 is not --patience


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("--subnet-limit", "0", "--subnet-limit must be at least 1, got 0"),
        ("--k", "0", "--k must be from 1 to 1024, got 0"),
        ("--k", "5000", "--k must be from 1 to 1024, got 5000"),
        ("--republish", "0", "--republish must be a positive number of seconds, got 0"),
        ("--republish", "nan", "--republish must be a positive number of seconds, got nan"),
        ("--sync-interval", "-1", "--sync-interval must be a positive number of seconds"),
        ("--sync-interval", "nan", "--sync-interval must be a positive number of seconds"),
        ("--bootstrap-timeout", "0", "--bootstrap-timeout must be a positive number of seconds"),
        ("--bootstrap-timeout", "nan", "--bootstrap-timeout must be a positive number"),
    ],
)
def test_join_refuses_bad_options_by_name(
    tmp_path: Path, option: str, value: str, message: str
) -> None:
    result = runner.invoke(
        app, ["join", "-d", str(tmp_path), "--listen", "127.0.0.1:0", option, value]
    )
    assert result.exit_code == 2, result.output
    assert message in one_error_line(result)


# ---- G: the id puzzle shows its progress on a terminal, and only there -------------------


@pytest.mark.parametrize(
    "args, message",
    [
        (["join", "--k", "x"], "Invalid value for '--k'"),
        (["nosuch"], "No such command 'nosuch' (see 'chorusdht --help')"),
        (["get"], "Missing argument 'HASH' (see 'chorusdht get --help')"),
        (["mesh", "admit"], "Missing argument 'pubkey' (see 'chorusdht mesh admit --help')"),
        (["join", "--listen"], "Option '--listen' requires an argument"),
    ],
)
def test_typer_parse_errors_are_one_line_too(args: list[str], message: str) -> None:
    # The installed entry point, not CliRunner: typer's framed usage box came from
    # its standalone mode, which only the real `chorusdht` process runs in.
    assert message in fails(*args, code=2)


def test_help_and_no_arguments_still_show_the_help() -> None:
    res = cli("get", "--help")
    assert res.returncode == 0 and "Usage: chorusdht get" in res.stdout, res.stderr
    res = cli()  # no_args_is_help: the help, and exit 2 as before
    assert res.returncode == 2 and "Commands" in res.stdout + res.stderr
    assert "error:" not in res.stderr


def test_key_grinding_reports_each_miss() -> None:
    seen: list[int] = []
    ident = Identity.generate(6, seen.append)
    assert puzzle_ok(ident.node_id, 6)
    assert seen == list(range(1, len(seen) + 1))
    assert puzzle_ok(Identity.generate(0, seen.append).node_id, 0)


def test_init_shows_puzzle_progress_on_a_terminal_only(tmp_path: Path) -> None:
    shown, stdout, code = on_terminal(
        ["init", "-d", str(tmp_path / "t"), "--puzzle-bits", "8"], "stderr"
    )
    assert code == 0
    assert b"8-bit id puzzle" in shown
    assert stdout.decode().splitlines()[0] == f"initialised {tmp_path / 't'}"
    piped = runner.invoke(app, ["init", "-d", str(tmp_path / "p"), "--puzzle-bits", "8"])
    assert piped.exit_code == 0 and piped.stderr == ""
    assert [line.split(":")[0] for line in piped.stdout.splitlines()] == [
        f"initialised {tmp_path / 'p'}",
        "node id",
        "public key",
    ]


# ---- against a running founder node ------------------------------------------------------


@dataclass
class Founder:
    root: Path
    data_dir: str
    port: int
    team: str  # a plain mesh
    sec: str  # an encrypted mesh holding one entry


@contextmanager
def running_node(d: Path, *args: str) -> Iterator[NodeProc]:
    """A `chorusdht join` on data dir `d` (already initialised), ready; killed at the end
    if the test did not stop it."""
    node = NodeProc(d, free_port(), *args)
    try:
        node.wait_for("ready")
        yield node
    finally:
        if node.proc.poll() is None:
            os.killpg(node.proc.pid, signal.SIGKILL)
            node.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def founder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Founder]:
    root = tmp_path_factory.mktemp("audit")
    d = root / "n1"
    ok("init", "-d", str(d))
    with running_node(d, "--sync-interval", "1") as node:
        team = ok("mesh", "create", "team", "-d", str(d)).splitlines()[-1]
        sec = ok("mesh", "create", "sec", "--encrypt", "-d", str(d)).splitlines()[-1]
        ok("append", "sealed entry", "--mesh", sec, "-d", str(d))
        yield Founder(root, str(d), node.port, team, sec)


def _mesh_names(data_dir: str) -> list[str]:
    status = ok("status", "--json", "-d", data_dir)
    return sorted(m["name"] for m in json.loads(status)["meshes"])


def test_mesh_create_checks_the_key_file_before_creating(founder: Founder) -> None:
    d = founder.data_dir
    bad = "/proc/no-such-dir/team.key"
    line = fails("mesh", "create", "vault", "--encrypt", "--key-file", bad, "-d", d)
    assert line.startswith(f"error: cannot write {bad}: ")
    assert "exists: will not overwrite" in fails(
        "mesh", "create", "vault", "--encrypt", "--key-file", str(founder.root), "-d", d
    )
    assert _mesh_names(d) == ["sec", "team"]  # no mesh was founded half-way


def test_mesh_create_again_says_it_exists(founder: Founder) -> None:
    d = founder.data_dir
    line = fails("mesh", "create", "sec", "--encrypt", "-d", d)
    assert line == f"error: mesh 'sec' already exists (id {founder.sec})"
    line = fails("mesh", "create", "team", "-d", d)
    assert line == f"error: mesh 'team' already exists (id {founder.team})"


def test_recover_refuses_a_wrong_mesh_key(founder: Founder) -> None:
    out = founder.root / "rec"
    common = ["--bootstrap", f"127.0.0.1:{founder.port}", "--listen", "127.0.0.1:0"]
    common += ["--out", str(out), "--timeout", "30", "--mesh-key", "00" * 32]
    line = fails("recover", "--mesh", founder.sec, *common, code=2)
    assert "wrong mesh key: it opens none of the sealed entries" in line
    assert "takes no key" in fails("recover", "--mesh", founder.team, *common, code=2)
    assert not (out / "memory.jsonl").exists()


def test_recover_that_cannot_write_phase_json_keeps_the_last_pair(founder: Founder) -> None:
    """memory.jsonl was renamed into place before phase.json was written: when that write
    failed, a new memory.jsonl sat beside the last run's phase.json (another mesh's root
    and count, "complete": true)."""
    out = founder.root / "pair"
    common = ["--bootstrap", f"127.0.0.1:{founder.port}", "--listen", "127.0.0.1:0"]
    common += ["--out", str(out), "--timeout", "30"]
    ok("recover", "--mesh", founder.team, *common)
    before = {name: (out / name).read_bytes() for name in ("memory.jsonl", "phase.json")}
    (out / "phase.json.tmp").mkdir()  # as a full disk would refuse it
    line = fails("recover", "--mesh", founder.sec, *common)
    assert line.startswith(f"error: cannot write to {out}: ")
    assert {name: (out / name).read_bytes() for name in before} == before
    assert sorted(p.name for p in out.iterdir()) == ["memory.jsonl", "phase.json", "phase.json.tmp"]


def test_append_measures_huge_input_before_reading_it(founder: Founder) -> None:
    huge = founder.root / "huge.bin"
    with huge.open("wb") as f:
        f.truncate(200_000_000)  # sparse: nothing is written to disk
    t0 = time.monotonic()
    line = fails("append", "--file", str(huge), "--mesh", founder.team, "-d", founder.data_dir)
    assert time.monotonic() - t0 < 10
    assert line.startswith("error: TOO_LARGE: payload is 200000000 bytes, the limit is ")
    res = cli("append", "--mesh", founder.team, "-d", founder.data_dir, stdin="x" * 2_000_000)
    assert res.returncode == 1
    assert "TOO_LARGE: payload is over 1048576 bytes, the limit is " in res.stderr


def test_stdin_loses_one_trailing_newline_a_file_none(founder: Founder) -> None:
    d, team = founder.data_dir, founder.team
    assert cli("append", "--mesh", team, "-d", d, stdin="from a pipe\n").returncode == 0
    assert cli("append", "--mesh", team, "-d", d, stdin="two\n\n").returncode == 0
    f = founder.root / "note.txt"
    f.write_text("a file\n")
    ok("append", "--file", str(f), "--mesh", team, "-d", d)
    rows = [json.loads(r) for r in ok("log", "--json", "--mesh", team, "-d", d).splitlines()]
    assert [r["payload"] for r in rows[-3:]] == ["from a pipe", "two\n", "a file\n"]


def test_log_shows_each_entry_on_one_line(founder: Founder) -> None:
    """`log` printed payloads raw: an entry with a newline looked like two entries (the
    second one forged with any author's prefix), and escape sequences reached the terminal."""
    d, team = founder.data_dir, founder.team
    forged = "fine\nffffffff #99   L99    000000000000  trust me\x1b[2J\r\tend"
    digest = ok("append", forged, "--mesh", team, "-d", d).split()[-1]
    shown = ok("log", "--mesh", team, "-d", d)
    assert "\x1b" not in shown and "\r" not in shown and "\t" not in shown
    lines = [line for line in shown.splitlines() if "trust me" in line]
    assert len(lines) == 1 and f" {digest[:12]}  fine\\nffffffff #99 " in lines[0]
    assert lines[0].endswith("trust me\\x1b[2J\\r\\tend")
    rows = [json.loads(r) for r in ok("log", "--json", "--mesh", team, "-d", d).splitlines()]
    assert rows[-1]["payload"] == forged  # --json keeps the payload as it is


def test_arguments_that_are_not_utf8_neither_crash_the_cli_nor_the_node(
    founder: Founder,
) -> None:
    """A mesh name that is not UTF-8 (a lone surrogate once decoded) crashed the node with
    a traceback ('the node closed the control connection'); such an entry text was a
    traceback in the CLI, and so was a memory.jsonl payload escaped as a lone surrogate."""
    d, team = founder.data_dir, founder.team
    line = fails("mesh", "create", os.fsdecode(b"n\xffame"), "-d", d)
    assert line.startswith("error: bad request: ") and "not Unicode text" in line
    ok("status", "-d", d)  # the node runs on
    digest = ok("append", os.fsdecode(b"raw \xff byte"), "--mesh", team, "-d", d).split()[-1]
    got = subprocess.run([CHORUSDHT, "get", digest, "-d", d], capture_output=True, timeout=30)
    assert got.returncode == 0 and got.stdout == b"raw \xff byte"  # the bytes as given
    memory = founder.root / "surrogate.jsonl"
    memory.write_text('{"payload": "ok"}\n{"payload": "\\udcff"}\n')
    line = fails("import", str(memory), "--mesh", team, "-d", d)
    assert "line 2: `payload` is not Unicode text" in line and "nothing was imported" in line


def test_a_deeply_nested_control_request_is_refused(founder: Founder) -> None:
    """A request line of 100,000 '[' crashed the node (RecursionError in the JSON decoder)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(30)
        s.connect(str(Path(founder.data_dir) / "control.sock"))
        s.sendall(b"[" * 100_000 + b"\n")
        reply = json.loads(s.makefile("rb").readline())
    assert reply == {"error": "bad request: not a JSON line", "code": "LocalError"}
    ok("status", "-d", founder.data_dir)  # the node runs on


def test_get_keeps_raw_bytes_off_a_terminal(founder: Founder) -> None:
    blob = founder.root / "blob.bin"
    payload = bytes(range(256)) * 11 + b"\xff" * 184  # 3000 bytes, not UTF-8
    blob.write_bytes(payload)
    d = founder.data_dir
    digest = ok("append", "--file", str(blob), "--mesh", founder.team, "-d", d).split()[-1]
    piped = subprocess.run([CHORUSDHT, "get", digest, "-d", d], capture_output=True, timeout=30)
    assert piped.returncode == 0 and piped.stdout == payload  # redirected: the bytes
    shown, stderr, code = on_terminal(["get", digest, "-d", d], "stdout")
    assert code == 0
    assert shown.strip() == b"<3000 bytes>"
    assert b"redirect" in stderr


def test_get_keeps_escape_sequences_off_a_terminal(founder: Founder) -> None:
    """`get` printed a text payload raw: its escape sequences (a window title, a cleared
    screen) reached the terminal. On a terminal they are shown as escapes now; newlines
    and tabs stay, and a redirected stdout still gets the payload as it is."""
    d = founder.data_dir
    payload = "line one\nline two\t\x1b]0;pwned\x07\x1b[2J end"
    digest = ok("append", payload, "--mesh", founder.team, "-d", d).split()[-1]
    assert ok("get", digest, "-d", d) == payload + "\n"
    shown, _, code = on_terminal(["get", digest, "-d", d], "stdout")
    assert code == 0
    assert shown == b"line one\r\nline two\t\\x1b]0;pwned\\x07\\x1b[2J end\r\n"


def test_join_timeout_says_a_bootstrap_node_answered(founder: Founder, tmp_path: Path) -> None:
    d = str(tmp_path / "late")
    ok("init", "-d", d)
    dead, live = f"127.0.0.1:{free_port()}", f"127.0.0.1:{founder.port}"
    line = fails(
        "join", "-d", d, "--listen", "127.0.0.1:0", "--bootstrap", dead, "--bootstrap", live,
        "--bootstrap-timeout", "2",
    )  # fmt: skip
    assert "the join did not finish within 2s: a bootstrap node answered" in line
    assert "no bootstrap node answered" not in line


# ---- A: `log --follow` says so when its node stops ---------------------------------------


def test_log_follow_says_the_node_went_away(tmp_path: Path) -> None:
    d = tmp_path / "n"
    ok("init", "-d", str(d))
    follow = None
    with running_node(d) as node:
        try:
            ok("mesh", "create", "m", "-d", str(d))
            ok("append", "hello", "-d", str(d))
            follow = subprocess.Popen(
                [CHORUSDHT, "log", "--follow", "-d", str(d)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            assert follow.stdout is not None and "hello" in follow.stdout.readline()
            assert node.stop() == 0
            _, stderr = follow.communicate(timeout=30)
            assert follow.returncode == 1
            lines = [line for line in stderr.splitlines() if line.strip()]
            assert len(lines) == 1 and lines[0].startswith("error: "), stderr
            assert "connection" in lines[0]
        finally:
            if follow is not None and follow.poll() is None:
                follow.kill()
                follow.wait()


# ---- B: a node whose meshes.json cannot be written ------------------------------------


def test_mesh_create_that_cannot_be_remembered_fails_and_the_node_runs_on(
    tmp_path: Path,
) -> None:
    """An unwritable meshes.json (a full disk; here its .tmp is a directory) once crashed
    the node with a traceback, and the CLI said 'the node closed the control connection'."""
    d = tmp_path / "n"
    ok("init", "-d", str(d))
    with running_node(d) as node:
        blocker = d / "meshes.json.tmp"
        blocker.mkdir()
        line = fails("mesh", "create", "team", "-d", str(d))
        assert line.startswith(f"error: cannot write {d / 'meshes.json'}: ")
        assert "follows no mesh" in fails("log", "-d", str(d))  # nothing followed half-way
        blocker.rmdir()
        mesh = ok("mesh", "create", "team", "-d", str(d)).splitlines()[-1]  # a retry
        ok("append", "remembered", "-d", str(d))
        assert json.loads((d / "meshes.json").read_text())["meshes"][0]["id"] == mesh
        assert node.stop() == 0


def test_a_start_that_fails_on_one_mesh_forgets_none(tmp_path: Path) -> None:
    """meshes.json was rewritten as each remembered mesh loaded: a start that failed on one
    of them dropped it and every mesh after it from the file, with their mesh keys."""
    d = tmp_path / "n"
    ok("init", "-d", str(d))
    with running_node(d) as node:
        for name in ("a", "b"):
            ok("mesh", "create", name, "--encrypt", "-d", str(d))
        assert node.stop() == 0
    remembered = d / "meshes.json"
    doc = json.loads(remembered.read_text())
    doc["meshes"].insert(1, {"id": "ee" * 32, "pin": True, "key": "11" * 32})  # unreachable
    remembered.write_text(json.dumps(doc, indent=1) + "\n")
    line = fails("join", "-d", str(d), "--listen", "127.0.0.1:0")
    assert line.startswith(f"error: unknown mesh {'ee' * 32}")
    after = json.loads(remembered.read_text())["meshes"]
    assert sorted(after, key=str) == sorted(doc["meshes"], key=str)
    # Nothing to rewrite, so a node restarts where nothing can be written (a full disk).
    good = sorted((m for m in after if m["id"] != "ee" * 32), key=lambda m: m["id"])
    remembered.write_text(json.dumps({"meshes": good}, indent=1) + "\n")
    (d / "meshes.json.tmp").mkdir()
    with running_node(d):
        assert _mesh_names(str(d)) == ["a", "b"]


# ---- C: Ctrl-C ----------------------------------------------------------------------------


def _default_sigint() -> None:
    """In the child: Ctrl-C as on a terminal (a shell's background job inherits it ignored)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_in_recover_is_a_quiet_exit(tmp_path: Path) -> None:
    """Ctrl-C while recover waited on the network came out of trio's nurseries as a
    73-line traceback of nested exception groups, exit 1."""
    out = tmp_path / "rec"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:  # never answers
        silent.bind(("127.0.0.1", 0))
        silent.settimeout(30)
        host, port = silent.getsockname()
        args = ["recover", "--mesh", MESH, "--bootstrap", f"{host}:{port}"]
        args += ["--listen", "127.0.0.1:0", "--out", str(out), "--timeout", "60"]
        proc = subprocess.Popen(
            [CHORUSDHT, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=_default_sigint,
        )
        try:
            silent.recvfrom(65536)  # recover is running: it asks the bootstrap node
            proc.send_signal(signal.SIGINT)
            _, stderr = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 130
    assert "Traceback" not in stderr and stderr.strip() == ""
    assert list(out.iterdir()) == []


def test_ctrl_c_in_import_says_how_much_was_imported(tmp_path: Path) -> None:
    """Ctrl-C during `import` exited 130 in silence: thousands of entries were in the mesh
    and the user could not tell which, so a second import duplicated them."""
    d = tmp_path / "n"
    ok("init", "-d", str(d))
    proc = None
    with running_node(d):
        try:
            ok("mesh", "create", "bulk", "-d", str(d))
            memory = tmp_path / "memory.jsonl"
            memory.write_text("".join(f'{{"payload": "entry {i}"}}\n' for i in range(50_000)))
            proc = subprocess.Popen(
                [CHORUSDHT, "import", str(memory), "-d", str(d)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                preexec_fn=_default_sigint,
            )
            while call(d, "phase")["entries"] == 0:  # the import is under way
                assert proc.poll() is None
                time.sleep(0.05)
            proc.send_signal(signal.SIGINT)
            _, stderr = proc.communicate(timeout=30)
            assert proc.returncode == 130
            entries = call(d, "phase")["entries"]
            assert 0 < entries < 50_000
            assert stderr.splitlines() == [
                f"error: {memory}: interrupted; {entries} of 50000 entries were imported, "
                f"the file up to line {entries}"
            ]
        finally:
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()


def test_ctrl_c_in_append_wait_replicated_says_the_entry_may_be_stored(tmp_path: Path) -> None:
    """Ctrl-C while `append --wait replicated` waited for the replicas exited 130 in
    silence, though the node had stored the entry already (and went on replicating it)."""
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        ok("init", "-d", str(d))
    proc = None
    with running_node(a) as node, running_node(b, "--bootstrap", f"127.0.0.1:{node.port}") as peer:
        try:
            ok("mesh", "create", "m", "-d", str(a))
            os.killpg(peer.proc.pid, signal.SIGSTOP)  # a peer that never answers: slow replicas
            proc = subprocess.Popen(
                [CHORUSDHT, "append", "hello", "--wait", "replicated", "-d", str(a)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                preexec_fn=_default_sigint,
            )
            while call(a, "phase")["entries"] == 0:  # stored: the node waits for replicas
                assert proc.poll() is None
                time.sleep(0.01)
            os.killpg(node.proc.pid, signal.SIGSTOP)  # and it goes on waiting: no reply yet
            proc.send_signal(signal.SIGINT)
            stdout, stderr = proc.communicate(timeout=30)
            assert proc.returncode == 130 and stdout == ""
            assert stderr.splitlines() == [
                "error: interrupted: the entry may already be stored on the node, but its "
                "replication was not confirmed (`chorusdht log` shows whether it is there)"
            ]
            os.killpg(node.proc.pid, signal.SIGCONT)
            assert "hello" in ok("log", "-d", str(a))  # it was stored
        finally:
            os.killpg(node.proc.pid, signal.SIGCONT)
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()


# ---- D: names are text, not rich markup ---------------------------------------------------


def test_a_mesh_name_that_looks_like_markup_is_shown_as_it_is(tmp_path: Path) -> None:
    """A mesh's name comes from its founder's genesis, and it was printed as rich markup:
    a name such as '[/]' was a MarkupError traceback in mesh create, mesh show, mesh follow,
    status and recover (and in the live status view of every node that followed it); so
    was such a path in init, recover and sim."""
    d = tmp_path / "n[/]"
    assert ok("init", "-d", str(d)).startswith(f"initialised {d}\n")
    with running_node(d) as node:
        name = "[/]team [bold red]x"
        created = ok("mesh", "create", name, "-d", str(d))
        assert f"created mesh '{name}'" in created
        mesh = created.splitlines()[-1]
        assert f"mesh '{name}'" in ok("mesh", "show", "-d", str(d))
        assert f"following mesh '{name}'" in ok("mesh", "follow", mesh, "-d", str(d))
        assert name in ok("status", "-d", str(d))
        common = ["--bootstrap", f"127.0.0.1:{node.port}", "--listen", "127.0.0.1:0"]
        out = tmp_path / "rec[/]"  # a path is text too
        rec = ok("recover", "--mesh", mesh, *common, "--out", str(out))
        assert f"recovery of mesh '{name}'" in rec and f"wrote {out / 'memory.jsonl'}" in rec


# ---- E: a reader that stops reading (`| head -1`) is not a failure ------------------------


_GET_HEADER = ("chunk ", "author ")  # what `get` tells on stderr, its payload on stdout


def _closed_stdout(args: list[str]) -> subprocess.CompletedProcess[str]:
    """Run `chorusdht ARGS` with stdout a pipe whose reader has already gone."""
    read, write = os.pipe()
    os.close(read)
    try:
        return subprocess.run(
            [CHORUSDHT, *args], stdout=write, stderr=subprocess.PIPE, text=True, timeout=30
        )
    finally:
        os.close(write)


def test_a_reader_that_stops_early_is_a_quiet_exit_0(tmp_path: Path) -> None:
    """`chorusdht log | head -1` exited 1 (a node failure, the README says) in silence: a
    closed pipe came out of typer as exit 1; `get`/`phase | true` printed 'Exception ignored
    ... BrokenPipeError' at exit, and `join | head -1` was a traceback."""
    d = tmp_path / "n"
    ok("init", "-d", str(d))
    with running_node(d):
        ok("mesh", "create", "m", "-d", str(d))
        memory = tmp_path / "memory.jsonl"  # a log far over a pipe's 64 KiB buffer
        memory.write_text("".join(f'{{"payload": "entry {i} {"x" * 100}"}}\n' for i in range(3000)))
        ok("import", str(memory), "-d", str(d))
        digest = json.loads(ok("log", "--json", "-d", str(d)).splitlines()[0])["hash"]
        for args in (["log"], ["log", "--json"]):  # as `head -1` reads it
            proc = subprocess.Popen(
                [CHORUSDHT, *args, "-d", str(d)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            try:
                assert proc.stdout is not None and "entry 0 " in proc.stdout.readline()
                proc.stdout.close()
                _, stderr = proc.communicate(timeout=30)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            assert (proc.returncode, stderr) == (0, ""), args
        for args in (
            ["log", "--follow"],
            ["get", digest],
            ["phase"],
            ["status"],
            ["mesh", "show"],
        ):
            res = _closed_stdout([*args, "-d", str(d)])
            told = [line for line in res.stderr.splitlines() if not line.startswith(_GET_HEADER)]
            assert (res.returncode, told) == (0, []), (args, res.stderr)
    res = _closed_stdout(["join", "-d", str(d), "--listen", "127.0.0.1:0"])
    assert (res.returncode, res.stderr) == (0, "")  # the node stops with its first event line
