"""A cheap stand-in for Ed25519, for very large simulations only.

Ed25519 costs about 21 µs to sign and 63 µs to verify. At 10,000 nodes a
bootstrap signs and verifies hundreds of thousands of challenges, and crypto
alone would take most of the run. A scenario that sets `fast_crypto = true`
swaps in this suite:

- a "signature" is 64 bytes derived from SHA-256(public key ‖ data);
- verifying recomputes it.

It is **not** a signature scheme: anyone who knows the public key can forge
one. That is acceptable inside netsim, where every node is our own code and no
adversary exists, and nowhere else. Nothing outside `netsim/` imports this
module; production always uses `chorusdht.ED25519`. Small scenarios and the
test suite run real Ed25519 (`fast_crypto = false`, the default), so the
challenge and record-signature paths are exercised exactly as shipped.

Both classes satisfy the core's `Crypto` and `Signer` protocols, so the core
runs unchanged: same code, cheaper arithmetic.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from chorusdht import Crypto, Identity

__all__ = ["SIM_CRYPTO", "SimCrypto", "SimIdentity", "make_identity"]

_SIG_CONTEXT_A = b"netsim/sig/a"  # two domain-separated halves make the 64 bytes Ed25519 has
_SIG_CONTEXT_B = b"netsim/sig/b"
_KEY_CONTEXT = b"netsim/key"  # public key = SHA-256(context ‖ seed): 32 bytes like Ed25519's


def _fake_sign(public_key: bytes, data: bytes) -> bytes:
    return (
        hashlib.sha256(_SIG_CONTEXT_A + public_key + data).digest()
        + hashlib.sha256(_SIG_CONTEXT_B + public_key + data).digest()
    )


class SimCrypto:
    """`Crypto` stand-in: verify recomputes the fake signature (simulation only)."""

    def verify(self, public_key: bytes, data: bytes, signature: bytes) -> bool:
        return len(public_key) == 32 and signature == _fake_sign(public_key, data)


SIM_CRYPTO: Crypto = SimCrypto()


@dataclass(frozen=True, slots=True)
class SimIdentity:
    """`Signer` stand-in whose id is SHA-256(public key), as for a real identity."""

    public_key: bytes
    node_id: bytes

    @classmethod
    def from_seed(cls, seed: bytes) -> SimIdentity:
        public = hashlib.sha256(_KEY_CONTEXT + seed).digest()
        return cls(public, hashlib.sha256(public).digest())

    def sign(self, data: bytes) -> bytes:
        return _fake_sign(self.public_key, data)


def make_identity(seed: bytes, *, fast: bool) -> Identity | SimIdentity:
    """A deterministic identity from a 32-byte seed: real Ed25519 unless `fast`."""
    return SimIdentity.from_seed(seed) if fast else Identity.from_seed(seed)
