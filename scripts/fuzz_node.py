"""Fuzz a live chorusdht node on loopback with hostile datagrams (issue 7, part 1).

    .venv/bin/python scripts/fuzz_node.py --count 1000000 --seed 1

The target is a real node (`open_node`: the trio driver, a UDP socket, a SQLite
store in a temporary data dir) running in a child process, so its memory can be
read from /proc/PID/status (VmRSS). Its rate limits are off (`rate_limit_per_ip`
and `rate_limit_global` = None): with OpenDHT's defaults one source IP gets
1,024 requests per second through and the rest of the flood would only exercise
the token bucket. `require_membership` is on, as under `chorusdht join`.

The fuzzer builds a valid message of every wire type (`encode_message` on each
body type, signed challenges included), then sends, chosen at random per datagram:

    bitflip     1 to 8 random bits flipped in a valid message
    truncate    a valid message cut at a random byte
    splice      bytes inserted, deleted or overwritten at random offsets
    huge_len    a CBOR head claiming 2^32 or 2^64 bytes/items, at the top or inside
    nest_bomb   arrays or maps nested 9 to 5,000 deep
    wrong_type  one field of a valid message replaced by a value of another type
                (int, negative, 2^63, str, bytes of the wrong size, list, map, null, bool)
    wrong_kind  the body fields of one type sent under another type's `t`
    oversize    a valid-looking datagram of 32 KiB to 64 KiB (over MAX_DATAGRAM)
    random      random bytes, 0 to 1,500 long
    cbor_junk   well-formed CBOR that is not a message (ints, lists, text maps)
    record_mut  a STORE whose record bytes are mutated (bit flips, truncation, fields)
    valid       an unmodified valid message (keeps the request paths busy)

Every `--check-every` datagrams the fuzzer sends a real PING with a fresh
challenge from a separate socket and requires a valid PONG (right txid, sender
key hashing to the node id, signature over the challenge) within 2 s. That PING
also paces the flood: it queues behind everything sent before it, so the node
has read the batch when it answers, and the kernel drops (almost) nothing.

The run stops after `--count` datagrams or `--max-seconds`, whichever is first,
then prints datagrams/s, RSS first/warm/peak/last, the node's stats counters
(malformed, too_large, bad_identity, unsolicited, ...) and a verdict. Exit status
0 means: the node never crashed, answered every health PING, and its RSS after
warm-up stayed within `--rss-tolerance` (20%) of the warm-up value.
Only 127.0.0.1 is used.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cbor2
from argcheck import non_negative_float, positive_float, positive_int

from chorusdht.codec import MAX_DATAGRAM, decode
from chorusdht.errors import ErrorCode
from chorusdht.identity import ED25519, Identity
from chorusdht.ids import sha256
from chorusdht.messages import (
    NONCE_BYTES,
    Body,
    ErrorReply,
    FindNode,
    FindValue,
    GetMany,
    Header,
    List,
    Listed,
    Message,
    NodeInfo,
    Nodes,
    Ping,
    Pong,
    Records,
    SinceEntry,
    Store,
    Stored,
    Value,
    challenge_payload,
    decode_message,
    encode_message,
)
from chorusdht.records import make_cert, make_chunk, make_genesis, make_head, make_roster

__all__ = [
    "FuzzReport",
    "Mutator",
    "TargetNode",
    "health_ping",
    "known_crash",
    "main",
    "run_fuzz",
    "valid_messages",
]

LOOPBACK = "127.0.0.1"
STATS_INTERVAL = 0.5  # s between the child's stats snapshots
PING_TIMEOUT = 2.0  # s a health PING may take; a busy Python node answers in milliseconds
RSS_TOLERANCE = 0.20  # the "RSS flat within 20%"
UDP_MAX = 65507  # largest IPv4 UDP payload


# ---- the target: a node in a child process --------------------------------------------

_SERVE = r"""
import json, os, signal, sys
from pathlib import Path
import trio
from chorusdht import NodeConfig, open_node

data_dir, stats_file = Path(sys.argv[1]), Path(sys.argv[2])

def dump(node):
    tmp = stats_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(dict(node.core.stats)))
    os.replace(tmp, stats_file)

