"""dispute: two verified marks on one model (ownership piracy); the registry's order decides."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import seed_of
from public_helpers import LookupTarget

from backmark.cli.main import main
from backmark.identity import Identity, new_identity, save_identity
from backmark.infra.asgi import start_server
from backmark.keys import MarkingKey, generate_key, save_key_pair
from backmark.ledger.app import create_app
from backmark.ledger.client import register
from backmark.ledger.store import Store
from backmark.public import new_challenge, prove, save_challenge, save_proof, sign_proof
from backmark.public.dispute import dispute as settle
from backmark.public.dispute import load_claim, make_claim, parse_published, save_claim


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[str]:
    server = new_identity()
    store = Store(f"sqlite:///{tmp_path / 'registry.db'}", lock_timeout=5.0)
    store.init(server.public)
    running = start_server(create_app(store, server))
    try:
        yield running.url
    finally:
        running.stop()
        store.close()


class BothMarks:
    """A stolen model that the thief marked again: it answers the owner's key and the thief's."""

    def __init__(self, *keys: MarkingKey) -> None:
        self.parts = [LookupTarget(k, other=-1) for k in keys]

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        answers = [p.predict(images) for p in self.parts]
        out = torch.zeros(len(images), dtype=torch.int64)
        for a in reversed(answers):
            out = torch.where(a >= 0, a, out)
        return out


def claim_files(
    tmp: Path,
    name: str,
    key_dir: Path,
    identity: Identity,
    receipt: dict[str, Any],
    *,
    proof_from: Path | None = None,
) -> Path:
    """Challenge, signed proof and the receipt bundled into ``tmp/name.claim.json``."""
    challenge = new_challenge(size=20)
    save_challenge(challenge, tmp / f"{name}.challenge.json")
    proof = sign_proof(prove(proof_from or key_dir, challenge).proof, identity)
    save_proof(proof, tmp / f"{name}.proof.json")
    (tmp / f"{name}.receipt.json").write_text(json.dumps(receipt))
    doc = make_claim(
        key_dir / "verification-key.json",
        tmp / f"{name}.challenge.json",
        tmp / f"{name}.proof.json",
        tmp / f"{name}.receipt.json",
    )
    return save_claim(doc, tmp / f"{name}.claim.json")


def test_the_first_registration_wins_and_a_late_or_stolen_one_is_flagged(
    tmp_path: Path, registry: str
) -> None:
    owner, thief = new_identity(), new_identity()
    mine = generate_key(num_classes=10, input_shape=(1, 12, 12), size=60, kind="noise", seed=seed_of("owner"))
    theirs = generate_key(
        num_classes=10, input_shape=(1, 12, 12), size=60, kind="noise", seed=seed_of("thief")
    )
    save_key_pair(mine, tmp_path / "mine")
    save_key_pair(theirs, tmp_path / "theirs")
    first = register(registry, owner, tmp_path / "mine")  # before the model is released
    second = register(registry, thief, tmp_path / "theirs")  # after stealing it and marking it again
    stolen = register(registry, thief, tmp_path / "mine")  # the owner's key under the thief's name
    assert first["entry"] < second["entry"] < stolen["entry"]
    suspect = BothMarks(mine, theirs)
    claims = [
        load_claim(claim_files(tmp_path, "thief", tmp_path / "theirs", thief, second)),
        load_claim(claim_files(tmp_path, "owner", tmp_path / "mine", owner, first)),
        # the thief replays the owner's key with a proof it re-signs, and its own later receipt
        load_claim(claim_files(tmp_path, "pirate", tmp_path / "mine", thief, stolen)),
    ]
    result = settle(suspect, claims, registry_url=registry)
    by_name = {Path(o.name).name.split(".")[0]: o for o in result.outcomes}
    assert all(o.verified for o in result.outcomes)  # every mark is really in the model
    assert result.first is not None and result.first.owner == owner.public.fingerprint
    assert by_name["owner"].valid and by_name["thief"].valid  # two valid marks: the order decides
    assert "first registered by another identity" in " ".join(by_name["pirate"].problems)
    assert [o.entry for o in result.outcomes] == sorted(o.entry for o in result.outcomes)  # type: ignore[type-var]
    # publication between the owner's registration and the thief's: the thief's key came too late
    late = settle(suspect, claims, registry_url=registry, published=parse_published(first["timestamp"]))
    flagged = {Path(o.name).name.split(".")[0]: o.after_publication for o in late.outcomes}
    assert flagged == {"owner": False, "thief": True, "pirate": True}
    # a claim whose receipt was edited is not the registry's
    doc = json.loads((tmp_path / "thief.claim.json").read_text())
    doc["receipt"]["entry"] = 0
    (tmp_path / "edited.claim.json").write_text(json.dumps(doc))
    edited = settle(suspect, [load_claim(tmp_path / "edited.claim.json")], registry_url=registry)
    assert edited.first is None and "not the registry's" in edited.outcomes[0].problems[0]


def test_the_dispute_command(tmp_path: Path, registry: str, capsys: pytest.CaptureFixture[str]) -> None:
    owner_dir = tmp_path / "owner-id"
    save_identity(new_identity(), owner_dir)
    assert (
        main(
            [
                "keygen",
                "--out",
                str(tmp_path / "key"),
                "--classes",
                "10",
                "--shape",
                "1x28x28",
                "--size",
                "40",
                "-q",
            ]
        )
        == 0
    )
    receipt = tmp_path / "receipt.json"
    assert (
        main(
            [
                "register",
                "--registry",
                registry,
                "--identity",
                str(owner_dir),
                "--vk",
                str(tmp_path / "key"),
                "--out",
                str(receipt),
                "-q",
            ]
        )
        == 0
    )
    assert main(["challenge", "--out", str(tmp_path / "c.json"), "--size", "10", "-q"]) == 0
    assert (
        main(
            [
                "prove",
                "--key",
                str(tmp_path / "key"),
                "--challenge",
                str(tmp_path / "c.json"),
                "--identity",
                str(owner_dir),
                "--out",
                str(tmp_path / "p.json"),
                "-q",
            ]
        )
        == 0
    )
    claim = tmp_path / "claim.json"
    assert (
        main(
            [
                "claim",
                "--vk",
                str(tmp_path / "key"),
                "--challenge",
                str(tmp_path / "c.json"),
                "--proof",
                str(tmp_path / "p.json"),
                "--receipt",
                str(receipt),
                "--out",
                str(claim),
            ]
        )
        == 0
    )
    capsys.readouterr()
    # the suspect: any model; a fresh CNN never saw the key, so the claim does not verify
    from backmark.models import ModelInfo, create_model, save_checkpoint

    model = create_model("cnn", num_classes=10, input_shape=(1, 28, 28))
    save_checkpoint(
        tmp_path / "suspect.pt",
        model,
        ModelInfo(arch="cnn", arch_args={}, input_shape=(1, 28, 28), num_classes=10, meta={}),
    )
    code = main(
        [
            "dispute",
            "--registry",
            registry,
            "--claims",
            str(claim),
            "--model",
            str(tmp_path / "suspect.pt"),
            "--json",
        ]
    )
    out, err = capsys.readouterr()
    result = json.loads(out)
    assert code == 1 and result["first"] is None and result["claims"][0]["entry"] == 1
    assert result["claims"][0]["check"]["triggers_verifiable"] is True
    code = main(
        [
            "dispute",
            "--registry",
            registry,
            "--claims",
            str(tmp_path / "c.json"),
            "--model",
            str(tmp_path / "suspect.pt"),
        ]
    )
    _, err = capsys.readouterr()
    assert code == 2 and "not a backmark claim" in err
