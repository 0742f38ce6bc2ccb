"""Sealed payloads: an optional per-mesh key, so that non-member replicas hold ciphertext only.

    key = new_mesh_key()                                       # 32 random bytes, out of band
    sealed = seal(key, mesh, author, seq, b"secret")           # what goes in a chunk's payload
    unseal(key, mesh, author, seq, sealed) == b"secret"        # or SealError

A sealed payload is an envelope *inside* a chunk's `payload` bytes; the signed
record formats of DESIGN §4 do not change. The chunk's hash and signature cover
the ciphertext, so the state root is the same for members and non-members, and
recovery without the key still proves the memory exact.

    envelope = MAGIC (7 bytes) ‖ nonce (12 random bytes) ‖ ChaCha20-Poly1305 ciphertext+tag
    AAD      = b"chorusdht/seal" ‖ mesh id ‖ author public key ‖ seq (8 bytes, big-endian)

The AAD binds a sealed payload to its place: copied into another mesh, another
author's chunk or another seq, it no longer opens. A mesh whose genesis policy
says `encrypted` has its payloads sealed by every member; the key itself never
enters the DHT (it lives in the node's data dir, see daemon.py).
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from .errors import ConfigError, SealError
from .records import Chunk

__all__ = [
    "MAGIC",
    "MESH_KEY_BYTES",
    "SEAL_OVERHEAD",
    "is_sealed",
    "key_opens_any",
    "new_mesh_key",
    "open_entry",
    "parse_mesh_key",
    "read_key_file",
    "seal",
    "unseal",
    "write_key_file",
]

MAGIC = b"CHSEAL1"  # marks (and versions) a sealed payload; plaintext rarely starts so
MESH_KEY_BYTES = 32  # ChaCha20-Poly1305 keys are 256 bits
NONCE_BYTES = 12  # random per entry: safe to ~2^32 entries per key (NIST SP 800-38D)
TAG_BYTES = 16  # Poly1305
SEAL_OVERHEAD = len(MAGIC) + NONCE_BYTES + TAG_BYTES  # 35 bytes added to every payload
AAD_CONTEXT = b"chorusdht/seal"  # domain separation from every other hash input
KEY_CHECK_SAMPLE = 16  # sealed entries a new key is tried on before it is called wrong


def new_mesh_key() -> bytes:
    """A fresh random mesh key (from the OS, never from an injected `random.Random`)."""
    return os.urandom(MESH_KEY_BYTES)


def _check_key(key: bytes) -> None:
    if len(key) != MESH_KEY_BYTES:
        raise ConfigError(f"a mesh key is {MESH_KEY_BYTES} bytes ({2 * MESH_KEY_BYTES} hex digits)")


def _aad(mesh: bytes, author: bytes, seq: int) -> bytes:
    return AAD_CONTEXT + mesh + author + seq.to_bytes(8, "big")


def is_sealed(payload: bytes) -> bool:
    """Whether `payload` is a sealed envelope (by its magic; it may still fail to open)."""
    return payload.startswith(MAGIC) and len(payload) >= SEAL_OVERHEAD


def seal(
    key: bytes,
    mesh: bytes,
    author: bytes,
    seq: int,
    plaintext: bytes,
    *,
    nonce: bytes | None = None,
) -> bytes:
    """Seal `plaintext` for the chunk (mesh, author, seq). `nonce` only for tests."""
    _check_key(key)
    nonce = os.urandom(NONCE_BYTES) if nonce is None else nonce
    if len(nonce) != NONCE_BYTES:
        raise ConfigError(f"a nonce is {NONCE_BYTES} bytes")
    body = ChaCha20Poly1305(key).encrypt(nonce, plaintext, _aad(mesh, author, seq))
    return MAGIC + nonce + body


def unseal(key: bytes, mesh: bytes, author: bytes, seq: int, payload: bytes) -> bytes:
    """Open a sealed payload of the chunk (mesh, author, seq), or raise SealError."""
    _check_key(key)
    if not is_sealed(payload):
        raise SealError("not a sealed payload")
    nonce = payload[len(MAGIC) : len(MAGIC) + NONCE_BYTES]
    body = payload[len(MAGIC) + NONCE_BYTES :]
    try:
        return ChaCha20Poly1305(key).decrypt(nonce, body, _aad(mesh, author, seq))
    except InvalidTag:
        raise SealError("this mesh key does not open the payload (wrong key or altered)") from None


def open_entry(chunk: Chunk, encrypted: bool, key: bytes | None) -> bytes | None:
    """An entry's plaintext: its payload, or in an encrypted mesh what `key` opens;
    None when it is sealed and there is no key or the key does not open it."""
    if not encrypted or not is_sealed(chunk.payload):
        return chunk.payload
    if key is None:
        return None
    try:
        return unseal(key, chunk.mesh, chunk.author, chunk.seq, chunk.payload)
    except SealError:
        return None


def key_opens_any(key: bytes, sealed: list[tuple[bytes, bytes, int, bytes]]) -> bool:
    """Whether `key` opens at least one of up to KEY_CHECK_SAMPLE (mesh, author, seq,
    payload) entries; True when there is none to try. One good entry is enough: a
    member who wrote junk under a key of its own cannot make the right key look wrong."""
    if not sealed:
        return True
    for mesh, author, seq, payload in sealed[:KEY_CHECK_SAMPLE]:
        try:
            unseal(key, mesh, author, seq, payload)
        except SealError:
            continue
        return True
    return False


def parse_mesh_key(text: str) -> bytes:
    """A mesh key from 64 hex digits, or one clear ConfigError (never echoes the key)."""
    try:
        raw = bytes.fromhex(text.strip())
    except ValueError:
        raise ConfigError("bad mesh key: expected 64 hex digits") from None
    if len(raw) != MESH_KEY_BYTES:
        raise ConfigError(f"bad mesh key: expected 64 hex digits, got {2 * len(raw)}")
    return raw


def read_key_file(path: Path) -> bytes:
    """A mesh key from a file holding its 64 hex digits (as `mesh create --key-file` writes)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"no mesh key file at {path}") from None
    except OSError as e:
        raise ConfigError(f"cannot read mesh key file {path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: bad mesh key: expected 64 hex digits") from None
    try:
        return parse_mesh_key(text)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


def write_key_file(path: Path, key: bytes) -> None:
    """Write a mesh key as hex with mode 0600 (never readable by others, even briefly)."""
    _check_key(key)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        os.fchmod(f.fileno(), 0o600)
        f.write(key.hex() + "\n")
    os.replace(tmp, path)
