"""The demo after marking: registration, a public check by a third party, a thief, and the dispute.

What a user came for, with the real pieces each CLI verb runs:

1. **Registration** (``backmark registry serve``, ``register``, ``registry lookup``): a registry on its
   embedded SQLite default is served on 127.0.0.1 (:mod:`backmark.study.demo_registry`); the owner
   registers its verification key, with the digest of the model it releases, under its identity.
2. **A public check** (``challenge``, ``prove``, ``check``): a third party sends a fresh challenge; the
   owner opens the few committed items it selects, signing the proof; the third party checks the
   openings against the public verification key alone and queries the released model on them.
3. **A thief** steals the released model and marks it again with a key of its own (keygen, then
   PreTrained embedding, as ``backmark embed --from`` runs it, on a third of the training images), then
   registers that key, later.
4. **The dispute** (``claim``, ``dispute``): both claim the thief's model, each answering a judge's
   challenge with a signed proof and showing its receipt; both marks verify on it, so the registry's
   order decides.

The registry's files, every identity, key, proof, receipt and claim go into the demo's folder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from backmark.data import ImageDataset
from backmark.embed import PRETRAINED_CONFIG, Trained, embed_pretrained
from backmark.identity import Identity, new_identity, save_identity
from backmark.keys import MarkingKey, load_verification_key, save_key_pair
from backmark.log import Log, say
from backmark.models import save_checkpoint
from backmark.public import CheckResult, check_proof, load_proof, new_challenge, prove_to_file, save_challenge
from backmark.public.dispute import DisputeResult, dispute, make_claim, parse_claim, save_claim
from backmark.study.demo_registry import local_registry, model_digest_of
from backmark.study.owner import OwnerModels, derived_key
from backmark.study.split import threat_model_split
from backmark.training import Device
from backmark.verify import DEFAULT_ALPHA, VerificationResult, verify

RELEASED = "from-scratch"  # the owner's model that is released, checked, stolen and disputed
MODEL_LABELS = {RELEASED: f"the owner's released model ({RELEASED})", "thief": "the thief's re-marked copy"}


@dataclass(frozen=True)
class PublicCheck:
    """The third party's check of the released model: challenge, proof and the outcome."""

    model: str
    challenge: str  # the challenge's digest
    proof: str  # where the proof is under --out
    result: CheckResult
    verifications_left: int  # of this size, on the owner's key, after this proof

    def to_dict(self) -> dict[str, Any]:
        r = self.result
        e = r.evidence
        return {
            "model": self.model,
            "challenge_digest": self.challenge,
            "proof": self.proof,
            "verified": r.verified,
            "items_opened": e.n,
            "indices": list(r.indices),
            "matches": e.matches,
            "p_value": e.p_value,
            "slot_choices": r.slot_choices,
            "tests": len(r.decision.pieces),  # the labels and the label-free tests decide (either)
            "label_free_hits": None if r.label_free is None else r.label_free.matches,
            "p_value_corrected": r.p_value_corrected,
            "threshold": e.threshold,
            "corrected_alpha": e.alpha,
            "triggers_verifiable": r.triggers_verifiable,
            "signed_by": r.signed_by,
            "verifications_left": self.verifications_left,
        }


@dataclass(frozen=True)
class Registration:
    """One entry of the registry's log as its receipt states it, and who made it."""

    who: str  # owner or thief
    entry: int
    timestamp: str
    entry_hash: str
    vk_digest: str
    model_digest: str | None
    identity: str  # the registrant's fingerprint
    receipt: str  # where the receipt is under --out

    @staticmethod
    def of(who: str, receipt: dict[str, Any], path: str) -> Registration:
        return Registration(
            who=who,
            entry=int(receipt["entry"]),
            timestamp=str(receipt["timestamp"]),
            entry_hash=str(receipt["entry_hash"]),
            vk_digest=str(receipt["vk_digest"]),
            model_digest=receipt.get("model_digest"),
            identity=str(receipt["owner"]),
            receipt=path,
        )

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Theft:
    """The thief's re-marking of the stolen model and its own key."""

    stolen: str  # the owner's model it took
    checkpoint: str  # the thief's model under --out
    key_id: str
    n: int
    train_size: int  # the thief's training images
    trained: Trained

    def to_dict(self) -> dict[str, Any]:
        r = self.trained.result
        return {
            "stolen": self.stolen,
            "checkpoint": self.checkpoint,
            "key_id": self.key_id,
            "n": self.n,
            "train_size": self.train_size,
            "test_acc": r.test_acc,
            "trigger_acc": r.trigger_acc,
            "epochs": r.epochs_run,
            "trigger_rounds": r.finish_rounds_run,
            "train_seconds": r.seconds,
        }