async def main():
    config = NodeConfig(rate_limit_per_ip=None, rate_limit_global=None, require_membership=True)
    async with open_node(listen=("127.0.0.1", 0), data_dir=data_dir, config=config) as node:
        print(json.dumps({"port": node.address[1], "node_id": node.node_id.hex(),
                          "pid": os.getpid()}), flush=True)
        with trio.open_signal_receiver(signal.SIGTERM) as signals:
            async def snapshots():
                while True:
                    dump(node)
                    await trio.sleep(%(interval)s)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(snapshots)
                async for _ in signals:
                    dump(node)
                    nursery.cancel_scope.cancel()
                    break

trio.run(main)
""".replace("%(interval)s", repr(STATS_INTERVAL))


@dataclass
class TargetNode:
    """A node serving on 127.0.0.1 in a child Python process."""

    proc: subprocess.Popen[str]
    port: int
    node_id: bytes
    stats_file: Path

    @classmethod
    def start(cls, work: Path) -> TargetNode:
        data_dir = work / "node"
        stats_file = work / "stats.json"
        proc = subprocess.Popen(
            [sys.executable, "-c", _SERVE, str(data_dir), str(stats_file)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the target node did not start (exit {proc.wait()})")
        info = json.loads(line)
        return cls(proc, int(info["port"]), bytes.fromhex(info["node_id"]), stats_file)

    @property
    def addr(self) -> tuple[str, int]:
        return (LOOPBACK, self.port)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def rss_kib(self) -> int:
        """The child's resident set size in KiB (VmRSS), 0 once it is gone."""
        try:
            text = Path(f"/proc/{self.proc.pid}/status").read_text()
        except OSError:
            return 0
        for line in text.splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def stats(self) -> dict[str, int]:
        try:
            data: dict[str, int] = json.loads(self.stats_file.read_text())
        except (OSError, ValueError):
            return {}
        return data

    def stop(self) -> dict[str, int]:
        """SIGTERM, wait for the final stats snapshot, return it."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.stats()


# ---- valid messages ----------------------------------------------------------------


def _header(ident: Identity, rng: random.Random, *, challenge: bool, proof: bool) -> Header:
    return Header(
        rng.randbytes(8),
        ident.node_id,
        ident.public_key,
        challenge=rng.randbytes(NONCE_BYTES) if challenge else None,
        proof=ident.sign(challenge_payload(rng.randbytes(NONCE_BYTES), rng.randbytes(32)))
        if proof
        else None,
    )


def valid_messages(ident: Identity, rng: random.Random) -> list[bytes]:
    """One or more encoded, valid messages of every body type, from `ident`."""
    genesis = make_genesis(ident, "fuzz-mesh")
    other = Identity.from_seed(sha256(b"fuzz other"))
    cert = make_cert(ident, genesis.key, other.public_key)
    roster = make_roster(genesis, [cert])
    chunk = make_chunk(
        ident, mesh=genesis.key, seq=1, prev=None, lamport=1, time=0, payload=b"fuzz" * 8
    )
    head = make_head(ident, mesh=genesis.key, seq=1, chunk_hash=chunk.key, lamport=1)
    info = tuple(
        NodeInfo(sha256(bytes([i])), f"10.{i}.0.1" if i % 2 else f"2001:db8::{i}", 4000 + i)
        for i in range(20)
    )
    since = tuple(
        SinceEntry(sha256(bytes([i])), i + 1, sha256(b"tip", bytes([i]))) for i in range(4)
    )
    bodies: list[Body] = [
        Ping(),
        FindNode(rng.randbytes(32)),
        FindValue(chunk.key),
        FindValue(rng.randbytes(32)),
        Store(chunk.key, chunk.raw),
        Store(chunk.key, chunk.raw, (genesis.raw,)),
        Store(head.key, head.raw, (genesis.raw,)),
        Store(cert.key, cert.raw),
        Store(roster.key, roster.raw),
        Store(genesis.key, genesis.raw),
        List(genesis.key, None, 256),
        List(genesis.key, rng.randbytes(32), 16, since),
        GetMany((*(rng.randbytes(32) for _ in range(40)), chunk.key)),
        Pong(),
        Nodes(info),
        Value((chunk.raw,), info[:5]),
        Stored(),
        ErrorReply(ErrorCode.QUOTA, "full"),
        Listed(tuple(rng.randbytes(32) for _ in range(30)), rng.randbytes(32)),
        Records((chunk.raw, head.raw)),
    ]
    out = []
    for body in bodies:
        for challenge, proof in ((False, False), (True, False), (False, True)):
            h = _header(ident, rng, challenge=challenge, proof=proof)
            out.append(encode_message(Message(h, body)))
    return out


# ---- mutations -------------------------------------------------------------------------

_WRONG_VALUES: list[Any] = [
    0,
    1,
    -1,
    2**63 - 1,
    -(2**63),
    "",
    "x" * 300,
    b"",
    b"\x00" * 7,
    b"\xff" * 33,
    b"\x01" * 5000,
    [],
    [b"\x00" * 32] * 300,
    [[[[1]]]],
    {},
    {"a": 1},
    {1: b"x"},
    None,
    True,
    False,
]


@dataclass
class Mutator:
    """A seeded generator of hostile datagrams, built on a pool of valid messages."""

    rng: random.Random
    valid: list[bytes]
    avoid_known_crashes: bool = False
    decoded: list[dict[Any, Any]] = field(init=False)
    kinds: list[tuple[str, Callable[[], bytes]]] = field(init=False)

    def __post_init__(self) -> None:
        self.decoded = []
        for raw in self.valid:
            obj = decode(raw)
            assert isinstance(obj, dict)
            self.decoded.append(obj)
        self.kinds = [
            ("bitflip", self.bitflip),
            ("truncate", self.truncate),
            ("splice", self.splice),
            ("huge_len", self.huge_len),
            ("nest_bomb", self.nest_bomb),
            ("wrong_type", self.wrong_type),
            ("wrong_kind", self.wrong_kind),
            ("oversize", self.oversize),
            ("random", self.random_bytes),
            ("cbor_junk", self.cbor_junk),
            ("record_mut", self.record_mut),
            ("valid", self.pick),
        ]

    def pick(self) -> bytes:
        return self.rng.choice(self.valid)

    def next(self) -> tuple[str, bytes]:
        while True:
            name, fn = self.rng.choice(self.kinds)
            data = fn()[:UDP_MAX]
            if not (self.avoid_known_crashes and known_crash(data)):
                return name, data

    def bitflip(self) -> bytes:
        b = bytearray(self.pick())
        for _ in range(self.rng.randint(1, 8)):
            i = self.rng.randrange(len(b))
            b[i] ^= 1 << self.rng.randrange(8)
        return bytes(b)

    def truncate(self) -> bytes:
        raw = self.pick()
        return raw[: self.rng.randrange(len(raw))]

    def splice(self) -> bytes:
        b = bytearray(self.pick())
        for _ in range(self.rng.randint(1, 4)):
            i = self.rng.randrange(len(b) + 1)
            op = self.rng.randrange(3)
            if op == 0:
                b[i:i] = self.rng.randbytes(self.rng.randint(1, 16))
            elif op == 1:
                del b[i : i + self.rng.randint(1, 16)]
            else:
                n = self.rng.randint(1, 16)
                b[i : i + n] = self.rng.randbytes(n)
        return bytes(b)

    def huge_len(self) -> bytes:
        """A head claiming 2^32-1 or 2^64-1 bytes, items or pairs."""
        major = self.rng.choice((2, 3, 4, 5))
        width = self.rng.choice((26, 27))  # 4- or 8-byte argument
        arg = b"\xff" * (4 if width == 26 else 8)
        head = bytes([(major << 5) | width]) + arg
        where = self.rng.randrange(3)
        if where == 0:
            return head + self.rng.randbytes(self.rng.randint(0, 64))
        raw = self.pick()
        if where == 1:  # a map of 2^N pairs with a valid first pair
            return bytes([0xBB]) + b"\xff" * 8 + raw[1:]
        i = self.rng.randrange(1, len(raw))  # inside the message
        return raw[:i] + head + raw[i:]

    def nest_bomb(self) -> bytes:
        depth = self.rng.choice((9, 16, 64, 512, 5000))
        kind = self.rng.randrange(3)
        if kind == 0:
            return b"\x81" * depth + b"\x00"
        if kind == 1:
            return b"\xa1\x61a" * depth + b"\x00"
        # a well-formed message whose body field is the bomb
        obj = dict(self.rng.choice(self.decoded))
        bomb: Any = 0
        for _ in range(min(depth, 200)):
            bomb = [bomb]
        obj[self.rng.choice(list(obj))] = bomb
        return cbor2.dumps(obj)

    def wrong_type(self) -> bytes:
        obj = dict(self.rng.choice(self.decoded))
        for _ in range(self.rng.randint(1, 2)):
            obj[self.rng.choice(list(obj))] = self.rng.choice(_WRONG_VALUES)
        if self.rng.random() < 0.2:  # a missing field
            obj.pop(self.rng.choice(list(obj)), None)
        if self.rng.random() < 0.2:  # an extra field
            obj[self.rng.choice(("zz", "rec", "nodes", 7))] = self.rng.choice(_WRONG_VALUES)
        return cbor2.dumps(obj)

    def wrong_kind(self) -> bytes:
        obj = dict(self.rng.choice(self.decoded))
        obj["t"] = self.rng.choice(
            ["ping", "find_node", "find_value", "store", "list", "get_many", "pong", "nodes",
             "value", "stored", "error", "listed", "records", "PING", "", "x" * 40, 1]
        )  # fmt: skip
        if self.rng.random() < 0.3:
            obj["v"] = self.rng.choice((0, 2, 255, -1, 2**63 - 1, "1", None))
        return cbor2.dumps(obj)

    def oversize(self) -> bytes:
        raw = self.pick()
        size = self.rng.randint(MAX_DATAGRAM + 1, UDP_MAX)
        return raw + b"\x00" * (size - len(raw))

    def random_bytes(self) -> bytes:
        return self.rng.randbytes(self.rng.randint(0, 1500))

    def cbor_junk(self) -> bytes:
        pool: list[Any] = [*_WRONG_VALUES, {"v": 1}, {"v": 1, "t": "ping"}, [1, 2, 3]]
        return cbor2.dumps(self.rng.choice(pool))

    def record_mut(self) -> bytes:
        stores = [d for d in self.decoded if d.get("t") == "store"]
        obj = dict(self.rng.choice(stores))
        rec = bytearray(obj["rec"])
        op = self.rng.randrange(3)
        if op == 0:
            for _ in range(self.rng.randint(1, 4)):
                i = self.rng.randrange(len(rec))
                rec[i] ^= 1 << self.rng.randrange(8)
        elif op == 1:
            del rec[self.rng.randrange(len(rec)) :]
        else:
            try:
                inner = cbor2.loads(bytes(rec))
                body = inner["body"]
                body[self.rng.choice(list(body))] = self.rng.choice(_WRONG_VALUES)
                rec = bytearray(cbor2.dumps(inner))
            except Exception:  # the record is ours; any failure just sends it as is
                pass
        obj["rec"] = bytes(rec)
        return cbor2.dumps(obj)


def known_crash(data: bytes) -> bool:
    """A datagram that crashes the node in the current code (see SECURITY.md, bug 1).

    `messages.decode_message` tests `obj.get("t") in _REQUEST_NAMES` for a message
    whose version is not 1; an unhashable `t` (a list or a map) raises TypeError,
    which nothing catches, so the trio driver dies. `--avoid-known-crashes` skips
    such datagrams so the rest of the run can still measure memory and liveness.
    """
    try:
        obj = decode(data)
    except Exception:
        return False
    if not isinstance(obj, dict) or type(obj.get("v")) is not int or obj.get("v") == 1:
        return False
    return isinstance(obj.get("t"), list | dict)


# ---- the health check ------------------------------------------------------------------


def health_ping(
    sock: socket.socket,
    ident: Identity,
    target: tuple[str, int],
    node_id: bytes,
    rng: random.Random,
) -> float:
    """Send one PING with a challenge; return the RTT of a valid PONG. Raises on failure."""
    txid = rng.randbytes(8)
    nonce = rng.randbytes(NONCE_BYTES)
    msg = Message(Header(txid, ident.node_id, ident.public_key, challenge=nonce), Ping())
    start = time.monotonic()
    sock.sendto(encode_message(msg), target)
    deadline = start + PING_TIMEOUT
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no PONG within the deadline")
        sock.settimeout(left)
        try:
            data, src = sock.recvfrom(UDP_MAX)
        except TimeoutError:
            continue
        if src != target:
            continue
        try:
            reply = decode_message(data)
        except Exception:
            raise AssertionError("the node sent an undecodable datagram") from None
        if reply.header.txid != txid:
            continue  # e.g. the node's own challenge PING to us
        h = reply.header
        ok = (
            isinstance(reply.body, Pong)
            and h.sender_id == node_id
            and sha256(h.sender_key) == node_id
            and h.proof is not None
            and ED25519.verify(h.sender_key, challenge_payload(nonce, ident.node_id), h.proof)
        )
        if not ok:
            raise AssertionError(f"invalid answer to a PING: {reply}")
        return time.monotonic() - start


# ---- the run ---------------------------------------------------------------------------


@dataclass
class FuzzReport:
    sent: int
    seconds: float
    kinds: Counter[str]
    pings_ok: int
    pings_failed: int
    rss_kib: list[tuple[int, int]]  # (datagrams sent, VmRSS KiB)
    stats: dict[str, int]
    alive: bool
    warm_index: int

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds else 0.0

    @property
    def rss_first(self) -> int:
        return self.rss_kib[0][1]

    @property
    def rss_warm(self) -> int:
        return self.rss_kib[min(self.warm_index, len(self.rss_kib) - 1)][1]

    @property
    def rss_after_warm(self) -> list[int]:
        return [r for _, r in self.rss_kib[self.warm_index :]] or [self.rss_warm]

    @property
    def rss_peak(self) -> int:
        return max(r for _, r in self.rss_kib)

    @property
    def rss_last(self) -> int:
        return self.rss_kib[-1][1]

    def rss_flat(self, tolerance: float = RSS_TOLERANCE) -> bool:
        warm = self.rss_warm
        return all(abs(r - warm) <= tolerance * warm for r in self.rss_after_warm)

    def ok(self, tolerance: float = RSS_TOLERANCE) -> bool:
        return self.alive and self.pings_failed == 0 and self.rss_flat(tolerance)

    def lines(self) -> list[str]:
        s = self.stats
        counters = (
            "datagrams_in", "malformed", "too_large", "bad_version", "bad_identity",
            "unsolicited", "wrong_sender", "bad_proof", "rate_limited", "responses_in",
            "in_ping", "in_find_node", "in_find_value", "in_store", "in_list", "in_get_many",
        )  # fmt: skip
        rejected = {k: v for k, v in sorted(s.items()) if k.startswith("store_rejected_")}
        return [
            f"datagrams sent     {self.sent:,} in {self.seconds:.1f} s ({self.rate:,.0f}/s)",
            f"node received      {s.get('datagrams_in', 0):,} "
            f"({s.get('bytes_in', 0) / 1e6:,.1f} MB)",
            "mutations          " + ", ".join(f"{k} {v:,}" for k, v in sorted(self.kinds.items())),
            f"health PINGs       {self.pings_ok:,} valid PONGs, {self.pings_failed} failed",
            f"RSS (KiB)          first {self.rss_first:,}, after warm-up {self.rss_warm:,}, "
            f"peak {self.rss_peak:,}, last {self.rss_last:,} "
            f"({len(self.rss_kib)} samples; flat within 20%: {self.rss_flat()})",
            "counters           " + ", ".join(f"{c} {s.get(c, 0):,}" for c in counters),
            "STORE rejections   " + (", ".join(f"{k[15:]} {v:,}" for k, v in rejected.items())),
            f"node alive         {self.alive}",
        ]


def run_fuzz(
    count: int,
    *,
    seed: int = 1,
    check_every: int = 256,
    rss_every: int = 10_000,
    max_seconds: float = 3600.0,
    warmup: float = 0.1,
    avoid_known_crashes: bool = False,
    progress: Callable[[str], None] | None = None,
) -> FuzzReport:
    """Start a target node, send `count` hostile datagrams, stop it; return the figures."""
    rng = random.Random(seed)
    fuzzer = Identity.from_seed(sha256(b"fuzzer", seed.to_bytes(8, "big")))
    checker = Identity.from_seed(sha256(b"checker", seed.to_bytes(8, "big")))
    mutator = Mutator(rng, valid_messages(fuzzer, rng), avoid_known_crashes)
    kinds: Counter[str] = Counter()
    with tempfile.TemporaryDirectory(prefix="chorus-fuzz-") as tmp:
        target = TargetNode.start(Path(tmp))
        flood = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        check = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        flood.bind((LOOPBACK, 0))
        check.bind((LOOPBACK, 0))
        flood.setblocking(False)
        pings_ok = pings_failed = sent = 0
        rss: list[tuple[int, int]] = [(0, target.rss_kib())]
        start = time.monotonic()
        try:
            pings_ok += bool(health_ping(check, checker, target.addr, target.node_id, rng) >= 0)
            while sent < count and time.monotonic() - start < max_seconds:
                name, data = mutator.next()
                kinds[name] += 1
                try:
                    flood.sendto(data, target.addr)
                except BlockingIOError:
                    time.sleep(0.001)
                except OSError:  # e.g. EMSGSIZE: count it as sent-and-refused
                    pass
                sent += 1
                if sent % 64 == 0:
                    _drain(flood)
                if sent % check_every == 0:
                    if not target.alive():
                        break
                    try:
                        health_ping(check, checker, target.addr, target.node_id, rng)
                        pings_ok += 1
                    except (TimeoutError, AssertionError) as e:
                        pings_failed += 1
                        if progress is not None:
                            progress(f"health PING failed after {sent:,} datagrams: {e}")
                if sent % rss_every == 0:
                    rss.append((sent, target.rss_kib()))
                    if progress is not None and sent % (rss_every * 10) == 0:
                        rate = sent / (time.monotonic() - start)
                        progress(f"{sent:,} datagrams, {rate:,.0f}/s, RSS {rss[-1][1]:,} KiB")
            try:
                health_ping(check, checker, target.addr, target.node_id, rng)
                pings_ok += 1
            except (TimeoutError, AssertionError):
                pings_failed += 1
            seconds = time.monotonic() - start
            time.sleep(STATS_INTERVAL * 1.5)  # let the child take a last snapshot
            rss.append((sent, target.rss_kib()))
            alive = target.alive()
        finally:
            stats = target.stop()
            flood.close()
            check.close()
    warm_index = max(1, int(len(rss) * warmup))
    return FuzzReport(sent, seconds, kinds, pings_ok, pings_failed, rss, stats, alive, warm_index)


def _drain(sock: socket.socket) -> None:
    """Read and drop what the node sent back (challenge PINGs, error replies)."""
    while True:
        try:
            sock.recvfrom(UDP_MAX)
        except (BlockingIOError, InterruptedError):
            return


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--count", type=positive_int, default=1_000_000, help="datagrams to send")
    p.add_argument("--seed", type=int, default=1, help="seed of the mutation generator")
    p.add_argument(
        "--check-every", type=positive_int, default=256, help="datagrams per health PING"
    )
    p.add_argument(
        "--rss-every", type=positive_int, default=10_000, help="datagrams per RSS sample"
    )
    p.add_argument(
        "--max-seconds", type=positive_float, default=3600.0, help="stop after this long"
    )
    p.add_argument("--rss-tolerance", type=non_negative_float, default=RSS_TOLERANCE)
    p.add_argument("--json", action="store_true", help="print the figures as JSON too")
    p.add_argument(
        "--avoid-known-crashes",
        action="store_true",
        help="skip datagrams that hit a known crash (bug 1 in SECURITY.md)",
    )
    args = p.parse_args(argv)
    if os.name != "posix":
        print("needs Linux (/proc/PID/status)", file=sys.stderr)
        return 2
    report = run_fuzz(
        args.count,
        seed=args.seed,
        check_every=args.check_every,
        rss_every=args.rss_every,
        max_seconds=args.max_seconds,
        avoid_known_crashes=args.avoid_known_crashes,
        progress=lambda line: print(line, flush=True),
    )
    for line in report.lines():
        print(line)
    if args.json:
        print(
            json.dumps(
                {
                    "sent": report.sent,
                    "seconds": round(report.seconds, 2),
                    "rate": round(report.rate),
                    "pings_ok": report.pings_ok,
                    "pings_failed": report.pings_failed,
                    "rss_kib": {
                        "first": report.rss_first,
                        "warm": report.rss_warm,
                        "peak": report.rss_peak,
                        "last": report.rss_last,
                    },
                    "stats": report.stats,
                    "kinds": dict(report.kinds),
                }
            )
        )
    ok = report.sent > 0 and report.ok(args.rss_tolerance)  # nothing sent checks nothing
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
