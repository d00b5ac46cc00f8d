"""Who marked first: settle two or more ownership claims on one suspect model.

A *claim* (``backmark claim``) bundles what a claimant shows: its verification key, a challenge, the
proof that answers it (signed with the claimant's identity, ideally) and the registry's receipt for the
key. :func:`dispute` re-checks every claim itself:

1. the receipt is signed by the registry, is for this key, and is still in the registry's log (the same
   entry number and entry hash): a receipt cannot be made up or its entry quietly removed;
2. the first registration of this key in the log is the claimant's own: a thief who registered an owner's
   key under its own identity, later, does not become its owner;
3. the proof was signed by the identity that registered the key (a claim with an unsigned proof is
   reported as such; one signed by another identity is not the registrant's claim);
4. the public check of the proof against the suspect (:func:`backmark.public.check_proof`);
5. with the model's publication date, a key registered after it is flagged: it could have been made (and
   ground) against the published model, as a thief's second mark would be.

Among the claims that pass 1 to 4 and are not flagged by 5, the one registered first in the log (the
registry's order, which its hash chain fixes) is named. Two verified marks on one model are what
"ownership piracy" looks like (SPEC section 4): only the order of registration decides it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

from torch import nn

from backmark.atomic import write_bytes
from backmark.constants import DEFAULT_ALPHA, DEFAULT_VERIFY_TEST, VerifyTest
from backmark.errors import BackmarkError
from backmark.infra.canonical_json import canonical_json
from backmark.infra.json_files import check_versioned, read_json
from backmark.keys import VK_NAME, VerificationKey, parse_verification_key
from backmark.ledger.chain import check_receipt_format
from backmark.public.challenge import Challenge, parse_challenge
from backmark.public.check import CheckResult, check_proof
from backmark.public.proof import Proof, parse_proof
from backmark.targets import Target

CLAIM_FORMAT = "backmark-claim"
CLAIM_VERSION = 1


@dataclass(frozen=True)
class Claim:
    """One claimant's evidence, parsed and self-consistent (the key, challenge and proof belong together)."""

    name: str
    vk: VerificationKey
    challenge: Challenge
    proof: Proof
    receipt: Mapping[str, Any]  # read-only: the registry's signed receipt as read


def make_claim(
    vk: str | Path, challenge: str | Path, proof: str | Path, receipt: str | Path
) -> dict[str, Any]:
    """The claim document bundling the four files (each is read and checked first)."""
    vk_doc = read_json(Path(vk) / VK_NAME if Path(vk).is_dir() else vk, "verification key")
    parse_verification_key(vk_doc, vk)
    challenge_doc = read_json(challenge, "challenge")
    parse_challenge(challenge_doc, f"challenge {challenge}")
    proof_doc = read_json(proof, "proof")
    parse_proof(proof_doc, f"proof {proof}")
    receipt_doc = read_json(receipt, "receipt")
    check_receipt_format(receipt_doc, f"receipt {receipt}")
    return {
        "format": CLAIM_FORMAT,
        "version": CLAIM_VERSION,
        "vk": vk_doc,
        "challenge": challenge_doc,
        "proof": proof_doc,
        "receipt": receipt_doc,
    }


def save_claim(doc: dict[str, Any], path: str | Path, *, force: bool = False) -> Path:
    return write_bytes(path, canonical_json(doc) + b"\n", mode=0o644, force=force)


def parse_claim(doc: Any, name: str) -> Claim:
    where = f"claim {name}"
    check_versioned(
        doc, where, format=CLAIM_FORMAT, version=CLAIM_VERSION, noun="claim",
        hint="make one with `backmark claim`",
    )  # fmt: skip
    try:
        vk = parse_verification_key(doc["vk"], f"in {where}")
        challenge = parse_challenge(doc["challenge"], f"the challenge in {where}")
        proof = parse_proof(doc["proof"], f"the proof in {where}")
        receipt = doc["receipt"]
    except KeyError as exc:
        raise BackmarkError(f"{where} has no {exc.args[0]!r}") from None
    if not isinstance(receipt, dict):
        raise BackmarkError(f"{where}: its receipt is not a JSON object")
    return Claim(name, vk, challenge, proof, MappingProxyType(receipt))


def load_claim(path: str | Path) -> Claim:
    return parse_claim(read_json(path, "claim"), str(path))