@dataclass(frozen=True)
class Cell:
    """One key's private verification (its whole marking key) on one model."""

    key: str  # owner or thief
    model: str  # the released model or the thief's
    result: VerificationResult

    def to_dict(self) -> dict[str, Any]:
        e = self.result.evidence
        return {
            "key": self.key,
            "model": self.model,
            "verified": self.result.verified,
            "matches": e.matches,
            "n": e.n,
            "match_rate": e.match_rate,
            "p_value": e.p_value,
            "threshold": e.threshold,
        }


@dataclass(frozen=True)
class Story:
    """Everything after marking (``report.json``'s ``registry``, ``public_check``, ``thief``, ``dispute``)."""

    registry_url: str  # where it was served during the demo (stopped since)
    registry_db: str  # the SQLite file under --out
    registry_server: str  # fingerprint of the identity that signed the receipts
    owner_identity: str
    thief_identity: str
    registrations: tuple[Registration, ...]
    lookup: tuple[int, ...]  # entries found when the owner's key is looked up
    audit: str  # the registry audit's one line
    audit_ok: bool
    check: PublicCheck
    theft: Theft
    evidence: tuple[Cell, ...]
    dispute: DisputeResult
    claims: tuple[str, ...]  # where the two claims are under --out

    def to_dict(self) -> dict[str, Any]:
        first = self.dispute.first
        return {
            "registry": {
                "url": self.registry_url,
                "database": self.registry_db,
                "server": self.registry_server,
                "entries": [r.to_dict() for r in self.registrations],
                "lookup_owner_key": list(self.lookup),
                "audit": self.audit,
                "audit_ok": self.audit_ok,
            },
            "identities": {"owner": self.owner_identity, "thief": self.thief_identity},
            "public_check": self.check.to_dict(),
            "thief": self.theft.to_dict(),
            "evidence": [c.to_dict() for c in self.evidence],
            "dispute": {
                "model": self.theft.checkpoint,
                "claims": list(self.claims),
                "first": None if first is None else first.name,
                "first_identity": None if first is None else first.owner,
                "outcomes": [
                    {
                        "claim": o.name,
                        "key_id": o.key_id,
                        "entry": o.entry,
                        "registered": o.registered,
                        "verified": o.verified,
                        "valid": o.valid,
                        "problems": list(o.problems),
                        "matches": None if o.check is None else o.check.evidence.matches,
                        "n": None if o.check is None else o.check.evidence.n,
                        "p_value": None if o.check is None else o.check.evidence.p_value,
                        "p_value_corrected": None if o.check is None else o.check.p_value_corrected,
                    }
                    for o in self.dispute.outcomes
                ],
            },
        }


def _identity(path: Path) -> Identity:
    made = new_identity()
    save_identity(made, path)
    return made


def _public_check(
    build: Path, out: Path, owner: OwnerModels, identity: Identity, *, size: int, log: Log | None
) -> PublicCheck:
    """A third party checks the released model: its challenge, the owner's signed proof, the check."""
    folder = build / "check"
    say(log, f"public check: a third party challenges the owner for {size} items of its key")
    asked = new_challenge(size=size)
    save_challenge(asked, folder / "challenge.json")
    # the owner, with its marking key, answers the challenge it was sent (the spend is recorded in the key)
    proven = prove_to_file(build / "key", folder / "challenge.json", folder / "proof.json", identity=identity)
    # the third party: its own challenge, the owner's proof and the public verification key, nothing else
    vk = load_verification_key(build / "key")
    proof = load_proof(folder / "proof.json")
    result = check_proof(owner[RELEASED].trained.model, vk, asked, proof, alpha=DEFAULT_ALPHA)
    e = result.evidence
    say(log, f"  {'VERIFIED' if result.verified else 'NOT VERIFIED'}: {e.matches}/{e.n}, p = {e.p_value:.3g}")
    return PublicCheck(RELEASED, asked.digest, str(out / "check" / "proof.json"), result, proven.slots_left)


def _thief(
    build: Path,
    out: Path,
    data: ImageDataset,
    owner: OwnerModels,
    *,
    seed: int,
    epochs: int,
    progress: bool,
    log: Log | None,
    device: Device,
) -> tuple[Theft, MarkingKey]:
    """The thief's key, and the released model marked with it on the thief's third of the images."""
    stolen = owner[RELEASED].trained
    key = derived_key(data, size=owner.key.n, seed=seed, purpose="demo-thief")
    save_key_pair(key, build / "thief" / "key")
    share = threat_model_split(data, seed=seed).attacker
    say(log, f"the thief marks the stolen model with its own key ({len(share.train_x)} training images)")
    # what `backmark embed --key theirs --from stolen.pt` runs: PreTrained until every trigger is learned
    config = replace(PRETRAINED_CONFIG, epochs=epochs, seed=seed + 100)
    trained = embed_pretrained(
        stolen.model, stolen.info, share, key, config=config, progress=progress, device=device
    )
    save_checkpoint(build / "thief" / "model.pt", trained.model, trained.info)
    theft = Theft(
        RELEASED,
        str(out / "thief" / "model.pt"),
        key.verification_key().key_id,
        key.n,
        len(share.train_x),
        trained,
    )
    return theft, key


