"""Real image-classification datasets, read into memory as uint8 tensors.

``load_dataset("fashion-mnist")`` finds (or downloads and verifies) Fashion-MNIST and returns an
:class:`ImageDataset` with images uint8 [N, C, H, W] and labels int64 [N]. Other specs read
MNIST IDX files, CIFAR-10/100 pickle batches (unpickled with a restricted unpickler) or a folder of
image files; :func:`dataset_specs` lists the accepted forms, and :func:`register_dataset` adds a reader.
Problems raise :class:`backmark.errors.BackmarkError` with a one-line message.
"""

from __future__ import annotations

from backmark.data import cifar as _cifar  # noqa: F401  (registers cifar10, cifar100)
from backmark.data import imagefolder as _imagefolder  # noqa: F401  (registers imagefolder)
from backmark.data import mnist as _mnist  # noqa: F401  (registers fashion-mnist, mnist)
from backmark.data.dataset import ImageDataset
from backmark.data.registry import (
    DatasetReader,
    DatasetSpec,
    dataset_specs,
    get_dataset,
    list_datasets,
    load_dataset,
    register_dataset,
)

__all__ = [
    "DatasetReader",
    "DatasetSpec",
    "ImageDataset",
    "dataset_specs",
    "get_dataset",
    "list_datasets",
    "load_dataset",
    "register_dataset",
]
