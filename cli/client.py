"""The control-socket client: one JSON line to the running node, one JSON line back.

    with connect(data_dir) as node:
        reply = node.call("append", text="hello", wait="local")

A reply with an error becomes `NodeReplyError` (a ChorusError, so the command
prints one line); no node behind the socket becomes `NoNodeRunning`.
"""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from chorusdht import MAX_CONTROL_LINE, ChorusError, ConfigError, LocalError, control_path

__all__ = ["ControlClient", "NoNodeRunning", "NodeReplyError", "call", "connect"]

DEFAULT_TIMEOUT = 120.0  # s; `append --wait replicated` and big import batches take a while


class NoNodeRunning(ConfigError):
    """Nothing answers on the data dir's control socket."""

    def __init__(self, data_dir: Path) -> None:
        super().__init__(
            f"no node running in {data_dir}: start `chorusdht join --data-dir {data_dir}`"
        )


class NodeReplyError(ChorusError):
    """The node refused a request; `code` is its error code (NOT_MEMBER, LocalError, ...)."""

    def __init__(self, message: str, code: str, reply: dict[str, Any]) -> None:
        super().__init__(message)
        self.code = code
        self.reply = reply


class ControlClient:
    """A connection to a running node's control socket."""

    def __init__(self, data_dir: Path, timeout: float = DEFAULT_TIMEOUT) -> None:
        path = control_path(data_dir)
        self.data_dir = data_dir
        self.timeout = timeout
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError, NotADirectoryError):
            sock.close()
            raise NoNodeRunning(data_dir) from None
        except PermissionError:
            sock.close()
            raise ConfigError(
                f"cannot open {path}: permission denied (another user's node?)"
            ) from None
        self._sock = sock
        self._file = sock.makefile("rwb")

    def call(self, cmd: str, **args: Any) -> dict[str, Any]:
        """Send one request; return the reply, or raise NodeReplyError."""
        line = json.dumps({"cmd": cmd, **args}).encode() + b"\n"
        if len(line) > MAX_CONTROL_LINE:
            raise LocalError(
                f"request of {len(line)} bytes: the control limit is {MAX_CONTROL_LINE}"
            )
        try:
            self._file.write(line)
            self._file.flush()
            answer = self._file.readline()
        except TimeoutError:
            raise ConfigError(f"the node did not answer within {self.timeout:g}s") from None
        except OSError as e:
            raise ConfigError(f"lost the connection to the node: {e.strerror or e}") from None
        if not answer:
            raise ConfigError("the node closed the control connection (did it stop?)")
        reply: dict[str, Any] = json.loads(answer)
        if "error" in reply:
            raise NodeReplyError(str(reply["error"]), str(reply.get("code", "")), reply)
        return reply

    def close(self) -> None:
        """Close the connection. A node that went away leaves unsent bytes to flush: that
        OSError is dropped, or it would hide the error `call` raised about it."""
        with contextlib.suppress(OSError):
            self._file.close()
        self._sock.close()


@contextmanager
def connect(data_dir: Path, timeout: float = DEFAULT_TIMEOUT) -> Iterator[ControlClient]:
    """A ControlClient, closed on exit."""
    client = ControlClient(data_dir, timeout)
    try:
        yield client
    finally:
        client.close()


def call(data_dir: Path, cmd: str, **args: Any) -> dict[str, Any]:
    """One request on a fresh connection."""
    with connect(data_dir) as client:
        return client.call(cmd, **args)
