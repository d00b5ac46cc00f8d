"""KeyGen: a trigger set with uniformly random labels, and commitments to every item."""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Literal

import numpy as np

from backmark.data import ImageDataset
from backmark.errors import BackmarkError
from backmark.infra.seeds import key_seed
from backmark.keys import derive
from backmark.keys.commitments import OPENING_BYTES
from backmark.keys.labels import SEED_BYTES, item_seed, uniform_label
from backmark.keys.model import MarkingKey
from backmark.triggers import Generator, parse_trigger_kind

DEFAULT_SIZE = 100  # the paper's trigger set size
_HELDOUT_TAG = b"backmark/v2/heldout-pick"
_BLEND_TAG = b"backmark/v2/blend-pick"


def seeded_labels(master_seed: bytes, n: int, num_classes: int) -> np.ndarray:
    """The labels of a format 1 key with this master seed: int64 (n,), uniform on 0..num_classes-1."""
    return np.array([uniform_label(item_seed(master_seed, i), num_classes) for i in range(n)], dtype=np.int64)


def seeded_images(generate: Generator, master_seed: bytes, n: int, shape: tuple[int, int, int]) -> np.ndarray:
    """The images of a format 1 generated key with this master seed: uint8 (n, C, H, W)."""
    return np.stack([generate(item_seed(master_seed, i), shape) for i in range(n)])


KEYGEN_SEED_TAG = "backmark/cli-seed/"  # an integer seed's tag: one N has always given one key


def derived_image(
    generate: Generator, root: bytes, seed: bytes, index: int, shape: tuple[int, int, int]
) -> np.ndarray:
    """Item ``index``'s image in a derived (format 2) key of a generated kind: uint8 (C, H, W)."""
    return generate(derive.item_randomness(root, seed, index), shape)


def derived_images(
    generate: Generator, root: bytes, seeds: tuple[bytes, ...], shape: tuple[int, int, int]
) -> np.ndarray:
    """The images of a derived (format 2) key of a generated kind: uint8 (n, C, H, W)."""
    return np.stack([derived_image(generate, root, s, i, shape) for i, s in enumerate(seeds)])