@dataclass(frozen=True)
class ClaimOutcome:
    """What the dispute found about one claim. ``valid`` claims take part in the order."""

    name: str
    key_id: str
    owner: str | None
    entry: int | None
    registered: str | None
    check: CheckResult | None
    problems: tuple[str, ...]
    after_publication: bool

    @property
    def verified(self) -> bool:
        return self.check is not None and self.check.verified

    @property
    def valid(self) -> bool:
        return self.verified and not self.problems and not self.after_publication

    def to_dict(self) -> dict[str, Any]:
        return {
            "claim": self.name,
            "key_id": self.key_id,
            "owner": self.owner,
            "entry": self.entry,
            "registered": self.registered,
            "verified": self.verified,
            "valid": self.valid,
            "after_publication": self.after_publication,
            "problems": list(self.problems),
            "check": None if self.check is None else self.check.to_dict(),
        }


@dataclass(frozen=True)
class DisputeResult:
    outcomes: tuple[ClaimOutcome, ...]
    registry: str
    published: str | None

    @property
    def first(self) -> ClaimOutcome | None:
        """The valid claim registered first, or None."""
        valid = [o for o in self.outcomes if o.valid and o.entry is not None]
        return min(valid, key=lambda o: o.entry or 0) if valid else None

    def to_dict(self) -> dict[str, Any]:
        first = self.first
        return {
            "first": None if first is None else first.name,
            "first_owner": None if first is None else first.owner,
            "registry": self.registry,
            "published": self.published,
            "claims": [o.to_dict() for o in self.outcomes],
        }


def _when(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def parse_published(text: str) -> datetime:
    """A publication date or time (ISO 8601; a date alone is its start, UTC)."""
    try:
        return _when(text)
    except ValueError:
        raise BackmarkError(
            f"{{published}} must be an ISO date or time such as 2026-12-01 or 2026-12-01T12:00:00+00:00, "
            f"got {text!r}",
            params=["published"],
        ) from None


def _registration(
    claim: Claim, registry: Any, problems: list[str]
) -> tuple[str | None, int | None, str | None]:
    """Steps 1 and 2; returns (owner, entry, timestamp) of the claim's receipt, adding what is wrong."""
    from backmark.ledger.chain import check_receipt

    receipt = claim.receipt
    try:
        check_receipt(dict(receipt), registry.server_identity())
    except BackmarkError as exc:
        problems.append(f"its receipt is not the registry's: {exc}")
        return None, None, None
    owner, entry, stamp = str(receipt.get("owner")), receipt.get("entry"), str(receipt.get("timestamp"))
    if not isinstance(entry, int):
        problems.append("its receipt has no entry number")
        return owner, None, stamp
    if receipt.get("vk_digest") != claim.vk.digest:
        problems.append("its receipt is for another verification key")
    entries = registry.lookup(vk_digest=claim.vk.digest)
    mine = [e for e in entries if e.get("entry") == entry]
    if not mine or mine[0].get("entry_hash") != receipt.get("entry_hash"):
        problems.append(f"entry {entry} of its receipt is not in the registry's log as receipted")
    if entries and entries[0].get("owner") != owner:
        problems.append(
            f"this key was first registered by another identity ({str(entries[0].get('owner'))[:16]}, entry "
            f"{entries[0].get('entry')})"
        )
    return owner, entry, stamp


def dispute(
    model: nn.Module | Target,
    claims: Sequence[Claim],
    *,
    registry_url: str,
    published: datetime | None = None,
    alpha: float = DEFAULT_ALPHA,
    timeout: float = 10.0,
    deadline: float = 60.0,
    test: VerifyTest = DEFAULT_VERIFY_TEST,
) -> DisputeResult:
    """Check every claim (see the module docstring) against ``model`` and the registry at ``registry_url``;
    each proof's check is decided by ``test`` (default: the labels or the label-free test)."""
    from backmark.ledger.client import RegistryClient

    if len(claims) < 1:
        raise BackmarkError("a dispute needs at least one claim")
    outcomes = []
    with RegistryClient(registry_url, timeout=timeout, deadline=deadline) as registry:
        for claim in claims:
            problems: list[str] = []
            owner, entry, stamp = _registration(claim, registry, problems)
            signer = claim.proof.signer
            if signer is None:
                problems.append("its proof is not signed, so nothing ties it to the key's registrant")
            elif owner is not None and signer != owner:
                problems.append(f"its proof is signed by {signer[:16]}, not by the key's registrant")
            try:
                result: CheckResult | None = check_proof(
                    model, claim.vk, claim.challenge, claim.proof, alpha=alpha, test=test
                )
            except BackmarkError as exc:
                result = None
                problems.append(f"its proof is rejected: {exc}")
            late = published is not None and stamp is not None and _when(stamp) > published
            outcomes.append(
                ClaimOutcome(claim.name, claim.vk.key_id, owner, entry, stamp, result, tuple(problems), late)
            )
    outcomes.sort(key=lambda o: (o.entry is None, o.entry or 0))
    return DisputeResult(tuple(outcomes), registry_url, None if published is None else published.isoformat())
