"""Tests for the seeded generators, every registered one (abstract, noise) and each by its own."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from backmark.errors import BackmarkError
from backmark.triggers import abstract_image, list_trigger_kinds, noise_image

SHAPES = [(1, 28, 28), (3, 32, 32), (3, 64, 48)]
SEED = bytes(range(32))

# Pinned outputs: a change here means every trigger set generated so far changes too. Only
# update these together with a deliberate, documented change of the generator.
PINNED_SHA256: dict[str, dict[tuple[int, int, int], str]] = {}
PINNED_SHA256["abstract"] = {
    (3, 32, 32): "a2bcc7742e0c2cc1dd67e61646461db4bdf4b4b618917091ab6280929429034d",
    (1, 28, 28): "63bbc31f5f0a916c213a46debbfbf183dd2a9a501cdc00ab35f4c14a5b3b055e",
    (3, 64, 48): "d577ac369c11912eab0a45b730566eda473c9fe36a6331de14fbc56c1abf337f",
}
PINNED_SHA256["noise"] = {
    (3, 32, 32): "1c6cbe05d6c085d4dc30454272a089bc68b8338944621fa7c684f3e5af8d2c2f",
    (1, 28, 28): "1b0709282a5ae274b7dbd32a01811ee747a3c0168084360f1eb0fbf507a28fdd",
    (3, 64, 48): "1ebb889e9caccf1ddfb7dca10397be18f3bcc1aaa64734d47aca0d375fa55fda",
}
KINDS = {kind.name: kind.generate for kind in list_trigger_kinds() if kind.generate is not None}


def _batch(seeds: list[bytes], shape: tuple[int, int, int]) -> np.ndarray:
    """Abstract images for all seeds as float64 (N, C, H, W)."""
    return np.stack([abstract_image(s, shape) for s in seeds]).astype(np.float64)


def _hf_ratio(image: np.ndarray) -> float:
    """Mean squared difference of neighbouring pixels over the variance: ~2 for white noise."""
    img = image.astype(np.float64)
    dx = np.diff(img, axis=-1)
    dy = np.diff(img, axis=-2)
    return float(((dx**2).mean() + (dy**2).mean()) / 2.0 / img.var())


def test_the_registry_holds_the_generated_kinds() -> None:
    assert KINDS["abstract"] is abstract_image and KINDS["noise"] is noise_image


@pytest.mark.parametrize("name", sorted(KINDS))
@pytest.mark.parametrize("shape", SHAPES)
def test_shape_dtype_and_determinism(name: str, shape: tuple[int, int, int]) -> None:
    generate = KINDS[name]
    first = generate(SEED, shape)
    assert first.shape == shape
    assert first.dtype == np.uint8
    assert first.flags.c_contiguous
    assert generate(SEED, shape).tobytes() == first.tobytes()
    assert generate(bytearray(SEED), shape).tobytes() == first.tobytes()
    assert generate(SEED[:-1] + b"\xff", shape).tobytes() != first.tobytes()


@pytest.mark.parametrize("name", sorted(KINDS))
@pytest.mark.parametrize("shape", SHAPES)
def test_pinned_outputs(name: str, shape: tuple[int, int, int]) -> None:
    assert name in PINNED_SHA256, f"pin the outputs of generated kind {name} in PINNED_SHA256"
    assert hashlib.sha256(KINDS[name](SEED, shape).tobytes()).hexdigest() == PINNED_SHA256[name][shape]


def test_kinds_are_independent_streams() -> None:
    images = {KINDS[name](SEED, (3, 32, 32)).tobytes() for name in KINDS}
    assert len(images) == len(KINDS)


@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 8, 200), (3, 9, 13), (1, 300, 17), (3, 224, 224)])
def test_abstract_odd_sizes(shape: tuple[int, int, int]) -> None:
    image = abstract_image(SEED, shape)
    assert image.shape == shape
    assert image.std() > 5.0


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_abstract_images_are_varied(seeds: list[bytes], shape: tuple[int, int, int]) -> None:
    images = _batch(seeds, shape)
    flat = images.reshape(len(seeds), -1)
    std = flat.std(axis=1)
    assert std.min() > 20.0, "every image has visible structure"
    assert np.median(std) > 45.0
    spread = np.percentile(flat, 99, axis=1) - np.percentile(flat, 1, axis=1)
    assert spread.min() > 150.0 and np.median(spread) > 220.0, "wide intensity range"
    z = (flat - flat.mean(axis=1, keepdims=True)) / std[:, None]
    corr = z @ z.T / flat.shape[1]
    pairs = corr[np.triu_indices(len(seeds), 1)]
    assert abs(pairs.mean()) < 0.05 and np.abs(pairs).mean() < 0.25, "mutually unlike"
    assert pairs.max() < 0.97, "no two seeds give near-copies"
    rms = np.sqrt(((flat[:, None, :] - flat[None, :, :]) ** 2).mean(axis=-1))
    assert rms[np.triu_indices(len(seeds), 1)].min() > 25.0


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_abstract_is_not_noise(seeds: list[bytes], shape: tuple[int, int, int]) -> None:
    abstract = [_hf_ratio(abstract_image(s, shape)) for s in seeds]
    noise = [_hf_ratio(noise_image(s, shape)) for s in seeds[:10]]
    assert min(noise) > 1.8
    assert np.median(abstract) < 0.2 * np.median(noise)
    assert max(abstract) < 0.6 * min(noise)


def test_colour_images_have_colour(seeds: list[bytes]) -> None:
    images = _batch(seeds, (3, 32, 32))
    channel_gap = np.abs(images[:, 0] - images[:, 1]) + np.abs(images[:, 1] - images[:, 2])
    per_image = channel_gap.mean(axis=(1, 2))
    assert per_image.min() > 10.0
    assert np.median(per_image) > 50.0


def test_noise_histogram_is_uniform() -> None:
    pixels = noise_image(SEED, (3, 256, 256)).reshape(-1)
    counts = np.bincount(pixels, minlength=256)
    expected = pixels.size / 256
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 255 + 6 * np.sqrt(2 * 255), chi2  # 255 degrees of freedom: mean 255, sd 22.6
    assert abs(pixels.mean() - 127.5) < 1.0
    per_channel = noise_image(SEED, (3, 64, 64)).reshape(3, -1).astype(np.float64)
    assert np.abs(np.corrcoef(per_channel)[np.triu_indices(3, 1)]).max() < 0.1


@pytest.mark.parametrize("name", sorted(KINDS))
@pytest.mark.parametrize(
    "shape",
    [(2, 32, 32), (4, 32, 32), (0, 32, 32), (3, 0, 32), (3, 32), (3, 32, 32, 1),
     (3, 32.0, 32), (True, 32, 32), ("3", 32, 32)],
)  # fmt: skip
def test_bad_shape(name: str, shape: tuple[int, int, int]) -> None:
    with pytest.raises(BackmarkError, match="bad image shape"):
        KINDS[name](SEED, shape)


@pytest.mark.parametrize("shape", [(3, 7, 32), (1, 32, 4)])
def test_abstract_too_small(shape: tuple[int, int, int]) -> None:
    with pytest.raises(BackmarkError, match=r"H, W >= 8"):
        abstract_image(SEED, shape)
    assert noise_image(SEED, shape).shape == shape


@pytest.mark.parametrize("name", sorted(KINDS))
def test_seed_must_be_bytes(name: str) -> None:
    with pytest.raises(BackmarkError, match="seed must be bytes"):
        KINDS[name](SEED.hex(), (3, 32, 32))  # type: ignore[arg-type]
