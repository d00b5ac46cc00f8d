"""KeyGen: generated and folder triggers, regeneration from the seed, fresh openings, uniform labels."""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from backmark.errors import BackmarkError
from backmark.keys import check_openings, derive, generate_key
from backmark.keys.labels import item_seed, uniform_label
from backmark.triggers import abstract_image, folder_images, noise_image


def seed_of(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


@pytest.mark.parametrize(
    ("kind", "shape", "make"),
    [("abstract", (3, 32, 32), abstract_image), ("noise", (1, 28, 28), noise_image)],
)
def test_generated_key(kind: str, shape: tuple[int, int, int], make: object) -> None:
    seed = seed_of(kind)
    mk = generate_key(num_classes=10, input_shape=shape, size=12, kind=kind, seed=seed)
    assert mk.n == 12 and mk.input_shape == shape and mk.num_classes == 10
    assert mk.images.dtype == np.uint8 and mk.images.shape == (12, *shape)
    assert mk.labels.dtype == np.int64 and mk.labels.shape == (12,)
    assert mk.labels.min() >= 0 and mk.labels.max() < 10
    assert mk.kind == kind and mk.source == {"kind": kind} and mk.master_seed == seed
    assert len(set(mk.image_openings) | set(mk.label_openings)) == 24
    assert all(len(r) == 32 for r in mk.image_openings + mk.label_openings)
    # audit: every image and label is a function of the item's seed and the key's root
    vk = mk.verification_key()
    root = vk.root()
    for i in range(mk.n):
        s = item_seed(seed, i)
        assert derive.seed_opens(vk.seed_commitments[i], s, mk.seed_openings[i])
        d = derive.item_randomness(root, s, i)
        assert np.array_equal(mk.images[i], make(d, shape))  # type: ignore[operator]
        assert mk.labels[i] == uniform_label(d, 10)
    check_openings(mk, mk.verification_key())
    assert len({img.tobytes() for img in mk.images}) == 12


def test_default_size_is_the_papers() -> None:
    mk = generate_key(num_classes=10, input_shape=(1, 8, 8), kind="noise")
    assert mk.n == 100 and mk.master_seed is not None and len(mk.master_seed) == 32


def test_same_seed_regenerates_triggers_with_fresh_openings() -> None:
    seed = seed_of("regenerate")
    one = generate_key(num_classes=10, input_shape=(3, 16, 16), size=10, seed=seed)
    two = generate_key(num_classes=10, input_shape=(3, 16, 16), size=10, seed=seed)
    assert np.array_equal(one.images, two.images)
    assert np.array_equal(one.labels, two.labels)
    assert not set(one.image_openings) & set(two.image_openings)
    assert not set(one.label_openings) & set(two.label_openings)
    assert one.verification_key().digest != two.verification_key().digest
    # the root binds the key's size: a longer key from the same seed draws every item anew
    longer = generate_key(num_classes=10, input_shape=(3, 16, 16), size=15, seed=seed)
    assert not any(np.array_equal(a, b) for a, b in zip(longer.images, one.images, strict=False))


def test_other_seed_gives_other_triggers() -> None:
    one = generate_key(num_classes=10, input_shape=(1, 8, 8), size=100, kind="noise", seed=seed_of("a"))
    two = generate_key(num_classes=10, input_shape=(1, 8, 8), size=100, kind="noise", seed=seed_of("b"))
    assert not np.array_equal(one.labels, two.labels)
    assert not any(np.array_equal(a, b) for a, b in zip(one.images, two.images, strict=True))
    # unseeded keys differ from each other
    three = generate_key(num_classes=10, input_shape=(1, 8, 8), size=100, kind="noise")
    four = generate_key(num_classes=10, input_shape=(1, 8, 8), size=100, kind="noise")
    assert three.master_seed != four.master_seed
    assert not np.array_equal(three.labels, four.labels)


def test_the_root_binds_the_class_count_shape_and_kind() -> None:
    seed = seed_of("classes")
    ten = generate_key(num_classes=10, input_shape=(1, 8, 8), size=20, kind="noise", seed=seed)
    hundred = generate_key(num_classes=100, input_shape=(1, 8, 8), size=20, kind="noise", seed=seed)
    abstract = generate_key(num_classes=10, input_shape=(1, 8, 8), size=20, kind="abstract", seed=seed)
    roots = {k.verification_key().root() for k in (ten, hundred, abstract)}
    assert len(roots) == 3
    assert not any(np.array_equal(a, b) for a, b in zip(ten.images, hundred.images, strict=True))
    assert hundred.labels.max() < 100


@pytest.mark.parametrize(("num_classes", "bound"), [(10, 40.0), (7, 35.0)])
def test_labels_of_a_big_key_are_uniform(num_classes: int, bound: float) -> None:
    n = 10000
    mk = generate_key(
        num_classes=num_classes,
        input_shape=(1, 8, 8),
        size=n,
        kind="noise",
        seed=seed_of(f"big{num_classes}"),
    )
    counts = Counter(int(v) for v in mk.labels)
    expected = n / num_classes
    chi2 = sum((counts.get(c, 0) - expected) ** 2 / expected for c in range(num_classes))
    assert chi2 < bound  # 99.99% quantiles: 33.7 (9 dof), 27.9 (6 dof)


def test_folder_key_resize_and_center_crop(adi_pics: Path) -> None:
    seed = seed_of("folder")
    shape = (3, 32, 32)
    resized = generate_key(num_classes=10, input_shape=shape, size=8, kind=f"folder:{adi_pics}", seed=seed)
    cropped = generate_key(
        num_classes=10, input_shape=shape, size=8, kind=f"folder:{adi_pics}", crop="center-crop", seed=seed
    )
    expected_files = [f"{i}.jpg" for i in range(1, 9)]
    for mk, mode in ((resized, "resize"), (cropped, "center-crop")):
        assert mk.kind == "folder" and mk.images.shape == (8, *shape)
        assert mk.source["files"] == expected_files
        assert mk.source["crop"] == mode and mk.source["folder"] == str(adi_pics)
        check_openings(mk, mk.verification_key())
    # the labels come from the seeds and the root, not from the images or the folder's labels.csv
    assert np.array_equal(resized.labels, cropped.labels)
    root = resized.verification_key().root()
    assert all(resized.labels[i] == derive.derived_label(root, item_seed(seed, i), i, 10) for i in range(8))
    assert not np.array_equal(resized.images, cropped.images)
    reference = dict(folder_images(adi_pics, shape, mode="center-crop"))
    for name, img in zip(expected_files, cropped.images, strict=True):
        assert np.array_equal(img, reference[name])


def test_folder_key_greyscale(adi_pics: Path) -> None:
    mk = generate_key(num_classes=10, input_shape=(1, 28, 28), size=3, kind=f"folder:{adi_pics}")
    assert mk.images.shape == (3, 1, 28, 28)


def test_folder_with_too_few_images(tmp_path: Path) -> None:
    from PIL import Image

    for i in range(3):
        Image.new("RGB", (40, 40), (i * 40, 0, 0)).save(tmp_path / f"{i + 1}.png")
    mk = generate_key(num_classes=10, input_shape=(3, 16, 16), size=3, kind=f"folder:{tmp_path}")
    assert mk.n == 3
    with pytest.raises(BackmarkError, match="holds 3 images but the key needs 4"):
        generate_key(num_classes=10, input_shape=(3, 16, 16), size=4, kind=f"folder:{tmp_path}")
    with pytest.raises(BackmarkError, match=r"trigger folder .*none does not exist"):
        generate_key(num_classes=10, input_shape=(3, 16, 16), size=2, kind=f"folder:{tmp_path / 'none'}")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"num_classes": 1},
        {"size": 0},
        {"input_shape": (2, 32, 32)},
        {"input_shape": (3, 4, 32)},
        {"input_shape": (32, 32)},
        {"seed": bytes(16)},
        {"kind": "bogus"},
    ],
)
def test_bad_keygen_arguments(kwargs: dict[str, object]) -> None:
    args: dict[str, object] = {"num_classes": 10, "input_shape": (3, 32, 32), "size": 4, "kind": "noise"}
    args.update(kwargs)
    with pytest.raises(BackmarkError) as info:
        generate_key(**args)  # type: ignore[arg-type]
    assert "\n" not in str(info.value)
