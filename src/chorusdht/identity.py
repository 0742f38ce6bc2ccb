"""Ed25519 identities: a key pair whose public key's SHA-256 is the node (or author) id.

Signing and verifying go through a small `Crypto` interface so that netsim can
swap in a cheap stand-in for very large runs; production always uses `ED25519`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from .errors import ConfigError
from .ids import puzzle_ok, sha256

__all__ = ["ED25519", "Crypto", "Ed25519Crypto", "Identity", "load_or_create_identity"]

PUBLIC_KEY_BYTES = 32  # raw Ed25519 public key
SIGNATURE_BYTES = 64  # raw Ed25519 signature
_KEY_FILE_HEADER = "chorusdht-ed25519-v1"  # first line of a key file; the second is the hex seed


class Crypto(Protocol):
    """Signature verification, injected wherever a signature is checked."""

    def verify(self, public_key: bytes, data: bytes, signature: bytes) -> bool: ...


class Ed25519Crypto:
    """Real Ed25519 verification (the only suite used outside netsim)."""

    def verify(self, public_key: bytes, data: bytes, signature: bytes) -> bool:
        if len(public_key) != PUBLIC_KEY_BYTES or len(signature) != SIGNATURE_BYTES:
            return False
        try:
            Ed25519PublicKey.from_public_bytes(public_key).verify(signature, data)
        except (InvalidSignature, ValueError):
            return False
        return True


ED25519: Crypto = Ed25519Crypto()


class Signer(Protocol):
    """Anything that can sign as an identity."""

    @property
    def public_key(self) -> bytes: ...

    @property
    def node_id(self) -> bytes: ...

    def sign(self, data: bytes) -> bytes: ...


@dataclass(frozen=True, slots=True)
class Identity:
    """An Ed25519 key pair. `node_id` = SHA-256(raw public key)."""

    private_key: Ed25519PrivateKey = field(repr=False)
    public_key: bytes
    node_id: bytes

    @classmethod
    def generate(
        cls, puzzle_bits: int = 0, progress: Callable[[int], None] | None = None
    ) -> Identity:
        """A fresh key pair; with `puzzle_bits`, keys are ground until the id meets the
        static puzzle (`ids.puzzle_ok`): about 2^puzzle_bits tries (8 bits: ~256).
        `progress`, if given, is called with the number of keys tried after each miss."""
        tries = 0
        while True:
            ident = cls.from_private_key(Ed25519PrivateKey.generate())
            if puzzle_ok(ident.node_id, puzzle_bits):
                return ident
            tries += 1
            if progress is not None:
                progress(tries)

    @classmethod
    def from_seed(cls, seed: bytes) -> Identity:
        """Deterministic identity from a 32-byte seed (tests and simulations)."""
        if len(seed) != 32:
            raise ConfigError("an Ed25519 seed is 32 bytes")
        return cls.from_private_key(Ed25519PrivateKey.from_private_bytes(seed))

    @classmethod
    def from_private_key(cls, key: Ed25519PrivateKey) -> Identity:
        public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return cls(private_key=key, public_key=public, node_id=sha256(public))

    def sign(self, data: bytes) -> bytes:
        return self.private_key.sign(data)

    def seed(self) -> bytes:
        return self.private_key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())

    def save(self, path: Path) -> None:
        """Write the key file with mode 0600, never readable by others, even briefly."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(f"{_KEY_FILE_HEADER}\n{self.seed().hex()}\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> Identity:
        try:
            text = path.read_text()
        except FileNotFoundError:
            raise ConfigError(f"no key file at {path} (run `chorusdht init`)") from None
        except OSError as e:
            raise ConfigError(f"cannot read key file {path}: {e.strerror}") from None
        except UnicodeDecodeError:  # binary garbage: the file is ASCII when we write it
            raise ConfigError(f"corrupt key file {path}: not a chorusdht key") from None
        lines = text.split()
        if len(lines) != 2 or lines[0] != _KEY_FILE_HEADER:
            raise ConfigError(f"corrupt key file {path}: not a chorusdht key")
        try:
            seed = bytes.fromhex(lines[1])
        except ValueError:
            raise ConfigError(f"corrupt key file {path}: the seed is not hex") from None
        if len(seed) != 32:
            raise ConfigError(f"corrupt key file {path}: the seed is not 32 bytes")
        return cls.from_seed(seed)


def load_or_create_identity(path: Path, puzzle_bits: int = 0) -> Identity:
    """Load the identity at `path`, creating it (mode 0600, meeting the id puzzle) if absent."""
    if path.exists():
        return Identity.load(path)
    ident = Identity.generate(puzzle_bits)
    ident.save(path)
    return ident
