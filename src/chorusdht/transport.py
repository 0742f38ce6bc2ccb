"""Datagram transports: UDP on trio in production; netsim provides its own.

A transport sends without blocking (UDP may drop; the core retransmits) and
receives one datagram at a time. Addresses are `(ip literal, port)` tuples: the
core matches responses by the address a request went to, so names must be
resolved before they reach it (`resolve_addr`).
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from typing import Protocol

import trio

from .errors import ConfigError

__all__ = ["Address", "Transport", "UdpTransport", "parse_addr", "resolve_addr"]

Address = tuple[str, int]
RECV_BUFFER = 65536  # the largest UDP payload; the core bounds what it parses
SOCKET_BUFFER = 4 * 1024 * 1024  # ride out bursts (a put fans out to k nodes at once)
DRAIN_BEFORE_YIELD = 64  # datagrams read in a row before letting other tasks run


class Transport(Protocol):
    @property
    def local_addr(self) -> Address: ...

    def send(self, data: bytes, addr: Address) -> None: ...

    async def receive(self) -> tuple[bytes, Address]: ...

    def close(self) -> None: ...


def parse_addr(text: str, default_host: str = "127.0.0.1") -> tuple[str, int]:
    """Parse `HOST:PORT`, `[V6]:PORT` or `PORT`; raises ConfigError with one clear line."""
    host, sep, port_s = text.strip().rpartition(":")
    if not sep:
        host, port_s = default_host, text.strip()
    host = host.strip("[]") or default_host
    try:
        port = int(port_s)
    except ValueError:
        raise ConfigError(f"bad address {text!r}: expected HOST:PORT") from None
    if not 0 <= port < 65536:
        raise ConfigError(f"bad address {text!r}: port must be 0-65535")
    return host, port


def resolve_addr(addr: tuple[str, int] | str) -> Address:
    """Turn (host, port) or "HOST:PORT" into (IP literal, port), the form the core matches
    responses by; ConfigError with one clear line for anything else."""
    if isinstance(addr, str):
        addr = parse_addr(addr)
    if (
        not isinstance(addr, tuple)
        or len(addr) != 2
        or not isinstance(addr[0], str)
        or not isinstance(addr[1], int)
        or isinstance(addr[1], bool)
    ):
        raise ConfigError(f"bad address {addr!r}: expected (host, port) or 'HOST:PORT'")
    host, port = addr
    if not 0 <= port < 65536:
        raise ConfigError(f"bad address {addr!r}: port must be 0-65535")
    try:
        ipaddress.ip_address(host)
        return host, port
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except socket.gaierror:
        raise ConfigError(f"cannot resolve host {host!r}") from None
    ip = str(infos[0][4][0])
    return ip, port


class UdpTransport:
    """A non-blocking UDP socket read through trio's readiness API."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._drained = 0
        host, port = sock.getsockname()[:2]
        self._local: Address = (str(host), int(port))
        self.send_errors = 0

    @classmethod
    def bind(cls, addr: tuple[str, int] | str) -> UdpTransport:
        host, port = resolve_addr(addr)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                sock.setsockopt(socket.SOL_SOCKET, opt, SOCKET_BUFFER)
            sock.bind((host, port))
        except OSError as e:
            sock.close()
            if e.errno == errno.EADDRINUSE:
                raise ConfigError(f"address {host}:{port} is already in use") from None
            raise ConfigError(f"cannot listen on {host}:{port}: {e.strerror}") from None
        sock.setblocking(False)
        return cls(sock)

    @property
    def local_addr(self) -> Address:
        return self._local

    def send(self, data: bytes, addr: Address) -> None:
        try:
            self._sock.sendto(data, addr)
        except OSError:  # full buffer, unreachable host: UDP may drop, the core retries
            self.send_errors += 1

    async def receive(self) -> tuple[bytes, Address]:
        while True:
            if self._drained >= DRAIN_BEFORE_YIELD:
                self._drained = 0
                await trio.lowlevel.checkpoint()
            try:
                data, addr = self._sock.recvfrom(RECV_BUFFER)
            except BlockingIOError:
                self._drained = 0
                await trio.lowlevel.wait_readable(self._sock)
                continue
            except ConnectionRefusedError:  # ICMP port unreachable from an earlier send
                continue
            self._drained += 1
            return data, (str(addr[0]), int(addr[1]))

    def close(self) -> None:
        self._sock.close()
