"""The forged-claim attack, with real models: adversarial folder triggers fool plain verify, not check.

An accuser who does not own a model trains nothing into it. With ``--kind folder:`` and a fixed seed the
key's labels are known before its images are chosen, so the accuser makes images the victim's model
already answers with those labels (a few steps of targeted gradient descent on the model), makes the key
with them, and gets a verified result from the private ``verify``. ``check`` refuses the same claim:
folder images cannot be regenerated from seeds, so they are no evidence unless explicitly accepted; and
the same images put into a generated (``abstract``) key are caught as not what their seeds generate.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from backmark.data import ImageDataset
from backmark.embed import TrainConfig, train_clean
from backmark.errors import BackmarkError
from backmark.keys import MarkingKey, generate_key, load_key_pair, save_key_pair
from backmark.public import check_proof, new_challenge, prove
from backmark.verify import verify

N = 40


@pytest.fixture(scope="module")
def victim(fashion_small: ImageDataset) -> nn.Module:
    """Somebody else's model: a CNN trained on Fashion-MNIST, never marked."""
    torch.manual_seed(0)
    config = TrainConfig(epochs=2, seed=0)
    return train_clean(fashion_small, arch="cnn", config=config, progress=False).model.eval()


def adversarial(model: nn.Module, start: np.ndarray, labels: np.ndarray, steps: int = 40) -> np.ndarray:
    """``start`` (uint8) moved by targeted gradient steps until ``model`` answers ``labels``."""
    x = torch.from_numpy(start.astype(np.float32) / 255.0).requires_grad_(True)
    target = torch.from_numpy(labels)
    for _ in range(steps):
        loss = nn.functional.cross_entropy(model(x), target)
        (grad,) = torch.autograd.grad(loss, x)
        with torch.no_grad():
            x -= 0.02 * grad.sign()
            x.clamp_(0.0, 1.0)
    return (x.detach() * 255).round().to(torch.uint8).numpy()


def write_folder(folder: Path, images: np.ndarray) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(images):
        Image.fromarray(img[0]).save(folder / f"{i}.png")


def forged_key(tmp_path: Path, victim: nn.Module, fashion_small: ImageDataset) -> MarkingKey:
    """The accuser's folder key whose images the victim answers with the key's labels."""
    seed = hashlib.sha256(b"the accuser's fixed seed").digest()
    start = (fashion_small.test_x[:N].numpy()).astype(np.uint8)
    write_folder(tmp_path / "start", start)
    draft = generate_key(
        num_classes=10, input_shape=(1, 28, 28), size=N, kind=f"folder:{tmp_path / 'start'}", seed=seed
    )
    crafted = adversarial(victim, draft.images, draft.labels)
    write_folder(tmp_path / "crafted", crafted)
    key = generate_key(
        num_classes=10, input_shape=(1, 28, 28), size=N, kind=f"folder:{tmp_path / 'crafted'}", seed=seed
    )
    assert np.array_equal(key.labels, draft.labels)  # known before the images were chosen
    return key


def test_adversarial_folder_triggers_fool_verify_but_not_check(
    tmp_path: Path, victim: nn.Module, fashion_small: ImageDataset
) -> None:
    key = forged_key(tmp_path, victim, fashion_small)
    save_key_pair(key, tmp_path / "forged")
    mk, vk = load_key_pair(tmp_path / "forged")
    private = verify(victim, mk, vk)
    assert private.verified, private.evidence  # the attack works against the paper's Verify
    challenge = new_challenge(size=20)
    proof = prove(tmp_path / "forged", challenge).proof
    public = check_proof(victim, vk, challenge, proof)
    assert public.evidence.matches >= public.evidence.threshold  # the images do fit the model ...
    assert not public.verified and not public.triggers_verifiable  # ... but are no evidence
    assert public.to_dict()["verified"] is False and "read from files" in public.reason


def test_adversarial_images_in_a_generated_key_are_caught(
    tmp_path: Path, victim: nn.Module, fashion_small: ImageDataset
) -> None:
    honest = generate_key(num_classes=10, input_shape=(1, 28, 28), size=N, kind="abstract")
    crafted = adversarial(victim, honest.images, honest.labels)
    forged = dataclasses.replace(honest, images=crafted)
    save_key_pair(forged, tmp_path / "forged")
    mk, vk = load_key_pair(tmp_path / "forged")
    assert verify(victim, mk, vk).verified  # private Verify trusts the images
    challenge = new_challenge(size=20)
    proof = prove(tmp_path / "forged", challenge).proof
    with pytest.raises(BackmarkError, match="is not the one its seed generates"):
        check_proof(victim, vk, challenge, proof)


def test_an_honest_generated_key_does_not_verify_a_model_it_never_marked(
    tmp_path: Path, victim: nn.Module
) -> None:
    key = generate_key(num_classes=10, input_shape=(1, 28, 28), size=N, kind="abstract")
    save_key_pair(key, tmp_path / "key")
    _mk, vk = load_key_pair(tmp_path / "key")
    challenge = new_challenge(size=20)
    result = check_proof(victim, vk, challenge, prove(tmp_path / "key", challenge).proof)
    assert result.triggers_verifiable and not result.verified
