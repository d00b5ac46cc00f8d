"""Tests generated from the dataset registry: every reader, present and future, keeps the same contract."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from backmark.data import (
    ImageDataset,
    dataset_specs,
    get_dataset,
    list_datasets,
    load_dataset,
    register_dataset,
)
from backmark.errors import BackmarkError

NAMES = [spec.name for spec in list_datasets()]
NEEDS_DIR = [spec.name for spec in list_datasets() if spec.needs_dir]


def _pickle(path: Path, obj: object) -> None:
    path.write_bytes(pickle.dumps(obj, protocol=4))


def _cifar_batch(n: int, label_key: bytes, num_classes: int) -> dict[bytes, object]:
    rng = np.random.default_rng(n)
    return {
        b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        label_key: [i % num_classes for i in range(n)],
    }


def write_cifar10(root: Path) -> None:
    for i in range(1, 6):
        _pickle(root / f"data_batch_{i}", _cifar_batch(2, b"labels", 10))
    _pickle(root / "test_batch", _cifar_batch(3, b"labels", 10))
    _pickle(root / "batches.meta", {b"label_names": [f"c{i}".encode() for i in range(10)]})


def write_cifar100(root: Path) -> None:
    _pickle(root / "train", _cifar_batch(4, b"fine_labels", 100))
    _pickle(root / "test", _cifar_batch(3, b"fine_labels", 100))
    _pickle(root / "meta", {b"fine_label_names": [f"c{i}".encode() for i in range(100)]})


def write_imagefolder(root: Path) -> None:
    for split, count in (("train", 2), ("test", 1)):
        for value, cls in ((40, "cat"), (200, "dog")):
            for i in range(count):
                (root / split / cls).mkdir(parents=True, exist_ok=True)
                Image.new("RGB", (6, 4), (value, i, 7)).save(root / split / cls / f"{i}.png")


# A small folder in each registered dataset's own format (the IDX ones come from the idx_dir_maker
# fixture); a new dataset needs a writer here to be tested.
WRITERS: dict[str, Callable[[Path], object]] = {
    "cifar10": write_cifar10,
    "cifar100": write_cifar100,
    "imagefolder": write_imagefolder,
}


def test_the_registry_holds_the_known_datasets() -> None:
    assert {"fashion-mnist", "mnist", "cifar10", "cifar100", "imagefolder"} <= set(NAMES)
    assert sorted(NAMES) == NAMES
    assert dataset_specs() == [form for spec in list_datasets() for form in spec.forms]


@pytest.mark.parametrize("name", NAMES)
def test_every_dataset_describes_its_forms(name: str) -> None:
    spec = get_dataset(name)
    assert spec.description and "\n" not in spec.description
    assert all(form == name or form.startswith(f"{name}:") for form in spec.forms)
    assert (name in spec.forms) != bool(spec.needs_dir)


@pytest.mark.parametrize("name", NAMES)
def test_every_dataset_reads_its_own_format(
    name: str, tmp_path: Path, idx_dir_maker: Callable[[Path], object]
) -> None:
    writers = {**WRITERS, "fashion-mnist": idx_dir_maker, "mnist": idx_dir_maker}
    assert name in writers, f"add a writer of a small {name} folder to WRITERS"
    writers[name](tmp_path)
    ds = load_dataset(f"{name.upper()}:{tmp_path}", download=False)  # names are case-insensitive
    assert isinstance(ds, ImageDataset) and ds.name.startswith(name)
    assert ds.train_x.dtype == torch.uint8 and ds.train_x.ndim == 4 and len(ds.train_x) >= 2
    assert ds.test_x.shape[1:] == ds.train_x.shape[1:] and len(ds.test_y) == len(ds.test_x) >= 1
    assert ds.train_y.dtype == torch.int64 and int(ds.train_y.max()) < ds.num_classes


@pytest.mark.parametrize("name", NAMES)
def test_every_dataset_names_a_missing_directory(name: str, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(BackmarkError) as info:
        load_dataset(f"{name}:{missing}", download=False)
    assert str(missing) in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("name", NEEDS_DIR)
def test_a_dataset_without_a_default_location_asks_for_its_directory(name: str) -> None:
    with pytest.raises(BackmarkError, match=rf"^{name} needs a directory: {name}:DIR") as info:
        load_dataset(name)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("spec", ["svhn", "imagenet:/x", "", "fashion_mnist"])
def test_an_unknown_spec_lists_every_form(spec: str) -> None:
    with pytest.raises(BackmarkError, match=r"^unknown dataset ") as info:
        load_dataset(spec)
    message = str(info.value)
    assert "\n" not in message and all(form in message for form in dataset_specs())


@pytest.mark.parametrize("name", NAMES)
def test_an_empty_directory_after_the_colon_is_refused(name: str) -> None:
    with pytest.raises(BackmarkError, match="empty DIR"):
        load_dataset(f"{name}: ")


def test_a_reader_cannot_be_registered_twice_or_without_its_name() -> None:
    def reader(directory: Path | None, *, download: bool, progress: bool) -> ImageDataset:
        raise AssertionError("never called")

    with pytest.raises(ValueError, match="registered twice"):
        register_dataset("mnist", forms=("mnist",), description="again")(reader)
    with pytest.raises(ValueError, match="must be svhn or svhn:"):
        register_dataset("svhn", forms=("other:DIR",), description="x", needs_dir="x")(reader)
    with pytest.raises(ValueError, match="needs_dir"):
        register_dataset("svhn", forms=("svhn:DIR",), description="x")(reader)
    assert [s.name for s in list_datasets()] == NAMES