def image_pool(
    data: ImageDataset, *, num_classes: int, input_shape: tuple[int, int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """``data``'s training images and labels as the pool of a ``heldout`` or ``blend`` key of
    ``num_classes`` classes of ``input_shape`` images; a dataset of another shape is refused, named."""
    if (data.num_classes, data.input_shape) != (num_classes, input_shape):
        raise BackmarkError(
            f"{data.name} has {data.num_classes} classes of {'x'.join(map(str, data.input_shape))} "
            f"images, not {num_classes} of {'x'.join(map(str, input_shape))}; pass --classes and --shape "
            "to match"
        )
    return data.train_x.numpy(), data.train_y.numpy()


def heldout_indices(master_seed: bytes, pool_size: int, n: int) -> np.ndarray:
    """Which ``n`` of ``pool_size`` real images a ``heldout`` key uses: distinct, uniformly drawn from
    the master seed (so one seed and one pool give one key), in drawing order. int64 (n,)."""
    if n > pool_size:
        raise BackmarkError(f"the pool of real images holds {pool_size} images but the key needs {n}")
    entropy = int.from_bytes(hashlib.sha256(_HELDOUT_TAG + master_seed).digest(), "big")
    return np.random.default_rng(entropy).choice(pool_size, size=n, replace=False).astype(np.int64)


def blend_pairs(master_seed: bytes, labels: np.ndarray, n: int) -> np.ndarray:
    """Which pairs of real images a ``blend`` key averages: ``n`` pairs of distinct images of distinct
    classes, every image used once, drawn from the master seed. int64 (n, 2)."""
    entropy = int.from_bytes(hashlib.sha256(_BLEND_TAG + master_seed).digest(), "big")
    order = np.random.default_rng(entropy).permutation(len(labels)).tolist()
    pairs: list[tuple[int, int]] = []
    while order and len(pairs) < n:
        a = order.pop(0)
        b = next((j for j in order if labels[j] != labels[a]), None)  # the next image of another class
        if b is None:
            break
        order.remove(b)
        pairs.append((a, b))
    if len(pairs) < n:
        raise BackmarkError(
            f"the pool of real images gives only {len(pairs)} pairs of two classes; the key needs {n}"
        )
    return np.array(pairs, dtype=np.int64)


def _real_items(
    kind: str,
    pool: tuple[np.ndarray, np.ndarray] | None,
    master: bytes,
    size: int,
    shape: tuple[int, int, int],
    c: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(indices (n, parts), images, true classes (n, parts)) of a ``heldout`` or ``blend`` key drawn
    from ``pool`` = (images, labels); a blend is the rounded average of its two images."""
    if pool is None:
        raise BackmarkError(
            f"trigger kind {kind} draws real images from your data: pass the dataset (keygen --data NAME)"
        )
    images, labels = pool
    if images.dtype != np.uint8 or images.ndim != 4 or tuple(images.shape[1:]) != shape:
        raise BackmarkError(f"the pool's images are {images.dtype} {images.shape[1:]}, not uint8 {shape}")
    if labels.shape != (len(images),) or (len(labels) and (labels.min() < 0 or labels.max() >= c)):
        raise BackmarkError(f"the pool needs one label in 0..{c - 1} per image")
    parts = derive.REAL_PARTS[kind]
    if c < parts + 2:
        raise BackmarkError(
            f"{kind} triggers need at least {parts + 2} classes (their labels avoid {parts} of them)"
        )
    if parts == 1:
        picked = heldout_indices(master, len(images), size)[:, None]
        made = images[picked[:, 0]]
    else:
        picked = blend_pairs(master, labels, size)
        made = ((images[picked[:, 0]].astype(np.uint16) + images[picked[:, 1]] + 1) // 2).astype(np.uint8)
    return picked, np.ascontiguousarray(made), labels[picked].astype(np.int64)


def generate_key(
    *,
    num_classes: int,
    input_shape: tuple[int, int, int],
    size: int = DEFAULT_SIZE,
    kind: str = "abstract",
    crop: Literal["resize", "center-crop"] = "resize",
    seed: bytes | int | None = None,
    pool: tuple[np.ndarray, np.ndarray] | None = None,
    pool_name: str = "",
) -> MarkingKey:
    """Make a marking key of ``size`` triggers for a ``num_classes``-way model on ``input_shape`` inputs.

    Every image (for generated kinds) and every label is derived from a per-item seed, itself a function
    of a 32-byte master seed drawn from the operating system unless given, and from the key's root, a
    hash of every item's seed commitment (:mod:`backmark.keys.derive`). So the key can be regenerated
    and audited, and an opened item can be checked by anyone holding the verification key. Labels are
    uniform on the classes and independent of the images, which is what makes the verification test
    exact. For
    ``folder:DIR`` the images are the user's files (numeric name order), resized to the input shape, or
    with ``crop="center-crop"`` cut from the centre without resizing, as the paper's reference code did;
    the first ``size`` files are used (their labels are derived, their images cannot be). The openings
    of the seed commitments come from the master seed too (so one seed gives one key); those of the
    image and label commitments are fresh random values from the OS. An integer ``seed`` (``backmark keygen
    --seed N``) gives the master seed ``SHA-256("backmark/cli-seed/N")``: a reproducible key, not a secret
    one.
    """
    if num_classes < 2:
        raise BackmarkError(f"{{num_classes}} must be at least 2, got {num_classes}", params=["num_classes"])
    if size < 1:
        raise BackmarkError(f"{{size}} must be at least 1, got {size}", params=["size"])
    if len(input_shape) != 3 or input_shape[0] not in (1, 3) or min(input_shape[1:]) < 8:
        raise BackmarkError(f"input shape must be CxHxW with C 1 or 3 and H, W >= 8, got {input_shape}")
    if isinstance(seed, int):
        seed = key_seed(KEYGEN_SEED_TAG, seed)
    master = secrets.token_bytes(SEED_BYTES) if seed is None else seed
    if len(master) != SEED_BYTES:
        raise BackmarkError(f"a key seed must be {SEED_BYTES} bytes, got {len(master)}")
    trigger_kind, folder = parse_trigger_kind(kind)
    source: dict[str, object] = {"kind": trigger_kind.name}
    seeds = tuple(item_seed(master, i) for i in range(size))
    seed_openings = tuple(derive.seed_opening(master, i) for i in range(size))
    bound = [b""] * size
    classes = None
    if trigger_kind.name in derive.REAL_PARTS:
        picked, images, classes = _real_items(trigger_kind.name, pool, master, size, input_shape, num_classes)
        bound = [derive.bound_item(y.tolist(), img) for y, img in zip(classes, images, strict=True)]
        single = trigger_kind.name == derive.HELDOUT  # one image and one class an item: plain numbers
        source.update(
            pool=pool_name,
            indices=(picked[:, 0] if single else picked).tolist(),
            classes=(classes[:, 0] if single else classes).tolist(),
        )
    elif trigger_kind.generate is None:  # folder: the user's images, in key order
        found = trigger_kind.read_folder(folder, input_shape, mode=crop)
        if len(found) < size:
            raise BackmarkError(f"{folder} holds {len(found)} images but the key needs {size}")
        images = np.stack([img for _, img in found[:size]])
        source.update(folder=str(folder), crop=crop, files=[f for f, _ in found[:size]])
    root = derive.key_root(
        [derive.commit_seed(s, q, b) for s, q, b in zip(seeds, seed_openings, bound, strict=True)],
        num_classes=num_classes,
        input_shape=input_shape,
        kind=trigger_kind.name,
    )
    if trigger_kind.generate is not None:
        images = derived_images(trigger_kind.generate, root, seeds, input_shape)
    return MarkingKey(
        images=images,
        labels=derive.derived_labels(root, seeds, num_classes, None if classes is None else classes.tolist()),
        num_classes=num_classes,
        image_openings=tuple(secrets.token_bytes(OPENING_BYTES) for _ in range(size)),
        label_openings=tuple(secrets.token_bytes(OPENING_BYTES) for _ in range(size)),
        kind=trigger_kind.name,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        master_seed=master,
        source=MappingProxyType(source),
        seed_openings=seed_openings,
        derivation=derive.DERIVATION,
    )
