"""Every error chorusdht raises on purpose, and whose fault it is.

    ChorusError                      root: catch this to catch everything we raise
    ├── LocalError                   you misused the API or gave bad input (your fault)
    │   ├── ConfigError              a bad address, option, key file or data directory
    │   ├── SealError                a sealed payload this mesh key cannot open
    │   └── StoreError               the local store failed or is locked
    ├── RemoteProtocolError          a peer sent something wrong (the peer's fault)
    │   ├── DecodeError              bytes that are not a well-formed, bounded message
    │   └── ValidationError          a well-formed record or message that breaks a rule;
    │                                 it carries the wire error code (BAD_SIGNATURE, ...)
    └── NetworkError                 the network could not do what was asked (nobody's fault)
        ├── LookupFailed             no reachable node answered
        ├── NotFound                 a get found no valid record for the key
        └── QuorumError              fewer replicas acknowledged a put than the write quorum

A remote error is counted and dropped by the node; it never crashes it. Anything
else that escapes is a bug.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "ChorusError",
    "ConfigError",
    "DecodeError",
    "ErrorCode",
    "LocalError",
    "LookupFailed",
    "NetworkError",
    "NotFound",
    "QuorumError",
    "RemoteProtocolError",
    "SealError",
    "StoreError",
    "ValidationError",
]


class ErrorCode(StrEnum):
    """The error codes an ERROR message carries on the wire (DESIGN §3)."""

    MALFORMED = "MALFORMED"
    UNSUPPORTED_VERSION = "UNSUPPORTED_VERSION"
    TOO_LARGE = "TOO_LARGE"
    BAD_SIGNATURE = "BAD_SIGNATURE"
    HASH_MISMATCH = "HASH_MISMATCH"
    STALE_SEQ = "STALE_SEQ"
    NOT_MEMBER = "NOT_MEMBER"
    QUOTA = "QUOTA"
    RATE_LIMITED = "RATE_LIMITED"


class ChorusError(Exception):
    """Root of every error chorusdht raises on purpose."""


class LocalError(ChorusError):
    """The caller misused the API or passed bad input."""


class ConfigError(LocalError):
    """A bad address, option, key file or data directory."""


class SealError(LocalError):
    """A sealed payload that this mesh key cannot open (a wrong key, or altered bytes)."""


class StoreError(LocalError):
    """The local record store failed (corrupt, locked, full)."""


class RemoteProtocolError(ChorusError):
    """A peer sent bytes or records that break the protocol."""

    code: ErrorCode = ErrorCode.MALFORMED


class DecodeError(RemoteProtocolError):
    """Bytes that are not one well-formed, bounded CBOR message."""

    def __init__(self, message: str, code: ErrorCode = ErrorCode.MALFORMED) -> None:
        super().__init__(message)
        self.code = code


class ValidationError(RemoteProtocolError):
    """A well-formed record that breaks a rule; `code` is its wire error code."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(f"{code.value}: {message}")
        self.code = code


class NetworkError(ChorusError):
    """The network could not do what was asked."""


class LookupFailed(NetworkError):
    """No reachable node answered a lookup."""


class NotFound(NetworkError):
    """No valid record was found for the key."""


class QuorumError(NetworkError):
    """Fewer replicas acknowledged a put than the write quorum asked for."""

    def __init__(self, key: bytes, acks: int, quorum: int) -> None:
        super().__init__(
            f"only {acks} replica(s) acknowledged {key.hex()[:16]}…, write quorum is {quorum}"
        )
        self.key = key
        self.acks = acks
        self.quorum = quorum