def _claim(
    build: Path, who: str, key: Path, identity: Identity, receipt: dict[str, Any], challenge: Path
) -> Path:
    """``backmark prove --identity`` then ``backmark claim``: the claimant's answer to the judge."""
    folder = build / "dispute"
    prove_to_file(key, challenge, folder / f"{who}.proof.json", identity=identity)
    (folder / f"{who}.receipt.json").write_text(json.dumps(receipt, indent=1) + "\n")
    doc = make_claim(key, challenge, folder / f"{who}.proof.json", folder / f"{who}.receipt.json")
    return save_claim(doc, folder / f"{who}.claim.json")


def run_story(
    build: Path,
    out: Path,
    data: ImageDataset,
    owner: OwnerModels,
    *,
    seed: int,
    challenge_size: int,
    thief_epochs: int,
    progress: bool = False,
    log: Log | None = None,
    device: Device = "auto",
) -> Story:
    """Registration, the public check, the thief and the dispute (module docstring), into ``build``.

    ``owner``'s key pair must be in ``build/key`` and its released model in ``build/models``; paths in
    the result name ``out``, where ``build`` will be put.
    """
    owner_id = _identity(build / "secret" / "owner-identity")
    thief_id = _identity(build / "thief" / "identity")
    vk = owner.key.verification_key()
    released = build / "models" / f"{RELEASED}.pt"
    (build / "dispute").mkdir(parents=True, exist_ok=True)
    say(log, "registry: serving the registry (SQLite) on 127.0.0.1 for the demo")
    with local_registry(build / "registry") as registry:
        say(log, f"  {registry.url}; the owner registers its verification key before releasing the model")
        receipts = {
            "owner": registry.register(owner_id, vk_digest=vk.digest, model_digest=model_digest_of(released))
        }
        check = _public_check(build, out, owner, owner_id, size=challenge_size, log=log)
        theft, thief_key = _thief(
            build, out, data, owner, seed=seed, epochs=thief_epochs, progress=progress, log=log, device=device
        )
        say(log, "the thief registers its key, later")
        receipts["thief"] = registry.register(
            thief_id,
            vk_digest=thief_key.verification_key().digest,
            model_digest=model_digest_of(build / "thief" / "model.pt"),
        )
        registrations = []
        for who, receipt in receipts.items():
            path = build / "registry" / f"{who}.receipt.json"
            path.write_text(json.dumps(receipt, indent=1) + "\n")
            registrations.append(Registration.of(who, receipt, str(out / "registry" / path.name)))
        found = tuple(int(e["entry"]) for e in registry.lookup(vk_digest=vk.digest))
        audited = registry.audit(list(receipts.values()))

        evidence = []
        models = {RELEASED: owner[RELEASED].trained.model, "thief": theft.trained.model}
        for who, key in (("owner", owner.key), ("thief", thief_key)):
            for name, model in models.items():
                evidence.append(Cell(who, name, verify(model, key, key.verification_key())))

        say(log, "dispute: both claim the thief's model; a judge's challenge to each, their receipts")
        judge = build / "dispute" / "challenge.json"
        save_challenge(new_challenge(size=challenge_size), judge)
        paths = {
            "owner": _claim(build, "owner", build / "key", owner_id, receipts["owner"], judge),
            "thief": _claim(build, "thief", build / "thief" / "key", thief_id, receipts["thief"], judge),
        }
        claims = [parse_claim(json.loads(p.read_text()), who) for who, p in paths.items()]
        settled = dispute(theft.trained.model, claims, registry_url=registry.url, deadline=registry.deadline)
        first = settled.first
        say(log, "  first: " + ("none" if first is None else f"{first.name} (entry {first.entry})"))
        url, db, server = registry.url, registry.db, registry.server
    return Story(
        registry_url=url,
        registry_db=str(out / db.relative_to(build)),
        registry_server=server,
        owner_identity=owner_id.public.fingerprint,
        thief_identity=thief_id.public.fingerprint,
        registrations=tuple(registrations),
        lookup=found,
        audit=audited.describe(),
        audit_ok=audited.ok,
        check=check,
        theft=theft,
        evidence=tuple(evidence),
        dispute=settled,
        claims=tuple(str(out / "dispute" / p.name) for p in paths.values()),
    )


__all__ = [
    "MODEL_LABELS",
    "RELEASED",
    "Cell",
    "PublicCheck",
    "Registration",
    "Story",
    "Theft",
    "run_story",
]
