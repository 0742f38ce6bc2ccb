"""Who may write a mesh: the founder, and every key whose certificates chain to it.

A `MembershipView` holds one mesh's genesis and any number of certificates, in
any order. A certificate counts only once its admitter is admitted, so

- a chain of certs may arrive backwards: a cert waits until its admitter's
  cert arrives (`pending()`), then counts;
- a cycle (A admits B, B admits A) that never reaches the founder never counts;
- a self-admitting cert is malformed (`records` rejects it at parse time);
- a cert for another mesh is refused.

Membership is a function of the *set* of certs, computed breadth-first from
the founder by `records.admissions` and cached until the set changes, so the
answer never depends on arrival order, and `is_member` is a dict lookup. The
view is append-only: DESIGN §4 has no revocation yet.

A membership proof is the genesis record followed by the certs of one shortest
chain, founder first: `[genesis, cert(founder → a), cert(a → b), ...]`. A node
that has never seen the mesh checks it with `verify_proof` alone: the genesis
must hash to the mesh id, and every cert must verify and hand membership one
step down to the author. A proof is at most `MAX_PROOF` records long.

`MembershipBook` is the node-wide `MembershipCheck`: a view per known mesh.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from .errors import ErrorCode, LocalError, ValidationError
from .identity import ED25519, Crypto
from .ids import sha256
from .records import (
    MAX_ROSTER_CERTS,
    Admission,
    Cert,
    Genesis,
    Roster,
    admissions,
    make_roster,
    validate,
)

__all__ = [
    "MAX_PROOF",
    "MembershipBook",
    "MembershipView",
    "membership_proof",
    "verify_proof",
]

# The genesis plus one cert per step. A chain cannot be longer than the roster it
# came from; a longer "proof" is refused before any signature is checked.
MAX_PROOF = 1 + MAX_ROSTER_CERTS


@dataclass(slots=True)
class MembershipView:
    """The members of one mesh, from its genesis and the certificates seen so far."""

    genesis: Genesis
    _certs: dict[bytes, Cert] = field(default_factory=dict, init=False, repr=False)
    # Who is admitted, by `admissions`; None when certs changed since the last query.
    _admitted: dict[bytes, Admission] | None = field(default=None, init=False, repr=False)

    @classmethod
    def from_roster(cls, roster: Roster) -> MembershipView:
        view = cls(roster.genesis)
        view.add_certs(roster.certs)
        return view

    @property
    def mesh(self) -> bytes:
        return self.genesis.key

    @property
    def founder(self) -> bytes:
        return self.genesis.founder

    def add_cert(self, cert: Cert) -> bool:
        """Take a validated certificate; True if it was new. It counts once it chains.

        Raises ValidationError(NOT_MEMBER) for a cert of another mesh.
        """
        if cert.mesh != self.mesh:
            raise ValidationError(ErrorCode.NOT_MEMBER, "certificate is for another mesh")
        if cert.member == cert.admitter:  # unreachable through `validate`; kept for safety
            raise ValidationError(ErrorCode.MALFORMED, "a key cannot admit itself")
        if cert.key in self._certs:
            return False
        self._certs[cert.key] = cert
        self._admitted = None
        return True

    def add_certs(self, certs: Iterable[Cert]) -> int:
        return sum(self.add_cert(c) for c in certs)

    def _admissions(self) -> dict[bytes, Admission]:
        if self._admitted is None:
            self._admitted = admissions(self.founder, self._certs.values())
        return self._admitted

    def is_member(self, mesh: bytes, key: bytes) -> bool:
        """A `MembershipCheck`: True when `key` is admitted to `mesh` (this view's mesh)."""
        return mesh == self.mesh and key in self._admissions()

    def members(self) -> frozenset[bytes]:
        return frozenset(self._admissions())

    def pending(self) -> tuple[Cert, ...]:
        """Certs whose admitter is not (yet) a member, sorted by hash."""
        admitted = self._admissions()
        return tuple(
            sorted(
                (c for c in self._certs.values() if c.admitter not in admitted), key=lambda c: c.key
            )
        )

    def chain(self, key: bytes) -> tuple[Cert, ...]:
        """The certs of `key`'s shortest chain, founder first; () for the founder.

        Raises LocalError if `key` is not a member.
        """
        admitted = self._admissions()
        if key not in admitted:
            raise LocalError(f"{key.hex()[:16]}… is not a member of this mesh")
        out: list[Cert] = []
        via = admitted[key].via
        while via is not None:  # depth falls by one per step, so this ends
            out.append(via)
            via = admitted[via.admitter].via
        out.reverse()
        return tuple(out)

    def roster(self) -> Roster:
        """The roster record for what this view holds (bounded; see `make_roster`)."""
        return make_roster(self.genesis, self._certs.values())


def membership_proof(view: MembershipView, author: bytes) -> list[bytes]:
    """Genesis and chain records proving that `author` is a member; LocalError if not."""
    return [view.genesis.raw, *(c.raw for c in view.chain(author))]


def verify_proof(mesh: bytes, author: bytes, proof: list[bytes], crypto: Crypto = ED25519) -> bool:
    """True when `proof` shows, on its own, that `author` is a member of `mesh`."""
    if not 1 <= len(proof) <= MAX_PROOF:
        return False
    try:
        genesis = validate(mesh, proof[0], crypto=crypto)
        if not isinstance(genesis, Genesis):
            return False
        holder = genesis.founder
        for raw in proof[1:]:
            cert = validate(sha256(raw), raw, crypto=crypto)
            if not isinstance(cert, Cert) or cert.mesh != mesh or cert.admitter != holder:
                return False
            holder = cert.member
    except ValidationError:
        return False
    return holder == author


@dataclass(slots=True)
class MembershipBook:
    """Views of every mesh a node knows; its `is_member` is the node's `MembershipCheck`."""

    views: dict[bytes, MembershipView] = field(default_factory=dict)

    def add_genesis(self, genesis: Genesis) -> MembershipView:
        return self.views.setdefault(genesis.key, MembershipView(genesis))

    def add_roster(self, roster: Roster) -> MembershipView:
        view = self.add_genesis(roster.genesis)
        view.add_certs(roster.certs)
        return view

    def add_cert(self, cert: Cert) -> bool:
        """Add a cert to its mesh's view; LocalError if the mesh's genesis is unknown."""
        view = self.views.get(cert.mesh)
        if view is None:
            raise LocalError(f"unknown mesh {cert.mesh.hex()[:16]}…: add its genesis first")
        return view.add_cert(cert)

    def is_member(self, mesh: bytes, key: bytes) -> bool:
        view = self.views.get(mesh)
        return view is not None and view.is_member(mesh, key)
